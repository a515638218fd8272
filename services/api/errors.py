"""Every error the service answers is one model, :class:`ErrorOut`, whoever raised it.

This module (:class:`ApiError`), the upload-size middleware, Starlette's routing (404,
405), FastAPI's request validation (422) or a bug (500): :func:`answer_errors_as_error_out`
installs the handlers, :func:`error_responses` documents the statuses of an endpoint.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "ApiError",
    "ApiModel",
    "ErrorOut",
    "FieldErrorOut",
    "answer_errors_as_error_out",
    "error_response",
    "error_responses",
    "kind_of_status",
]


class ApiModel(BaseModel):
    """Base of the service's response models: exactly the documented fields."""

    model_config = ConfigDict(extra="forbid")


class FieldErrorOut(ApiModel):
    """One invalid field of a request (the offending value is never echoed)."""

    loc: list[str | int] = Field(description="Where: ['query', 'k'], ['body', 'file'], ['path', 'session_id'], ...")
    msg: str
    type: str = Field(description="Machine-readable error type (pydantic's, e.g. 'missing', 'less_than_equal').")


class ErrorOut(ApiModel):
    """The body of every error response (4xx and 5xx), whatever raised it."""

    detail: str = Field(description="What went wrong, for people.")
    kind: str = Field(description="What went wrong, for programs: `bad_request`, `unauthorized`, `forbidden`, "
                                  "`unknown_session`, `unknown_task`, `not_found`, `method_not_allowed`, "
                                  "`no_report_tower`, `no_tokenizer`, "
                                  "`length_required`, `payload_too_large`, `invalid_request`, `internal_error`; "
                                  "an upload that is not a readable EDF/BDF gets the ingest error's kind "
                                  "(`not_edf`, `truncated`, `corrupt_header`, ...).")
    errors: list[FieldErrorOut] = Field(default_factory=list,
                                        description="The invalid fields (kind `invalid_request`); empty otherwise.")


class ApiError(Exception):
    """An error answered as :class:`ErrorOut` with HTTP status ``status``.

    Parameters
    ----------
    status : int
    detail : str
    kind : str, optional
        Default: the status's generic kind (:func:`kind_of_status`).
    errors : list of FieldErrorOut, optional
    headers : dict, optional
    """

    def __init__(self, status: int, detail: str, kind: str | None = None, *,
                 errors: list[FieldErrorOut] | None = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.detail, self.kind = status, detail, kind or kind_of_status(status)
        self.errors, self.headers = errors or [], headers
        super().__init__(detail)


_KIND_OF_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 411: "length_required", 413: "payload_too_large",
                   422: "invalid_request", 500: "internal_error"}

_ERROR_DESCRIPTIONS = {
    400: "Malformed request: a Content-Length that is not an integer, or a multipart body that cannot be parsed "
         "(kind `bad_request`).",
    401: "No API key (kind `unauthorized`, header `WWW-Authenticate: ApiKey`).",
    403: "API key not accepted (kind `forbidden`).",
    404: "Unknown session (kind `unknown_session`) or probe task (kind `unknown_task`).",
    409: "The served checkpoint lacks what the endpoint needs: a report tower for text search (a stage-1 "
         "checkpoint; kind `no_report_tower`), or the tokenizer that reads recordings for an explanation (a "
         "checkpoint that embeds tokens only; kind `no_tokenizer`).",
    411: "Upload without a Content-Length header (kind `length_required`).",
    413: "Upload larger than the service's --max-upload-mb (kind `payload_too_large`).",
    422: "Invalid request (kind `invalid_request`, one entry per invalid field in `errors`), or an upload that is "
         "not a readable EDF/BDF (kind: the ingest error, e.g. `not_edf`, `truncated`, `corrupt_header`).",
    500: "Internal error, logged by the service (kind `internal_error`).",
}


def kind_of_status(status: int) -> str:
    """The generic error kind of an HTTP status (``not_found`` for 404 ...)."""
    return _KIND_OF_STATUS.get(status, f"http_{status}")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the error statuses an endpoint returns (all :class:`ErrorOut`)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorOut, "description": _ERROR_DESCRIPTIONS[status]}
        if status == 401:
            out[status]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                           "description": "`ApiKey`"}}
    return out


def error_response(status: int, detail: str, kind: str | None = None, *, errors: list[FieldErrorOut] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An :class:`ErrorOut` response."""
    body = ErrorOut(detail=detail, kind=kind or kind_of_status(status), errors=errors or [])
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[FieldErrorOut]:
    return [FieldErrorOut(loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                          msg=str(e.get("msg", "")), type=str(e.get("type", "")))
            for e in exc.errors()]


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.detail, exc.kind, errors=exc.errors, headers=exc.headers)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    # routing (404, 405), body parsing (400), FastAPI's own
    return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _field_errors(exc)
    where = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors)
    return error_response(422, f"invalid request: {where}", "invalid_request", errors=errors)


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    # a bug: the server (uvicorn) logs the traceback
    return error_response(500, "internal error")


def answer_errors_as_error_out(app: FastAPI) -> None:
    """Make every error of ``app`` an :class:`ErrorOut` body, whoever raised it."""
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)

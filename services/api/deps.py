"""Dependencies of the endpoints: the service state, the API key check, and parameter types."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, File, Query, Request, Security, UploadFile
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.api.errors import ApiError
from services.api.state import ServiceState

__all__ = ["Filters", "State", "Tasks", "Upload", "get_state", "k_query", "require_key"]


def get_state(request: Request) -> ServiceState:
    """The :class:`ServiceState` of the app answering ``request`` (set by ``create_app``)."""
    return request.app.state.clef


State = Annotated[ServiceState, Depends(get_state)]

# Parameter types (module level: endpoint annotations are resolved in this namespace).
Filters = Annotated[list[str], Query(description="KEY=VALUE: site=S01[,S02], sex=F, setting=emu, age=40-60, "
                                                 "reference=LE.")]
Tasks = Annotated[list[str] | None, Query(description="Tasks to score (default: all).")]
Upload = Annotated[UploadFile, File(description="An EDF/EDF+/BDF file.")]


def k_query(max_k: int) -> Any:
    """The ``k`` query parameter: neighbours to return, 1 to ``max_k`` (the app's ``ServeConfig.max_k``)."""
    return Query(10, ge=1, le=max_k, description=f"Neighbours to return (at most {max_k}).")


# Documented as OpenAPI security schemes; either one will do (checked in require_key).
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False,
                               description="An API key of the service.")
_BEARER = HTTPBearer(scheme_name="Bearer", auto_error=False, description="The same API key, as a bearer token.")


def require_key(state: State, key: str | None = Security(_API_KEY_HEADER),
                bearer: HTTPAuthorizationCredentials | None = Security(_BEARER)) -> None:
    """Refuse a request without an API key (401) or with a key the service does not accept (403)."""
    presented = [k for k in (key, bearer.credentials if bearer is not None else None) if k]
    if not presented:
        raise ApiError(401, "API key required: send it as X-API-Key (or Authorization: Bearer)",
                       headers={"WWW-Authenticate": "ApiKey"})
    if not all(state.keys.valid(k) for k in presented):  # a wrong key is refused even next to a right one
        raise ApiError(403, "API key not accepted")

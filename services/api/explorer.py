"""The cohort explorer: its page (``/``, ``/static/...``) and the endpoints it needs beyond the API's own.

Endpoints (API key as everywhere; errors are :class:`~services.api.errors.ErrorOut`)::

    GET /sessions                              a page of the cohort: filters, sort, offset, limit
    GET /cohort.csv, GET /cohort.parquet       the filtered cohort as CSV or Parquet (session ids and non-PHI
                                               metadata: the columns of ``PUBLIC_SESSION_FIELDS``)
    GET /sessions/{session_id}/spectrogram.png the session's CSA spectrogram per region
    GET /sessions/{session_id}/eeg             a page of EEG (start, seconds, montage, display filters) as JSON
    GET /sessions/{session_id}/findings        the findings the session's report states (null: no report)

The page and its files need no key (they hold no data) and are not in the OpenAPI schema.
They are answered with a content security policy that allows scripts, styles and
connections to this origin only (no inline script or style) and images from it and from
``blob:`` (the spectrogram is fetched with the key and shown from a blob).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import Field, ValidationError

from services.api.answers import filters_of, public, stored
from services.api.deps import Filters, State, require_key
from services.api.errors import ApiError, ApiModel, ErrorOut, FieldErrorOut, error_responses
from services.api.models import SessionOut
from services.api.state import ServiceState
from services.explorer import STATIC_DIR
from services.explorer.signals import MIN_HIGHPASS, MONTAGES, DisplayFilters, RecordingUnavailable, SessionSignals
from services.schemas import PUBLIC_SESSION_FIELDS
from services.search import CohortSearcher

__all__ = ["CSP", "EXPORTS", "CohortOut", "EEGOut", "FindingsOut", "cohort_export", "explorer_page_router",
           "explorer_router", "warm_explorer"]

log = logging.getLogger(__name__)

#: Content security policy of the page and its files.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                     "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
#: The page's files: name → media type (nothing else is served from the folder).
_STATIC = {"explorer.js": "text/javascript; charset=utf-8", "explorer.css": "text/css; charset=utf-8"}
SORT_KEYS = ("session_id", "site", "setting", "sex", "age_years", "duration_s", "n_windows", "reference")
MAX_LIMIT = 500
MAX_PAGE_S = 30.0

_NOT_FOUND = {404: {"model": ErrorOut, "description": "Unknown session (kind `unknown_session`), or its recording "
                                                      "cannot be shown: not in the store's archive, unreadable, "
                                                      "changed since it was embedded, or too long (kind "
                                                      "`no_recording`; `detail` says which)."}}


class CohortOut(ApiModel):
    model_id: str
    total: int = Field(description="Sessions passing the filters.")
    offset: int
    limit: int
    sort: str
    order: str
    filters: list[str]
    sessions: list[SessionOut]


class EEGOut(ApiModel):
    session_id: str
    start_s: float = Field(description="Start of the page (moved back to fit in the recording).")
    seconds: float
    sfreq: float
    duration_s: float
    montage: str
    highpass: float = Field(description="High-pass edge applied (Hz; 0: off).")
    lowpass: float = Field(description="Low-pass edge applied (Hz; 0: off).")
    notch: int = Field(description="Notch applied (Hz; 0: off).")
    channels: list[str]
    data: list[list[float | None] | None] = Field(description="µV per channel and sample (null: an absent "
                                                              "electrode, or a gap of the recording).")


class FindingsOut(ApiModel):
    session_id: str
    findings: list[str] | None = Field(description="The findings the session's report states as present (names of "
                                                   "reports.findings.REPORT_FINDINGS), sorted; null: no report of "
                                                   "the session in the service's reports folder.")


def _cohort_rows(searcher: CohortSearcher, filters: list[str], sort: str, order: str) -> tuple[np.ndarray, list[str]]:
    """The rows of ``searcher.meta`` passing ``filters`` (422 for one that does not parse) in the cohort's order
    (:func:`_order`); and the filters as understood."""
    fs = filters_of(filters)
    rows = _order(searcher, sort, order == "desc")
    if fs:
        allowed = np.ones(searcher.meta.height, bool)
        for f in fs:
            allowed &= f.mask(searcher.meta)
        rows = rows[allowed[rows]]  # a subset of a total order is in that order: no sort per filter
    return rows, [str(f) for f in fs]


#: Orders of the cohort kept per searcher (row numbers, 4 bytes a session each).
_ORDERS_KEPT = 4
_orders: weakref.WeakKeyDictionary[CohortSearcher, OrderedDict[tuple[str, bool], np.ndarray]] = \
    weakref.WeakKeyDictionary()
_orders_lock = threading.Lock()


def _order(searcher: CohortSearcher, sort: str, descending: bool) -> np.ndarray:
    """The rows of ``searcher.meta`` sorted by ``sort`` (unknown values last), ties by session id ascending.

    Kept per searcher (a reload of the store brings a new one, and new orders), the last
    :data:`_ORDERS_KEPT` of them, so paging, filtering and exporting do not sort again. The
    order is a stable sort of the key over the sessions in session-id order: the same rows
    as sorting by (key, session id), without comparing the string tie-breaker across the
    whole cohort, and single-threaded: on a loaded machine the threaded sort waited for
    cores more than it gained.
    """
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, found {sort!r}")
    with _orders_lock:  # concurrent first pages wait for one sort instead of each sorting
        kept = _orders.setdefault(searcher, OrderedDict())
        key = (sort, descending)
        if key not in kept:
            meta = searcher.meta
            by_id = kept.get(("session_id", False))
            if by_id is None:
                by_id = kept[("session_id", False)] = meta["session_id"].arg_sort().to_numpy()
            if sort == "session_id":
                kept[key] = by_id[::-1].copy() if descending else by_id  # unique ids: no ties to keep ascending
            else:
                pos = pl.DataFrame({"k": meta[sort].gather(by_id)}).with_row_index("i").sort(
                    "k", descending=descending, nulls_last=True, maintain_order=True, multithreaded=False)["i"]
                kept[key] = by_id[pos.to_numpy()]
        kept.move_to_end(key)
        order = kept[key]
        while len(kept) > _ORDERS_KEPT:
            kept.popitem(last=False)
        return order


_signals_lock = threading.Lock()


def _signals(state: ServiceState) -> SessionSignals:
    """The service's :class:`SessionSignals` (made by the first call, kept on the state: one per app)."""
    with _signals_lock:
        sig = getattr(state, "explorer_signals", None)
        if sig is None:
            sig = SessionSignals(state.store.info().get("archive"), state.embedder.contract)
            state.explorer_signals = sig  # type: ignore[attr-defined]
        return sig


def warm_explorer(state: ServiceState) -> None:
    """``ServeConfig.warm_explorer``: pay the first drawing's one-off costs now (logged with their time), then
    draw the stored sessions' spectrograms not on disk yet in a low-priority child process
    (:meth:`SessionSignals.start_predraw`), stopped when the service exits."""
    import atexit

    sig = _signals(state)
    if sig.archive is None:
        log.info("explorer: the store names no archive; no spectrogram to draw ahead")
        return
    log.info("explorer: first drawing's one-off costs paid at start in %.2f s", sig.warm_up())
    proc = sig.start_predraw(state.cfg.store)
    state.explorer_predraw = proc  # type: ignore[attr-defined]
    atexit.register(proc.terminate)


def _reports(state: ServiceState) -> Path | None:
    """The service's reports folder: ``ServeConfig.reports``, else ``reports/`` beside or above the store's
    archive (:func:`services.explain.default_reports`, as ``clef explain`` finds it), else None."""
    from services.explain import default_reports

    with _signals_lock:
        if not hasattr(state, "explorer_reports"):
            state.explorer_reports = state.cfg.reports or default_reports(state.cfg.store)  # type: ignore[attr-defined]
        return state.explorer_reports  # type: ignore[attr-defined,no-any-return]


def explorer_router() -> APIRouter:
    """The explorer's data endpoints (included before the sessions router: its
    ``{session_id:path}`` would match them)."""
    router = APIRouter(dependencies=[Depends(require_key)])
    errors = error_responses(401, 403, 422, 500)

    @router.get("/sessions", response_model=CohortOut, tags=["sessions"], responses=errors)
    def cohort(state: State, filter: Filters = [],  # noqa: A002,B006
               sort: Literal[SORT_KEYS] = "session_id",  # type: ignore[valid-type]
               order: Literal["asc", "desc"] = "asc", offset: int = Query(0, ge=0, le=10**9),
               limit: int = Query(50, ge=1, le=MAX_LIMIT, description=f"At most {MAX_LIMIT}.")) -> CohortOut:
        """A page of the stored sessions passing the filters, sorted (unknown values last)."""
        searcher = state.current()
        found, fs = _cohort_rows(searcher, filter, sort, order)
        rows = searcher.meta.select(PUBLIC_SESSION_FIELDS)[found[offset:offset + limit]].to_dicts()
        return CohortOut(model_id=state.model_id, total=int(found.size), offset=offset, limit=limit, sort=sort,
                         order=order, filters=fs, sessions=[SessionOut(**r) for r in rows])

    for fmt, media in EXPORTS.items():
        router.add_api_route(
            f"/cohort.{fmt}", _cohort_endpoint(fmt), methods=["GET"], tags=["sessions"], response_class=Response,
            name=f"cohort_{fmt}",
            responses={200: {"content": {media.split(";")[0]: {"schema": {"type": "string", "format": "binary"}
                                                               if fmt == "parquet" else {"type": "string"}}},
                             "description": "One row per session: " + ", ".join(PUBLIC_SESSION_FIELDS)},
                       **errors})

    @router.get("/sessions/{session_id:path}/spectrogram.png", tags=["sessions"], response_class=Response,
                responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                                 "description": "The CSA spectrogram per region (PNG)."},
                           **errors, **_NOT_FOUND})
    def spectrogram(session_id: str, state: State) -> Response:
        """The session's multitaper spectrogram per region (a compressed spectral array), as a PNG."""
        meta = stored(state.current(), session_id)
        try:
            png = _signals(state).spectrogram_png(meta)
        except RecordingUnavailable as exc:
            raise ApiError(404, f"session {session_id!r}: {exc.reason}", "no_recording") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/sessions/{session_id:path}/eeg", response_model=EEGOut, tags=["sessions"],
                responses={**errors, **_NOT_FOUND})
    def eeg(session_id: str, state: State,
            start: float = Query(0.0, ge=0, le=1e9, allow_inf_nan=False, description="Page start (s)."),
            seconds: float = Query(10.0, gt=0, le=MAX_PAGE_S, allow_inf_nan=False,
                                   description=f"Page length (s), at most {MAX_PAGE_S:g}."),
            montage: Literal[MONTAGES] = "referential",  # type: ignore[valid-type]
            highpass: float = Query(1.0, ge=0, le=1e6, allow_inf_nan=False,
                                    description=f"High-pass edge (Hz): 0 (off) or at least {MIN_HIGHPASS:g}."),
            lowpass: float = Query(70.0, ge=0, le=1e6, allow_inf_nan=False,
                                   description="Low-pass edge (Hz): 0 (off), or above the high-pass edge and "
                                               "below the Nyquist frequency (half the sampling rate)."),
            notch: int = Query(0, description="Mains notch (Hz): 0 (off), 50 or 60.",
                               json_schema_extra={"enum": [0, 50, 60]})) -> EEGOut:
        """A page of the session's EEG as the model reads it (µV, canonical channels), in a montage, with
        display filters (zero-phase, settled on the signal around the page)."""
        meta = stored(state.current(), session_id)
        filters = _filters(highpass, lowpass, notch, float(state.embedder.contract.sfreq))
        try:
            page = _signals(state).page(meta, start, seconds, montage, filters)
        except RecordingUnavailable as exc:
            raise ApiError(404, f"session {session_id!r}: {exc.reason}", "no_recording") from None
        return EEGOut(session_id=session_id, start_s=round(page.start_s, 3), seconds=page.seconds, sfreq=page.sfreq,
                      duration_s=round(page.duration_s, 3), montage=page.montage, highpass=filters.highpass,
                      lowpass=filters.lowpass, notch=filters.notch, channels=page.channels,
                      data=[None if x is None else _samples(x) for x in page.data])

    @router.get("/sessions/{session_id:path}/findings", response_model=FindingsOut, tags=["sessions"],
                responses=error_responses(401, 403, 404, 422, 500))
    def findings(session_id: str, state: State) -> FindingsOut:
        """The findings a stored session's report states as present (``reports/<session_id>.txt``, read as
        ``clef explain`` reads its examples' reports); null without a report. Names only: no report text."""
        from services.explain import report_findings

        stored(state.current(), session_id)
        return FindingsOut(session_id=session_id, findings=report_findings(_reports(state), session_id))

    return router


def _filters(highpass: float, lowpass: float, notch: int, sfreq: float) -> DisplayFilters:
    """The display filters asked for, or a 422 naming the offending parameter."""
    try:
        filters = DisplayFilters(highpass=highpass, lowpass=lowpass, notch=notch)
        filters.check(sfreq)
    except ValidationError as exc:
        # a field's own error names it; the validator comparing the edges names the low-pass one
        errs = [FieldErrorOut(loc=["query", str(e["loc"][0]) if e.get("loc") else "lowpass"],
                              msg=str(e["msg"]).removeprefix("Value error, "), type=str(e["type"]))
                for e in exc.errors(include_input=False)]
        raise ApiError(422, "; ".join(e.msg if e.msg.startswith(str(e.loc[1])) else f"{e.loc[1]}: {e.msg}"
                                      for e in errs), "invalid_request",
                       errors=errs) from None
    except ValueError as exc:
        name = str(exc).split(" ", 1)[0]
        raise ApiError(422, str(exc), "invalid_request",
                       errors=[FieldErrorOut(loc=["query", name], msg=str(exc), type="value_error")]) from None
    return filters


def _cohort_endpoint(fmt: str) -> Any:
    """The endpoint of the cohort's export as ``fmt`` (one for each of :data:`EXPORTS`)."""

    def cohort_file(state: State, filter: Filters = [],  # noqa: A002,B006
                    sort: Literal[SORT_KEYS] = "session_id",  # type: ignore[valid-type]
                    order: Literal["asc", "desc"] = "asc") -> Response:
        searcher = state.current()
        found, _ = _cohort_rows(searcher, filter, sort, order)
        return Response(cohort_export(searcher.meta.select(PUBLIC_SESSION_FIELDS)[found], fmt),
                        media_type=EXPORTS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="cohort.{fmt}"'})

    cohort_file.__doc__ = (f"The stored sessions passing the filters as {_FORMAT_NAMES[fmt]}: session ids and non-PHI "
                           "metadata only.")
    cohort_file.__name__ = f"cohort_{fmt}"
    return cohort_file


#: Cohort export formats and their media types.
EXPORTS = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_FORMAT_NAMES = {"csv": "CSV", "parquet": "Parquet"}


def cohort_export(df: pl.DataFrame, fmt: str) -> bytes:
    """The cohort ``df`` (store rows) as a file of ``fmt`` (a key of :data:`EXPORTS`): the columns of
    :data:`~services.schemas.PUBLIC_SESSION_FIELDS` only (session ids and non-PHI metadata), in that order.

    Raises
    ------
    ValueError
        An unknown format.
    """
    if fmt not in EXPORTS:
        raise ValueError(f"export format must be one of {', '.join(EXPORTS)}, found {fmt!r}")
    table = df.select(PUBLIC_SESSION_FIELDS)
    if fmt == "parquet":
        buf = io.BytesIO()
        table.write_parquet(buf)
        return buf.getvalue()
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(PUBLIC_SESSION_FIELDS)
    for row in table.iter_rows():
        w.writerow(["" if v is None else _cell(v) for v in row])
    return text.getvalue().encode("utf-8")


def _cell(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _samples(x: np.ndarray) -> list[float | None]:
    r = np.round(x.astype(np.float64), 2)
    return [None if math.isnan(v) else v for v in r.tolist()]


def explorer_page_router() -> APIRouter:
    """The page and its files: no key (they hold no data), not in the OpenAPI schema."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def page() -> Response:
        return Response((STATIC_DIR / "index.html").read_bytes(), media_type="text/html; charset=utf-8",
                        headers=_SECURITY_HEADERS)

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in _STATIC:
            raise ApiError(404, f"no file {name!r}", "not_found")
        return Response((STATIC_DIR / name).read_bytes(), media_type=_STATIC[name], headers=_SECURITY_HEADERS)

    return router

"""The HTTP probing service (FastAPI): embeddings, task probabilities and similar sessions.

Endpoints (all but ``/health`` and the OpenAPI docs need an API key, sent as
``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; missing → 401, wrong → 403)::

    GET  /health                                   liveness, model id
    GET  /tasks                                    probe tasks (from --probes)
    GET  /sessions/{session_id}                    non-PHI metadata of a stored session
    GET  /sessions/{session_id}/probabilities      task probabilities of a stored session
    GET  /sessions/{session_id}/similar            similar sessions (k, filter, per_patient)
    POST /embed                                    embed an uploaded EDF/BDF (multipart "file")
    POST /probabilities                            task probabilities of an uploaded file
    POST /similar                                  sessions similar to an uploaded file
    GET  /docs, /openapi.json                      OpenAPI documentation

Uploads are limited in size (413 beyond; 411 without a Content-Length), must be EDF/BDF
(422 with the reason otherwise), are written under a server-chosen temporary name (the
client's file name is never used) and deleted after use. Responses carry no PHI: no
paths, no patient hashes, no names or dates; ages are capped at 90.

Every error answers one model, :class:`ErrorOut` (``detail``, ``kind``, ``errors``), whoever
raised it: this module (:class:`ApiError`), the middleware, Starlette's routing (404, 405),
FastAPI's request validation (422) or a bug (500). The OpenAPI schema documents every status
each endpoint returns, with that model; ``tests/test_services_openapi.py`` holds it to that
with schemathesis (``services/schemathesis.toml``, ``services/schemathesis_hooks.py``).

The service follows its store: sessions that ``clef embed`` adds, and an index that
``clef index`` rebuilds, are picked up while it runs (checked at most every
``--reload-seconds``, loaded in the background; see :class:`ServiceState`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from benchmark_tasks.probes import TaskProbe, load_probes
from services.auth import ApiKeys, load_api_keys
from services.config import ServeConfig
from services.index import index_signature
from services.schemas import PUBLIC_SESSION_FIELDS
from services.search import CohortSearcher, FilterError, parse_filters
from services.store import EmbeddingStore, StoreError
from tokenizer.errors import IngestError
from tokenizer.header_facts import HeaderFacts, read_header_facts

log = logging.getLogger(__name__)

_MAGIC = {b"0       ": ".edf", b"\xffBIOSEMI": ".bdf"}


# -- response models (documented in OpenAPI) -------------------------------------------------
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthOut(_Out):
    status: str
    model_id: str


class TaskOut(_Out):
    task: str
    category: str | None = None
    auroc: float | None = None


class TasksOut(_Out):
    model_id: str
    tasks: list[TaskOut]


class SessionOut(_Out):
    session_id: str
    site: str | None = None
    setting: str | None = None
    sex: str | None = None
    age_years: float | None = Field(None, description="Age at recording; 90 means 90 or older.")
    duration_s: float | None = None
    n_windows: int | None = None
    reference: str | None = Field(None, description="Reference scheme the channel labels name, as recorded: REF, LE, "
                                                    "AVG, MAST, EAR, CZ, bipolar, unknown or mixed.")


class NeighbourOut(SessionOut):
    rank: int
    score: float = Field(description="Cosine similarity.")
    distance: float = Field(description="1 - cosine similarity.")


class SimilarOut(_Out):
    model_id: str
    query: str = Field(description="The stored session id, or 'upload'.")
    k: int
    filters: list[str]
    per_patient: bool
    neighbours: list[NeighbourOut]


class EmbeddingOut(_Out):
    model_id: str
    dim: int
    n_windows: int
    duration_s: float
    format: str
    sha256: str = Field(description="SHA-256 of the uploaded bytes.")
    vector: list[float]
    window_vectors: list[list[float]] | None = None


class ProbabilitiesOut(_Out):
    model_id: str
    query: str
    probabilities: dict[str, float]


class FieldErrorOut(_Out):
    """One invalid field of a request (the offending value is never echoed)."""

    loc: list[str | int] = Field(description="Where: ['query', 'k'], ['body', 'file'], ['path', 'session_id'], ...")
    msg: str
    type: str = Field(description="Machine-readable error type (pydantic's, e.g. 'missing', 'less_than_equal').")


class ErrorOut(_Out):
    """The body of every error response (4xx and 5xx), whatever raised it."""

    detail: str = Field(description="What went wrong, for people.")
    kind: str = Field(description="What went wrong, for programs: `bad_request`, `unauthorized`, `forbidden`, "
                                  "`unknown_session`, `unknown_task`, `not_found`, `method_not_allowed`, "
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
        Default: the status's generic kind (``_KIND_OF_STATUS``).
    errors : list of FieldErrorOut, optional
    headers : dict, optional
    """

    def __init__(self, status: int, detail: str, kind: str | None = None, *,
                 errors: list[FieldErrorOut] | None = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.detail, self.kind = status, detail, kind or _kind_of_status(status)
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
    411: "Upload without a Content-Length header (kind `length_required`).",
    413: "Upload larger than the service's --max-upload-mb (kind `payload_too_large`).",
    422: "Invalid request (kind `invalid_request`, one entry per invalid field in `errors`), or an upload that is "
         "not a readable EDF/BDF (kind: the ingest error, e.g. `not_edf`, `truncated`, `corrupt_header`).",
    500: "Internal error, logged by the service (kind `internal_error`).",
}


def _kind_of_status(status: int) -> str:
    return _KIND_OF_STATUS.get(status, f"http_{status}")


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the error statuses an endpoint returns (all :class:`ErrorOut`)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorOut, "description": _ERROR_DESCRIPTIONS[status]}
        if status == 401:
            out[status]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                           "description": "`ApiKey`"}}
    return out


def _error_response(status: int, detail: str, kind: str | None = None, *, errors: list[FieldErrorOut] | None = None,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorOut(detail=detail, kind=kind or _kind_of_status(status), errors=errors or [])
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[FieldErrorOut]:
    return [FieldErrorOut(loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                          msg=str(e.get("msg", "")), type=str(e.get("type", "")))
            for e in exc.errors()]


# OpenAPI links from a similarity answer to its first neighbour's endpoints (clients and
# schemathesis's stateful phase follow them).
_NEIGHBOUR_LINKS = {200: {"links": {
    name: {"operationRef": f"#/paths/~1sessions~1{{session_id}}{path.replace('/', '~1')}/get",
           "parameters": {"session_id": "$response.body#/neighbours/0/session_id"},
           "description": f"The first neighbour's {what}."}
    for name, path, what in (("FirstNeighbour", "", "metadata"),
                             ("FirstNeighbourProbabilities", "/probabilities", "task probabilities"),
                             ("FirstNeighbourSimilar", "/similar", "similar sessions"))}}}

# The part of an upload's multipart body that holds the recording is sent as raw bytes.
_UPLOAD_ENCODING = {"requestBody": {"content": {"multipart/form-data": {
    "encoding": {"file": {"contentType": "application/octet-stream"}}}}}}


# Parameter types (module level: endpoint annotations are resolved in this namespace).
Filters = Annotated[list[str], Query(description="KEY=VALUE: site=S01[,S02], sex=F, setting=emu, age=40-60, "
                                                 "reference=LE.")]
Tasks = Annotated[list[str] | None, Query(description="Tasks to score (default: all).")]
Upload = Annotated[UploadFile, File(description="An EDF/EDF+/BDF file.")]

# Documented as OpenAPI security schemes; either one will do (checked in create_app's require_key).
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False,
                               description="An API key of the service.")
_BEARER = HTTPBearer(scheme_name="Bearer", auto_error=False, description="The same API key, as a bearer token.")


class ServiceState:
    """What the app holds: embedder, searcher, probes, keys.

    The checkpoint, probes and keys are loaded once at start-up. The searcher (index +
    session metadata) follows the store: :meth:`current`, called once per request, checks
    at most every ``cfg.reload_seconds`` whether the store grew or the index was rebuilt
    (:func:`services.index.index_signature`: directory listings and a ``stat``), and if so
    loads the change in a background thread (:meth:`check`; the load also brings the saved
    index up to date, as start-up does). Requests keep being answered by the current
    searcher meanwhile; the new one is swapped in with one assignment, and a request uses
    the searcher it started with throughout (FAISS rows and metadata stay consistent).
    """

    def __init__(self, cfg: ServeConfig, keys: ApiKeys) -> None:
        from clef.embedding import Embedder

        self.cfg = cfg
        self.keys = keys
        self.store = EmbeddingStore(cfg.store)
        self.store.require()
        self.embedder = Embedder(cfg.checkpoint, device=cfg.device)
        self.model_id = self.embedder.model_id
        if self.model_id not in self.store.models():
            raise StoreError(f"the checkpoint's model {self.model_id} has no embeddings in {cfg.store} "
                             f"(models there: {', '.join(self.store.models()) or 'none'}); run 'clef embed' with it")
        self._reload_lock = threading.Lock()  # held by a check, or by a reload until it ends
        self._signature = index_signature(self.store, self.model_id)  # before loading: later changes are seen
        self.searcher = CohortSearcher(self.store, self.model_id)
        self._signature = self._signature[:-1] + index_signature(self.store, self.model_id)[-1:]  # our own save
        self._checked = time.monotonic()
        self._failed: tuple[tuple[Any, ...], float] | None = None  # signature whose load failed, and when
        self.generation = 0  # searchers loaded since start-up
        self.probes: dict[str, TaskProbe] = load_probes(cfg.probes, model_id=self.model_id, dim=self.searcher.index.dim)
        self.lock = threading.Lock()  # one embedding at a time: bounded memory and CPU
        self.max_bytes = int(cfg.max_upload_mb * 2**20)
        log.info("serving model %s: %d sessions, %d probe task(s)", self.model_id, self.searcher.index.n,
                 len(self.probes))

    def current(self) -> CohortSearcher:
        """The searcher to answer a request with; starts a background reload when the store changed."""
        if self.cfg.reload_seconds > 0 and time.monotonic() - self._checked >= self.cfg.reload_seconds:
            self.check()
        return self.searcher

    def check(self, *, wait: bool = False) -> bool:
        """Compare the store's signature with the loaded one; reload when it changed.

        A store state that failed to load is tried again when the store changes again,
        or after ``max(60, 10 × reload_seconds)`` seconds.

        Parameters
        ----------
        wait : bool
            Reload in this thread (tests, tools) instead of a background thread, even a
            state that failed before.

        Returns
        -------
        bool
            True when a reload was started (or, with ``wait``, done successfully).
        """
        if not self._reload_lock.acquire(blocking=False):
            return False  # another request is checking, or a reload is running
        handed_over = False
        try:
            self._checked = time.monotonic()
            try:
                sig = index_signature(self.store, self.model_id)
            except OSError as exc:  # the store folder went away: keep serving what is loaded
                log.warning("store %s cannot be checked (%s); serving the loaded index", self.store.path, exc)
                return False
            if sig == self._signature:
                return False
            if (not wait and self._failed is not None and self._failed[0] == sig
                    and time.monotonic() - self._failed[1] < max(60.0, 10 * self.cfg.reload_seconds)):
                return False
            if wait:
                return self._reload(sig)
            threading.Thread(target=self._reload_and_release, args=(sig,), name="clef-reload", daemon=True).start()
            handed_over = True
            return True
        finally:
            if not handed_over:
                self._reload_lock.release()

    def _reload_and_release(self, sig: tuple[Any, ...]) -> None:
        try:
            self._reload(sig)
        finally:
            self._reload_lock.release()

    def _reload(self, sig: tuple[Any, ...]) -> bool:
        t0 = time.perf_counter()
        old = self.searcher
        try:
            searcher = CohortSearcher(self.store, self.model_id, old.cfg)
            if searcher.index.dim != old.index.dim:
                raise StoreError(f"the index now has dimension {searcher.index.dim}, not {old.index.dim}")
        except Exception as exc:  # noqa: BLE001 - a bad store state must not take the service down
            expected = isinstance(exc, (StoreError, OSError))
            log.error("reloading the index of %s failed, serving the loaded one (%d sessions) until the store "
                      "changes again: %s", self.store.path, old.index.n, " ".join(str(exc).split()),
                      exc_info=not expected)
            self._failed = (sig, time.monotonic())
            return False
        self._failed = None
        self.searcher = searcher  # one assignment: requests see the old or the new searcher, whole
        # ensure_index may have saved an updated index: that save is not a change to load again
        self._signature = sig[:-1] + index_signature(self.store, self.model_id)[-1:]
        self.generation += 1
        log.info("index of %s reloaded (%s) in %.1f s: %d → %d sessions", self.store.path, searcher.index_action,
                 time.perf_counter() - t0, old.index.n, searcher.index.n)
        return True


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in PUBLIC_SESSION_FIELDS}


def create_app(cfg: ServeConfig, keys: list[str] | None = None) -> FastAPI:
    """Build the FastAPI application (loads the checkpoint, index and probes now).

    Parameters
    ----------
    cfg : ServeConfig
    keys : list of str, optional
        API keys; default: ``cfg.api_keys_file`` and/or ``CLEF_API_KEYS``.
    """
    state = ServiceState(cfg, ApiKeys(keys if keys is not None else load_api_keys(cfg.api_keys_file)))
    app = FastAPI(title="CLEF probing service", version="1",
                  description="Session embeddings, task probabilities and cohort similarity search over a CLEF "
                              "embedding store. Send the API key as `X-API-Key` (or `Authorization: Bearer`).")
    app.state.clef = state

    def require_key(key: str | None = Security(_API_KEY_HEADER),
                    bearer: HTTPAuthorizationCredentials | None = Security(_BEARER)) -> None:
        presented = [k for k in (key, bearer.credentials if bearer is not None else None) if k]
        if not presented:
            raise ApiError(401, "API key required: send it as X-API-Key (or Authorization: Bearer)",
                           headers={"WWW-Authenticate": "ApiKey"})
        if not all(state.keys.valid(k) for k in presented):  # a wrong key is refused even next to a right one
            raise ApiError(403, "API key not accepted")

    auth = [Depends(require_key)]

    # -- errors: every error body is an ErrorOut ----------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc.status, exc.detail, exc.kind, errors=exc.errors, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)  # routing (404, 405), body parsing (400), FastAPI's own
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        where = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors)
        return _error_response(422, f"invalid request: {where}", "invalid_request", errors=errors)

    @app.exception_handler(Exception)  # a bug: the server (uvicorn) logs the traceback
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        return _error_response(500, "internal error")

    # -- helpers -------------------------------------------------------------------------
    def stored(searcher: CohortSearcher, session_id: str) -> dict[str, Any]:
        try:
            return searcher.session_meta(session_id)
        except KeyError:
            raise ApiError(404, f"session {session_id!r} not found", "unknown_session") from None

    @app.middleware("http")
    async def limit_uploads(request: Request, call_next):  # noqa: ANN001,ANN202
        # Before anything reads the body (FastAPI parses forms before dependencies run).
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return _error_response(411, "uploads need a Content-Length header")
            try:
                n = int(length)
            except ValueError:
                return _error_response(400, f"Content-Length must be an integer, found {length!r}")
            if n > state.max_bytes + 64 * 1024:  # multipart framing allowance
                return _error_response(413, f"upload of at most {cfg.max_upload_mb:g} MB expected, found "
                                            f"{n / 2**20:.1f} MB")
        return await call_next(request)

    def save_upload(upload: UploadFile, folder: str) -> Path:
        head = upload.file.read(8)
        suffix = _MAGIC.get(head)
        if suffix is None:
            raise ApiError(422, "expected an EDF/BDF file (magic bytes '0       ' or '\\xffBIOSEMI'), found "
                                  f"{'an empty file' if not head else repr(head)}", "not_edf")
        path = Path(folder) / f"upload{suffix}"
        with open(path, "wb") as out:
            out.write(head)
            size = len(head)
            while chunk := upload.file.read(1 << 20):
                size += len(chunk)
                if size > state.max_bytes:
                    raise ApiError(413, f"upload of at most {cfg.max_upload_mb:g} MB expected")
                out.write(chunk)
        return path

    def embed_upload(upload: UploadFile) -> tuple[Any, HeaderFacts]:
        folder = tempfile.mkdtemp(prefix="clef-upload-")
        try:
            path = save_upload(upload, folder)
            try:
                facts = read_header_facts(path)
            except IngestError as exc:
                raise ApiError(422, f"{exc.kind}: {str(exc).replace(str(path), 'upload')}", exc.kind) from None
            try:
                with state.lock:
                    emb = state.embedder.embed(path)
            except Exception as exc:  # noqa: BLE001 - ingest errors carry a kind; others are bugs
                kind = getattr(exc, "kind", None)
                if not isinstance(kind, str):
                    log.exception("embedding an upload failed")
                    raise ApiError(500, "internal error while embedding the upload") from None
                raise ApiError(422, f"{kind}: {' '.join(str(exc).replace(str(path), 'upload').split())}", kind) \
                    from None
            return emb, facts
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def probabilities(x: np.ndarray, tasks: list[str] | None) -> dict[str, float]:
        names = tasks or list(state.probes)
        unknown = [t for t in names if t not in state.probes]
        if unknown:
            raise ApiError(404, f"unknown task(s): {', '.join(unknown)}; GET /tasks lists them", "unknown_task")
        return {t: round(float(state.probes[t](x)), 6) for t in names}

    def similar(searcher: CohortSearcher, vector: np.ndarray, k: int, filters: list[str], per_patient: bool,
                query: str, *, session_id: str | None = None, sha: str | None = None,
                patient: str | None = None) -> SimilarOut:
        if k > cfg.max_k:  # the route's Query(le=max_k) refuses it first; kept for direct calls
            raise ApiError(422, f"k of at most {cfg.max_k} expected, found {k}", "invalid_request",
                           errors=[FieldErrorOut(loc=["query", "k"], msg=f"k of at most {cfg.max_k} expected",
                                                 type="less_than_equal")])
        try:
            fs = parse_filters(filters)
        except FilterError as exc:
            raise ApiError(422, str(exc), "invalid_request",
                           errors=[FieldErrorOut(loc=["query", "filter"], msg=str(exc), type="value_error")]) from None
        if session_id is not None:
            found = searcher.search_session(session_id, k, fs, per_patient=per_patient)
        else:
            row = searcher.row_of_sha(sha)
            found = searcher.search(vector, k, fs, per_patient=per_patient,
                                          exclude_rows=[row] if row is not None else [],
                                          exclude_patient=patient if per_patient else None)
        return SimilarOut(model_id=state.model_id, query=query, k=k, filters=[str(f) for f in fs],
                          per_patient=per_patient, neighbours=[NeighbourOut(**n.to_dict(public=True)) for n in found])

    # -- endpoints (each documents every status it returns; all errors are ErrorOut) ---------
    stored_errors = _error_responses(401, 403, 404, 422, 500)
    upload_errors = _error_responses(400, 401, 403, 411, 413, 422, 500)

    def k_param() -> Any:
        return Query(10, ge=1, le=cfg.max_k, description=f"Neighbours to return (at most {cfg.max_k}).")

    @app.get("/health", response_model=HealthOut, tags=["service"], responses=_error_responses(500))
    def health() -> HealthOut:
        """Liveness (no key needed)."""
        return HealthOut(status="ok", model_id=state.model_id)

    @app.get("/tasks", response_model=TasksOut, dependencies=auth, tags=["probes"],
             responses=_error_responses(401, 403, 500))
    def tasks() -> TasksOut:
        """Probe tasks available (from the benchmark results given with --probes)."""
        return TasksOut(model_id=state.model_id, tasks=[
            TaskOut(task=t, category=p.info.get("category"), auroc=p.info.get("auroc")) for t, p in state.probes.items()])

    @app.get("/sessions/{session_id:path}/probabilities", response_model=ProbabilitiesOut, dependencies=auth,
             tags=["probes"], responses=stored_errors)
    def session_probabilities(session_id: str, task: Tasks = None) -> ProbabilitiesOut:
        """Task probabilities of a stored session."""
        searcher = state.current()
        stored(searcher, session_id)
        x = searcher.raw_vector(session_id)
        if x is None:  # an index saved without norms: read the vector from the store
            x = state.store.vector(session_id, state.model_id)
        if x is None:  # indexed but gone from the store
            raise ApiError(404, f"session {session_id!r} not found", "unknown_session")
        return ProbabilitiesOut(model_id=state.model_id, query=session_id, probabilities=probabilities(x, task))

    @app.get("/sessions/{session_id:path}/similar", response_model=SimilarOut, dependencies=auth, tags=["search"],
             responses={**stored_errors, **_NEIGHBOUR_LINKS})
    def session_similar(session_id: str, k: int = k_param(), filter: Filters = [],  # noqa: A002,B006
                        per_patient: bool = False) -> SimilarOut:
        """Stored sessions most similar to a stored session (itself excluded)."""
        searcher = state.current()
        stored(searcher, session_id)
        return similar(searcher, np.zeros(0), k, filter, per_patient, session_id, session_id=session_id)

    @app.get("/sessions/{session_id:path}", response_model=SessionOut, dependencies=auth, tags=["sessions"],
             responses=stored_errors)
    def session(session_id: str) -> SessionOut:
        """Non-PHI metadata of a stored session."""
        return SessionOut(**_public(stored(state.current(), session_id)))

    upload_deps = auth

    @app.post("/embed", response_model=EmbeddingOut, dependencies=upload_deps, tags=["embeddings"],
              responses=upload_errors, openapi_extra=_UPLOAD_ENCODING)
    def embed(file: Upload, windows: bool = False) -> EmbeddingOut:
        """Embed an uploaded recording (not stored)."""
        emb, facts = embed_upload(file)
        return EmbeddingOut(model_id=emb.model_id, dim=emb.dim, n_windows=emb.n_windows, duration_s=facts.duration_s,
                            format=facts.format, sha256=emb.source_sha256, vector=emb.vector.tolist(),
                            window_vectors=emb.windows.tolist() if windows else None)

    @app.post("/probabilities", response_model=ProbabilitiesOut, dependencies=upload_deps, tags=["probes"],
              responses={**upload_errors, **_error_responses(404)}, openapi_extra=_UPLOAD_ENCODING)
    def upload_probabilities(file: Upload, task: Tasks = None) -> ProbabilitiesOut:
        """Task probabilities of an uploaded recording."""
        if task:
            probabilities(np.zeros(state.current().index.dim), task)  # unknown tasks: 404 before the work
        emb, _ = embed_upload(file)
        return ProbabilitiesOut(model_id=state.model_id, query="upload", probabilities=probabilities(emb.vector, task))

    @app.post("/similar", response_model=SimilarOut, dependencies=upload_deps, tags=["search"],
              responses={**upload_errors, **_NEIGHBOUR_LINKS}, openapi_extra=_UPLOAD_ENCODING)
    def upload_similar(file: Upload, k: int = k_param(), filter: Filters = [],  # noqa: A002,B006
                       per_patient: bool = False) -> SimilarOut:
        """Stored sessions most similar to an uploaded recording (the same bytes, if stored, excluded)."""
        emb, facts = embed_upload(file)
        return similar(state.current(), emb.vector, k, filter, per_patient, "upload", sha=emb.source_sha256,
                       patient=facts.patient_hash)

    return app


__all__ = ["ServiceState", "create_app"]

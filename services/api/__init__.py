"""The HTTP probing service (FastAPI): embeddings, task probabilities and similar sessions.

Endpoints (all but ``/health`` and the OpenAPI docs need an API key, sent as
``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; missing → 401, wrong → 403)::

    GET  /health                                   liveness, model id
    GET  /tasks                                    probe tasks (from --probes)
    GET  /sessions/{session_id}                    non-PHI metadata of a stored session
    GET  /sessions/{session_id}/probabilities      task probabilities of a stored session
    GET  /sessions/{session_id}/similar            similar sessions (k, filter, per_patient)
    GET  /sessions/{session_id}/explain?task=      where a session's task probability comes from (occlusion;
                                                   409 when the checkpoint has no tokenizer to read recordings)
    POST /embed                                    embed an uploaded EDF/BDF (multipart "file")
    POST /probabilities                            task probabilities of an uploaded file
    POST /similar                                  sessions similar to an uploaded file
    GET  /sessions?filter=&sort=&offset=&limit=    a page of the cohort (the explorer's table)
    GET  /cohort.csv?filter=&sort=                 the filtered cohort as CSV (ids and non-PHI metadata)
    GET  /cohort.parquet?filter=&sort=             the same as Parquet
    GET  /sessions/{session_id}/spectrogram.png    CSA spectrogram of a stored session's recording
    GET  /sessions/{session_id}/eeg?start=&seconds=&montage=&highpass=&lowpass=&notch=
                                                   a page of its EEG (JSON samples), display filters
    GET  /sessions/{session_id}/findings           the findings its report states (null: no report)
    POST /search/text                              sessions whose EEG matches words (JSON body: text, k,
                                                   filters, per_patient; needs an aligned checkpoint, 409
                                                   without a report tower)
    GET  /docs, /openapi.json                      OpenAPI documentation
    GET  /, /static/...                            the cohort explorer (a web page; no key, holds no data)

Uploads are limited in size (413 beyond; 411 without a Content-Length), must be EDF/BDF
(422 with the reason otherwise), are written under a server-chosen temporary name (the
client's file name is never used) and deleted after use. Responses carry no PHI: no
paths, no patient hashes, no names or dates; ages are capped at 90.

Every error answers one model, :class:`~services.api.errors.ErrorOut` (``detail``, ``kind``,
``errors``), whoever raised it: an endpoint (:class:`~services.api.errors.ApiError`), the
upload middleware, Starlette's routing (404, 405), FastAPI's request validation (422) or a
bug (500). The OpenAPI schema documents every status each endpoint returns, with that
model; ``tests/test_services_openapi.py`` holds it to that with schemathesis
(``services/schemathesis.toml``, ``services/schemathesis_hooks.py``).

The service follows its store: sessions that ``clef embed`` adds, and an index that
``clef index`` rebuilds, are picked up while it runs (checked at most every
``--reload-seconds``, loaded in the background; see :class:`~services.api.state.ServiceState`).

Modules: :mod:`~services.api.service` (``/health``, ``/tasks``), :mod:`~services.api.sessions`
(stored sessions), :mod:`~services.api.uploads` (uploaded recordings), :mod:`~services.api.text` (search by words),
:mod:`~services.api.explain` (explanations), :mod:`~services.api.explorer` (the cohort explorer) hold the
routers;
:mod:`~services.api.deps` the dependencies (service state, API key), :mod:`~services.api.answers`
what stored-session and upload endpoints share, :mod:`~services.api.models` and
:mod:`~services.api.errors` the response models.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.api.errors import answer_errors_as_error_out
from services.api.explain import explain_router
from services.api.explorer import explorer_page_router, explorer_router, warm_explorer
from services.api.service import router as service_router
from services.api.sessions import sessions_router
from services.api.state import ServiceState
from services.api.text import text_router
from services.api.uploads import limit_uploads, uploads_router
from services.auth import ApiKeys, load_api_keys
from services.config import ServeConfig

__all__ = ["create_app"]


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
    answer_errors_as_error_out(app)
    app.middleware("http")(limit_uploads)
    app.include_router(service_router)
    app.include_router(explain_router())  # before the sessions router: its {session_id:path} would match it
    app.include_router(explorer_router())  # before the sessions router too
    app.include_router(explorer_page_router())  # the cohort explorer's page: no key, not in the schema
    app.include_router(sessions_router(cfg.max_k))
    app.include_router(uploads_router(cfg.max_k))
    app.include_router(text_router(cfg.max_k))
    if cfg.warm_explorer:
        warm_explorer(state)
    return app

"""Endpoints about uploaded recordings: embedding, task probabilities and similar stored sessions.

Uploads are limited in size (:func:`limit_uploads`), must be EDF/BDF, are written under
a server-chosen temporary name (the client's file name is never used) and deleted after use.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, UploadFile

from services.api.answers import probabilities, similar
from services.api.deps import Filters, State, Tasks, Upload, k_query, require_key
from services.api.errors import ApiError, error_response, error_responses
from services.api.models import NEIGHBOUR_LINKS, EmbeddingOut, ProbabilitiesOut, SimilarOut
from services.api.state import ServiceState
from tokenizer.header_facts import HeaderFacts

__all__ = ["limit_uploads", "uploads_router"]

log = logging.getLogger(__name__)

_MAGIC = {b"0       ": ".edf", b"\xffBIOSEMI": ".bdf"}

# The part of an upload's multipart body that holds the recording is sent as raw bytes.
_UPLOAD_ENCODING = {"requestBody": {"content": {"multipart/form-data": {
    "encoding": {"file": {"contentType": "application/octet-stream"}}}}}}


async def limit_uploads(request: Request, call_next):  # noqa: ANN001,ANN202
    """Refuse an upload without a Content-Length (411) or larger than the limit (413) before it is read."""
    state: ServiceState = request.app.state.clef
    # Before anything reads the body (FastAPI parses forms before dependencies run).
    if request.method == "POST":
        length = request.headers.get("content-length")
        if length is None:
            return error_response(411, "uploads need a Content-Length header")
        try:
            n = int(length)
        except ValueError:
            return error_response(400, f"Content-Length must be an integer, found {length!r}")
        if n > state.max_bytes + 64 * 1024:  # multipart framing allowance
            return error_response(413, f"upload of at most {state.cfg.max_upload_mb:g} MB expected, found "
                                       f"{n / 2**20:.1f} MB")
    return await call_next(request)


def _save_upload(state: ServiceState, upload: UploadFile, folder: str) -> Path:
    """Write an upload under a server-chosen name; 422 unless EDF/BDF, 413 beyond the size limit."""
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
                raise ApiError(413, f"upload of at most {state.cfg.max_upload_mb:g} MB expected")
            out.write(chunk)
    return path


def _embed_upload(state: ServiceState, upload: UploadFile) -> tuple[Any, HeaderFacts]:
    """Embed an upload (deleted afterwards), reading it once: the embedding and the file's header facts.

    A file that cannot be read answers 422 with the ingest error's kind; any other failure is a bug (500).
    """
    folder = tempfile.mkdtemp(prefix="clef-upload-")
    try:
        path = _save_upload(state, upload, folder)
        try:
            with state.lock:  # one recording at a time (streamed: memory does not grow with its length)
                info, tokens = state.embedder.read_tokens(path)
                emb = state.embedder.embed(tokens)
        except Exception as exc:  # noqa: BLE001 - ingest errors carry a kind; others are bugs
            kind = getattr(exc, "kind", None)
            if not isinstance(kind, str):
                log.exception("embedding an upload failed")
                raise ApiError(500, "internal error while embedding the upload") from None
            raise ApiError(422, f"{kind}: {' '.join(str(exc).replace(str(path), 'upload').split())}", kind) \
                from None
        return emb, info.facts
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def uploads_router(max_k: int) -> APIRouter:
    """The endpoints taking an uploaded recording; ``k`` is documented and checked up to ``max_k``."""
    router = APIRouter(dependencies=[Depends(require_key)])
    errors = error_responses(400, 401, 403, 411, 413, 422, 500)

    @router.post("/embed", response_model=EmbeddingOut, tags=["embeddings"], responses=errors,
                 openapi_extra=_UPLOAD_ENCODING)
    def embed(file: Upload, state: State, windows: bool = False) -> EmbeddingOut:
        """Embed an uploaded recording (not stored)."""
        emb, facts = _embed_upload(state, file)
        return EmbeddingOut(model_id=emb.model_id, dim=emb.dim, n_windows=emb.n_windows,
                            duration_s=facts.duration_s, format=facts.format, sha256=emb.source_sha256,
                            vector=emb.vector.tolist(), window_vectors=emb.windows.tolist() if windows else None)

    @router.post("/probabilities", response_model=ProbabilitiesOut, tags=["probes"],
                 responses={**errors, **error_responses(404)}, openapi_extra=_UPLOAD_ENCODING)
    def upload_probabilities(file: Upload, state: State, task: Tasks = None) -> ProbabilitiesOut:
        """Task probabilities of an uploaded recording."""
        if task:
            probabilities(state, np.zeros(state.current().index.dim), task)  # unknown tasks: 404 before the work
        emb, _ = _embed_upload(state, file)
        return ProbabilitiesOut(model_id=state.model_id, query="upload",
                                probabilities=probabilities(state, emb.vector, task))

    @router.post("/similar", response_model=SimilarOut, tags=["search"], responses={**errors, **NEIGHBOUR_LINKS},
                 openapi_extra=_UPLOAD_ENCODING)
    def upload_similar(file: Upload, state: State, k: int = k_query(max_k),
                       filter: Filters = [],  # noqa: A002,B006
                       per_patient: bool = False) -> SimilarOut:
        """Stored sessions most similar to an uploaded recording (the same bytes, if stored, excluded)."""
        emb, facts = _embed_upload(state, file)
        return similar(state, state.current(), emb.vector, k, filter, per_patient, "upload", sha=emb.source_sha256,
                       patient=facts.patient_hash)

    return router

"""What the local pool's fork server loads once, before it forks any worker.

Imported only in the fork server (:func:`services.batch.pool_context`): it pins the native
thread pools to one thread (workers are single-threaded by design, and a process that
forks must not hold running threads: OpenBLAS would start one per core at import), then
imports the heavy modules every worker needs (torch, scipy.signal, the reading and
spectrogram code, the model), about 2 s that each forked worker then skips. Polars is
left out on purpose: its allocator and pool start threads at import.

When the driver names its checkpoint (:data:`services.worker.CHECKPOINT_ENV`, set by
:func:`services.batch.start_pool_early` for a CPU run), the fork server also loads it with
its tokenizer (hash check included, ~0.8 s), and every worker forked afterwards starts
with it in memory (copy-on-write pages, not a copy per worker): :func:`take`.
"""

from __future__ import annotations

import json
import logging
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy  # noqa: E402,F401
import scipy.signal  # noqa: E402,F401
import torch  # noqa: E402,F401

import clef.model  # noqa: E402,F401
import tokenizer  # noqa: E402,F401
from services.worker import CHECKPOINT_ENV, FileEmbedder, preload_key  # noqa: E402

log = logging.getLogger(__name__)

_PRELOADED: dict[str, object] = {}


def _preload() -> None:
    key = os.environ.get(CHECKPOINT_ENV)
    if not key:
        return
    try:
        path, batch_size, cache_dir = json.loads(key)
        fe = FileEmbedder(path, device="cpu", batch_size=int(batch_size), cache_dir=cache_dir)
        _ = fe.embedder.tokenizer
    except Exception as exc:  # noqa: BLE001 - the workers load (and report) it themselves
        log.debug("fork server: checkpoint not preloaded (%s)", exc)
        return
    _PRELOADED[key] = fe


def take(checkpoint: str, batch_size: int, cache_dir: str | None, model_id: str | None) -> object | None:
    """The preloaded :class:`~services.worker.FileEmbedder` of this checkpoint, or None.

    Only when it was loaded for the same path, batch size and cache, and its weights
    are still those the driver loaded (``model_id``: a checkpoint replaced in between is
    loaded afresh by the worker).
    """
    fe = _PRELOADED.get(preload_key(checkpoint, batch_size, cache_dir))
    if fe is None or model_id is None or getattr(fe, "model_id", None) != model_id:
        return None
    return fe


_preload()

"""What the local pool's fork server imports once, before it forks any worker.

Imported only in the fork server (:func:`services.batch.pool_context`): it pins the native
thread pools to one thread (workers are single-threaded by design, and a process that
forks must not hold running threads: OpenBLAS would start one per core at import), then
imports the heavy modules every worker needs (torch, scipy.signal, the reading and
spectrogram code, the model), about 2.5 s that each forked worker then skips. Polars is
left out on purpose: its allocator and pool start threads at import.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy  # noqa: E402,F401
import scipy.signal  # noqa: E402,F401
import torch  # noqa: E402,F401

import clef.model  # noqa: E402,F401
import clef.signal  # noqa: E402,F401

"""Helpers shared by the benchmark scripts: a generated EDF and best-of timing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np


def make_file(path: Path, seconds: int, sfreq: int = 256, seed: int = 0) -> Path:
    """A 19-channel EEG-like EDF (alpha with a posterior maximum, random walk, noise); reused if present."""
    from tokenizer.edf_writer import EDFSignal, write_edf
    from tokenizer import CANONICAL_CHANNELS

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    n = seconds * sfreq
    t = np.arange(n, dtype=np.float32) / sfreq
    alpha = (20 * np.sin(2 * np.pi * 10 * t)).astype(np.float32)
    sigs = []
    for c in CANONICAL_CHANNELS:
        gain = 0.4 if c.startswith(("Fp", "F")) else 1.0
        x = gain * alpha + rng.normal(0, 8, n).astype(np.float32) + 0.05 * np.cumsum(rng.normal(0, 0.5, n)).astype(np.float32)
        sigs.append(EDFSignal(f"EEG {c.upper()}-REF", x, sfreq, physical_min=-500, physical_max=500))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_edf(path, sigs, fmt="EDF+C")
    return path


def best_of(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Best wall time (s) of ``repeats`` calls (after one warm-up call)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best

"""Helpers shared by the benchmark scripts: a generated EDF, best-of timing, stopping a child."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable


def make_file(path: Path, seconds: int, sfreq: int = 256, seed: int = 0) -> Path:
    """A 19-channel EDF of :func:`clef.synthetic.recordings.eeg_signals` (the tests' generated
    recording), written once and reused when ``path`` exists."""
    from clef.synthetic.recordings import eeg_signals, make_edf

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        make_edf(path, eeg_signals(seconds, sfreq, seed=seed))
    return path


def best_of(fn: Callable[[], object], repeats: int, warmup: bool = True,
            clock: Callable[[], float] = time.perf_counter) -> float:
    """Best time (s) of ``repeats`` calls (after one warm-up call), by ``clock``: wall time by
    default, ``time.process_time`` for CPU time (steadier on a shared machine)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a child (a server the script started), killing it if it outlives ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

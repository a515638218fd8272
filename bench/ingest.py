"""Ingestion benchmark: our read + filter + notch + resample vs the equivalent MNE pipeline.

Usage::

    python bench/ingest.py [--minutes 20] [--hours 2] [--repeats 3] [--skip-memory]

1. Speed, same process, on a generated 20-minute 19-channel 256 Hz EDF: ours
   (``tokenizer.read_recording``) against MNE (``read_raw_edf(preload=True)``,
   ``filter(0.1, 75)``, ``notch_filter([60, 120])``, ``resample(200)``); best of N.
   Like for like: 1 thread against MNE's ``n_jobs=1``, 2 threads against ``n_jobs=2``
   (MNE's default is 1); each ratio is MNE's time over ours at the same count.
   Agreement: relative RMS difference of the two outputs on the 0.5–32 Hz band
   (both band-limited with the same filter, 20 s trimmed at each end).
2. Memory, each in a fresh subprocess, on a generated 2-hour 19-channel 512 Hz EDF:
   peak RSS above the post-import baseline, against the decoded float32 19-channel
   signal (19 × n × 4 bytes). Target ≤ 3×.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import best_of, make_file

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def run_ours(path: Path, threads: int = 1) -> np.ndarray:
    from tokenizer import read_recording

    return read_recording(path, threads=threads).data


def run_mne(path: Path, n_jobs: int = 1) -> np.ndarray:
    import mne

    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    raw.filter(0.1, 75.0, n_jobs=n_jobs, verbose="error")
    raw.notch_filter([60.0, 120.0], n_jobs=n_jobs, verbose="error")
    raw.resample(200.0, n_jobs=n_jobs, verbose="error")
    return raw.get_data() * 1e6


def band_rel_error(a: np.ndarray, b: np.ndarray, sfreq: float = 200.0) -> float:
    from scipy import signal

    sos = signal.butter(4, [0.5, 32.0], btype="band", fs=sfreq, output="sos")
    trim = int(20 * sfreq)
    n = min(a.shape[1], b.shape[1])
    x = signal.sosfiltfilt(sos, a[:, :n].astype(float))[:, trim:-trim]
    y = signal.sosfiltfilt(sos, b[:, :n].astype(float))[:, trim:-trim]
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


_MEM_CHILD = r"""
import json, sys, psutil
which, path = sys.argv[1], sys.argv[2]
import numpy, scipy.signal, mne
from tokenizer import read_recording
base = psutil.Process().memory_info().rss
if which == "ours":
    d = read_recording(path).data
else:
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    raw.filter(0.1, 75.0, verbose="error"); raw.notch_filter([60.0, 120.0], verbose="error"); raw.resample(200.0, verbose="error")
    d = raw.get_data()
# VmHWM (not ru_maxrss, which Linux carries over from the parent across exec)
peak = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) * 1024
print(json.dumps({"base": base, "peak": peak, "shape": list(d.shape)}))
"""


def measure_memory(path: Path, which: str) -> dict:
    r = subprocess.run([sys.executable, "-c", _MEM_CHILD, which, str(path)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    OUT.mkdir(parents=True, exist_ok=True)

    f20 = make_file(OUT / f"eeg_{args.minutes}min_256Hz.edf", args.minutes * 60, 256)
    counts = (1, 2)
    t_mne = {k: best_of(lambda: run_mne(f20, k), args.repeats) for k in counts}  # warm-up: imports, joblib workers
    t_ours = {k: best_of(lambda: run_ours(f20, k), args.repeats) for k in counts}
    ref, ours = run_mne(f20), run_ours(f20, 1)
    err = band_rel_error(ours, ref)
    print(f"== speed: {args.minutes}-minute 19-channel 256 Hz EDF → 200 Hz, band-pass 0.1–75 Hz, notch 60 Hz (best of {args.repeats})")
    print("like for like: the same thread count on both sides")
    print("| threads | MNE (read_raw_edf preload, filter, notch_filter, resample; n_jobs) s | ours (read_recording) s "
          "| MNE / ours |")
    print("|---|---|---|---|")
    for k in counts:
        print(f"| {k} | {t_mne[k]:.3f} | {t_ours[k]:.3f} | {t_mne[k] / t_ours[k]:.1f}× |")
    print(f"agreement on 0.5–32 Hz: relative RMS difference {100 * err:.2f}%  (max abs {np.abs(ours - ref[:, : ours.shape[1]]).max():.2f} µV unfiltered)")

    if args.skip_memory:
        return
    secs = int(args.hours * 3600)
    big = make_file(OUT / f"eeg_{args.hours:g}h_512Hz.edf", secs, 512, seed=1)
    decoded = 19 * secs * 512 * 4
    print(f"== memory: {args.hours:g}-hour 19-channel 512 Hz EDF ({big.stat().st_size / 2**20:.0f} MiB file; "
          f"decoded float32 19-channel signal {decoded / 2**20:.0f} MiB)")
    for which in ("ours", "mne"):
        m = measure_memory(big, which)
        extra = m["peak"] - m["base"]
        print(f"{which:5s}: peak RSS above baseline {extra / 2**20:7.0f} MiB = {extra / decoded:4.2f}× the decoded signal")


if __name__ == "__main__":
    main()

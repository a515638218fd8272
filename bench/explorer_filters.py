"""Cost of the explorer's EEG display filters: one 10-second page, unfiltered and filtered.

Usage::

    python bench/explorer_filters.py [--minutes 20] [--repeats 20]

A generated recording (``common.make_file``, 19 channels, 256 Hz, read at the contract's
200 Hz) is read once by :class:`services.explorer.signals.SessionSignals` (as a session's first
view does); then the best wall time of a page from its middle, in the referential and the
double-banana montage, without filters, with the defaults (high-pass 1 Hz, low-pass 70 Hz:
3 s read on each side), with the lowest high-pass (0.1 Hz: 30 s on each side) and a 50 Hz
notch, and at the recording's start (padding on one side only). What the endpoint adds (JSON)
is the same for all of them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from common import best_of, make_file

OUT = Path(__file__).resolve().parent / "out" / "explorer_filters"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    from services.explorer.signals import DisplayFilters, SessionSignals
    from tokenizer.contract import SignalContract
    from tokenizer.hashing import file_sha256

    path = make_file(OUT / f"rec_{args.minutes}min.edf", args.minutes * 60)
    meta = {"path": path.name, "source_sha256": file_sha256(path), "duration_s": args.minutes * 60.0}
    sig = SessionSignals(OUT, SignalContract(), cache_dir=OUT / "cache")
    t0 = time.perf_counter()
    sig.page(meta, 0, 10, "referential")
    print(f"{args.minutes}-min recording read in {time.perf_counter() - t0:.2f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    mid = args.minutes * 30.0
    cases = [("none", DisplayFilters(highpass=0, lowpass=0, notch=0), mid),
             ("HP 1 Hz, LP 70 Hz (defaults)", DisplayFilters(), mid),
             ("HP 0.1 Hz, LP 70 Hz, notch 50 Hz", DisplayFilters(highpass=0.1, notch=50), mid),
             ("HP 1 Hz, LP 70 Hz at 0 s", DisplayFilters(), 0.0)]
    print("| filters | pad each side (s) | referential ms | double banana ms |")
    print("|---|---|---|---|")
    for name, f, start in cases:
        ms = [1000 * best_of(lambda m=m: sig.page(meta, start, 10, m, f), args.repeats)
              for m in ("referential", "double_banana")]
        print(f"| {name} | {f.pad_s():g} | {ms[0]:.2f} | {ms[1]:.2f} |")


if __name__ == "__main__":
    main()

"""Time and peak memory of ``clef trend`` on a long recording (issue 19).

Usage::

    python bench/trend.py [--hours 24] [--stride 5min] [--config tiny] [--threads 2] [--out DIR]

Writes a 19-channel 256 Hz EDF of ``--hours`` (:func:`memory.write_long_edf`, bench's long-file
writer: 10-minute blocks of sine-and-noise EEG, about 850 MB per 24 h) and a random-weight
checkpoint of ``--config`` (:func:`clef.factory.save_random_checkpoint`; cost does not depend
on training) into ``--out`` (default: a temporary folder, deleted afterwards), then runs
``clef trend FILE --checkpoint CK --stride STRIDE --out OUT --no-progress`` as a child
process with ``--threads`` torch and preprocessing threads, and prints one JSON line: wall
seconds, the child's peak resident set size (``resource.getrusage(RUSAGE_CHILDREN)``),
the number of trend points and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import write_long_edf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--stride", default="5min")
    ap.add_argument("--config", default="tiny", help="Session-transformer preset (tiny, base, ...).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="Keep the file, checkpoint and trend here.")
    args = ap.parse_args()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        run_in(args.out, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run_in(Path(tmp), args)


def run_in(work: Path, args: argparse.Namespace) -> None:
    """Write the file and the checkpoint into ``work`` (kept when there), run the trend, print the line."""
    from clef.factory import save_random_checkpoint

    edf = write_long_edf(work / f"long_{args.hours:g}h.edf", args.hours)
    ck = work / f"ck_{args.config}"
    if not ck.is_dir():
        save_random_checkpoint(args.config, ck)
    out = work / f"trend_{args.config}_{args.hours:g}h"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    code = (f"import torch; torch.set_num_threads({args.threads}); from clef.cli import main; import sys; "
            f"sys.argv = ['clef', 'trend', {str(edf)!r}, '--checkpoint', {str(ck)!r}, '--stride', "
            f"{args.stride!r}, '--out', {str(out)!r}, '--no-progress']; main()")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode:
        sys.exit(f"clef trend failed ({run.returncode}): {run.stderr.strip()}")
    import polars as pl

    points = pl.read_parquet(out / "trend.parquet").height
    print(json.dumps({"hours": args.hours, "stride": args.stride, "config": args.config, "threads": args.threads,
                      "wall_s": round(wall, 1),
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
                      "points": points, "cpus": os.cpu_count(),
                      "command": f"clef trend {edf.name} --checkpoint ck_{args.config} --stride {args.stride}",
                      "summary": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""}))


if __name__ == "__main__":
    main()

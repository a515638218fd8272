"""Changes flagged by ``clef trend`` on long recordings with a change at a known time (issue 19).

Usage::

    clef synth-long LONG --n 8 --hours 4 --seed 0
    python bench/trend_detection.py --long LONG --checkpoint CK [--stride 2min] [--tolerance 10min] [--out DIR]

Runs :func:`clef.trend.trend` on every recording of a ``clef synth-long`` folder with a
session-transformer checkpoint and compares the embedding's flagged changes with the
hidden truth (``truth.parquet``, read with :func:`clef.synthetic.hospital.load_truth`):
a recording with a change is detected when a flag's onset lies within ``--tolerance``
of the true onset (the delay is that flag's onset minus the truth's); every flag of a
``no_change`` recording is a false flag, counted per 24 hours of those recordings, and a
flag of a recording with a change that is not within the tolerance is counted apart
(it may be a later part of the change: a seizure of the cluster, a step of a ramp).
Prints one line per recording and a summary, and writes ``detection.json`` (and each
trend's tables and figure) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", type=Path, required=True, help="Folder written by 'clef synth-long'.")
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--stride", default="2min")
    ap.add_argument("--tolerance", default="10min")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from clef.embedding import Embedder
    from clef.synthetic.hospital import load_truth
    from clef.trend import parse_duration, trend
    from clef.viz import plot_trend

    tol = parse_duration(args.tolerance)
    truth = load_truth(args.long)
    embedder = Embedder(args.checkpoint)
    rows = []
    for rec in truth.iter_rows(named=True):
        path = args.long / rec["path"]
        t0 = time.perf_counter()
        r = trend(path, embedder, stride_s=args.stride)
        wall = time.perf_counter() - t0
        flags = [c.onset_s for c in r.changes if c.signal == "embedding"]
        onset = rec["onset_s"]
        near = [f for f in flags if onset is not None and abs(f - onset) <= tol]
        row = {"path": rec["path"], "kind": rec["kind"], "hours": r.duration_s / 3600, "onset_s": onset,
               "flags_s": flags, "detected": bool(near) if onset is not None else None,
               "delay_s": min(near, key=lambda f: abs(f - onset)) - onset if near else None,
               "other_flags": len(flags) - len(near), "wall_s": round(wall, 1)}
        rows.append(row)
        print(f"{row['path']:12s} {row['kind']:26s} onset {onset if onset is not None else '-':>6} s  "
              f"flags {[round(f) for f in flags]}  detected {row['detected']}  delay {row['delay_s']}  "
              f"({wall:.0f} s)", flush=True)
        if args.out is not None:
            d = args.out / Path(rec["path"]).stem
            r.write(d)
            plot_trend(r, d / "trend.png")
    with_change = [r for r in rows if r["onset_s"] is not None]
    steady = [r for r in rows if r["onset_s"] is None]
    hours_steady = sum(r["hours"] for r in steady)
    summary = {
        "checkpoint": str(args.checkpoint), "model_id": embedder.model_id, "stride": args.stride,
        "tolerance": args.tolerance,
        "detected": sum(bool(r["detected"]) for r in with_change), "with_change": len(with_change),
        "by_kind": {k: [sum(bool(r["detected"]) for r in with_change if r["kind"] == k),
                        sum(r["kind"] == k for r in with_change)] for k in sorted({r["kind"] for r in with_change})},
        "delays_s": [r["delay_s"] for r in with_change if r["detected"]],
        "false_flags": sum(len(r["flags_s"]) for r in steady), "steady_hours": round(hours_steady, 2),
        "false_flags_per_24h": (round(24 * sum(len(r["flags_s"]) for r in steady) / hours_steady, 2)
                                if hours_steady else None),
        "other_flags_on_change_recordings": sum(r["other_flags"] for r in with_change),
    }
    print(json.dumps(summary))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "detection.json").write_text(json.dumps({"summary": summary, "recordings": rows}, indent=1))


if __name__ == "__main__":
    main()

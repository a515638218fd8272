"""Changes flagged by ``clef trend`` on long recordings with a change at a known time (issue 19).

Usage::

    clef synth-long LONG --n 24 --hours 3 --seed 1
    python bench/trend_detection.py --long LONG --checkpoint CK [--stride 2min] [--tolerance 10min] --out DIR
    python bench/trend_detection.py --long LONG --replay DIR [--drift-h H --drift-slack S ...] [--out DIR2]

Runs :func:`clef.trend.trend` on every recording of a ``clef synth-long`` folder with a
session-transformer checkpoint (each trend's tables and figure are written into
``--out``), then judges the embedding's changes under each change rule on the same
trend points: ``step`` (the step rule alone, :class:`clef.trend.ChangeDetector`) and
``step+drift`` (with the drift rule, :class:`clef.trend.DriftDetector`), both replayed by
:class:`clef.trend.ChangeRule` on the stored embeddings, as :class:`clef.trend.TrendBuilder`
runs them. ``--replay DIR`` reads the trends a previous run wrote into ``DIR`` instead of
computing them again, so the rules' parameters can be chosen on a development set
without embedding it again (choose them on one seed, measure on another).

A recording with a change is detected when a flag's onset lies within ``--tolerance`` of
the hidden truth's onset (``truth.parquet``, read with
:func:`clef.synthetic.hospital.load_truth`; the delay is that flag's onset minus the
truth's); every flag of a ``no_change`` recording is a false flag, counted per 24 hours of
those recordings (with an exact Poisson 95 % interval); a flag of a recording with a
change that is not within the tolerance is counted apart (it may be a later part of the
change: a seizure of the cluster, a step of a ramp, or an early false flag). Detection
rates carry a Wilson 95 % interval. Prints one line per recording and rule and a summary
per rule, and writes ``detection.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

RULES = ("step", "step+drift")


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``k / n`` (None when ``n`` is 0)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def poisson_rate(k: int, exposure: float) -> tuple[float, float]:
    """Exact (Garwood) 95 % interval of a Poisson rate: ``k`` events in ``exposure`` units."""
    from scipy.stats import chi2

    lo = 0.0 if k == 0 else float(chi2.ppf(0.025, 2 * k)) / 2
    hi = float(chi2.ppf(0.975, 2 * k + 2)) / 2
    return lo / exposure, hi / exposure


def replay(table, context_s: float, config) -> list[tuple[str, float, float]]:
    """``(rule, onset_s, flagged_s)`` of the embedding changes of the rule ``config`` on one trend's points
    (``flagged_s``: the stride point whose arrival flagged it, the earliest a live trend could)."""
    from clef.trend import ChangeRule, change_refractory

    t = table["t_s"].to_numpy()
    emb = np.stack(table["embedding"].to_numpy()).astype(np.float64)
    valid = table["valid_fraction"].to_numpy()
    rule = ChangeRule.from_config(config, refractory=change_refractory(context_s, config.stride_s, config.change_k))
    found = []  # (rule, onset point, point when flagged)
    for i, (e, v) in enumerate(zip(emb, valid)):
        found += [(*c, i) for c in rule.push(e if v >= config.min_valid else np.full_like(e, np.nan))]
    found += [(*c, len(t) - 1) for c in rule.finish()]
    return [(name, 0.5 * (t[onset - 1] + t[onset]), float(t[at])) for name, onset, _, at in found]


def summarise(rows: list[dict], rule: str) -> dict:
    """Detection per kind (Wilson 95 % interval), delays and false flags per 24 h of one rule."""
    with_change = [r for r in rows if r["onset_s"] is not None]
    steady = [r for r in rows if r["onset_s"] is None]
    hours_steady = sum(r["hours"] for r in steady)
    det = [r[rule] for r in with_change]
    by_kind = {}
    for kind in sorted({r["kind"] for r in with_change}):
        d = [r[rule] for r in with_change if r["kind"] == kind]
        k = sum(x["detected"] for x in d)
        delays = [x["delay_s"] for x in d if x["detected"]]
        lat = [x["latency_s"] for x in d if x["detected"]]
        by_kind[kind] = {"detected": k, "n": len(d), "ci95": wilson(k, len(d)),
                         "median_delay_s": float(np.median(delays)) if delays else None,
                         "median_latency_s": float(np.median(lat)) if lat else None}
    k = sum(x["detected"] for x in det)
    false = sum(len(r[rule]["flags_s"]) for r in steady)
    delays = [x["delay_s"] for x in det if x["detected"]]
    out = {"detected": k, "with_change": len(det), "ci95": wilson(k, len(det)), "by_kind": by_kind,
           "median_delay_s": float(np.median(delays)) if delays else None,
           "median_abs_delay_s": float(np.median(np.abs(delays))) if delays else None,
           "median_latency_s": (float(np.median([x["latency_s"] for x in det if x["detected"]]))
                                if delays else None),
           "false_flags": false, "steady_hours": round(hours_steady, 2),
           "other_flags_on_change_recordings": sum(x["other_flags"] for x in det),
           "flags_by_rule": {name: sum(n == name for r in rows for n in r[rule]["rules"])
                             for name in ("step", "drift")}}
    if hours_steady:
        lo, hi = poisson_rate(false, hours_steady / 24)
        out["false_flags_per_24h"] = round(24 * false / hours_steady, 2)
        out["false_flags_per_24h_ci95"] = (round(lo, 2), round(hi, 2))
    return out


def judge(loaded: list, overrides: dict, tol: float, *, verbose: bool = False) -> list[dict]:
    """Per recording, the flags of each rule of :data:`RULES` and whether one is within ``tol`` of the onset."""
    from clef.trend import TrendConfig

    rows = []
    for rec, table, context_s, stride_s, hours, wall in loaded:
        onset = rec["onset_s"]
        row = {"path": rec["path"], "kind": rec["kind"], "hours": hours, "onset_s": onset, "wall_s": wall}
        for rule in RULES:
            config = TrendConfig(stride_s=stride_s, **({**overrides, "drift": True} if rule == "step+drift"
                                                        else {"drift": False}))
            flags = replay(table, context_s, config)
            onsets = [f for _, f, _ in flags]
            near = [(f, at) for _, f, at in flags if onset is not None and abs(f - onset) <= tol]
            best = min(near, key=lambda fa: abs(fa[0] - onset)) if near else None
            row[rule] = {"flags_s": onsets, "flagged_at_s": [at for _, _, at in flags],
                         "rules": [n for n, _, _ in flags],
                         "detected": bool(near) if onset is not None else None,
                         "delay_s": best[0] - onset if best else None,
                         "latency_s": best[1] - onset if best else None,
                         "other_flags": len(onsets) - len(near)}
            if verbose:
                print(f"{Path(rec['path']).stem:5s} {rec['kind']:24s} onset "
                      f"{round(onset) if onset is not None else '-':>6}  {rule:10s} "
                      f"flags {[(n[0], round(f)) for n, f, _ in flags]}  detected {row[rule]['detected']}  "
                      f"delay {row[rule]['delay_s']}  flagged after {row[rule]['latency_s']}", flush=True)
        rows.append(row)
    return rows


#: The drift rule's parameters tried by ``--grid`` (on a development set only).
GRID = {"drift_baseline": (6, 10, 15), "drift_slack": (0.5, 1.0, 2.0, 3.0), "drift_h": (5.0, 10.0, 20.0, 40.0, 80.0),
        "embedding_drift_min_sd": (0.002, 0.01, 0.03, 0.06, 0.1)}


def grid(loaded: list, tol: float) -> None:
    """Print detections, false flags and other flags of ``step+drift`` for every point of :data:`GRID`."""
    import itertools

    print("baseline slack h min_sd  detected  false  other")
    for values in itertools.product(*GRID.values()):
        overrides = dict(zip(GRID, values))
        s = summarise(judge(loaded, overrides, tol), "step+drift")
        print(f"{values[0]:8d} {values[1]:5.1f} {values[2]:4.0f} {values[3]:6.3f}  "
              f"{s['detected']:3d}/{s['with_change']:<3d}"
              f"  {s['false_flags']:5d}  {s['other_flags_on_change_recordings']:5d}  "
              + " ".join(f"{k[:4]}:{v['detected']}/{v['n']}" for k, v in s["by_kind"].items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", type=Path, required=True, help="Folder written by 'clef synth-long'.")
    ap.add_argument("--checkpoint", type=Path, default=None, help="Session-transformer checkpoint (not with --replay).")
    ap.add_argument("--replay", type=Path, default=None,
                    help="Folder of a previous run's --out: judge its stored trends, compute nothing again.")
    ap.add_argument("--stride", default="2min")
    ap.add_argument("--tolerance", default="10min")
    ap.add_argument("--drift-baseline", type=int, default=None,
                    help="TrendConfig.drift_baseline (default: its default).")
    ap.add_argument("--drift-slack", type=float, default=None, help="TrendConfig.drift_slack.")
    ap.add_argument("--drift-h", type=float, default=None, help="TrendConfig.drift_h.")
    ap.add_argument("--drift-min-sd", type=float, default=None, help="TrendConfig.embedding_drift_min_sd.")
    ap.add_argument("--quiet", action="store_true", help="Print only the summaries.")
    ap.add_argument("--grid", action="store_true", help="Print step+drift's figures for every point of GRID "
                    "(choose the drift rule's parameters on a development set, never on the evaluation set).")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if (args.checkpoint is None) == (args.replay is None):
        ap.error("give --checkpoint (compute the trends) or --replay DIR (judge stored ones), not both")
    if args.replay is None and args.out is None:
        ap.error("--out is needed to keep the trends (a later --replay reads them)")

    import polars as pl

    from clef.synthetic.hospital import load_truth
    from clef.trend import TrendConfig, parse_duration, trend

    tol = parse_duration(args.tolerance)
    overrides = {k: v for k, v in (("drift_baseline", args.drift_baseline), ("drift_slack", args.drift_slack),
                                   ("drift_h", args.drift_h), ("embedding_drift_min_sd", args.drift_min_sd))
                 if v is not None}
    truth = load_truth(args.long)
    embedder = None
    if args.checkpoint is not None:
        from clef.embedding import Embedder
        from clef.viz import plot_trend

        embedder = Embedder(args.checkpoint)
    loaded = []  # (truth row, table, context_s, stride_s, hours, wall)
    model_id = None
    for rec in truth.iter_rows(named=True):
        stem = Path(rec["path"]).stem
        wall = None
        if embedder is not None:
            t0 = time.perf_counter()
            r = trend(args.long / rec["path"], embedder, stride_s=args.stride)
            wall = round(time.perf_counter() - t0, 1)
            d = args.out / stem
            r.write(d)
            plot_trend(r, d / "trend.png")
            table, context_s, stride_s, hours, model_id = r.table(), r.context_s, r.config.stride_s, \
                r.duration_s / 3600, r.model_id
            print(f"{stem}: trend in {wall:.0f} s", flush=True)
        else:
            path = args.replay / stem / "trend.parquet"
            if not path.is_file():
                print(f"{stem}: no stored trend in {args.replay} (skipped: the summary leaves it out)", flush=True)
                continue
            meta = pl.read_parquet_metadata(path)
            table = pl.read_parquet(path)
            context_s, hours = float(meta["clef.trend.context_s"]), float(meta["clef.trend.duration_s"]) / 3600
            stride_s = json.loads(meta["clef.trend.config"])["stride_s"]
            model_id = meta["clef.trend.model_id"]
        loaded.append((rec, table, context_s, stride_s, hours, wall))
    if args.grid:
        grid(loaded, tol)
        return
    rows = judge(loaded, overrides, tol, verbose=not args.quiet)
    summary = {"long": str(args.long), "checkpoint": str(args.checkpoint or args.replay), "model_id": model_id,
               "stride": args.stride, "tolerance": args.tolerance, "drift_overrides": overrides,
               "drift_config": TrendConfig(**overrides).model_dump(include={"drift_baseline", "drift_slack", "drift_h",
                                                                            "embedding_drift_min_sd"}),
               "rules": {rule: summarise(rows, rule) for rule in RULES}}
    print(json.dumps(summary, indent=1))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "detection.json").write_text(json.dumps({"summary": summary, "recordings": rows}, indent=1))


if __name__ == "__main__":
    main()

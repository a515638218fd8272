"""How large must the validity hospital be? (issue 16 item 5)

Usage::

    python bench/validity_power.py --out bench/out/power --patients 200,400,800,1600 [--seed 0]
        [--project 3200,6400] [--workers 2] [--full-hospital bench/out/validity_b/hospital_200]
        [--runs bench/out/validity_b/run/results ...] [--studies bench/out/study_smoke ...]

1. **Cohort.** One hospital of the largest ``--patients`` size is synthesized *without EEG*
   (``synthesize_hospital(write_eeg=False)``: every session simulated, FHIR, reports,
   ``sessions.csv`` and truth written, no EDF) and its cohort built once. The population is
   nested (the first N patients of the seed's population are the N-patient hospital, and
   their sessions are the same: checked for every N), so each size's cohort is a subset.
2. **Suites.** For each N, ``generate_suite`` with the default settings (the validity
   study's) on that cohort; counted per N: tasks, planted / negative tasks (truth classes of
   :mod:`benchmark_tasks.truth`), test positives per planted task, planted tasks with
   >= 30 test positives, sessions, hours of EEG and the EDF disk those would take (bytes
   per second of EEG per site measured on ``--full-hospital``'s files).
3. **Interval of the mean.** On each run's ``predictions.parquet`` (``--runs``): the mean
   planted-task AUROC with its patient-bootstrap interval
   (:func:`benchmark_tasks.power.patient_bootstrap_mean_auroc`) next to the summary's
   task-bootstrap interval, and the design effect (patient-bootstrap variance of the mean
   over the Hanley-McNeil variance of independent tasks).
4. **Projection.** Test positives per task grow in proportion to N (fitted through the
   origin over the measured sizes); the half-width at each size is
   :func:`benchmark_tasks.power.projected_half_width` over the planted tasks with the
   measured AUROC level and design effect; the size where it reaches 0.03, and where every
   planted task has 30 test positives, with hours, disk and CPU (per hour of EEG, from
   ``--studies``' ``study.json`` and this machine's hospital runs).

Everything lands in ``OUT`` (``power.json``, ``power.md``); finished steps are reused, so
the command can be re-run after an interruption.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TARGET_HALF_WIDTH = 0.03
TARGET_POSITIVES = 30


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _ints(text: str) -> list[int]:
    return sorted({int(x) for x in text.split(",") if x.strip()})


def _du(path: Path) -> int:
    """Bytes of the regular files below ``path`` (links not followed)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def cohort_hospital(out: Path, n: int, seed: int, workers: int, state: dict[str, Any]) -> Path:
    """The largest hospital without EEG (reused when its ``hospital.json`` says it is complete)."""
    from clef.synthetic.hospital import synthesize_hospital

    h = out / f"hospital_{n}"
    meta = h / "hospital.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        if m.get("n_patients") == n and m.get("seed") == seed and m.get("eeg_written") is False:
            print(f"[hospital] {h} done before", flush=True)
            return h
    t0, c0 = time.perf_counter(), _cpu_s()
    print(f"[hospital] {n} patients without EEG into {h} ...", flush=True)
    s = synthesize_hospital(h, n, seed=seed, workers=workers, write_eeg=False, overwrite=True)
    state["hospital"] = {"patients": n, "sessions": s.n_sessions, "hours": round(s.hours_of_eeg, 1),
                         "wall_s": round(time.perf_counter() - t0), "cpu_s": round(_cpu_s() - c0)}
    return h


def edf_bytes_per_second(full: Path | None) -> dict[str, float]:
    """Measured EDF bytes per second of EEG, per site, on a hospital written with its EEG."""
    import polars as pl

    if full is None or not (full / "truth.parquet").is_file():
        return {}
    t = pl.read_parquet(full / "truth.parquet").select("site", "path", "duration_s")
    size = [(full / p).stat().st_size if (full / p).is_file() else None for p in t["path"].to_list()]
    t = t.with_columns(pl.Series("bytes", size, dtype=pl.Int64)).drop_nulls("bytes")
    g = t.group_by("site").agg(pl.col("bytes").sum(), pl.col("duration_s").sum())
    rates = {r["site"]: r["bytes"] / r["duration_s"] for r in g.iter_rows(named=True)}
    rates["all"] = float(t["bytes"].sum() / t["duration_s"].sum())
    return rates


def count_sizes(out: Path, hospital: Path, sizes: list[int], seed: int, rates: dict[str, float],
                state: dict[str, Any]) -> list[dict[str, Any]]:
    """Generate each size's suite on the nested cohort and count what the power target needs."""
    import polars as pl

    from benchmark_tasks.cohort import build_cohort
    from benchmark_tasks.suite import generate_suite, load_suite
    from benchmark_tasks.truth import task_classes
    from clef.synthetic.hospital import load_truth
    from clef.synthetic.population import generate_population

    cpath = out / f"cohort_{hospital.name}.parquet"
    if not cpath.is_file():
        t0, c0 = time.perf_counter(), _cpu_s()
        cohort = build_cohort(hospital)
        cohort.write_parquet(cpath)
        state["cohort"] = {"sessions": cohort.height, "wall_s": round(time.perf_counter() - t0),
                           "cpu_s": round(_cpu_s() - c0)}
    cohort = pl.read_parquet(cpath)
    truth = load_truth(hospital).select("session_id", "patient_id", "site", "duration_s")
    rows = []
    for n in sizes:
        pop = generate_population(n, seed)
        ids = [p.patient_id for p in pop.patients]
        want = sorted(s.session_id for s in pop.sessions)
        tr = truth.filter(pl.col("patient_id").is_in(ids))
        if sorted(tr["session_id"].to_list()) != want:
            raise RuntimeError(f"the {n}-patient population is not nested in the {max(sizes)}-patient hospital")
        yaml_path = out / "suites" / f"n{n}.yaml"
        t0, c0 = time.perf_counter(), _cpu_s()
        if yaml_path.is_file():
            suite = load_suite(yaml_path)
        else:
            sub = cohort.filter(pl.col("patient_id").is_in(ids))
            suite = generate_suite(None, yaml_path, name=f"power_{n}", cohort=sub)
        suite_s = time.perf_counter() - t0, _cpu_s() - c0
        classes = task_classes(suite.tasks)
        lab = suite.labels.filter(pl.col("split") == "test").group_by("task").agg(
            (pl.col("label") == 1).sum().alias("pos"), (pl.col("label") == 0).sum().alias("neg"))
        counts = {r["task"]: (int(r["pos"]), int(r["neg"])) for r in lab.iter_rows(named=True)}
        planted = {t: counts[t] for t, c in classes.items() if c == "planted"}
        pos = np.array([p for p, _ in planted.values()])
        seconds = tr["duration_s"].to_numpy()
        edf = (sum(d * rates.get(s, rates["all"]) for s, d in zip(tr["site"].to_list(), seconds))
               if rates else float("nan"))
        rows.append({
            "patients": n, "sessions": tr.height, "hours": float(seconds.sum() / 3600), "edf_gb": edf / 1e9,
            "test_patients": int(suite.splits.filter(pl.col("split") == "test").height),
            "tasks": len(suite.tasks), "planted": len(planted),
            "negative": sum(c == "negative" for c in classes.values()),
            "planted_min_pos": int(pos.min()) if len(pos) else 0,
            "planted_median_pos": float(np.median(pos)) if len(pos) else 0.0,
            "planted_ge30": int((pos >= TARGET_POSITIVES).sum()),
            "planted_counts": planted, "suite_cpu_s": round(suite_s[1], 1)})
    return rows


def paired_of_runs(runs: list[Path], reference: str = "bandpower") -> list[dict[str, Any]]:
    """Every model minus ``reference`` on planted tasks: paired patient-bootstrap vs the summary's task-bootstrap CI."""
    import polars as pl

    from benchmark_tasks.power import patient_bootstrap_mean_difference
    from benchmark_tasks.suite import load_suite

    out = []
    for run in runs:
        if not (run / "predictions.parquet").is_file():
            continue
        meta = json.loads((run / "run.json").read_text())
        pred = pl.read_parquet(run / "predictions.parquet")
        planted = sorted(t for t, c in meta.get("task_classes", {}).items() if c == "planted"
                         and t in set(pred["task"].unique().to_list()))
        if not planted or reference not in pred["model"].unique().to_list():
            continue
        labels = load_suite(meta["suite"]["path"]).labels
        comp = pl.read_parquet(run / "comparisons.parquet").filter(pl.col("category") == "planted")
        for probe in pred["probe"].unique(maintain_order=True).to_list():
            ref = pred.filter((pl.col("model") == reference) & (pl.col("probe") == probe))
            for model in pred["model"].unique(maintain_order=True).to_list():
                if model == reference:
                    continue
                pa = pred.filter((pl.col("model") == model) & (pl.col("probe") == probe))
                d, lo, hi = patient_bootstrap_mean_difference(pa, ref, labels, planted, n_boot=1000, seed=0)
                pair = (((pl.col("model_a") == model) & (pl.col("model_b") == reference))
                        | ((pl.col("model_a") == reference) & (pl.col("model_b") == model)))
                c = comp.filter((pl.col("probe") == probe) & pair)
                task_ci = None
                if c.height:
                    sign = 1 if c["model_a"][0] == model else -1
                    task_ci = sorted((sign * c["ci_low"][0], sign * c["ci_high"][0]))
                out.append({"run": str(run), "model": model, "reference": reference, "probe": probe,
                            "tasks": len(planted), "diff": d, "lo": lo, "hi": hi, "task_ci": task_ci})
    return out


def interval_of_runs(runs: list[Path]) -> list[dict[str, Any]]:
    """Patient-bootstrap interval of the planted mean on each run, next to the task-bootstrap one."""
    import polars as pl

    from benchmark_tasks.power import auroc_variance, patient_bootstrap_aurocs, patient_bootstrap_mean_auroc
    from benchmark_tasks.suite import load_suite

    out = []
    for run in runs:
        if not (run / "predictions.parquet").is_file():
            print(f"[interval] {run}: no predictions.parquet, skipped", flush=True)
            continue
        meta = json.loads((run / "run.json").read_text())
        planted = sorted(t for t, c in meta.get("task_classes", {}).items() if c == "planted")
        pred = pl.read_parquet(run / "predictions.parquet")
        planted = [t for t in planted if t in set(pred["task"].unique().to_list())]
        if not planted:
            print(f"[interval] {run}: no planted task with predictions, skipped", flush=True)
            continue
        labels = load_suite(meta["suite"]["path"]).labels
        summary = pl.read_parquet(run / "summary.parquet").filter(pl.col("category") == "planted")
        for (model, probe), p in pred.group_by(["model", "probe"], maintain_order=True):
            # the tasks this model/probe has both classes for (all, in a complete run)
            t0, c0 = time.perf_counter(), time.process_time()
            m, lo, hi = patient_bootstrap_mean_auroc(p, labels, planted, n_boot=1000, seed=0)
            secs = time.perf_counter() - t0, time.process_time() - c0
            _, point, boot = patient_bootstrap_aurocs(p, labels, planted, n_boot=1000, seed=0)
            test = p.filter(pl.col("task").is_in(planted)).group_by("task").agg(
                (pl.col("label") == 1).sum().alias("pos"), (pl.col("label") == 0).sum().alias("neg"))
            n = {r["task"]: (r["pos"], r["neg"]) for r in test.iter_rows(named=True)}
            hm = np.array([auroc_variance(min(max(a, 0.0), 1.0), *n[t]) for t, a in zip(planted, point)])
            with np.errstate(invalid="ignore", divide="ignore"):
                boot_mean = np.nanmean(boot, axis=1)
                ratio = float(np.nanmedian(np.nanvar(boot, axis=0) / np.where(hm > 0, hm, np.nan)))
            deff = float(np.var(boot_mean) / (hm.sum() / len(hm) ** 2))
            # scaling check on real predictions: the same interval on a random half of the test
            # patients (tasks keeping both classes in the half) should be about sqrt(2) wider
            pid = p.join(labels.select("session_id", "patient_id").unique("session_id"), on="session_id")
            pats = np.sort(pid["patient_id"].unique().to_numpy())
            half = set(np.random.default_rng(1).permutation(pats)[: len(pats) // 2].tolist())
            ph = pid.filter(pl.col("patient_id").is_in(list(half)))
            both = ph.group_by("task").agg(pl.col("label").n_unique().alias("k")).filter(pl.col("k") == 2)
            keep = sorted(set(both["task"].to_list()) & set(planted))
            _, flo, fhi = patient_bootstrap_mean_auroc(p, labels, keep, n_boot=1000, seed=0)
            _, hlo, hhi = patient_bootstrap_mean_auroc(ph.drop("patient_id"), labels, keep, n_boot=1000, seed=0)
            s = summary.filter((pl.col("model") == model) & (pl.col("probe") == probe))
            out.append({"run": str(run), "model": model, "probe": probe, "tasks": len(planted),
                        "test_sessions": p.filter(pl.col("task").is_in(planted))["session_id"].n_unique(),
                        "mean": m, "lo": lo, "hi": hi, "half_width": (hi - lo) / 2,
                        "task_ci": [s["ci_low"][0], s["ci_high"][0]] if s.height else None,
                        "per_task_var_over_hm": ratio,
                        "design_effect": deff, "half_patients_tasks": len(keep),
                        "half_over_full_width": (hhi - hlo) / (fhi - flo), "seconds": round(secs[0], 2),
                        "cpu_seconds": round(secs[1], 2)})
    return out


def oracle_runs(out: Path, hospital: Path, sizes: list[int]) -> list[Path]:
    """Probe the oracle alone (hidden truth only, no EEG) on each size's suite: intervals measured at scale."""
    from benchmark_tasks.baselines.oracle import oracle_embeddings
    from benchmark_tasks.run import run_benchmark
    from benchmark_tasks.suite import load_suite
    from benchmark_tasks.truth import task_classes

    dirs = []
    for n in sizes:
        res = out / f"oracle_{n}"
        if not (res / "run.json").is_file():
            t0, c0 = time.perf_counter(), _cpu_s()
            suite = load_suite(out / "suites" / f"n{n}.yaml")
            oracle = oracle_embeddings(hospital, suite.labels["session_id"].unique().to_list())
            run_benchmark(suite, [oracle], res, task_classes=task_classes(suite.tasks), plots=False)
            print(f"[oracle] {n} patients: {time.perf_counter() - t0:.0f} s wall, {_cpu_s() - c0:.0f} s CPU",
                  flush=True)
        dirs.append(res)
    return dirs


def timing_of_bootstrap() -> dict[str, float]:
    """CPU seconds of the patient bootstrap at the brief's size: 237 tasks, 3000 test sessions, 1000 resamples."""
    import polars as pl

    from benchmark_tasks.power import patient_bootstrap_mean_auroc

    rng = np.random.default_rng(0)
    sess = [f"P{i // 2:05d}-S{i % 2}" for i in range(3000)]
    labels = pl.DataFrame({"session_id": sess, "patient_id": [s.split("-")[0] for s in sess]})
    res = {}
    for per_task in (300, 3000):
        parts = []
        for k in range(237):
            idx = rng.choice(len(sess), per_task, replace=False)
            y = (rng.random(per_task) < 1 / 3).astype(np.int8)
            parts.append(pl.DataFrame({"task": f"t{k}", "session_id": [sess[i] for i in idx], "label": y,
                                       "score": rng.normal(y, 1.0)}))
        pred = pl.concat(parts)
        c0 = time.process_time()
        patient_bootstrap_mean_auroc(pred, labels, n_boot=1000)
        res[f"{per_task}_sessions_per_task_cpu_s"] = round(time.process_time() - c0, 1)
    return res


def project(rows: list[dict[str, Any]], intervals: list[dict[str, Any]], extra: list[int],
            rates_hours: tuple[float, float]) -> dict[str, Any]:
    """Linear growth of test positives per planted task; half-width and positives per size."""
    from benchmark_tasks.power import projected_half_width

    largest = max(rows, key=lambda r: r["patients"])
    nmax = largest["patients"]
    # slope through the origin per task, over the measured sizes where the task exists
    slopes = {}
    for t in largest["planted_counts"]:
        xs = np.array([r["patients"] for r in rows if t in r["planted_counts"]], float)
        ys = np.array([r["planted_counts"][t][0] for r in rows if t in r["planted_counts"]], float)
        slopes[t] = float((xs * ys).sum() / (xs ** 2).sum())
    need = {t: int(np.ceil(TARGET_POSITIVES / s)) if s > 0 else None for t, s in slopes.items()}
    hours_per_patient, gb_per_hour = rates_hours
    # the design effect and AUROC level of each model measured on the largest run given
    levels = {}
    for iv in intervals:
        levels[(iv["model"], iv["probe"])] = (iv["mean"], iv["design_effect"], iv["run"])
    sizes = sorted({r["patients"] for r in rows} | set(extra))
    table = []
    for n in sizes:
        measured = next((r for r in rows if r["patients"] == n), None)
        if measured is not None:
            counts = measured["planted_counts"]
        else:  # the largest suite's planted tasks, positives and controls scaled with N
            counts = {t: (p * n / nmax, c * n / nmax) for t, (p, c) in largest["planted_counts"].items()}
        pos = np.array([p for p, _ in counts.values()], float)
        neg = np.array([c for _, c in counts.values()], float)
        hw = {}
        for (model, probe), (level, deff, _) in levels.items():
            hw[f"{model}/{probe}"] = projected_half_width(np.full(len(pos), level), pos, neg,
                                                          design_effect=max(deff, 1e-6))
        table.append({"patients": n, "measured": measured is not None, "planted": len(counts),
                      "min_pos": float(pos.min()), "ge30": int((pos >= TARGET_POSITIVES).sum()),
                      "hours": measured["hours"] if measured else hours_per_patient * n,
                      "edf_gb": measured["edf_gb"] if measured else gb_per_hour * hours_per_patient * n,
                      "half_width": hw})
    # the smallest size reaching each target: measured suites up to the largest, then its
    # planted tasks scaled (a larger hospital may add rarer planted tasks: those start small)
    targets = {}
    grid = [r for r in table if r["measured"]]
    for n in range(nmax + 50, 50001, 50):
        pos = np.array([p * n / nmax for p, _ in largest["planted_counts"].values()])
        neg = np.array([c * n / nmax for _, c in largest["planted_counts"].values()])
        hw = {f"{m}/{p}": projected_half_width(np.full(len(pos), lv), pos, neg, design_effect=max(d, 1e-6))
              for (m, p), (lv, d, _) in levels.items()}
        grid.append({"patients": n, "measured": False, "min_pos": float(pos.min()), "half_width": hw})
    for key in [f"{m}/{p}" for m, p in levels]:
        hit = next((r for r in grid if r["half_width"][key] <= TARGET_HALF_WIDTH), None)
        targets[f"half_width<={TARGET_HALF_WIDTH}:{key}"] = hit["patients"] if hit else None
    hit = next((r for r in grid if r["min_pos"] >= TARGET_POSITIVES), None)
    targets[f"every planted task >= {TARGET_POSITIVES} test positives"] = hit["patients"] if hit else None
    return {"slopes": slopes, "patients_for_30": need, "table": table, "targets": targets,
            "levels": {f"{m}/{p}": v for (m, p), v in levels.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "power")
    ap.add_argument("--patients", default="200,400,800,1600", help="Sizes to count (the largest is synthesized)")
    ap.add_argument("--project", default="3200,6400", help="Sizes projected from the largest measured one")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--full-hospital", type=Path, default=ROOT / "bench" / "out" / "validity_b" / "hospital_200",
                    help="A hospital written with its EEG: EDF bytes per second of EEG per site")
    ap.add_argument("--hospital", type=Path, default=None,
                    help="Use this hospital (seed --seed, at least the largest size) instead of synthesizing one")
    ap.add_argument("--runs", type=Path, nargs="*", default=[], help="Benchmark results folders (predictions)")
    ap.add_argument("--oracle-sizes", default="", help="Sizes at which to probe the oracle alone (truth only, no EEG) "
                    "and measure the interval, to check the projection")
    ap.add_argument("--studies", type=Path, nargs="*", default=[], help="validity_study.py output folders (CPU, disk)")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    state_file = out / "power.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.is_file() else {}
    sizes = _ints(args.patients)
    if args.hospital is not None:  # an existing hospital (with or without EEG) of at least the largest size
        meta = json.loads((args.hospital / "hospital.json").read_text())
        if meta["n_patients"] < max(sizes) or meta["seed"] != args.seed:
            raise SystemExit(f"--hospital {args.hospital}: {meta['n_patients']} patients, seed {meta['seed']}; "
                             f"need >= {max(sizes)} patients of seed {args.seed}")
        hospital = args.hospital
    else:
        hospital = cohort_hospital(out, max(sizes), args.seed, args.workers, state)
    rates = edf_bytes_per_second(args.full_hospital)
    rows = count_sizes(out, hospital, sizes, args.seed, rates, state)
    oracle_dirs = oracle_runs(out, hospital, _ints(args.oracle_sizes)) if args.oracle_sizes else []
    intervals = interval_of_runs(args.runs)
    # the projection's level and design effect come from --runs; the oracle runs check it
    checks = interval_of_runs(oracle_dirs)
    paired = paired_of_runs(args.runs)
    state["bootstrap_timing"] = state.get("bootstrap_timing") or timing_of_bootstrap()
    studies = []
    for sd in args.studies:
        f = sd / "study.json"
        if not f.is_file():
            continue
        st = json.loads(f.read_text())
        hours = st["stages"].get("hospital", {}).get("hours")
        studies.append({"study": str(sd), "hours": hours,
                        "stages": {k: {"cpu_s": round(v.get("cpu_s", 0)), "wall_s": round(v.get("wall_s", 0)),
                                       "steps": v.get("steps")} for k, v in st["stages"].items()},
                        "disk_gb": {d: _du(sd / d) / 1e9 for d in ("hospital", "cache", "tokens", "bench_cache")}})
    largest = max(rows, key=lambda r: r["patients"])
    hpp, gbh = largest["hours"] / largest["patients"], largest["edf_gb"] / largest["hours"]
    proj = project(rows, intervals, _ints(args.project), (hpp, gbh))
    from benchmark_tasks.power import projected_half_width

    ref = {(iv["model"], iv["probe"]): iv["design_effect"] for iv in intervals}
    for chk in checks:
        n = int(Path(chk["run"]).name.split("_")[-1])
        row = next(r for r in rows if r["patients"] == n)
        cnt = [row["planted_counts"][t] for t in row["planted_counts"]]
        pos, neg = np.array([c[0] for c in cnt], float), np.array([c[1] for c in cnt], float)
        deff = ref.get((chk["model"], chk["probe"]))
        chk["patients"] = n
        chk["projected_half_width"] = (projected_half_width(np.full(len(pos), chk["mean"]), pos, neg,
                                                            design_effect=deff) if deff else None)
    cache_gbh = max([s["disk_gb"]["cache"] / s["hours"] for s in studies if s["hours"] and s["disk_gb"]["cache"]],
                    default=float("nan"))
    proj["cost"] = {}
    for name, n in proj["targets"].items():
        if n is None:
            continue
        row = next((r for r in rows if r["patients"] == n), None)  # measured, else scaled from the largest
        hours = row["hours"] if row else hpp * n
        sessions = row["sessions"] if row else round(largest["sessions"] / largest["patients"] * n)
        proj["cost"][name] = {"patients": n, "sessions": sessions, "hours": round(hours),
                              "edf_gb": round(row["edf_gb"] if row else gbh * hours, 1),
                              "spectrogram_cache_gb": round(cache_gbh * hours, 1)}
    state.update({"args": {k: str(v) for k, v in vars(args).items()}, "edf_bytes_per_s": rates, "sizes": rows,
                  "intervals": intervals, "oracle_checks": checks, "paired": paired, "studies": studies,
                  "projection": proj})
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, default=float))
    tmp.replace(state_file)
    report(out, state)


def report(out: Path, st: dict[str, Any]) -> None:
    """Markdown tables of ``power.json`` (``OUT/power.md``, also printed)."""
    L = ["## Counts per hospital size (default suite settings; planted = truth class)", "",
         "| patients | sessions | hours of EEG | EDF disk (GB) | test patients | tasks | planted | negative | "
         "planted test positives min / median | planted with >= 30 test positives |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in st["sizes"]:
        L.append(f"| {r['patients']} | {r['sessions']} | {r['hours']:.0f} | {r['edf_gb']:.1f} | {r['test_patients']} "
                 f"| {r['tasks']} | {r['planted']} | {r['negative']} | {r['planted_min_pos']} / "
                 f"{r['planted_median_pos']:.0f} | {r['planted_ge30']} / {r['planted']} |")
    L += ["", "## Planted tasks: test positives per size, and patients for 30 (fit through the origin)", "",
          "| task | " + " | ".join(str(r["patients"]) for r in st["sizes"]) + " | patients for 30 |",
          "|---|" + "---|" * (len(st["sizes"]) + 1)]
    need = st["projection"]["patients_for_30"]
    for t in sorted(need, key=lambda t: -(need[t] or 0)):
        cells = [str(r["planted_counts"][t][0]) if t in r["planted_counts"] else "-" for r in st["sizes"]]
        L.append(f"| {t} | " + " | ".join(cells) + f" | {need[t]} |")
    L += ["", "## Interval of the planted mean on existing runs (1000 resamples)", "",
          "| run | model | probe | planted tasks | test sessions | mean AUROC | patient-bootstrap 95% CI | "
          "half-width | "
          "task-bootstrap CI (summary) | design effect | width on half the test patients / all (tasks) | CPU s |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for iv in st["intervals"]:
        tc = f"[{iv['task_ci'][0]:.3f}, {iv['task_ci'][1]:.3f}]" if iv["task_ci"] else "n/a"
        L.append(f"| {iv['run']} | {iv['model']} | {iv['probe']} | {iv['tasks']} | {iv['test_sessions']} | "
                 f"{iv['mean']:.3f} | [{iv['lo']:.3f}, {iv['hi']:.3f}] | {iv['half_width']:.3f} | {tc} | "
                 f"{iv['design_effect']:.2f} | {iv['half_over_full_width']:.2f} ({iv['half_patients_tasks']}) | "
                 f"{iv['cpu_seconds']} |")
    L += ["", "## Paired differences on planted tasks, model - band power: patients vs tasks resampled", "",
          "| run | model | probe | tasks | mean difference | paired patient-bootstrap 95% CI | task-bootstrap CI |",
          "|---|---|---|---|---|---|---|"]
    for c in st.get("paired", []):
        tc = f"[{c['task_ci'][0]:+.3f}, {c['task_ci'][1]:+.3f}]" if c["task_ci"] else "n/a"
        L.append(f"| {c['run']} | {c['model']} | {c['probe']} | {c['tasks']} | {c['diff']:+.3f} | "
                 f"[{c['lo']:+.3f}, {c['hi']:+.3f}] | {tc} |")
    if st.get("oracle_checks"):
        L += ["", "## Check: the oracle probed alone at each size (measured) vs the projection at its measured level",
              "",
              "| patients | probe | planted tasks | mean AUROC | patient-bootstrap 95% CI | measured half-width | "
              "projected (design effect of --runs) | design effect here |", "|---|---|---|---|---|---|---|---|"]
        for c in st["oracle_checks"]:
            pj = f"{c['projected_half_width']:.3f}" if c.get("projected_half_width") else "n/a"
            L.append(f"| {c['patients']} | {c['probe']} | {c['tasks']} | {c['mean']:.3f} | "
                     f"[{c['lo']:.3f}, {c['hi']:.3f}] | "
                     f"{c['half_width']:.3f} | {pj} | {c['design_effect']:.2f} |")
    pr = st["projection"]
    keys = sorted(pr["levels"])
    L += ["", "## Projected half-width of the planted mean (Hanley-McNeil x measured design effect)", "",
          "| patients | measured counts? | planted tasks | min test positives | >= 30 | hours | EDF GB | "
          + " | ".join(keys) + " |", "|---|---|---|---|---|---|---|" + "---|" * len(keys)]
    for r in pr["table"]:
        L.append(f"| {r['patients']} | {'yes' if r['measured'] else 'scaled'} | {r['planted']} | {r['min_pos']:.0f} | "
                 f"{r['ge30']} | {r['hours']:.0f} | {r['edf_gb']:.0f} | "
                 + " | ".join(f"{r['half_width'][k]:.3f}" for k in keys) + " |")
    L += ["", "## Sizes that reach the targets, and what they hold", "",
          "| target | patients | sessions | hours of EEG | EDF GB | spectrogram cache GB |",
          "|---|---|---|---|---|---|"]
    for name, c in pr.get("cost", {}).items():
        L.append(f"| {name} | {c['patients']} | {c['sessions']} | {c['hours']} | {c['edf_gb']} | "
                 f"{c['spectrogram_cache_gb']} |")
    for name, n in pr["targets"].items():
        if n is None:
            L.append(f"| {name} | not reached below 50000 | | | | |")
    L += ["", f"Bootstrap timing (CPU s, 237 tasks, 3000 test sessions, 1000 resamples): {st['bootstrap_timing']}",
          f"EDF bytes per second of EEG (measured): { {k: round(v) for k, v in st['edf_bytes_per_s'].items()} }"]
    for k in ("hospital", "cohort"):
        if k in st:
            L.append(f"{k}: {st[k]}")
    for s in st["studies"]:
        L.append(f"study {s['study']}: {s['hours']} h; disk GB {s['disk_gb']}; stages {s['stages']}")
    text = "\n".join(L) + "\n"
    (out / "power.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

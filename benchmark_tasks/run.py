"""``clef benchmark run``: probe frozen embeddings on every task of a suite, against baselines.

Protocol
--------
* The suite is verified first (:meth:`benchmark_tasks.suite.Suite.verify`): a patient in
  two splits, or tables edited after generation, stop the run.
* Every model is evaluated on the **same sessions**: those of the suite that all models
  embed (sessions missing from one model are dropped for all, and counted).
* Per task and model: the probes are fitted on the training patients (validation
  patients, when the suite has any, join them: nothing is tuned) and scored on the test
  patients: a standardised logistic regression (deterministic, fitted once) and the
  CLEF protocol's small MLP (one fit per seed; the AUROC is the mean over seeds).
* AUROC 95% intervals: percentile bootstrap over test *patients* (1000 resamples; the
  same resamples for every model of a task). Normalised score ``2 * (AUROC - 0.5)``.
* Means per category and overall, with a bootstrap interval over tasks; paired
  differences between models per category (bootstrap over tasks, wins).
* Held-out concepts: a model whose checkpoint lists ``held_out_concepts`` gets each task
  marked ``held_out`` / ``partial`` / ``seen`` (:func:`benchmark_tasks.tasks.held_out_status`),
  summarised apart.
* Ceiling: with an oracle among the models (kind ``oracle``,
  :mod:`benchmark_tasks.baselines.oracle`, probed like every model), each row gets the
  oracle's AUROC on its task and probe and the **headroom captured**
  ``(AUROC - 0.5) / (oracle - 0.5)``, null where the oracle is within
  :data:`~benchmark_tasks.metrics.HEADROOM_MIN_GAIN` of chance or its 95% interval
  contains 0.5 (such tasks are left out of headroom means, and counted). Summaries give the mean of the per-task ratios with a
  bootstrap interval over tasks, and the pooled ratio ``sum(AUROC - 0.5) / sum(oracle - 0.5)``
  over the same tasks (robust to a ceiling barely above the margin). With the suite's truth classes (``task_classes``:
  planted / negative / other, :mod:`benchmark_tasks.truth`), summaries and comparisons are
  also given per class.
* Validity card (:mod:`benchmark_tasks.card`): probe calibration (ECE over 10 equal-width
  bins, Brier score, a reliability plot), AUROC by age band, sex, site and care setting
  with each task's weakest subgroup flagged, and the stage-overlap audit rows the caller
  passes (``stage_audit``).

Outputs (``RESULTS_DIR``)
-------------------------
``results.parquet``     one row per model × task × probe (schema :data:`RESULTS_SCHEMA`)
``summary.parquet``     model × probe × category means with intervals
``comparisons.parquet`` paired model differences per category
``heldout.parquet``     held-out vs seen tasks per model with held-out concepts
``predictions.parquet`` test-set scores (model, probe, task, session_id, label, score)
``calibration.parquet`` ECE and Brier score per model × probe × task (and pooled, task ``(all)``)
``subgroups.parquet``   AUROC per model × probe × task × subgroup (age band, sex, site, setting)
``report.md``           the Markdown report; ``plots/*.png`` its figures
``probes/<model>/<task>.json`` every model's logistic probe; ``probes/<task>.json`` the
                        primary (first non-baseline) model's, for the HTTP service
``run.json``            suite, models, configuration, truth classes, stage-overlap audit, timings
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmark_tasks.card import CALIBRATION_SCHEMA, SUBGROUP_SCHEMA, calibration_table, subgroup_table
from benchmark_tasks.config import CATEGORIES, ProbeConfig
from benchmark_tasks.embeddings import EmbeddingSet
from benchmark_tasks.metrics import HEADROOM_MIN_GAIN, bootstrap_auroc, headroom, mean_ci, normalised_score
from benchmark_tasks.power import mean_interval, patient_bootstrap_aurocs
from benchmark_tasks.probes import fit_logistic_probe, fit_mlp_probe
from benchmark_tasks.progress import track
from benchmark_tasks.suite import Suite, load_suite
from benchmark_tasks.tasks import held_out_status
from benchmark_tasks.truth import TASK_CLASSES
from tokenizer.atomic import write_json_atomic, write_parquet_atomic

__all__ = ["GROUPINGS", "RESULTS_SCHEMA", "BenchmarkResult", "run_benchmark", "safe_name"]

log = logging.getLogger(__name__)

RESULTS_SCHEMA: dict[str, Any] = {
    "model": pl.String, "model_kind": pl.String, "baseline": pl.Boolean, "model_id": pl.String,
    "task": pl.String, "category": pl.String, "task_kind": pl.String, "probe": pl.String,
    "concept_status": pl.String, "n_train": pl.Int64, "n_train_positive": pl.Int64, "n_test": pl.Int64,
    "n_test_positive": pl.Int64, "n_test_patients": pl.Int64, "auroc": pl.Float64, "auroc_seed_sd": pl.Float64,
    "ci_low": pl.Float64, "ci_high": pl.Float64, "score": pl.Float64, "n_seeds": pl.Int64,
    "max_abs_smd_after": pl.Float64, "task_class": pl.String, "oracle_auroc": pl.Float64, "headroom": pl.Float64,
}

#: ``grouping`` of summary and comparison rows: by task category (and ``overall``) or by truth class.
GROUPINGS: tuple[str, ...] = ("category", "truth_class")


def safe_name(name: str) -> str:
    """A model name usable as a folder name (``/`` and other characters → ``_``)."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    return out or "model"


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` wrote.

    Attributes
    ----------
    out : Path
    results, summary, comparisons, heldout : polars.DataFrame
    skipped : dict of str to str
        Tasks not evaluated, and why.
    primary : str
        Model whose probes are served from ``probes/<task>.json``.
    reference : str or None
        Baseline the scatter plots compare against.
    files : list of Path
    predictions, calibration, subgroups : polars.DataFrame
        Test-set scores and the validity card's tables (:mod:`benchmark_tasks.card`).
    task_classes : dict of str to str
        Truth class per task (empty when the suite's truth is not known).
    stage_audit : list of dict
        The stage-overlap audit rows the run was given.
    oracle : str or None
        The oracle model's name, when one was probed.
    """

    out: Path
    results: pl.DataFrame
    summary: pl.DataFrame
    comparisons: pl.DataFrame
    heldout: pl.DataFrame
    skipped: dict[str, str]
    primary: str
    reference: str | None
    files: list[Path] = field(default_factory=list)
    predictions: pl.DataFrame = field(default_factory=pl.DataFrame)
    calibration: pl.DataFrame = field(default_factory=pl.DataFrame)
    subgroups: pl.DataFrame = field(default_factory=pl.DataFrame)
    task_classes: dict[str, str] = field(default_factory=dict)
    stage_audit: list[dict[str, Any]] = field(default_factory=list)
    oracle: str | None = None


def _jsonable(value: Any) -> Any:
    """JSON form of an audit value json cannot write (numpy scalars, paths ...)."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _task_seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _groups(with_classes: bool) -> list[tuple[str, str, pl.Expr]]:
    """(grouping, name, row filter) of the summary and comparison rows."""
    out = [("category", c, pl.col("category") == c) for c in CATEGORIES] + [("category", "overall", pl.lit(True))]
    if with_classes:
        out += [("truth_class", k, pl.col("task_class") == k) for k in TASK_CLASSES]
    return out


def _patient_resamples(predictions: pl.DataFrame, labels: pl.DataFrame, n_boot: int
                       ) -> dict[tuple[str, str], tuple[dict[str, int], np.ndarray, np.ndarray]]:
    """Per (model, probe): task column, point AUROCs and AUROCs under shared test-patient resamples.

    Every model and probe is scored on the same test sessions and drawn with the same
    seed, so the resamples are the same patients for all of them: a difference of two
    models' arrays is the paired resample.
    """
    out = {}
    if n_boot <= 0 or predictions.height == 0:
        return out
    for (model, probe), p in predictions.group_by(["model", "probe"], maintain_order=True):
        tasks, point, boot = patient_bootstrap_aurocs(p, labels, n_boot=n_boot, seed=0)
        out[(model, probe)] = ({t: i for i, t in enumerate(tasks)}, point, boot)
    return out


def _patient_ci(boots: dict, key: tuple[str, str], tasks: list[str], other: tuple[str, str] | None = None
                ) -> tuple[float | None, float | None]:
    """Interval over test-patient resamples of the mean over ``tasks`` (of a paired difference with ``other``)."""
    if key not in boots or (other is not None and other not in boots):
        return None, None
    col, point, boot = boots[key]
    idx = [col[t] for t in tasks if t in col]
    if len(idx) != len(tasks):
        return None, None
    b = boot[:, idx]
    if other is not None:
        col_o, _, boot_o = boots[other]
        if any(t not in col_o for t in tasks):
            return None, None
        b = b - boot_o[:, [col_o[t] for t in tasks]]
    _, lo, hi = mean_interval(np.zeros(len(idx)), b)
    return (None, None) if not np.isfinite(lo) else (lo, hi)


def _summaries(results: pl.DataFrame, models: list[str], n_boot: int, predictions: pl.DataFrame | None = None,
               labels: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = []
    if results.height == 0:
        return (pl.DataFrame(schema={"model": pl.String}), pl.DataFrame(schema={"model_a": pl.String}))
    groups = _groups(results["task_class"].is_not_null().any())
    boots = (_patient_resamples(predictions, labels, n_boot)
             if predictions is not None and labels is not None else {})
    for (model, probe), g in results.group_by(["model", "probe"], maintain_order=True):
        for grouping, cat, where in groups:
            sub = g.filter(where)
            if sub.height == 0:
                continue
            m, lo, hi = mean_ci(sub["auroc"].to_numpy(), n_boot=max(n_boot, 200), seed=_task_seed(cat))
            plo, phi = _patient_ci(boots, (model, probe), sub["task"].to_list())
            with_hr = sub.filter(pl.col("headroom").is_not_null() & pl.col("headroom").is_not_nan())
            hr = with_hr["headroom"].to_numpy()
            hm, hlo, hhi = mean_ci(hr, n_boot=max(n_boot, 200), seed=_task_seed("headroom" + cat))
            # the ratio of summed gains over the same tasks: a task whose ceiling is barely above
            # chance weighs by its small gain here, where the mean of ratios weighs it fully
            pooled = (float((with_hr["auroc"] - 0.5).sum() / (with_hr["oracle_auroc"] - 0.5).sum())
                      if len(hr) else None)
            rows.append({"model": model, "probe": probe, "grouping": grouping, "category": cat,
                         "n_tasks": sub.height, "mean_auroc": m, "ci_low": lo, "ci_high": hi,
                         "patient_ci_low": plo, "patient_ci_high": phi,
                         "median_auroc": float(sub["auroc"].median()), "mean_score": float(normalised_score(m)),
                         "sd_auroc": float(sub["auroc"].std() or 0.0), "n_headroom": len(hr),
                         "mean_headroom": hm if len(hr) else None, "headroom_ci_low": hlo if len(hr) else None,
                         "headroom_ci_high": hhi if len(hr) else None, "pooled_headroom": pooled})
    ci_types = {k: pl.Float64 for k in ("mean_headroom", "headroom_ci_low", "headroom_ci_high", "pooled_headroom",
                                         "patient_ci_low", "patient_ci_high")}
    summary = pl.DataFrame(rows, schema_overrides=ci_types)
    comp = []
    for probe in results["probe"].unique(maintain_order=True).to_list():
        wide = (results.filter(pl.col("probe") == probe)
                .pivot(on="model", index=["task", "category", "task_class"], values="auroc"))
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                if a not in wide.columns or b not in wide.columns:
                    continue
                for grouping, cat, where in groups:
                    sub = wide.filter(where).filter(pl.col(a).is_not_null() & pl.col(b).is_not_null())
                    d = (sub[a] - sub[b]).to_numpy()
                    if len(d) == 0:
                        continue
                    m, lo, hi = mean_ci(d, n_boot=max(n_boot, 200), seed=_task_seed(cat + a + b))
                    plo, phi = _patient_ci(boots, (a, probe), sub["task"].to_list(), other=(b, probe))
                    comp.append({"probe": probe, "model_a": a, "model_b": b, "grouping": grouping, "category": cat,
                                 "n_tasks": len(d),
                                 "mean_diff": m, "ci_low": lo, "ci_high": hi, "patient_ci_low": plo,
                                 "patient_ci_high": phi, "wins_a": int((d > 0).sum()),
                                 "wins_b": int((d < 0).sum())})
    return summary, pl.DataFrame(comp, schema_overrides={"patient_ci_low": pl.Float64, "patient_ci_high": pl.Float64})


def _with_headroom(results: pl.DataFrame, oracle: str | None, min_gain: float) -> pl.DataFrame:
    """Fill ``oracle_auroc`` and ``headroom`` from the oracle's rows (same task and probe)."""
    if oracle is None or results.height == 0:
        return results
    ref = results.filter(pl.col("model") == oracle).select("task", "probe", pl.col("auroc").alias("_oracle"),
                                                           pl.col("ci_low").alias("_oracle_low"))
    j = results.join(ref, on=["task", "probe"], how="left", maintain_order="left")
    hr = headroom(j["auroc"].to_numpy(), j["_oracle"].fill_null(np.nan).to_numpy(), min_gain=min_gain,
                  oracle_ci_low=j["_oracle_low"].fill_null(np.nan).to_numpy())
    return j.with_columns(pl.col("_oracle").alias("oracle_auroc"),
                          pl.Series("headroom", hr).fill_nan(None)).select(list(RESULTS_SCHEMA))


def _heldout_table(results: pl.DataFrame, primary_probe: str) -> pl.DataFrame:
    """Per model with held-out concepts: mean AUROC of every model on its held-out / partial / seen tasks."""
    rows = []
    res = results.filter(pl.col("probe") == primary_probe)
    for model in res.filter(pl.col("concept_status") != "n/a")["model"].unique(maintain_order=True).to_list():
        status = res.filter(pl.col("model") == model).select("task", "concept_status")
        code_tasks = status.join(res.select("task", "category").unique(), on="task").filter(
            pl.col("category") != "finding")
        for st in ("held_out", "partial", "seen"):
            tasks = code_tasks.filter(pl.col("concept_status") == st)["task"].to_list()
            if not tasks:
                continue
            for other, g in res.filter(pl.col("task").is_in(tasks)).group_by("model", maintain_order=True):
                m, lo, hi = mean_ci(g["auroc"].to_numpy(), n_boot=500, seed=_task_seed(st))
                rows.append({"heldout_model": model, "status": st, "model": other[0], "n_tasks": g.height,
                             "mean_auroc": m, "ci_low": lo, "ci_high": hi})
    return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"heldout_model": pl.String, "status": pl.String,
                                                                "model": pl.String, "n_tasks": pl.Int64,
                                                                "mean_auroc": pl.Float64, "ci_low": pl.Float64,
                                                                "ci_high": pl.Float64})


def run_benchmark(suite: Suite | str | os.PathLike[str], models: Sequence[EmbeddingSet], out: str | os.PathLike[str],
                  *, config: ProbeConfig | None = None, primary: str | None = None, reference: str | None = None,
                  progress: bool = False, plots: bool = True, task_classes: Mapping[str, str] | None = None,
                  stage_audit: Sequence[Mapping[str, Any]] = (),
                  headroom_min_gain: float = HEADROOM_MIN_GAIN) -> BenchmarkResult:
    """Probe every task of a suite with every model; write results, probes, report and plots.

    Parameters
    ----------
    suite : Suite or path
    models : sequence of EmbeddingSet
        Candidates first (the first non-baseline one is the primary model), then baselines.
    out : path
        Results folder (created; existing files are replaced).
    config : ProbeConfig, optional
    primary : str, optional
        Model whose logistic probes go to ``probes/<task>.json`` (default: the first
        non-baseline model, else the first).
    reference : str, optional
        Baseline of the scatter plots (default: ``bandpower`` when present, else the last
        baseline, else the last model).
    progress : bool
    plots : bool
        Draw the figures (matplotlib, Agg).
    task_classes : mapping of str to str, optional
        Truth class (``planted`` / ``negative`` / ``other``) per task name, known for a
        suite of a synthetic hospital (:func:`benchmark_tasks.truth.task_classes`):
        summaries, comparisons and the report add per-class rows (headroom averaged over
        planted tasks). Tasks not in it have no class.
    stage_audit : sequence of mapping
        Stage-overlap audit, one row per checkpoint model (e.g. ``model``,
        ``supervised_test_patients``, ``n_test_patients``, ``stage1_test_sessions``,
        ``transductive``, ``note``): rendered in the report's validity card and written to
        ``run.json`` as given.
    headroom_min_gain : float
        Headroom is null where the oracle's AUROC is at most ``0.5 + headroom_min_gain``
        (or its interval reaches down to 0.5).

    Returns
    -------
    BenchmarkResult

    Raises
    ------
    SplitLeakError
        A patient in two splits.
    SuiteDigestError
        Suite tables edited after generation.
    ValueError
        No models, duplicate names, more than one oracle, a truth class that is not
        planted / negative / other, an audit row that is not a mapping, or no session
        embedded by every model.
    """
    t0 = time.perf_counter()
    cfg = config or ProbeConfig()
    classes = {str(k): str(v) for k, v in (task_classes or {}).items()}
    bad = sorted({v for v in classes.values() if v not in TASK_CLASSES})
    if bad:
        raise ValueError(f"task_classes: classes must be among {TASK_CLASSES}, found {bad}")
    if not all(isinstance(r, Mapping) for r in stage_audit):
        raise ValueError("stage_audit: expected a sequence of mappings (one row per model)")
    audit = json.loads(json.dumps([dict(r) for r in stage_audit], default=_jsonable))
    if headroom_min_gain < 0:
        raise ValueError(f"headroom_min_gain must be >= 0, found {headroom_min_gain}")
    s = suite if isinstance(suite, Suite) else load_suite(suite)
    s.verify()
    if not models:
        raise ValueError("no models to probe: give --embeddings, --checkpoint or a baseline")
    names = [m.name for m in models]
    if len(set(names)) != len(names) or len({safe_name(n) for n in names}) != len(names):
        raise ValueError(f"model names must be unique (also as folder names), found {names}")
    oracles = [m.name for m in models if m.kind == "oracle"]
    if len(oracles) > 1:
        raise ValueError(f"at most one oracle model per run (the ceiling of headroom), found {oracles}")
    oracle = oracles[0] if oracles else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = s.labels
    all_sessions = labels["session_id"].unique().sort().to_list()
    present = np.ones(len(all_sessions), dtype=bool)
    coverage: dict[str, float] = {}
    for m in models:
        has = m.has(all_sessions)
        coverage[m.name] = float(has.mean()) if len(has) else 0.0
        if has.mean() < 1.0:
            log.warning("model %s embeds %d of the suite's %d sessions", m.name, int(has.sum()), len(all_sessions))
        present &= has
    common = {sid for sid, ok in zip(all_sessions, present) if ok}
    if not common:
        raise ValueError(f"no session of suite {s.name} is embedded by every model (coverage {coverage}); check that "
                         "the embeddings' session_id values are the archive's session ids")
    n_dropped = len(all_sessions) - len(common)
    if n_dropped:
        log.warning("%d of %d suite sessions lack an embedding in some model; they are left out for all models",
                    n_dropped, len(all_sessions))
    prim = primary or next((m.name for m in models if not m.baseline), models[0].name)
    if prim not in names:
        raise ValueError(f"primary model {prim!r} is not among the models {names}")
    ref = reference
    if ref is None:
        base = [m.name for m in models if m.baseline and m.kind != "oracle"]  # the oracle is a ceiling, not a baseline
        ref = "bandpower" if "bandpower" in names else (base[-1] if base else (names[-1] if len(names) > 1 else None))
    elif ref not in names:
        raise ValueError(f"reference model {ref!r} is not among the models {names}")

    labels = labels.filter(pl.col("session_id").is_in(list(common)))
    by_task = {t[0]: g for t, g in labels.group_by("task", maintain_order=True)}
    rows: list[dict[str, Any]] = []
    preds: list[pl.DataFrame] = []
    skipped: dict[str, str] = {}
    probe_dir = out / "probes"
    seeds = list(range(cfg.seeds))
    for task in track(s.tasks, "probes", enabled=progress):
        g = by_task.get(task.name)
        if g is None:
            skipped[task.name] = "no session left with an embedding in every model"
            continue
        train = g.filter(pl.col("split") != "test")
        test = g.filter(pl.col("split") == "test")
        ytr, yte = train["label"].to_numpy().astype(int), test["label"].to_numpy().astype(int)
        if len(np.unique(ytr)) < 2 or len(np.unique(yte)) < 2:
            skipped[task.name] = (f"one class only after dropping unembedded sessions (train {int(ytr.sum())}/"
                                  f"{len(ytr)} positive, test {int(yte.sum())}/{len(yte)})")
            continue
        tr_ids, te_ids = train["session_id"].to_list(), test["session_id"].to_list()
        groups = test["patient_id"].to_numpy()
        bseed = _task_seed(task.name)
        smd = task.stats.max_abs_smd_after if task.stats else float("nan")
        for m in models:
            xtr, xte = m.take(tr_ids), m.take(te_ids)
            status = held_out_status(task, m.held_out) if m.held_out else "n/a"
            base = {"model": m.name, "model_kind": m.kind, "baseline": m.baseline, "model_id": m.model_id,
                    "task": task.name, "category": task.category, "task_kind": task.kind, "concept_status": status,
                    "n_train": len(ytr), "n_train_positive": int(ytr.sum()), "n_test": len(yte),
                    "n_test_positive": int(yte.sum()), "n_test_patients": len(np.unique(groups)),
                    "max_abs_smd_after": smd, "task_class": classes.get(task.name), "oracle_auroc": None,
                    "headroom": None}
            if "logistic" in cfg.probes:
                lp = fit_logistic_probe(xtr, ytr, c=cfg.logistic_c)
                score = lp.predict_proba(xte)
                auc, lo, hi = bootstrap_auroc(yte, score, groups, n_boot=cfg.n_bootstrap, seed=bseed)
                rows.append({**base, "probe": "logistic", "auroc": auc, "auroc_seed_sd": 0.0, "ci_low": lo,
                             "ci_high": hi, "score": float(normalised_score(auc)), "n_seeds": 1})
                preds.append(pl.DataFrame({"model": m.name, "probe": "logistic", "task": task.name,
                                           "session_id": te_ids, "label": yte.astype(np.int8), "score": score}))
                meta = {"task": task.name, "category": task.category, "model": m.name, "model_id": m.model_id or None,
                        "suite": s.name, "suite_version": s.spec.version, "n_train": len(ytr),
                        "auroc_test": round(auc, 4), "ci95_test": [round(lo, 4), round(hi, 4)]}
                lp.save(probe_dir / safe_name(m.name) / f"{task.name}.json", **meta)
                if m.name == prim:
                    lp.save(probe_dir / f"{task.name}.json", **meta)
            if "mlp" in cfg.probes:
                mp = fit_mlp_probe(xtr, ytr, cfg.mlp, seeds=seeds)
                scores = mp.predict_proba(xte)
                per_seed = [bootstrap_auroc(yte, sc, n_boot=0)[0] for sc in scores]
                auc, lo, hi = bootstrap_auroc(yte, list(scores), groups, n_boot=cfg.n_bootstrap, seed=bseed)
                rows.append({**base, "probe": "mlp", "auroc": auc,
                             "auroc_seed_sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
                             "ci_low": lo, "ci_high": hi, "score": float(normalised_score(auc)),
                             "n_seeds": len(seeds)})
                preds.append(pl.DataFrame({"model": m.name, "probe": "mlp", "task": task.name, "session_id": te_ids,
                                           "label": yte.astype(np.int8), "score": scores.mean(0)}))
    results = _with_headroom(pl.DataFrame(rows, schema=RESULTS_SCHEMA), oracle, headroom_min_gain)
    predictions = pl.concat(preds) if preds else pl.DataFrame()
    summary, comparisons = _summaries(results, names, cfg.n_bootstrap, predictions, s.labels)
    heldout = _heldout_table(results, cfg.primary)
    calibration = calibration_table(predictions) if preds else pl.DataFrame(schema=CALIBRATION_SCHEMA)
    subgroups = subgroup_table(predictions, s.cohort) if preds else pl.DataFrame(schema=SUBGROUP_SCHEMA)
    files = [write_parquet_atomic(results, out / "results.parquet"),
             write_parquet_atomic(summary, out / "summary.parquet"),
             write_parquet_atomic(comparisons, out / "comparisons.parquet"),
             write_parquet_atomic(heldout, out / "heldout.parquet"),
             write_parquet_atomic(predictions, out / "predictions.parquet"),
             write_parquet_atomic(calibration, out / "calibration.parquet"),
             write_parquet_atomic(subgroups, out / "subgroups.parquet")]
    res = BenchmarkResult(out, results, summary, comparisons, heldout, skipped, prim, ref, predictions=predictions,
                          calibration=calibration, subgroups=subgroups,
                          task_classes={t.name: classes[t.name] for t in s.tasks if t.name in classes},
                          stage_audit=audit, oracle=oracle)
    plot_files: list[Path] = []
    if plots and results.height:
        from benchmark_tasks.plots import draw_all

        plot_files = draw_all(res, s, cfg.primary)
    from benchmark_tasks.report import write_report

    files.append(write_report(res, s, models, cfg, coverage=coverage, n_dropped=n_dropped, plots=plot_files,
                               headroom_min_gain=headroom_min_gain))
    files += plot_files
    meta = {"created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "suite": {"path": str(s.path), "name": s.name, "version": s.spec.version,
                      "sha256": s.spec.files.sha256},
            "models": [{"name": m.name, "kind": m.kind, "model_id": m.model_id, "source": m.source,
                        "baseline": m.baseline, "dim": m.dim, "held_out_concepts": list(m.held_out),
                        "coverage": coverage[m.name]} for m in models],
            "primary": prim, "reference": ref, "oracle": oracle, "headroom_min_gain": headroom_min_gain,
            "config": cfg.model_dump(mode="json"), "task_classes": res.task_classes, "stage_audit": audit,
            "n_tasks": len(s.tasks), "n_evaluated": results["task"].n_unique() if results.height else 0,
            "skipped": skipped, "sessions_dropped": n_dropped, "seconds": round(time.perf_counter() - t0, 1)}
    files.append(write_json_atomic(meta, out / "run.json"))
    res.files = files
    log.info("benchmark %s: %d tasks x %d models in %.1f s -> %s", s.name, meta["n_evaluated"], len(models),
             meta["seconds"], out)
    return res

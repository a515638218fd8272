"""The Markdown report of a benchmark run (``RESULTS_DIR/report.md``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from benchmark_tasks.card import (
    AGE_BANDS,
    ALL_TASKS,
    CALIBRATION_BINS,
    MIN_PER_CLASS,
    SUBGROUP_VARIABLES,
    audit_columns,
)
from benchmark_tasks.config import CATEGORIES, ProbeConfig
from benchmark_tasks.metrics import HEADROOM_MIN_GAIN
from benchmark_tasks.truth import TASK_CLASSES
from tokenizer.atomic import write_text_atomic

if TYPE_CHECKING:
    from benchmark_tasks.embeddings import EmbeddingSet
    from benchmark_tasks.run import BenchmarkResult
    from benchmark_tasks.suite import Suite

__all__ = ["write_report"]


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _ci(m: float, lo: float, hi: float) -> str:
    return f"{_f(m)} [{_f(lo, 2)}, {_f(hi, 2)}]" if np.isfinite(lo) else _f(m)


def _patients(row: Mapping[str, Any]) -> str:
    """`` · patients [lo, hi]``: the interval over test-patient resamples, when the row has one."""
    lo, hi = row.get("patient_ci_low"), row.get("patient_ci_high")
    return "" if lo is None or hi is None else f" · patients [{_f(lo)}, {_f(hi)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    """An audit value as a table cell (pipes escaped)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _f(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _headroom_section(result: BenchmarkResult, names: Sequence[str], probe: str, min_gain: float) -> list[str]:
    """Truth classes and the oracle's ceiling: mean AUROC and headroom per class (or category), per task."""
    r, summ = result.results, result.summary
    classes = result.task_classes
    if not (classes or result.oracle) or not r.height:
        return []
    out = ["", f"## Ceiling and headroom ({probe} probe)", ""]
    if result.oracle:
        out.append(f"The oracle (`{result.oracle}`) is an embedding of the synthetic hospital's hidden truth (planted "
                   "findings with severity and side, PDR, vigilance states, discharge and seizure counts, age), probed "
                   "like every model: each task's ceiling. Headroom captured = (AUROC − 0.5) / "
                   f"(oracle AUROC − 0.5); undefined (–) where the oracle's AUROC is ≤ 0.5 + {min_gain:g} or its 95% "
                   "interval reaches 0.5 (no ceiling distinguishable from chance: the label is not in the EEG, or "
                   "the test set is too small), and left out of the means. Not clipped: above 1 a model beat the "
                   "oracle's probe on that test set.")
    else:
        out.append("No oracle among the models (`--oracle HOSPITAL_DIR`): no headroom.")
    if classes:
        counts = ", ".join(f"{sum(v == k for v in classes.values())} {k}" for k in TASK_CLASSES)
        out += ["", f"Truth classes of the tasks ({counts}): planted = every matched code or finding has a simulated "
                   "EEG signature; negative = negative-control conditions (or their drugs) only; other = the rest."]
    groups = [k for k in TASK_CLASSES if classes] + [*CATEGORIES, "overall"]
    sub = summ.filter(pl.col("probe") == probe) if summ.height else summ
    present = [c for c in groups if sub.height and c in set(sub["category"].to_list())]
    rows = []
    for name in names:
        g = {x["category"]: x for x in sub.filter(pl.col("model") == name).iter_rows(named=True)} if sub.height else {}
        cells = []
        for c in present:
            if c not in g:
                cells += ["–", "–"]
                continue
            x = g[c]
            cells.append(_ci(x["mean_auroc"], x["ci_low"], x["ci_high"]) + f" (n={x['n_tasks']})")
            cells.append(("–" if x["mean_headroom"] is None else
                          _ci(x["mean_headroom"], x["headroom_ci_low"], x["headroom_ci_high"]))
                         + f" ({x['n_headroom']}/{x['n_tasks']})"
                         + ("" if x["pooled_headroom"] is None else f"; pooled {_f(x['pooled_headroom'])}"))
        rows.append([name, *cells])
    out += ["", "Mean AUROC [95% CI] (tasks) and mean headroom captured [95% CI] (tasks with a defined headroom / "
            "tasks); pooled = Σ(AUROC − 0.5) / Σ(oracle − 0.5) over those tasks, which weighs a task by its "
            "ceiling's gain instead of fully:", ""]
    out.append(_table(["model", *[h for c in present for h in (f"{c} AUROC", f"{c} headroom")]], rows))
    if result.oracle:
        pr = r.filter(pl.col("probe") == probe)
        wide = {(x["task"], x["model"]): x for x in pr.iter_rows(named=True)}
        tasks = pr["task"].unique(maintain_order=True).to_list()
        order = {k: i for i, k in enumerate(TASK_CLASSES)}
        tasks.sort(key=lambda t: order.get(classes.get(t, ""), len(order)))
        others = [n for n in names if n != result.oracle]
        rows = []
        for t in tasks:
            o = wide.get((t, result.oracle))
            rows.append([t, classes.get(t, "–"), _f(o["auroc"]) if o else "–"]
                        + [_f(wide[(t, n)]["headroom"], 2) if (t, n) in wide else "–" for n in others])
        undefined = sum(1 for t in tasks if (t, result.oracle) in wide and wide[(t, result.oracle)]["headroom"] is None)
        out += ["", f"Per task: the oracle's AUROC and each model's headroom captured ({undefined} of {len(tasks)} "
                "tasks without a defined headroom).", ""]
        out.append(_table(["task", "class", "oracle AUROC", *others], rows))
    return out


def _card_section(result: BenchmarkResult, names: Sequence[str], config: ProbeConfig,
                  plots: Sequence[Path]) -> list[str]:
    """The validity card: calibration, AUROC by subgroup, stage-overlap audit."""
    probe = config.primary
    out = ["", "## Validity card", "", "### Probe calibration (test sessions, pooled over tasks)", "",
           f"Expected calibration error over {CALIBRATION_BINS} equal-width probability bins (count-weighted mean of "
           "|positive rate − mean probability|; 0 = calibrated) and Brier score (mean squared error of the "
           "probability; 0.25 for a constant 0.5). Per-task values: `calibration.parquet`.", ""]
    cal = result.calibration
    if cal.height:
        pooled = cal.filter(pl.col("task") == ALL_TASKS)
        per_task = cal.filter(pl.col("task") != ALL_TASKS)
        rows = []
        for x in pooled.iter_rows(named=True):
            t = per_task.filter((pl.col("model") == x["model"]) & (pl.col("probe") == x["probe"]))
            rows.append([x["model"], x["probe"], str(x["n"]), _f(x["positive_rate"]), _f(x["mean_probability"]),
                         _f(x["ece"]), _f(x["brier"]), _f(float(t["ece"].median())) if t.height else "–"])
        out.append(_table(["model", "probe", "test predictions", "positive rate", "mean probability", "ECE", "Brier",
                           "median per-task ECE"], rows))
        rel = [p for p in plots if p.name == "reliability.png"]
        if rel:
            out += ["", f"![reliability](plots/{rel[0].name})"]
    else:
        out.append("No test predictions.")
    out += ["", f"### AUROC by subgroup ({probe} probe)", "",
            "Within each level of age band (years), sex, site and care setting, on the task's test sessions. "
            f"A subgroup with fewer than {MIN_PER_CLASS} positives or negatives has no AUROC (shown as `n/a "
            "(positives+/negatives−)`); the weakest estimable subgroup of each task is in **bold**. "
            "All probes: `subgroups.parquet`.", ""]
    sg = result.subgroups.filter(pl.col("probe") == probe) if result.subgroups.height else result.subgroups
    if sg.height:
        band = {label: f"{i:03d}" for i, (label, _, _) in enumerate(AGE_BANDS)}  # age bands in age order

        def order(level: tuple[str, str]) -> tuple[int, bool, str]:
            v, g = level
            return SUBGROUP_VARIABLES.index(v), g == "unknown", band.get(g, g) if v == "age_band" else g

        cols = sorted(sg.select("variable", "subgroup").unique().iter_rows(), key=order)
        for name in names:
            m = sg.filter(pl.col("model") == name)
            if not m.height:
                continue
            cell = {(x["task"], x["variable"], x["subgroup"]): x for x in m.iter_rows(named=True)}
            rows = []
            for t in m["task"].unique(maintain_order=True).to_list():
                cells = []
                for v, g in cols:
                    x = cell.get((t, v, g))
                    if x is None:
                        cells.append("")
                    elif x["auroc"] is None:
                        cells.append(f"n/a ({x['n_positive']}+/{x['n_negative']}−)")
                    else:
                        cells.append(f"**{_f(x['auroc'], 2)}**" if x["weakest"] else _f(x["auroc"], 2))
                weakest = next((x for (tt, _, _), x in cell.items() if tt == t and x["weakest"]), None)
                label = f"{weakest['variable']}={weakest['subgroup']}" if weakest else "none estimable"
                rows.append([t, *cells, label])
            counts = m.filter(pl.col("weakest")).group_by("variable", "subgroup").len().sort("len", descending=True)
            top = ", ".join(f"{v}={g} ({n})" for v, g, n in counts.head(3).iter_rows())
            out += [f"**{name}** — most often weakest: {top or 'none'}.", ""]
            out += [_table(["task", *[f"{v}={g}" for v, g in cols], "weakest"], rows), ""]
    else:
        out += ["No subgroup could be formed (no test predictions).", ""]
    out += ["### Stage-overlap audit", ""]
    if result.stage_audit:
        out += ["Per checkpoint model: the test patients and sessions of this suite its training stages saw "
                "(computed by the caller from the checkpoints' records; shown as given).", ""]
        cols = audit_columns(result.stage_audit)
        out.append(_table(cols, [[_cell(r.get(c)) for c in cols] for r in result.stage_audit]))
    else:
        out.append("No audit was given for this run (models from embedding stores or baselines only, or the caller "
                   "did not compute one): the overlap of their training stages with this suite's test patients is "
                   "not known here.")
    return out


def write_report(result: BenchmarkResult, suite: Suite, models: Sequence[EmbeddingSet], config: ProbeConfig, *,
                 coverage: dict[str, float], n_dropped: int, plots: Sequence[Path],
                 headroom_min_gain: float = HEADROOM_MIN_GAIN) -> Path:
    """Write ``report.md`` for a run and return its path."""
    r, s = result.results, suite.spec
    probe = config.primary
    names = [m.name for m in models]
    out: list[str] = [f"# Benchmark: suite {s.name} v{s.version}", ""]
    per_cat = ", ".join(f"{sum(t.category == c for t in s.tasks)} {c}" for c in CATEGORIES)
    out.append(f"{len(s.tasks)} tasks in the suite ({per_cat}); "
               f"{r['task'].n_unique() if r.height else 0} evaluated. Source: {s.source.n_sessions} sessions of "
               f"{s.source.n_patients} patients. Suite generated {s.created} by {s.generator}.")
    out += ["", "## Models", ""]
    out.append(_table(["model", "kind", "model id", "dim", "coverage", "held-out concepts"],
                      [[m.name + (" (primary)" if m.name == result.primary else ""),
                        m.kind + (" · baseline" if m.baseline else ""),
                        m.model_id or "–", str(m.dim), f"{coverage.get(m.name, 0):.1%}",
                        ", ".join(m.held_out) or "–"] for m in models]))
    if n_dropped:
        out += ["", f"{n_dropped} suite sessions lack an embedding in at least one model and are left out for all."]
    m = s.config.matching
    sp = s.config.splits
    out += ["", "## Protocol", "",
            f"* Controls: propensity-score matching on {', '.join(m.covariates)} (logistic PS, greedy nearest "
            "neighbour "
            f"on logit PS without replacement within each split, {m.ratio} control(s) per positive, caliper "
            f"{m.caliper if m.caliper is not None else 'none'} SD of logit PS); controls never carry the task's codes "
            f"({m.control_exclusion}).",
            f"* Splits by patient (salted SHA-256, train {sp.train:g} / val {sp.val:g} / test {sp.test:g}); the leak "
            "check and the suite's table digests passed before this run. Validation patients join training.",
            f"* Probes on frozen embeddings: logistic regression (C={config.logistic_c}, standardised) and a 2-layer "
            f"MLP (hidden {config.mlp.hidden}, GELU, dropout {config.mlp.dropout}, Adam lr {config.mlp.lr}, "
            f"{config.mlp.epochs} epochs, at least {config.mlp.min_steps} steps, batch {config.mlp.batch_size}) over "
            f"{config.seeds} seed(s), AUROC averaged over seeds.",
            f"* 95% intervals: percentile bootstrap over test patients ({config.n_bootstrap} resamples); category "
            "means and paired differences: first over tasks (how much tasks differ), then, after 'patients', over "
            "the same resamples of test patients for every task and model (the precision of this mean on these "
            "tasks; paired for differences). Normalised score = 2·(AUROC − 0.5): 0 chance, 1 perfect.",
            ""]
    out += [f"## Summary ({probe} probe)", ""]
    summ = result.summary
    cats = [c for c in (*CATEGORIES, "overall") if summ.height and c in set(summ["category"].to_list())]
    for pr in [probe] + [p for p in config.probes if p != probe]:
        sub = summ.filter(pl.col("probe") == pr) if summ.height else summ
        rows = []
        for name in names:
            g = ({x["category"]: x for x in sub.filter(pl.col("model") == name).iter_rows(named=True)}
                 if sub.height else {})
            rows.append([name] + [(_ci(g[c]["mean_auroc"], g[c]["ci_low"], g[c]["ci_high"]) + _patients(g[c])
                                   + f" (n={g[c]['n_tasks']})") if c in g else "–" for c in cats]
                        + [_f(g["overall"]["mean_score"]) if "overall" in g else "–"])
        if pr != probe:
            out += ["", f"{pr} probe:", ""]
        out.append(_table(["model", *[f"{c} AUROC [95% CI]" for c in cats], "overall score"], rows))
    comp = result.comparisons
    if comp.height:
        c = comp.filter(pl.col("probe") == probe)
        out += ["", f"## Paired differences ({probe} probe, AUROC of A − B over the same tasks)", ""]
        out.append(_table(["A", "B", "category", "tasks", "mean diff [95% CI]", "A better", "B better"],
                          [[x["model_a"], x["model_b"], x["category"], str(x["n_tasks"]),
                            _ci(x["mean_diff"], x["ci_low"], x["ci_high"]) + _patients(x), str(x["wins_a"]),
                            str(x["wins_b"])]
                           for x in c.iter_rows(named=True)]))
    out += _headroom_section(result, names, probe, headroom_min_gain)
    out += ["", "## Held-out concepts", ""]
    if result.heldout.height:
        out += ["Code tasks whose concepts were removed from the alignment of a model (read from its checkpoint's "
                "`held_out_concepts`), against the tasks it saw; every model is shown on the same tasks.", ""]
        out.append(_table(["held-out model", "tasks", "model", "n", "mean AUROC [95% CI]"],
                          [[x["heldout_model"], x["status"], x["model"], str(x["n_tasks"]),
                            _ci(x["mean_auroc"], x["ci_low"], x["ci_high"])]
                           for x in result.heldout.iter_rows(named=True)]))
    else:
        out.append("No model lists held-out concepts (pass an aligned checkpoint trained with `--held-out`).")
    out += ["", "## Balance", ""]
    stats = [t.stats for t in s.tasks if t.stats is not None]
    if stats:
        before = np.array([x.max_abs_smd_before for x in stats])
        after = np.array([x.max_abs_smd_after for x in stats])
        out.append(f"Largest |SMD| per task: median {np.median(before):.3f} before matching, {np.median(after):.3f} "
                   f"after; {int((after > 0.1).sum())} of {len(stats)} tasks keep a covariate level above 0.1 "
                   "after matching (small tasks: one site or setting level more or less moves the SMD). "
                   f"{sum(x.n_unmatched for x in stats)} positives found no control within the caliper.")
    out += ["", f"## Tasks ({probe} probe)", ""]
    if r.height:
        sub = r.filter(pl.col("probe") == probe)
        wide = {(x["task"], x["model"]): x for x in sub.iter_rows(named=True)}
        rows = []
        for t in s.tasks:
            first = next((wide[(t.name, n)] for n in names if (t.name, n) in wide), None)
            if first is None:
                continue
            rows.append([t.name, t.category + (f" · {first['task_class']}" if first["task_class"] else ""),
                         f"{first['n_train']} ({first['n_train_positive']})",
                         f"{first['n_test']} ({first['n_test_positive']})", _f(first["max_abs_smd_after"], 2)]
                        + [_ci(wide[(t.name, n)]["auroc"], wide[(t.name, n)]["ci_low"], wide[(t.name, n)]["ci_high"])
                           if (t.name, n) in wide else "–" for n in names])
        out.append(_table(["task", "category", "train (pos)", "test (pos)", "max SMD", *names], rows))
    if result.skipped:
        out += ["", "## Not evaluated", ""]
        out += [f"* {k}: {v}" for k, v in result.skipped.items()]
    out += _card_section(result, names, config, plots)
    figures = [p for p in plots if p.name != "reliability.png"]
    if figures:
        out += ["", "## Figures", ""]
        out += [f"![{p.stem}](plots/{p.name})" for p in figures]
    out.append("")
    return write_text_atomic("\n".join(out), result.out / "report.md")

"""The Markdown report of a benchmark run (``RESULTS_DIR/report.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from benchmark_tasks.config import CATEGORIES, ProbeConfig
from benchmark_tasks.tables import write_text_atomic

if TYPE_CHECKING:
    from benchmark_tasks.embeddings import EmbeddingSet
    from benchmark_tasks.run import BenchmarkResult
    from benchmark_tasks.suite import Suite

__all__ = ["write_report"]


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _ci(m: float, lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return _f(m)
    return f"{_f(m)} [{_f(lo, 2)}, {_f(hi, 2)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(result: BenchmarkResult, suite: Suite, models: Sequence[EmbeddingSet], config: ProbeConfig, *,
                 coverage: dict[str, float], n_dropped: int, plots: Sequence[Path]) -> Path:
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
            "means: bootstrap over tasks. Normalised score = 2·(AUROC − 0.5): 0 chance, 1 perfect.",
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
            rows.append([name] + [(_ci(g[c]["mean_auroc"], g[c]["ci_low"], g[c]["ci_high"]) + f" (n={g[c]['n_tasks']})")
                                  if c in g else "–" for c in cats]
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
                            _ci(x["mean_diff"], x["ci_low"], x["ci_high"]), str(x["wins_a"]), str(x["wins_b"])]
                           for x in c.iter_rows(named=True)]))
    out += ["", "## Held-out concepts", ""]
    if result.heldout.height:
        out.append("Code tasks whose concepts were removed from the alignment of a model (read from its checkpoint's "
                   "`held_out_concepts`), against the tasks it saw; every model is shown on the same tasks.")
        out.append("")
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
            rows.append([t.name, t.category, f"{first['n_train']} ({first['n_train_positive']})",
                         f"{first['n_test']} ({first['n_test_positive']})", _f(first["max_abs_smd_after"], 2)]
                        + [_ci(wide[(t.name, n)]["auroc"], wide[(t.name, n)]["ci_low"], wide[(t.name, n)]["ci_high"])
                           if (t.name, n) in wide else "–" for n in names])
        out.append(_table(["task", "category", "train (pos)", "test (pos)", "max SMD", *names], rows))
    if result.skipped:
        out += ["", "## Not evaluated", ""]
        out += [f"* {k}: {v}" for k, v in result.skipped.items()]
    if plots:
        out += ["", "## Figures", ""]
        out += [f"![{p.stem}](plots/{p.name})" for p in plots]
    out.append("")
    return write_text_atomic("\n".join(out), result.out / "report.md")

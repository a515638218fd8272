"""Figures of a benchmark run (matplotlib, Agg backend; PNG under ``RESULTS_DIR/plots``).

* ``auroc_by_category.png``: mean AUROC per category and model, 95% intervals over tasks;
* ``scatter_<model>_vs_<reference>.png``: per-task AUROC of a model against the
  reference baseline, with each task's bootstrap interval on both axes;
* ``balance.png``: per task, the largest |standardised mean difference| of the matching
  covariates before and after matching;
* ``reliability.png``: reliability diagram of each model's probe probabilities (primary
  probe, test sessions pooled over tasks, 10 equal-width bins), with the ECE in the legend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from benchmark_tasks.card import CALIBRATION_BINS
from benchmark_tasks.config import CATEGORIES
from tokenizer.atomic import atomic_path

if TYPE_CHECKING:
    from benchmark_tasks.run import BenchmarkResult
    from benchmark_tasks.suite import Suite

__all__ = ["draw_all", "plot_auroc_by_category", "plot_balance", "plot_reliability", "plot_scatter"]

log = logging.getLogger(__name__)

_COLOURS = {"phenotype": "#1f77b4", "medication": "#2ca02c", "finding": "#d62728"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=path.suffix) as tmp:  # savefig reads the format from the suffix
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_auroc_by_category(summary: pl.DataFrame, probe: str, path: Path) -> Path:
    """Grouped bars: mean AUROC per category (and overall) per model, with 95% intervals."""
    plt = _plt()
    sub = summary.filter(pl.col("probe") == probe)
    models = sub["model"].unique(maintain_order=True).to_list()
    cats = [c for c in (*CATEGORIES, "overall") if c in set(sub["category"].to_list())]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(cats) * max(1, len(models)) ** 0.5 + 2), 3.8))
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        g = {r["category"]: r for r in sub.filter(pl.col("model") == m).iter_rows(named=True)}
        x = np.arange(len(cats)) + (i - (len(models) - 1) / 2) * width
        y = np.array([g[c]["mean_auroc"] if c in g else np.nan for c in cats])
        lo = np.array([g[c]["ci_low"] if c in g else np.nan for c in cats])
        hi = np.array([g[c]["ci_high"] if c in g else np.nan for c in cats])
        err = np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)])
        ax.bar(x, y - 0.5, width, bottom=0.5, label=m, yerr=err, capsize=2)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(cats)), [f"{c}\n(n={int(sub.filter(pl.col('category') == c)['n_tasks'].max())})"
                                         for c in cats])
    ax.set(ylabel=f"mean AUROC ({probe} probe)", ylim=(0.3, 1.0))
    ax.legend(fontsize=8, frameon=False, ncol=min(3, len(models)))
    ax.set_title("AUROC by task category (95% CI over tasks)")
    return _save(fig, path)


def plot_scatter(results: pl.DataFrame, model: str, reference: str, probe: str, path: Path) -> Path:
    """Per-task AUROC, ``model`` (y) against ``reference`` (x), with intervals, by category."""
    plt = _plt()
    r = results.filter(pl.col("probe") == probe)
    a = r.filter(pl.col("model") == model).select("task", "category", "auroc", "ci_low", "ci_high")
    b = r.filter(pl.col("model") == reference).select(
        "task", pl.col("auroc").alias("ref"), pl.col("ci_low").alias("ref_lo"), pl.col("ci_high").alias("ref_hi"))
    j = a.join(b, on="task")
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    for cat in CATEGORIES:
        c = j.filter(pl.col("category") == cat)
        if c.height == 0:
            continue
        x, y = c["ref"].to_numpy(), c["auroc"].to_numpy()
        xerr = np.vstack([np.nan_to_num(x - c["ref_lo"].to_numpy()), np.nan_to_num(c["ref_hi"].to_numpy() - x)])
        yerr = np.vstack([np.nan_to_num(y - c["ci_low"].to_numpy()), np.nan_to_num(c["ci_high"].to_numpy() - y)])
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=4, color=_COLOURS[cat], ecolor=_COLOURS[cat],
                    elinewidth=0.6, alpha=0.8, label=f"{cat} ({c.height})")
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.axvline(0.5, color="grey", lw=0.5)
    ax.set(xlim=(0.0, 1.02), ylim=(0.0, 1.02), xlabel=f"{reference} AUROC", ylabel=f"{model} AUROC")
    wins = int((j["auroc"] > j["ref"]).sum())
    ax.set_title(f"{model} vs {reference} ({probe}): better on {wins}/{j.height}", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return _save(fig, path)


def plot_balance(balance: pl.DataFrame, path: Path, tasks: list[str] | None = None) -> Path:
    """Largest |SMD| per task before and after matching (a love plot, or a scatter for many tasks)."""
    plt = _plt()
    agg = (balance.with_columns(pl.col("smd_before").abs(), pl.col("smd_after").abs())
           .group_by("task", maintain_order=True)
           .agg(pl.col("smd_before").filter(pl.col("smd_before").is_finite()).max().alias("before"),
                pl.col("smd_after").filter(pl.col("smd_after").is_finite()).max().alias("after")))
    if tasks is not None:
        agg = agg.filter(pl.col("task").is_in(tasks))
    n = agg.height
    if n <= 60:
        fig, ax = plt.subplots(figsize=(5.5, max(2.5, 0.2 * n + 1)))
        y = np.arange(n)
        ax.hlines(y, agg["after"].to_numpy(), agg["before"].to_numpy(), color="lightgrey", lw=1)
        ax.plot(agg["before"].to_numpy(), y, "o", mfc="none", color="#444", label="before matching")
        ax.plot(agg["after"].to_numpy(), y, "o", color="#1f77b4", label="after matching")
        ax.set_yticks(y, agg["task"].to_list(), fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("max |standardised mean difference| (age, sex, site, setting)")
    else:
        fig, ax = plt.subplots(figsize=(4.6, 4.6))
        ax.plot(agg["before"].to_numpy(), agg["after"].to_numpy(), "o", ms=3, alpha=0.6)
        top = float(np.nanmax(agg["before"].to_numpy())) if n else 1.0
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.set(xlabel="max |SMD| before matching", ylabel="max |SMD| after matching")
    ax.axvline(0.1, color="r", lw=0.8, ls=":") if n <= 60 else ax.axhline(0.1, color="r", lw=0.8, ls=":")
    ax.legend(fontsize=7, frameon=False) if n <= 60 else None
    ax.set_title(f"Covariate balance of {n} tasks", fontsize=9)
    return _save(fig, path)


def plot_reliability(predictions: pl.DataFrame, probe: str, path: Path, *, n_bins: int = CALIBRATION_BINS) -> Path:
    """Reliability diagram: observed positive rate against mean probability per bin, one line per model."""
    from benchmark_tasks.metrics import expected_calibration_error, reliability_bins

    plt = _plt()
    sub = predictions.filter(pl.col("probe") == probe)
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="calibrated")
    edges = np.linspace(0, 1, n_bins + 1)
    models = sub["model"].unique(maintain_order=True).to_list()
    width = (edges[1] - edges[0]) / max(1, len(models))
    for i, m in enumerate(models):
        g = sub.filter(pl.col("model") == m)
        y, p = g["label"].to_numpy().astype(int), g["score"].to_numpy()
        mean_p, frac, count = reliability_bins(y, p, n_bins=n_bins)
        ok = count > 0
        ece = expected_calibration_error(y, p, n_bins=n_bins)
        line, = ax.plot(mean_p[ok], frac[ok], "o-", ms=3, lw=1, label=f"{m} (ECE {ece:.3f})")
        axh.bar(edges[:-1] + i * width, count, width, align="edge", color=line.get_color(), alpha=0.7)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed positive rate")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.set_title(f"Probe calibration ({probe}, test sessions of all tasks)", fontsize=9)
    axh.set(xlabel=f"predicted probability ({n_bins} equal-width bins)", ylabel="sessions")
    return _save(fig, path)


def draw_all(result: BenchmarkResult, suite: Suite, probe: str) -> list[Path]:
    """All figures of a run; returns their paths."""
    d = result.out / "plots"
    files = [plot_auroc_by_category(result.summary, probe, d / "auroc_by_category.png")]
    if result.reference is not None:
        from benchmark_tasks.run import safe_name

        for m in result.results["model"].unique(maintain_order=True).to_list():
            if m != result.reference:
                files.append(plot_scatter(result.results, m, result.reference, probe,
                                          d / f"scatter_{safe_name(m)}_vs_{safe_name(result.reference)}.png"))
    evaluated = result.results["task"].unique(maintain_order=True).to_list()
    files.append(plot_balance(suite.balance, d / "balance.png", evaluated))
    if result.predictions.height:
        files.append(plot_reliability(result.predictions, probe, d / "reliability.png"))
    return files

"""The validity card of a benchmark run: probe calibration, AUROC by subgroup, stage-overlap audit.

Computed from the run's test-set predictions (``predictions.parquet``) and the suite's
cohort; written as ``calibration.parquet`` and ``subgroups.parquet``, drawn as
``plots/reliability.png`` and rendered in ``report.md``.

* **Calibration** per model × probe × task, and pooled over tasks (``task = "(all)"``):
  expected calibration error over 10 equal-width probability bins and Brier score
  (:mod:`benchmark_tasks.metrics`), next to the mean probability and the positive rate.
  Probes are fitted on training patients whose positive share is the task's (1 positive
  to ``ratio`` matched controls), so a calibrated probe's mean probability is near it.
* **Subgroups**: the AUROC of every model × probe × task within each level of age band
  (:data:`AGE_BANDS`), sex, site and care setting. A subgroup with fewer than
  ``min_per_class`` test positives or negatives gets no AUROC; its row says why
  (``status``), it is not dropped. Per model × probe × task the lowest AUROC over the
  estimable subgroups is flagged ``weakest``.
* **Stage-overlap audit**: rows handed to :func:`benchmark_tasks.run.run_benchmark`
  (``stage_audit``: per checkpoint model, how many test patients / sessions its training
  stages saw); rendered as given, never computed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from benchmark_tasks.metrics import brier_score, expected_calibration_error
from benchmark_tasks.tables import require_columns

__all__ = [
    "AGE_BANDS",
    "ALL_TASKS",
    "CALIBRATION_BINS",
    "CALIBRATION_SCHEMA",
    "MIN_PER_CLASS",
    "SUBGROUP_SCHEMA",
    "SUBGROUP_VARIABLES",
    "age_band",
    "audit_columns",
    "calibration_table",
    "subgroup_table",
]

#: Age bands of the subgroup table: (label, lower bound inclusive, upper bound exclusive).
AGE_BANDS: tuple[tuple[str, float, float], ...] = (("<18", 0.0, 18.0), ("18-64", 18.0, 65.0), (">=65", 65.0, np.inf))

#: Subgroup variables, in report order (``age_band`` is derived from the cohort's ``age_years``).
SUBGROUP_VARIABLES: tuple[str, ...] = ("age_band", "sex", "site", "setting")

#: Equal-width probability bins of the expected calibration error.
CALIBRATION_BINS = 10

#: Fewest test positives and test negatives for a subgroup AUROC.
MIN_PER_CLASS = 5

#: ``task`` value of the rows pooled over every task.
ALL_TASKS = "(all)"

CALIBRATION_SCHEMA: dict[str, Any] = {
    "model": pl.String, "probe": pl.String, "task": pl.String, "n": pl.Int64, "n_positive": pl.Int64,
    "positive_rate": pl.Float64, "mean_probability": pl.Float64, "ece": pl.Float64, "brier": pl.Float64,
}

SUBGROUP_SCHEMA: dict[str, Any] = {
    "model": pl.String, "probe": pl.String, "task": pl.String, "variable": pl.String, "subgroup": pl.String,
    "n": pl.Int64, "n_positive": pl.Int64, "n_negative": pl.Int64, "auroc": pl.Float64, "status": pl.String,
    "weakest": pl.Boolean,
}


def age_band(age: float | None) -> str:
    """The :data:`AGE_BANDS` label of an age in years (``unknown`` when missing)."""
    if age is None or not np.isfinite(age):
        return "unknown"
    return next((label for label, lo, hi in AGE_BANDS if lo <= age < hi), "unknown")


def _check_predictions(predictions: pl.DataFrame) -> None:
    require_columns(predictions, ("model", "probe", "task", "session_id", "label", "score"), "predictions")


def calibration_table(predictions: pl.DataFrame, *, n_bins: int = CALIBRATION_BINS) -> pl.DataFrame:
    """ECE and Brier score per model × probe × task, and pooled over tasks (task ``"(all)"``).

    Parameters
    ----------
    predictions : polars.DataFrame
        ``model``, ``probe``, ``task``, ``session_id``, ``label``, ``score`` (test sessions).
    n_bins : int
        Equal-width bins of the ECE.

    Returns
    -------
    polars.DataFrame
        :data:`CALIBRATION_SCHEMA`, pooled rows first per model and probe.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, found {n_bins}")
    _check_predictions(predictions)
    rows: list[dict[str, Any]] = []

    def row(model: str, probe: str, task: str, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
        return {"model": model, "probe": probe, "task": task, "n": len(y), "n_positive": int(y.sum()),
                "positive_rate": float(y.mean()), "mean_probability": float(p.mean()),
                "ece": expected_calibration_error(y, p, n_bins=n_bins), "brier": brier_score(y, p)}

    for (model, probe), g in predictions.group_by(["model", "probe"], maintain_order=True):
        rows.append(row(model, probe, ALL_TASKS, g["label"].to_numpy().astype(int), g["score"].to_numpy()))
        for (task,), t in g.group_by("task", maintain_order=True):
            rows.append(row(model, probe, task, t["label"].to_numpy().astype(int), t["score"].to_numpy()))
    return pl.DataFrame(rows, schema=CALIBRATION_SCHEMA)


def subgroup_table(predictions: pl.DataFrame, cohort: pl.DataFrame, *,
                   min_per_class: int = MIN_PER_CLASS) -> pl.DataFrame:
    """AUROC per model × probe × task within each subgroup, the weakest one flagged.

    Parameters
    ----------
    predictions : polars.DataFrame
        Test-set predictions (``model``, ``probe``, ``task``, ``session_id``, ``label``, ``score``).
    cohort : polars.DataFrame
        The suite's cohort (``session_id``, ``age_years``, ``sex``, ``site``, ``setting``).
    min_per_class : int
        Fewest positives and negatives for a subgroup AUROC; smaller subgroups are
        kept with ``auroc`` null and a ``status`` naming the shortfall.

    Returns
    -------
    polars.DataFrame
        :data:`SUBGROUP_SCHEMA`; levels in order of first appearance, missing values as
        ``unknown``. ``weakest`` marks the lowest AUROC of each model × probe × task
        among its estimable subgroups (none when no subgroup is estimable).
    """
    if min_per_class < 1:
        raise ValueError(f"min_per_class must be >= 1, found {min_per_class}")
    _check_predictions(predictions)
    require_columns(cohort, ("session_id", "age_years", "sex", "site", "setting"), "cohort")
    age = pl.col("age_years").cast(pl.Float64)
    band = pl.when(age.is_null() | age.is_nan()).then(pl.lit("unknown"))
    for label, lo, hi in AGE_BANDS:  # the vectorised form of age_band()
        band = band.when((age >= lo) & (age < hi)).then(pl.lit(label))
    cov = cohort.select("session_id", band.otherwise(pl.lit("unknown")).alias("age_band"),
                        *(pl.col(c).cast(pl.String).fill_null("unknown") for c in ("sex", "site", "setting")))
    keys = ["model", "probe", "task"]
    long = (predictions.select(*keys, "session_id", "label", "score")
            .join(cov.unique("session_id"), on="session_id", how="left")
            .with_columns(pl.col(v).fill_null("unknown") for v in SUBGROUP_VARIABLES)
            .unpivot(index=[*keys, "label", "score"], on=list(SUBGROUP_VARIABLES), variable_name="variable",
                     value_name="subgroup"))
    cell = [*keys, "variable", "subgroup"]
    # AUROC as the Mann-Whitney statistic of average ranks within each cell (ties count one half, as
    # metrics.auroc), computed for all cells at once instead of one Python call per cell
    stats = (long.with_columns(pl.col("score").rank("average").over(cell).alias("_rank"))
             .group_by(cell, maintain_order=True)
             .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("label").cast(pl.Int64).sum().alias("n_positive"),
                  (pl.col("_rank") * pl.col("label")).sum().alias("_rank_sum"))
             .with_columns((pl.col("n") - pl.col("n_positive")).alias("n_negative")))
    ok = (pl.col("n_positive") >= min_per_class) & (pl.col("n_negative") >= min_per_class)
    u = pl.col("_rank_sum") - pl.col("n_positive") * (pl.col("n_positive") + 1) / 2
    few_pos = pl.when(pl.col("n_positive") < min_per_class).then(pl.format("{} positives", "n_positive"))
    few_neg = pl.when(pl.col("n_negative") < min_per_class).then(pl.format("{} negatives", "n_negative"))
    stats = stats.with_columns(
        pl.when(ok).then(u / (pl.col("n_positive") * pl.col("n_negative"))).otherwise(None).alias("auroc"),
        pl.when(ok).then(pl.lit("ok")).otherwise(
            pl.format("too few: {} (< {})", pl.concat_str(few_pos, few_neg, separator=" and ", ignore_nulls=True),
                      pl.lit(min_per_class))).alias("status"))
    # rows of one model × probe × task together, variables in report order, levels in order of appearance
    first = predictions.select(keys).unique(maintain_order=True).with_row_index("_k")
    table = (stats.select([k for k in SUBGROUP_SCHEMA if k != "weakest"])
             .join(first, on=keys, how="left", maintain_order="left")
             .with_columns(pl.col("variable").replace_strict({v: i for i, v in enumerate(SUBGROUP_VARIABLES)},
                                                             return_dtype=pl.Int64).alias("_v"))
             .sort("_k", "_v", maintain_order=True).drop("_k", "_v"))
    # the weakest subgroup: the lowest estimable AUROC of each model × probe × task (first one on ties)
    order = pl.int_range(pl.len()).alias("_row")
    lowest = (table.with_columns(order).filter(pl.col("auroc").is_not_null())
              .sort("auroc", "_row").group_by(keys, maintain_order=True).first().select("_row"))
    return (table.with_columns(order).with_columns(pl.col("_row").is_in(lowest["_row"].implode()).alias("weakest"))
            .drop("_row").select(list(SUBGROUP_SCHEMA)))


def audit_columns(audit: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys of the stage-overlap audit rows, in order of first appearance (``model`` first)."""
    cols = list(dict.fromkeys(str(k) for r in audit for k in r))
    return (["model"] + [c for c in cols if c != "model"]) if "model" in cols else cols

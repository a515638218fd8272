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

from benchmark_tasks.metrics import auroc, brier_score, expected_calibration_error
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


def _subgroup_rows(model: str, probe: str, task: str, g: pl.DataFrame, min_per_class: int) -> list[dict[str, Any]]:
    rows = []
    for var in SUBGROUP_VARIABLES:
        for (level,), sub in g.group_by(var, maintain_order=True):
            y = sub["label"].to_numpy().astype(int)
            npos, nneg = int(y.sum()), int(len(y) - y.sum())
            if npos < min_per_class or nneg < min_per_class:
                short = [f"{n} {what}" for n, what in ((npos, "positives"), (nneg, "negatives")) if n < min_per_class]
                status, auc = f"too few: {' and '.join(short)} (< {min_per_class})", None
            else:
                status, auc = "ok", auroc(y, sub["score"].to_numpy())
            rows.append({"model": model, "probe": probe, "task": task, "variable": var,
                         "subgroup": "unknown" if level is None else str(level), "n": len(y), "n_positive": npos,
                         "n_negative": nneg, "auroc": auc, "status": status, "weakest": False})
    done = [r for r in rows if r["auroc"] is not None]
    if done:
        min(done, key=lambda r: r["auroc"])["weakest"] = True
    return rows


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
    cov = cohort.select("session_id", pl.col("age_years").map_elements(age_band, return_dtype=pl.String,
                                                                       skip_nulls=False).alias("age_band"),
                        *(pl.col(c).cast(pl.String).fill_null("unknown") for c in ("sex", "site", "setting")))
    j = predictions.join(cov.unique("session_id"), on="session_id", how="left").with_columns(
        pl.col(v).fill_null("unknown") for v in SUBGROUP_VARIABLES)
    rows: list[dict[str, Any]] = []
    for (model, probe, task), g in j.group_by(["model", "probe", "task"], maintain_order=True):
        rows += _subgroup_rows(model, probe, task, g, min_per_class)
    return pl.DataFrame(rows, schema=SUBGROUP_SCHEMA)


def audit_columns(audit: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys of the stage-overlap audit rows, in order of first appearance (``model`` first)."""
    keys: dict[str, None] = {}
    for r in audit:
        keys.update(dict.fromkeys(str(k) for k in r))
    cols = list(keys)
    return (["model"] + [c for c in cols if c != "model"]) if "model" in keys else cols

"""Precision of a category's mean AUROC over a fixed task set, and what a larger hospital buys.

The summaries of a benchmark run (:func:`benchmark_tasks.metrics.mean_ci` over tasks) give
an interval for the mean AUROC by resampling **tasks**: it says how different the tasks
are, and does not shrink with more patients. The question "is the measured mean precise
enough to tell two models apart?" is about the **test patients**: here one bootstrap
resample of the test patients (with all their sessions) is applied to every task at once,
each task's AUROC is recomputed on it from the saved test predictions, and the tasks'
AUROCs are averaged; the percentile interval of that average is the patient-level
interval of the mean. Tasks sharing patients (a patient positive for one task is often a
control of another) move together in a resample, so the interval carries their
correlation.

For planning, :func:`auroc_variance` is Hanley & McNeil's (1982) variance of one AUROC
from its positives and controls, and :func:`projected_half_width` the half-width of a mean
over tasks at other sizes; the ``design_effect`` (measured variance of the mean over the
variance the independent per-task formula gives) carries what the formula leaves out:
correlation between tasks, patients with several sessions, the probe's own variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import polars as pl

from benchmark_tasks.metrics import _weighted_auroc, auroc, percentile_interval

__all__ = ["auroc_variance", "mean_interval", "patient_bootstrap_aurocs", "patient_bootstrap_mean_auroc",
           "patient_bootstrap_mean_difference", "projected_half_width"]

_PRED_COLUMNS = ("task", "session_id", "label", "score")


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be within (0, 1), found {level}")


def patient_bootstrap_aurocs(predictions: pl.DataFrame, labels: pl.DataFrame, tasks: Sequence[str] | None = None,
                             *, n_boot: int = 1000, seed: int = 0, chunk: int = 200
                             ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every task's AUROC and its values under shared patient resamples.

    Parameters
    ----------
    predictions : polars.DataFrame
        Test-set scores of **one** model and probe (``predictions.parquet`` of a benchmark
        run, filtered): columns ``task``, ``session_id``, ``label`` (0/1), ``score``; ``model``
        and ``probe``, when present, must hold one value each.
    labels : polars.DataFrame
        ``session_id`` → ``patient_id`` (a suite's ``labels`` or ``cohort`` table; other
        columns are ignored).
    tasks : sequence of str, optional
        Tasks to evaluate, in this order (default: every task of ``predictions``, sorted).
    n_boot : int
        Resamples of the test patients (0: none).
    seed : int
    chunk : int
        Resamples drawn at once (bounds memory to ``chunk`` times the sessions of a task).
        The draws are those of :func:`benchmark_tasks.metrics.bootstrap_auroc` with the
        same ``seed`` and ``chunk`` over the same patients, so for a single task both give
        the same interval.

    Returns
    -------
    tasks : list of str
    point : ndarray, (n_tasks,)
        AUROC of each task on its test predictions.
    boot : ndarray, (n_boot, n_tasks)
        AUROC of each task in each resample; NaN where a resample left a task without
        positives or without controls.

    Raises
    ------
    ValueError
        Missing columns, several models or probes, a task without predictions or with one
        class, or a session without a patient.
    """
    missing = [c for c in _PRED_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions: columns {list(_PRED_COLUMNS)} expected, missing {missing}")
    for col in ("model", "probe"):
        if col in predictions.columns and predictions[col].n_unique() > 1:
            raise ValueError(f"predictions of one {col} expected, found {sorted(predictions[col].unique().to_list())}; "
                             f"filter on {col!r} first")
    if not {"session_id", "patient_id"} <= set(labels.columns):
        raise ValueError(f"labels: columns session_id and patient_id expected, found {labels.columns}")
    if n_boot < 0 or chunk < 1:
        raise ValueError(f"n_boot >= 0 and chunk >= 1 expected, found n_boot={n_boot}, chunk={chunk}")
    present = sorted(predictions["task"].unique().to_list())
    names = present if tasks is None else list(tasks)
    if not names:
        raise ValueError("no task to evaluate")
    unknown = sorted(set(names) - set(present))
    if unknown:
        raise ValueError(f"{len(unknown)} tasks have no predictions, e.g. {unknown[:3]}")
    patient_of = labels.select("session_id", "patient_id").unique(subset="session_id", keep="first")
    pred = predictions.filter(pl.col("task").is_in(names)).join(patient_of, on="session_id", how="left")
    orphans = pred.filter(pl.col("patient_id").is_null())
    if orphans.height:
        raise ValueError(f"{orphans.height} predicted sessions have no patient in labels, e.g. "
                         f"{orphans['session_id'][0]!r}")
    # one index per test patient over all the tasks: the unit a resample draws
    patients, pidx = np.unique(pred["patient_id"].to_numpy(), return_inverse=True)
    pred = pred.with_columns(pl.Series("_p", pidx))
    by_task = {k[0]: g for k, g in pred.group_by("task")}
    data = []
    point = np.empty(len(names))
    for k, name in enumerate(names):
        g = by_task[name]
        y, s = g["label"].to_numpy().astype(int), g["score"].to_numpy().astype(float)
        if len(np.unique(y)) != 2:
            raise ValueError(f"task {name!r}: its test predictions need both classes, found {np.unique(y).tolist()}")
        point[k] = auroc(y, s)
        order = np.argsort(s, kind="mergesort")  # sorted once here, not once per chunk of resamples
        data.append((y[order], s[order], g["_p"].to_numpy()[order]))
    n_p = len(patients)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, len(names)))
    for a in range(0, n_boot, chunk):
        b = min(chunk, n_boot - a)
        draws = rng.integers(0, n_p, size=(b, n_p)) + (np.arange(b) * n_p)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n_p).reshape(b, n_p).astype(float)
        for k, (y, s, p) in enumerate(data):
            boot[a:a + b, k] = _weighted_auroc(y, s, counts[:, p])
    return names, point, boot


def patient_bootstrap_mean_auroc(predictions: pl.DataFrame, labels: pl.DataFrame, tasks: Sequence[str] | None = None,
                                 *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                                 ) -> tuple[float, float, float]:
    """Mean AUROC over tasks and its percentile interval over resamples of the test patients.

    The same resample of test patients serves every task (see the module docstring);
    within a resample, a task left with one class is left out of that resample's mean.
    The mean is of AUROCs recomputed from the saved scores: for the MLP probe these are
    the seed-averaged scores, so it can differ in the third decimal from the mean of a
    run's ``results.parquet`` (a mean of per-seed AUROCs).

    Parameters
    ----------
    predictions, labels, tasks, n_boot, seed
        As for :func:`patient_bootstrap_aurocs`.
    level : float
        Coverage of the interval.

    Returns
    -------
    mean, low, high : float
        NaN bounds when ``n_boot`` is 0 or no resample defines a mean.
    """
    _check_level(level)
    _, point, boot = patient_bootstrap_aurocs(predictions, labels, tasks, n_boot=n_boot, seed=seed)
    return mean_interval(point, boot, level)


def mean_interval(point: np.ndarray, boot: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``point`` (tasks) and the percentile interval of the per-resample means (NaN tasks left out).

    ``boot`` is ``(n_boot, n_tasks)`` from :func:`patient_bootstrap_aurocs`; a difference of
    two models' arrays (same resamples) gives the paired interval.
    """
    m = float(point.mean())
    if boot.shape[0] == 0:
        return m, float("nan"), float("nan")
    ok = np.isfinite(boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(ok, boot, 0.0).sum(1) / ok.sum(1)
    return percentile_interval(m, means, level)


def patient_bootstrap_mean_difference(predictions_a: pl.DataFrame, predictions_b: pl.DataFrame, labels: pl.DataFrame,
                                      tasks: Sequence[str] | None = None, *, n_boot: int = 1000, seed: int = 0,
                                      level: float = 0.95) -> tuple[float, float, float]:
    """Paired difference of two models' mean AUROC over tasks (A - B), resampling test patients.

    Both models are scored on the same resamples (the same test sessions and seed give the
    same draws), so what the two share (the patients, their difficulty) cancels in the
    difference: the interval of "A beats B by x on these tasks" at the patient level.

    Parameters
    ----------
    predictions_a, predictions_b : polars.DataFrame
        Test predictions of the two models (one probe each), over the same task and session pairs.
    labels, tasks, n_boot, seed, level
        As for :func:`patient_bootstrap_mean_auroc`.

    Returns
    -------
    diff, low, high : float

    Raises
    ------
    ValueError
        The two models were not scored on the same sessions of the tasks.
    """
    _check_level(level)
    names = sorted(predictions_a["task"].unique().to_list()) if tasks is None else list(tasks)
    key = ["task", "session_id"]
    pairs_a = predictions_a.filter(pl.col("task").is_in(names)).select(key).sort(key)
    pairs_b = predictions_b.filter(pl.col("task").is_in(names)).select(key).sort(key)
    if not pairs_a.equals(pairs_b):
        raise ValueError("the two models' predictions cover different task/session pairs; compare them on the "
                         "same test sessions (a run's predictions.parquet, one probe)")
    _, pa, ba = patient_bootstrap_aurocs(predictions_a, labels, names, n_boot=n_boot, seed=seed)
    _, pb, bb = patient_bootstrap_aurocs(predictions_b, labels, names, n_boot=n_boot, seed=seed)
    return mean_interval(pa - pb, ba - bb, level)


def auroc_variance(auc: float | np.ndarray, n_pos: float | np.ndarray, n_neg: float | np.ndarray
                   ) -> float | np.ndarray:
    """Hanley & McNeil's (1982) sampling variance of an AUROC from ``n_pos`` positives and ``n_neg`` controls.

    ``[A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)] / (n_pos n_neg)`` with
    ``Q1 = A/(2-A)``, ``Q2 = 2A^2/(1+A)``: for a fixed AUROC it falls about as
    ``1/n_pos`` when controls outnumber positives.

    Raises
    ------
    ValueError
        An AUROC outside [0, 1] or fewer than one positive or control.
    """
    a = np.asarray(auc, dtype=float)
    n1, n0 = np.asarray(n_pos, dtype=float), np.asarray(n_neg, dtype=float)
    if np.any((a < 0) | (a > 1)) or np.any(n1 < 1) or np.any(n0 < 1):
        raise ValueError("AUROC within [0, 1] and at least one positive and one control expected")
    q1, q2 = a / (2 - a), 2 * a ** 2 / (1 + a)
    v = (a * (1 - a) + (n1 - 1) * (q1 - a ** 2) + (n0 - 1) * (q2 - a ** 2)) / (n1 * n0)
    return v if np.ndim(v) else float(v)


def projected_half_width(auc: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray, *, design_effect: float = 1.0,
                         level: float = 0.95) -> float:
    """Half-width of a normal interval for the mean AUROC of tasks with these sizes.

    ``z * sqrt(design_effect * sum_k var_k) / K`` with ``var_k`` from
    :func:`auroc_variance` (tasks taken as independent, then scaled by ``design_effect``).

    Parameters
    ----------
    auc, n_pos, n_neg : ndarray, (K,)
        Each task's AUROC (e.g. one measured at a smaller size) and test positives and controls.
    design_effect : float
        Measured variance of the mean over ``sum_k var_k / K^2`` (1: independent tasks
        that follow the formula).
    level : float
    """
    _check_level(level)
    if design_effect <= 0:
        raise ValueError(f"design_effect must be > 0, found {design_effect}")
    v = np.atleast_1d(auroc_variance(auc, n_pos, n_neg))
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return float(z * np.sqrt(design_effect * v.sum()) / len(v))

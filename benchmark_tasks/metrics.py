"""AUROC, its patient-clustered bootstrap interval, and the normalised score.

The normalised score follows NeuralBench: 0 is the dummy (chance) level and 1 is
perfect, so for AUROC ``score = (AUROC - 0.5) / (1 - 0.5) = 2 * (AUROC - 0.5)``; a model
worse than chance scores below 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["auroc", "bootstrap_auroc", "mean_ci", "normalised_score"]


def normalised_score(auc: float | np.ndarray) -> float | np.ndarray:
    """``2 * (AUROC - 0.5)``: 0 = chance, 1 = perfect (NeuralBench's normalisation)."""
    return 2.0 * (np.asarray(auc, dtype=float) - 0.5) if np.ndim(auc) else 2.0 * (float(auc) - 0.5)


def _weighted_auroc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of scores ``s`` for labels ``y`` under row weights ``w`` (B, n); ties count one half."""
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ws = w[:, order]
    wp = np.add.reduceat(ws * y_sorted, starts, axis=1)
    wn = np.add.reduceat(ws * (1 - y_sorted), starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn
    num = (wp * (below + 0.5 * wn)).sum(1)
    den = wp.sum(1) * wn.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half).

    Raises
    ------
    ValueError
        Unless both classes are present and the lengths agree.
    """
    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape or y.ndim != 1:
        raise ValueError(f"labels and scores of the same 1-D shape expected, found {y.shape} and {score.shape}")
    if len(np.unique(y)) != 2:
        raise ValueError(f"AUROC needs both classes, found labels {np.unique(y).tolist()}")
    return float(_weighted_auroc(y, score, np.ones((1, len(y))))[0])


def bootstrap_auroc(y: np.ndarray, scores: Sequence[np.ndarray] | np.ndarray, groups: np.ndarray | None = None, *,
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95, chunk: int = 200
                    ) -> tuple[float, float, float]:
    """Mean AUROC over seeds and its percentile bootstrap interval, resampling patients.

    Parameters
    ----------
    y : ndarray, (n,)
        Binary labels of the test sessions.
    scores : ndarray (n,) or sequence of them
        Probe outputs, one array per seed; the statistic is their mean AUROC.
    groups : ndarray, (n,), optional
        Patient of each session: the bootstrap resamples patients (with all their
        sessions), the unit of the split. Default: sessions.
    n_boot : int
        Resamples (0: no interval, NaN bounds).
    seed : int
    level : float
        Coverage of the interval.
    chunk : int
        Resamples computed at once (bounds memory to ``chunk * n`` floats).

    Returns
    -------
    auroc, low, high : float
    """
    y = np.asarray(y).astype(int)
    arr = [np.asarray(s, dtype=float) for s in (scores if isinstance(scores, (list, tuple)) else [scores])]
    point = float(np.mean([auroc(y, s) for s in arr]))
    if n_boot <= 0:
        return point, float("nan"), float("nan")
    g = np.arange(len(y)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(g.max()) + 1
    rng = np.random.default_rng(seed)
    stats: list[np.ndarray] = []
    for a in range(0, n_boot, chunk):
        b = min(chunk, n_boot - a)
        draws = rng.integers(0, n_groups, size=(b, n_groups)) + (np.arange(b) * n_groups)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n_groups).reshape(b, n_groups).astype(float)
        w = counts[:, g]
        stats.append(np.mean([_weighted_auroc(y, s, w) for s in arr], axis=0))
    boot = np.concatenate(stats)
    boot = boot[np.isfinite(boot)]
    if len(boot) == 0:
        return point, float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return point, float(lo), float(hi)


def mean_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
            level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` (e.g. AUROCs over a category's tasks) and a bootstrap interval over them.

    Returns NaN bounds for fewer than two values.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2 or n_boot <= 0:
        return m, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return m, float(lo), float(hi)

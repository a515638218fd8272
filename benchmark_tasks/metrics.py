"""AUROC, its patient-clustered bootstrap interval, the normalised score, headroom, calibration.

The normalised score follows NeuralBench: 0 is the dummy (chance) level and 1 is
perfect, so for AUROC ``score = (AUROC - 0.5) / (1 - 0.5) = 2 * (AUROC - 0.5)``; a model
worse than chance scores below 0.

The **headroom captured** replaces the perfect score by a task's ceiling, the AUROC of
the oracle (an embedding of the synthetic hospital's hidden truth,
:mod:`benchmark_tasks.baselines.oracle`): ``(AUROC - 0.5) / (oracle AUROC - 0.5)``.

Calibration of probe probabilities: the **expected calibration error** over 10
equal-width probability bins (Guo et al. 2017; empty bins contribute nothing) and the
**Brier score** (mean squared error of the probability).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "HEADROOM_MIN_GAIN",
    "auroc",
    "bootstrap_auroc",
    "brier_score",
    "expected_calibration_error",
    "headroom",
    "mean_ci",
    "normalised_score",
    "percentile_interval",
    "reliability_bins",
]

#: Smallest oracle AUROC gain over chance (``oracle - 0.5``) for which headroom is defined:
#: below it the task has no ceiling worth dividing by (the label is not in the EEG, e.g. a
#: negative control), a small denominator would turn noise into huge ratios, and the
#: headroom is null (left out of means). :func:`headroom` also asks the oracle's interval
#: to exclude 0.5 when one is given.
HEADROOM_MIN_GAIN = 0.05


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
    return percentile_interval(point, boot, level)


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
    return percentile_interval(m, boot, level)


def percentile_interval(point: float, draws: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """``(point, low, high)``: the percentile interval of bootstrap ``draws`` (non-finite draws ignored).

    The bounds are NaN when no draw is finite.
    """
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return point, float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return point, float(lo), float(hi)


def headroom(auc: float | np.ndarray, oracle_auc: float | np.ndarray, *, min_gain: float = HEADROOM_MIN_GAIN,
             oracle_ci_low: float | np.ndarray | None = None) -> float | np.ndarray:
    """Share of the oracle's AUROC gain over chance a model captures, ``(AUROC - 0.5) / (oracle - 0.5)``.

    Parameters
    ----------
    auc : float or ndarray
        The model's AUROC.
    oracle_auc : float or ndarray
        The oracle's AUROC on the same task, probe and test sessions.
    min_gain : float
        Headroom is undefined (NaN) where ``oracle_auc - 0.5 <= min_gain``, or where
        either AUROC is missing. It is not clipped: below 0 a model is worse than
        chance, above 1 it beat the oracle's probe (sampling noise of small tasks).
    oracle_ci_low : float or ndarray, optional
        Lower bound of the oracle's 95% interval: headroom is also undefined where it
        is at most 0.5, i.e. where the ceiling cannot be told from chance (a ratio
        over a denominator indistinguishable from 0 is noise; on the 200-patient
        hospital one such task turned a band-power AUROC of 0.89 into a headroom of
        6.5). A NaN bound (no bootstrap) does not apply this rule.

    Returns
    -------
    float or ndarray
    """
    if min_gain < 0:
        raise ValueError(f"min_gain must be >= 0, found {min_gain}")
    a = np.asarray(auc, dtype=float)
    o = np.asarray(oracle_auc, dtype=float)
    gain = o - 0.5
    ok = np.isfinite(gain) & (gain > min_gain + 1e-9)  # 1e-9: an oracle of exactly 0.5 + min_gain is excluded
    if oracle_ci_low is not None:
        lo = np.asarray(oracle_ci_low, dtype=float)
        ok &= ~(np.isfinite(lo) & (lo <= 0.5))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, (a - 0.5) / np.where(gain > 0, gain, 1.0), np.nan)
    return out if np.ndim(out) else float(out)


def _check_probabilities(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(float)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels and probabilities of the same non-empty 1-D shape expected, found {y.shape} and "
                         f"{p.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("probabilities must be finite and within [0, 1]")
    return y, p


def reliability_bins(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width reliability bins of predicted probabilities.

    Parameters
    ----------
    y : ndarray, (n,)
        Binary labels.
    p : ndarray, (n,)
        Predicted probabilities of the positive class.
    n_bins : int
        Bins of width ``1 / n_bins`` over [0, 1] (the last one closed).

    Returns
    -------
    mean_p, frac_pos, count : ndarray, (n_bins,)
        Mean probability, observed positive rate (NaN for empty bins) and sessions per bin.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, found {n_bins}")
    y, p = _check_probabilities(y, p)
    b = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(b, weights=p, minlength=n_bins) / count
        frac = np.bincount(b, weights=y, minlength=n_bins) / count
    return mean_p, frac, count.astype(np.int64)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean of ``|positive rate - mean probability|`` over equal-width bins.

    ``sum_b (n_b / n) * |frac_pos_b - mean_p_b|`` over the :func:`reliability_bins`; empty
    bins weigh 0. 0 for a calibrated predictor (up to binning and sampling), at most 1.
    """
    mean_p, frac, count = reliability_bins(y, p, n_bins=n_bins)
    ok = count > 0
    return float((count[ok] * np.abs(frac[ok] - mean_p[ok])).sum() / count.sum())


def brier_score(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference of probability and label (0 perfect; 0.25 for a constant 0.5)."""
    y, p = _check_probabilities(y, p)
    return float(np.mean((p - y) ** 2))

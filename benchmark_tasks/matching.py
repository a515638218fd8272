"""Propensity-score matching of controls to positives, and balance diagnostics.

Method
------
1. **Covariates** (CLEF's): age (missing ages imputed with the median, plus a missing
   indicator), sex, site and care setting (one-hot, an ``unknown`` level included).
2. **Propensity score**: an L2-regularised logistic regression of "positive" on the
   covariates (age standardised, with its square) over positives and control candidates.
3. **Matching**: greedy nearest neighbour on logit(PS), without replacement, in rounds:
   each round gives every positive still in play its nearest unused candidate, so that
   all positives get a first control before any gets a second (``ratio`` rounds).
   Positives are taken from the highest score down (the hardest to match first). A
   candidate farther than the caliper (``caliper`` × SD of logit(PS) over positives and
   candidates, Austin 2011) is not used; a positive left without any control is dropped
   and counted as unmatched. Optional exact strata: the suite generator matches within
   each patient split, so a matched set never straddles train and test and each split is
   balanced on its own (a probe cannot exploit a setting or site mix that differs between
   the positives of train and those of test).
4. **Balance**: standardised mean difference of every covariate level,
   ``(mean_pos - mean_ctl) / sqrt((var_pos + var_ctl) / 2)``, before (all candidates)
   and after (matched controls). |SMD| < 0.1 is the usual threshold of good balance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from benchmark_tasks.config import MatchingConfig

__all__ = ["MatchResult", "covariate_matrix", "match_controls", "propensity_logit", "standardised_mean_differences"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Covariates:
    """Covariates of cohort rows: the PS design matrix and the levels balance is shown on.

    Attributes
    ----------
    design : ndarray, (n, p)
        Inputs of the propensity model.
    levels : ndarray, (n, q)
        Covariate levels for the SMDs (age in years, 0/1 indicators).
    names : list of str
        Names of ``levels`` columns (``age``, ``sex=F``, ``site=S01`` ...).
    """

    design: np.ndarray
    levels: np.ndarray
    names: list[str]


def covariate_matrix(cohort: pl.DataFrame,
                     covariates: tuple[str, ...] = ("age", "sex", "site", "setting")) -> Covariates:
    """Covariates of every row of a cohort table (see the module docstring).

    Parameters
    ----------
    cohort : polars.DataFrame
        With ``age_years``, ``sex``, ``site``, ``setting``.
    covariates : tuple of str
        Which of ``age``, ``sex``, ``site``, ``setting``.
    """
    n = cohort.height
    design: list[np.ndarray] = []
    levels: list[np.ndarray] = []
    names: list[str] = []
    if "age" in covariates:
        age = cohort["age_years"].cast(pl.Float64).to_numpy().astype(float)
        missing = ~np.isfinite(age)
        fill = float(np.median(age[~missing])) if (~missing).any() else 0.0
        age = np.where(missing, fill, age)
        z = (age - age.mean()) / (age.std() or 1.0)
        design += [z, z**2]
        levels.append(age)
        names.append("age")
        if missing.any():
            design.append(missing.astype(float))
            levels.append(missing.astype(float))
            names.append("age=missing")
    for col in ("sex", "site", "setting"):
        if col not in covariates:
            continue
        values = cohort[col].fill_null("unknown").cast(pl.String).to_numpy()
        for level in sorted(set(values.tolist())):
            ind = (values == level).astype(float)
            design.append(ind)
            levels.append(ind)
            names.append(f"{col}={level}")
    if not design:
        raise ValueError(f"no covariates among {covariates}")
    return Covariates(np.column_stack(design) if n else np.zeros((0, len(design))),
                      np.column_stack(levels) if n else np.zeros((0, len(levels))), names)


def standardised_mean_differences(levels: np.ndarray, positive: np.ndarray, control: np.ndarray) -> np.ndarray:
    """SMD of each column of ``levels``, positives against controls.

    Parameters
    ----------
    levels : ndarray, (n, q)
    positive, control : ndarray of bool or int indices
        Rows of the two groups.

    Returns
    -------
    ndarray, (q,)
        ``(mean_pos - mean_ctl) / sqrt((var_pos + var_ctl) / 2)``; 0 where both groups
        are constant and equal, ±inf where constant and different, NaN for an empty group.
    """
    a, b = levels[positive], levels[control]
    if len(a) == 0 or len(b) == 0:
        return np.full(levels.shape[1], np.nan)
    diff = a.mean(0) - b.mean(0)
    sd = np.sqrt((a.var(0) + b.var(0)) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        smd = np.where(sd > 1e-12, diff / np.where(sd > 1e-12, sd, 1.0),
                       np.where(np.abs(diff) < 1e-12, 0.0, np.sign(diff) * np.inf))
    return smd


def propensity_logit(design: np.ndarray, treated: np.ndarray, c: float = 1.0, *, max_iter: int = 50,
                     tol: float = 1e-8) -> np.ndarray:
    """logit(PS) of every row from an L2-regularised logistic regression of ``treated`` on ``design``.

    Fitted by Newton's method (iteratively reweighted least squares) on the few covariate
    columns, with penalty ``1 / (2c) * ||w||²`` on the weights (not the intercept), the
    objective of scikit-learn's ``LogisticRegression(C=c)``; much faster than a general
    solver for the thousands of tasks × sessions of a hospital archive.
    """
    y = np.asarray(treated).astype(float)
    if y.min() == y.max():
        return np.zeros(len(y))
    x = np.column_stack([np.ones(len(y)), np.asarray(design, dtype=float)])
    penalty = np.full(x.shape[1], 1.0 / c)
    penalty[0] = 0.0
    w = np.zeros(x.shape[1])
    w[0] = np.log(y.mean() / (1 - y.mean()))
    for _ in range(max_iter):
        eta = x @ w
        p = 1.0 / (1.0 + np.exp(-eta))
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < tol:
            break
    return x @ w


@dataclass(frozen=True)
class MatchResult:
    """Matched positives and controls of one task.

    Attributes
    ----------
    positives : ndarray of int
        Row numbers (of the table given) of matched positives.
    controls : ndarray of int
        Row numbers of their controls.
    matched_to : ndarray of int
        For each control, the row number of its positive.
    n_unmatched : int
        Positives without any control within the caliper (dropped).
    caliper_width : float or None
        The caliper in logit(PS) units.
    balance : polars.DataFrame
        ``covariate``, ``smd_before``, ``smd_after``.
    """

    positives: np.ndarray
    controls: np.ndarray
    matched_to: np.ndarray
    n_unmatched: int
    caliper_width: float | None
    balance: pl.DataFrame

    @property
    def max_abs_smd_before(self) -> float:
        return float(np.nanmax(np.abs(self.balance["smd_before"].to_numpy()))) if self.balance.height else 0.0

    @property
    def max_abs_smd_after(self) -> float:
        return float(np.nanmax(np.abs(self.balance["smd_after"].to_numpy()))) if self.balance.height else 0.0


def _find(parent: np.ndarray, i: int) -> int:
    """Root of ``i`` in a 'next available' union-find, with path compression."""
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def _greedy(pos_logit: np.ndarray, ctl_logit: np.ndarray, ratio: int, caliper: float | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy NN matching without replacement in rounds; returns (control index, positive index) pairs."""
    order_c = np.argsort(ctl_logit, kind="stable")
    v = ctl_logit[order_c]
    n = len(v)
    right = np.arange(n + 1)  # right[j]: next available >= j (n = none)
    left = np.arange(n + 1)  # left[j + 1]: next available <= j (0 = none)
    order_p = np.argsort(-pos_logit, kind="stable")
    active = np.ones(len(pos_logit), dtype=bool)
    ctl_out: list[int] = []
    pos_out: list[int] = []
    for _ in range(ratio):
        for p in order_p:
            if not active[p]:
                continue
            x = pos_logit[p]
            k = int(np.searchsorted(v, x))
            r = _find(right, k) if k <= n else n
            lft = _find(left, k) - 1  # largest available index <= k - 1
            best = -1
            if r < n and (lft < 0 or abs(v[r] - x) <= abs(x - v[lft])):
                best = r
            elif lft >= 0:
                best = lft
            if best < 0 or (caliper is not None and abs(v[best] - x) > caliper):
                active[p] = False
                continue
            right[best] = best + 1
            left[best + 1] = best
            ctl_out.append(int(order_c[best]))
            pos_out.append(int(p))
    return np.asarray(ctl_out, dtype=int), np.asarray(pos_out, dtype=int)


def match_controls(cohort: pl.DataFrame, positive: np.ndarray, candidate: np.ndarray,
                   config: MatchingConfig | None = None, covariates: Covariates | None = None,
                   strata: np.ndarray | None = None) -> MatchResult:
    """Propensity-score matched controls for the positives of one task.

    Parameters
    ----------
    cohort : polars.DataFrame
        Cohort table (rows are sessions).
    positive, candidate : ndarray of bool, (n,)
        Positive sessions and control candidates (disjoint).
    config : MatchingConfig, optional
    covariates : Covariates, optional
        Precomputed :func:`covariate_matrix` of ``cohort`` (reused across tasks).
    strata : ndarray, (n,), optional
        Exact-matching strata: a control is only taken from its positive's stratum. The
        suite generator passes each session's patient split, so that every matched set
        lies in one split and each split is balanced on its own (the propensity model is
        still fitted on all rows).

    Returns
    -------
    MatchResult

    Raises
    ------
    ValueError
        Masks of the wrong length, or overlapping.
    """
    cfg = config or MatchingConfig()
    positive, candidate = np.asarray(positive, bool), np.asarray(candidate, bool)
    if positive.shape != (cohort.height,) or candidate.shape != (cohort.height,):
        raise ValueError(f"masks of shape ({cohort.height},) expected, found {positive.shape} and {candidate.shape}")
    if (positive & candidate).any():
        raise ValueError(f"{int((positive & candidate).sum())} sessions are both positive and control candidates")
    cov = covariates or covariate_matrix(cohort, cfg.covariates)
    pos_rows, cand_rows = np.flatnonzero(positive), np.flatnonzero(candidate)
    empty = pl.DataFrame({"covariate": cov.names, "smd_before": np.full(len(cov.names), np.nan),
                          "smd_after": np.full(len(cov.names), np.nan)})
    if len(pos_rows) == 0 or len(cand_rows) == 0:
        return MatchResult(pos_rows[:0], cand_rows[:0], pos_rows[:0], len(pos_rows), None, empty)
    rows = np.concatenate([pos_rows, cand_rows])
    treated = np.concatenate([np.ones(len(pos_rows), bool), np.zeros(len(cand_rows), bool)])
    logit = propensity_logit(cov.design[rows], treated)
    width = cfg.caliper * float(np.std(logit)) if cfg.caliper is not None else None
    strata = np.zeros(cohort.height) if strata is None else np.asarray(strata)
    if strata.shape != (cohort.height,):
        raise ValueError(f"strata of shape ({cohort.height},) expected, found {strata.shape}")
    s_pos, s_cand = strata[pos_rows], strata[cand_rows]
    ctl_parts, pos_parts = [np.zeros(0, int)], [np.zeros(0, int)]
    for level in np.unique(s_pos):
        ip, ic = np.flatnonzero(s_pos == level), np.flatnonzero(s_cand == level)
        c, p = _greedy(logit[treated][ip], logit[~treated][ic], cfg.ratio, width)
        ctl_parts.append(ic[c])
        pos_parts.append(ip[p])
    ctl_idx, pos_idx = np.concatenate(ctl_parts), np.concatenate(pos_parts)
    matched_pos = np.unique(pos_idx)
    controls = cand_rows[ctl_idx]
    positives = pos_rows[matched_pos]
    before = standardised_mean_differences(cov.levels, pos_rows, cand_rows)
    after = standardised_mean_differences(cov.levels, positives, controls)
    balance = pl.DataFrame({"covariate": cov.names, "smd_before": before, "smd_after": after})
    return MatchResult(positives, controls, pos_rows[pos_idx], len(pos_rows) - len(matched_pos), width, balance)

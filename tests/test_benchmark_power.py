"""The patient-level interval of a mean AUROC over tasks, and the planning formulas."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from benchmark_tasks.metrics import auroc, bootstrap_auroc
from benchmark_tasks.power import (
    auroc_variance,
    patient_bootstrap_aurocs,
    patient_bootstrap_mean_auroc,
    patient_bootstrap_mean_difference,
    projected_half_width,
)

#: Binormal separation whose AUROC is 0.75: AUROC = Phi(d / sqrt(2)).
D = float(np.sqrt(2) * norm.ppf(0.75))


def _study(n_patients: int, n_tasks: int = 4, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Test predictions of ``n_tasks`` tasks over shared patients (2 sessions each), true AUROC 0.75.

    Each task takes a third of the patients' sessions as positives and the rest as controls;
    scores are N(D, 1) for positives and N(0, 1) for controls.
    """
    rng = np.random.default_rng(seed)
    sessions = [f"P{p:05d}-S{s}" for p in range(n_patients) for s in (1, 2)]
    patients = [s.split("-")[0] for s in sessions]
    parts = []
    for k in range(n_tasks):
        y = (rng.random(len(sessions)) < 1 / 3).astype(np.int8)
        parts.append(pl.DataFrame({"model": "m", "probe": "logistic", "task": f"t{k}", "session_id": sessions,
                                   "label": y, "score": rng.normal(D * y, 1.0)}))
    labels = pl.DataFrame({"task": "t0", "session_id": sessions, "patient_id": patients})
    return pl.concat(parts), labels


def test_interval_covers_the_true_auroc_and_shrinks_as_one_over_root_patients():
    small, lab_s = _study(150)
    big, lab_b = _study(600)
    m_s, lo_s, hi_s = patient_bootstrap_mean_auroc(small, lab_s, n_boot=400)
    m_b, lo_b, hi_b = patient_bootstrap_mean_auroc(big, lab_b, n_boot=400)
    assert lo_s < 0.75 < hi_s and lo_b < 0.75 < hi_b
    assert lo_s < m_s < hi_s and lo_b < m_b < hi_b
    ratio = (hi_s - lo_s) / (hi_b - lo_b)
    assert 1.5 < ratio < 2.7, ratio  # sqrt(600 / 150) = 2


def test_one_task_gives_the_per_task_auroc_and_its_patient_interval():
    pred, labels = _study(80, n_tasks=1, seed=3)
    g = pred.join(labels.select("session_id", "patient_id"), on="session_id")
    y, s, groups = g["label"].to_numpy(), g["score"].to_numpy(), g["patient_id"].to_numpy()
    got = patient_bootstrap_mean_auroc(pred, labels, n_boot=300, seed=4)
    want = bootstrap_auroc(y, s, groups, n_boot=300, seed=4)
    assert got[0] == pytest.approx(auroc(y, s), abs=1e-12)
    assert got == pytest.approx(want, abs=1e-12)


def test_tasks_are_resampled_together_and_the_mean_tracks_them():
    pred, labels = _study(100, n_tasks=3, seed=1)
    names, point, boot = patient_bootstrap_aurocs(pred, labels, ["t2", "t0"], n_boot=200, seed=0)
    assert names == ["t2", "t0"] and boot.shape == (200, 2)
    t0 = pred.filter(pl.col("task") == "t0")
    assert point[1] == pytest.approx(auroc(t0["label"].to_numpy(), t0["score"].to_numpy()))
    m, lo, hi = patient_bootstrap_mean_auroc(pred, labels, ["t2", "t0"], n_boot=200, seed=0)
    assert m == pytest.approx(point.mean())
    assert np.quantile(boot.mean(1), 0.025) == pytest.approx(lo)
    # a mean over several tasks is more precise than any one of them
    assert hi - lo < min(np.quantile(boot[:, k], 0.975) - np.quantile(boot[:, k], 0.025) for k in range(2))


def test_paired_difference_cancels_what_two_models_share():
    pred, labels = _study(200, n_tasks=3, seed=2)
    assert patient_bootstrap_mean_difference(pred, pred, labels, n_boot=200) == (0.0, 0.0, 0.0)
    rng = np.random.default_rng(0)
    weaker = pred.with_columns((pl.col("score") + pl.Series(rng.normal(0, 1.0, pred.height))).alias("score"))
    d, lo, hi = patient_bootstrap_mean_difference(pred, weaker, labels, n_boot=300)
    a = patient_bootstrap_mean_auroc(pred, labels, n_boot=0)[0]
    b = patient_bootstrap_mean_auroc(weaker, labels, n_boot=0)[0]
    assert d == pytest.approx(a - b) and 0 < lo < d < hi
    # pairing: narrower than the two models' own intervals
    _, alo, ahi = patient_bootstrap_mean_auroc(pred, labels, n_boot=300)
    assert hi - lo < ahi - alo
    with pytest.raises(ValueError, match="different task/session"):
        patient_bootstrap_mean_difference(pred, weaker.head(100), labels)


def test_inputs_are_checked():
    pred, labels = _study(20, n_tasks=2)
    two_models = pl.concat([pred, pred.with_columns(pl.lit("other").alias("model"))])
    with pytest.raises(ValueError, match="one model"):
        patient_bootstrap_mean_auroc(two_models, labels)
    with pytest.raises(ValueError, match="no predictions"):
        patient_bootstrap_mean_auroc(pred, labels, ["t0", "nope"])
    with pytest.raises(ValueError, match="no patient"):
        patient_bootstrap_mean_auroc(pred, labels.head(5))
    with pytest.raises(ValueError, match="both classes"):
        patient_bootstrap_mean_auroc(pred.with_columns(pl.lit(1).cast(pl.Int8).alias("label")), labels)
    with pytest.raises(ValueError, match="level"):
        patient_bootstrap_mean_auroc(pred, labels, level=95)
    m, lo, hi = patient_bootstrap_mean_auroc(pred, labels, n_boot=0)
    assert np.isfinite(m) and np.isnan(lo) and np.isnan(hi)


def test_hanley_mcneil_variance_matches_simulation_and_falls_with_positives():
    rng = np.random.default_rng(0)
    n1, n0 = 30, 60
    aucs = [auroc(np.r_[np.ones(n1), np.zeros(n0)], np.r_[rng.normal(D, 1, n1), rng.normal(0, 1, n0)])
            for _ in range(2000)]
    assert auroc_variance(0.75, n1, n0) == pytest.approx(np.var(aucs), rel=0.15)
    assert auroc_variance(0.75, 4 * n1, 4 * n0) == pytest.approx(auroc_variance(0.75, n1, n0) / 4, rel=0.05)
    with pytest.raises(ValueError):
        auroc_variance(1.2, 10, 10)


def test_projected_half_width_of_a_mean_over_tasks():
    one = projected_half_width(np.array([0.75]), np.array([30]), np.array([60]))
    assert one == pytest.approx(1.96 * np.sqrt(auroc_variance(0.75, 30, 60)), rel=1e-3)
    four = projected_half_width(np.full(4, 0.75), np.full(4, 30), np.full(4, 60))
    assert four == pytest.approx(one / 2)
    assert projected_half_width(np.full(4, 0.75), np.full(4, 30), np.full(4, 60), design_effect=4.0) == \
        pytest.approx(one)
    with pytest.raises(ValueError, match="design_effect"):
        projected_half_width(np.full(4, 0.75), np.full(4, 30), np.full(4, 60), design_effect=0)

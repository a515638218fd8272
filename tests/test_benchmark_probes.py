"""Probes and metrics: separable embeddings give AUROC ≈ 1, noise ≈ 0.5 with an interval containing 0.5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark_tasks.config import MLPConfig
from benchmark_tasks.metrics import auroc, bootstrap_auroc, mean_ci, normalised_score
from benchmark_tasks.probes import LogisticProbe, cross_validated_auroc, fit_logistic_probe, fit_mlp_probe, load_probe

FAST = MLPConfig(min_steps=150, hidden=32, lr=1e-3)  # small and quick; the defaults are checked in the run tests


def data(n: int, dim: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, dim))
    x[:, 0] += shift * y
    x[:, 1] -= shift * y
    groups = np.arange(n) // 2  # two sessions per patient
    return x, y, groups


def test_separable_embeddings_give_auroc_one() -> None:
    x, y, _ = data(200, 16, 6.0, 0)
    xt, yt, gt = data(120, 16, 6.0, 1)
    lp = fit_logistic_probe(x, y)
    auc, lo, hi = bootstrap_auroc(yt, lp.predict_proba(xt), gt, n_boot=300)
    assert auc > 0.99 and lo > 0.97
    mp = fit_mlp_probe(x, y, FAST, seeds=(0, 1))
    scores = mp.predict_proba(xt)
    assert scores.shape == (2, 120)
    auc, lo, hi = bootstrap_auroc(yt, list(scores), gt, n_boot=300)
    assert auc > 0.99 and lo > 0.95


def test_noise_gives_chance_with_ci_containing_half() -> None:
    """Over independent noise data sets, AUROC averages 0.5 and the 95% interval covers 0.5 (nearly) always."""
    aucs, covered = [], 0
    for r in range(10):
        x, y, _ = data(200, 16, 0.0, 100 + r)
        xt, yt, gt = data(300, 16, 0.0, 200 + r)
        auc, lo, hi = bootstrap_auroc(yt, fit_logistic_probe(x, y).predict_proba(xt), gt, n_boot=400)
        aucs.append(auc)
        covered += lo < 0.5 < hi
    assert abs(np.mean(aucs) - 0.5) < 0.04 and covered >= 8
    aucs, covered = [], 0
    for r in range(3):
        x, y, _ = data(200, 16, 0.0, 300 + r)
        xt, yt, gt = data(300, 16, 0.0, 400 + r)
        auc, lo, hi = bootstrap_auroc(yt, list(fit_mlp_probe(x, y, FAST, seeds=(0, 1, 2)).predict_proba(xt)), gt,
                                      n_boot=400)
        aucs.append(auc)
        covered += lo < 0.5 < hi
    assert abs(np.mean(aucs) - 0.5) < 0.06 and covered >= 2


def test_mlp_seeds_differ_and_repeat() -> None:
    x, y, _ = data(80, 8, 1.0, 4)
    a = fit_mlp_probe(x, y, FAST, seeds=(0, 1))
    b = fit_mlp_probe(x, y, FAST, seeds=(0, 1))
    assert np.allclose(a.w1, b.w1)
    assert not np.allclose(a.w1[0], a.w1[1])
    single = fit_mlp_probe(x, y, FAST, seeds=(1,))
    assert np.allclose(single.w1[0], a.w1[1], atol=1e-5)  # stacked training = training alone


def test_auroc_and_score() -> None:
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert normalised_score(0.5) == 0.0 and normalised_score(1.0) == 1.0 and normalised_score(0.75) == 0.5
    assert normalised_score(0.25) == -0.5
    assert np.allclose(normalised_score(np.array([0.5, 1.0])), [0.0, 1.0])
    with pytest.raises(ValueError, match="both classes"):
        auroc(np.array([1, 1]), np.array([0.1, 0.2]))
    m, lo, hi = mean_ci(np.array([0.6, 0.7, 0.8]))
    assert m == pytest.approx(0.7) and lo <= m <= hi
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = rng.normal(size=400) + y
    from sklearn.metrics import roc_auc_score

    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_probe_json_round_trip(tmp_path: Path) -> None:
    x, y, _ = data(100, 6, 2.0, 5)
    x[3, 2] = np.nan  # an absent feature is imputed with the training mean
    lp = fit_logistic_probe(x, y)
    path = lp.save(tmp_path / "probes" / "t.json", task="t", category="finding", model="m")
    d = json.loads(path.read_text())
    assert {"coef", "intercept", "mean", "scale", "task", "category"} <= set(d)
    back, meta = load_probe(path)
    xt, _, _ = data(20, 6, 2.0, 6)
    assert np.allclose(back.predict_proba(xt), lp.predict_proba(xt))
    z = (xt - np.array(d["mean"])) / np.array(d["scale"])
    manual = 1 / (1 + np.exp(-(z @ np.array(d["coef"]) + d["intercept"])))
    assert np.allclose(manual, lp.predict_proba(xt))
    assert meta["task"] == "t"
    with pytest.raises(ValueError, match="missing"):
        LogisticProbe.from_dict({"coef": [1.0]})


def test_cross_validated_auroc_kept() -> None:
    x, y, g = data(100, 4, 3.0, 7)
    assert cross_validated_auroc(x, y, g) > 0.9

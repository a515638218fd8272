"""The drift rule of :mod:`clef.trend` (a one-sided CUSUM from the patient's baseline) and its
combination with the step rule, on synthetic embedding sequences: a step, an hour-long ramp
and noise without a change."""

from __future__ import annotations

import numpy as np
import pytest

from clef.trend import ChangeDetector, ChangeRule, DriftDetector, TrendConfig, change_refractory

DIM = 16
#: The rules as clef trend runs them at 2-minute strides over a 1280-s context.
REFRACTORY = change_refractory(1280.0, 120.0, 3)


def _series(n: int, weight: np.ndarray, seed: int, noise: float = 0.03) -> np.ndarray:
    """(n, DIM) embeddings: state ``a`` mixed with state ``b`` by ``weight`` per point, plus noise."""
    rng = np.random.default_rng(seed)
    a = np.abs(rng.normal(1.0, 0.2, DIM))
    b = a.copy()
    b[: DIM // 2] *= 0.3  # another state: half of the features fall
    x = (1 - weight)[:, None] * a + weight[:, None] * b
    return x + rng.normal(0, noise, (n, DIM))


def _ramp(n: int, onset: int, length: int) -> np.ndarray:
    return np.clip((np.arange(n) - onset + 1) / length, 0.0, 1.0)


def _drift() -> DriftDetector:
    return DriftDetector(k=3, baseline=10, slack=1.0, h=10.0, min_sd=0.002, refractory=REFRACTORY)


def _step() -> ChangeDetector:
    return ChangeDetector(k=3, z=5, min_history=6, min_delta=0.01, refractory=REFRACTORY)


def test_change_refractory() -> None:
    assert change_refractory(1280.0, 120.0, 3) == 11 + 3
    assert change_refractory(1200.0, 120.0, 2) == 10 + 2  # a whole number of strides is not rounded up
    with pytest.raises(ValueError):
        change_refractory(1280.0, 0.0, 3)


def test_a_slow_ramp_is_missed_by_the_step_rule_and_flagged_by_the_drift_rule() -> None:
    # an hour-long ramp at 2-minute strides: 30 points from one state to the other
    n, onset = 90, 40
    emb = _series(n, _ramp(n, onset, 30), seed=1)
    step = _step()
    assert [c for e in emb for c in step.push(e)] + step.finish() == []
    drift = _drift()
    found = [c for e in emb for c in drift.push(e)] + drift.finish()
    assert len(found) >= 1
    first_onset = found[0][0]
    assert onset - 2 <= first_onset <= onset + 5, found  # within ten minutes of the ramp's start
    assert drift.flags[first_onset] and sum(drift.flags) == len(found)
    # the sum rose from zero at the onset and crossed the limit a few points later
    assert np.nanmax(drift.statistic[:first_onset]) <= 10.0
    assert all(np.isnan(drift.statistic[:10]))  # no sum while the baseline is collected


def test_noise_without_change_is_not_flagged() -> None:
    for seed in range(5):
        emb = _series(300, np.zeros(300), seed=seed)
        rule = ChangeRule(_step(), _drift())
        found = [c for e in emb for c in rule.push(e)] + rule.finish()
        assert found == [], (seed, found)
        assert not any(rule.flags)
        stat = np.asarray(rule.statistic, dtype=float)
        assert np.nanmax(stat) < 10.0


def test_a_step_is_reported_once_by_the_combined_rule() -> None:
    n, onset = 80, 40
    emb = _series(n, (np.arange(n) >= onset).astype(float), seed=2)
    rule = ChangeRule(_step(), _drift())
    found = [c for e in emb for c in rule.push(e)] + rule.finish()
    assert len(found) == 1, found
    name, at, _ = found[0]
    assert abs(at - onset) <= 1
    assert rule.flags.count(True) == 1 and rule.flags[at]
    # the drift rule saw it too (or was restarted by the step's report): it reports nothing more
    assert rule.drift is not None and sum(rule.drift.flags) <= 1
    assert name in ("step", "drift")


def test_a_ramp_is_reported_by_the_combined_rule_and_not_by_the_step_rule_alone() -> None:
    n, onset = 90, 40
    emb = _series(n, _ramp(n, onset, 30), seed=3)
    alone = ChangeRule(_step())
    assert [c for e in emb for c in alone.push(e)] + alone.finish() == []
    both = ChangeRule(_step(), _drift())
    found = [c for e in emb for c in both.push(e)] + both.finish()
    assert found, "the ramp was not flagged"
    name, at, _ = found[0]
    assert name == "drift"
    assert onset - 2 <= at <= onset + 8  # a ramp is seen late: its first points differ little


def test_gaps_add_nothing_and_the_baseline_skips_them() -> None:
    emb = _series(60, np.zeros(60), seed=4)
    emb[20:30] = np.nan
    drift = _drift()
    assert [c for e in emb for c in drift.push(e)] == []
    assert all(np.isnan(drift.statistic[20:30]))
    assert np.isfinite(drift.statistic[40])


def test_the_drift_rule_restarts_its_baseline_after_a_change() -> None:
    # a ramp, then the new state held: one flag, no second flag against the old baseline
    n, onset = 160, 40
    emb = _series(n, _ramp(n, onset, 20), seed=5)
    drift = _drift()
    found = [c for e in emb for c in drift.push(e)]
    assert len(found) == 1, found
    after = drift.statistic[found[0][0] + REFRACTORY + 1: found[0][0] + REFRACTORY + 11]
    assert all(np.isnan(after))  # the new baseline is being collected


def test_from_config_and_options() -> None:
    rule = ChangeRule.from_config(TrendConfig(), refractory=REFRACTORY)
    assert rule.drift is not None and rule.drift.baseline == TrendConfig().drift_baseline
    assert ChangeRule.from_config(TrendConfig(drift=False), refractory=REFRACTORY).drift is None
    assert ChangeRule.from_config(TrendConfig(drift=False), refractory=REFRACTORY).statistic is None
    score = ChangeRule.from_config(TrendConfig(), refractory=REFRACTORY, metric="absolute")
    assert score.drift is not None and score.drift.min_sd == TrendConfig().score_drift_min_sd
    with pytest.raises(ValueError, match="baseline"):
        DriftDetector(k=3, baseline=1, slack=1.0, h=5.0, min_sd=0.01)
    with pytest.raises(ValueError, match="metric"):
        DriftDetector(k=3, baseline=5, slack=1.0, h=5.0, min_sd=0.01, metric="euclid")
    with pytest.raises(ValueError):
        TrendConfig(drift_h=0)
    with pytest.raises(ValueError):
        TrendConfig(drift_bogus=1)

"""Propensity-score matching: controls never carry the task's codes, balance improves, ratio and caliper hold."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from benchmark_tasks.cohort import COHORT_SCHEMA
from benchmark_tasks.config import MatchingConfig
from benchmark_tasks.matching import _greedy, covariate_matrix, match_controls, standardised_mean_differences
from benchmark_tasks.tasks import TaskDefinition, membership


def confounded_cohort(n: int = 1200, seed: int = 0) -> pl.DataFrame:
    """Sessions where the condition (G40 codes) is more common in older ICU patients at site B."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(5, 90, n)
    setting = rng.choice(["routine", "emu", "icu"], n, p=[0.5, 0.2, 0.3])
    site = rng.choice(["A", "B", "C"], n)
    sex = rng.choice(["F", "M"], n)
    logit = -3.0 + 0.03 * (age - 45) + 1.5 * (setting == "icu") + 0.8 * (site == "B")
    ill = rng.random(n) < 1 / (1 + np.exp(-logit))
    past = ~ill & (rng.random(n) < 0.05)  # resolved condition: in the record, not active
    rows = []
    for i in range(n):
        now = ["G40.909", "I10"] if ill[i] else ["I10"] if i % 3 == 0 else []
        rows.append({"session_id": f"S{i:05d}", "patient_id": f"P{i // 2:05d}", "path": None, "start": None,
                     "site": str(site[i]), "setting": str(setting[i]), "age_years": float(age[i]), "sex": str(sex[i]),
                     "race": None, "has_ehr": True, "has_report": False, "icd10": now,
                     "atc": [], "icd10_ever": sorted(set(now) | ({"G40.909"} if past[i] else set())), "atc_ever": [],
                     "phenotypes": [], "medication_groups": [], "findings": [], "findings_possible": []})
    return pl.DataFrame(rows, schema=COHORT_SCHEMA)


EPI = TaskDefinition(name="dx_epilepsy", category="phenotype", kind="icd_group", codes=("icd:G40", "icd:G41"))


def test_matching_excludes_codes_and_improves_balance() -> None:
    cohort = confounded_cohort()
    pos, cand = membership(cohort, EPI, "ever")
    m = match_controls(cohort, pos, cand, MatchingConfig(ratio=2, caliper=0.2))
    ever = cohort["icd10_ever"].to_list()
    assert len(m.controls) > 0 and len(np.unique(m.controls)) == len(m.controls)  # without replacement
    assert not any(any(c.startswith(("G40", "G41")) for c in ever[i]) for i in m.controls)
    assert set(m.positives) <= set(np.flatnonzero(pos)) and not set(m.controls) & set(np.flatnonzero(pos))
    bal = {r["covariate"]: r for r in m.balance.iter_rows(named=True)}
    assert abs(bal["age"]["smd_before"]) > 0.3 and abs(bal["setting=icu"]["smd_before"]) > 0.3
    assert m.max_abs_smd_after < m.max_abs_smd_before
    assert m.max_abs_smd_after < 0.2
    assert abs(bal["age"]["smd_after"]) < 0.1
    # each matched positive has 1 or 2 controls, and each control points at a matched positive
    counts = np.unique(m.matched_to, return_counts=True)[1]
    assert counts.max() <= 2 and set(m.matched_to) == set(m.positives)


def test_ratio_caliper_and_determinism() -> None:
    cohort = confounded_cohort(seed=1)
    pos, cand = membership(cohort, EPI)
    one = match_controls(cohort, pos, cand, MatchingConfig(ratio=1, caliper=None))
    assert len(one.controls) == len(one.positives) == int(pos.sum())  # no caliper: every positive matched
    three = match_controls(cohort, pos, cand, MatchingConfig(ratio=3, caliper=None))
    assert len(three.controls) == 3 * int(pos.sum())
    tight = match_controls(cohort, pos, cand, MatchingConfig(ratio=1, caliper=0.001))
    assert tight.n_unmatched > 0 and len(tight.positives) + tight.n_unmatched == int(pos.sum())
    again = match_controls(cohort, pos, cand, MatchingConfig(ratio=1, caliper=None))
    assert np.array_equal(one.controls, again.controls)
    strata = np.where(np.arange(cohort.height) % 3 == 0, "test", "train")
    within = match_controls(cohort, pos, cand, MatchingConfig(ratio=2, caliper=None), strata=strata)
    assert (strata[within.controls] == strata[within.matched_to]).all()


def test_greedy_is_nearest_without_replacement() -> None:
    ctl = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    pos = np.array([1.1, 1.2, 9.0])
    c, p = _greedy(pos, ctl, ratio=1, caliper=None)
    got = dict(zip(p.tolist(), c.tolist()))
    assert got[2] == 4  # 9.0 → 10.0
    assert {got[0], got[1]} == {1, 2}  # 1.2 first (highest score first) takes 1.0, 1.1 then takes 2.0 or 0.0
    c, p = _greedy(pos, ctl, ratio=1, caliper=0.5)
    assert 2 not in p.tolist()  # 9.0 is 1.0 away from its nearest control
    c, p = _greedy(np.array([0.0]), np.array([0.1, -0.2, 0.3]), ratio=3, caliper=None)
    assert c.tolist() == [0, 1, 2]  # nearest first: 0.1, then -0.2, then 0.3


def test_smd_formula() -> None:
    levels = np.array([[1.0], [3.0], [2.0], [2.0]])
    smd = standardised_mean_differences(levels, np.array([0, 1]), np.array([2, 3]))
    assert smd[0] == pytest.approx(0.0)
    levels = np.array([[0.0], [1.0], [0.0], [0.0]])
    smd = standardised_mean_differences(levels, np.array([0, 1]), np.array([2, 3]))
    assert smd[0] == pytest.approx(0.5 / np.sqrt(0.125))
    cov = covariate_matrix(confounded_cohort(50))
    assert "age" in cov.names and "site=B" in cov.names and cov.levels.shape == (50, len(cov.names))


def test_match_controls_rejects_overlap() -> None:
    cohort = confounded_cohort(40)
    mask = np.zeros(40, bool)
    mask[:5] = True
    with pytest.raises(ValueError, match="both positive and control"):
        match_controls(cohort, mask, mask)

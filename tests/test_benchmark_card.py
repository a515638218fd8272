"""The validity card: calibration metrics, AUROC by subgroup, the stage-overlap audit in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark_tasks.card import ALL_TASKS, age_band, calibration_table, subgroup_table
from benchmark_tasks.config import ProbeConfig
from benchmark_tasks.embeddings import EmbeddingSet
from benchmark_tasks.metrics import auroc, brier_score, expected_calibration_error, reliability_bins
from benchmark_tasks.run import run_benchmark
from benchmark_tasks.suite import load_suite
from tests.factories import planted_vectors


def test_ece_of_a_calibrated_predictor_is_zero() -> None:
    # every bin's positive rate equals its probability exactly
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    # and in a large sample drawn from the probabilities themselves
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01


def test_ece_and_brier_of_a_miscalibrated_predictor() -> None:
    y = np.array([0, 1] * 50)
    p = np.full(100, 0.9)  # half positive, always says 0.9
    assert expected_calibration_error(y, p) == pytest.approx(0.4)
    assert brier_score(y, p) == pytest.approx(0.5 * 0.9**2 + 0.5 * 0.1**2)  # 0.41
    assert brier_score(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.25)
    # two bins off by 0.2 and 0.1, weighted by their counts
    p = np.array([0.1] * 5 + [0.65] * 10)
    y = np.array([1, 1, 0, 0, 0] + [1] * 5 + [0] * 5)
    assert expected_calibration_error(y, p) == pytest.approx((5 * 0.3 + 10 * 0.15) / 15)


def test_reliability_bins_and_input_checks() -> None:
    mean_p, frac, count = reliability_bins(np.array([0, 1, 1]), np.array([0.0, 0.95, 1.0]), n_bins=10)
    assert count.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]  # p = 1 falls in the last bin
    assert mean_p[9] == pytest.approx(0.975) and frac[9] == 1.0 and np.isnan(frac[1])
    with pytest.raises(ValueError, match="within"):
        brier_score(np.array([0, 1]), np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="0 or 1"):
        expected_calibration_error(np.array([0, 2]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(np.array([0, 1]), np.array([0.5, 0.5]), n_bins=0)


def test_calibration_table_per_task_and_pooled() -> None:
    pred = pl.DataFrame({"model": "m", "probe": "logistic", "task": ["a"] * 4 + ["b"] * 4,
                         "session_id": [f"s{i}" for i in range(8)], "label": [0, 1, 0, 1, 1, 1, 0, 0],
                         "score": [0.5] * 4 + [0.9, 0.9, 0.1, 0.1]})
    cal = calibration_table(pred)
    rows = {r["task"]: r for r in cal.iter_rows(named=True)}
    assert set(rows) == {ALL_TASKS, "a", "b"}
    assert rows["a"]["ece"] == pytest.approx(0.0) and rows["a"]["brier"] == pytest.approx(0.25)
    assert rows["b"]["ece"] == pytest.approx(0.1) and rows["b"]["brier"] == pytest.approx(0.01)
    assert rows[ALL_TASKS]["n"] == 8 and rows[ALL_TASKS]["brier"] == pytest.approx(0.13)


def test_age_bands() -> None:
    assert [age_band(a) for a in (0.5, 17.9, 18.0, 64.99, 65.0, 90.0, None, float("nan"))] == [
        "<18", "<18", "18-64", "18-64", ">=65", ">=65", "unknown", "unknown"]


def _subgroup_case() -> tuple[pl.DataFrame, pl.DataFrame]:
    """40 test sessions: perfect scores for women, reversed-ish for men, too few children for an AUROC."""
    rng = np.random.default_rng(1)
    n = 40
    y = np.array([1, 0] * 20)
    sex = ["F" if i % 4 < 2 else "M" for i in range(n)]  # 10 positives and 10 negatives each, in every age band
    score = np.where(np.array(sex) == "F", y * 0.8 + 0.1, rng.uniform(size=n) * 0.5 + (1 - y) * 0.3)
    age = [8.0] * 3 + [40.0] * 19 + [70.0] * 18
    cohort = pl.DataFrame({"session_id": [f"s{i}" for i in range(n)], "age_years": age, "sex": sex,
                           "site": ["S1"] * n, "setting": [None] * n})
    pred = pl.DataFrame({"model": "m", "probe": "mlp", "task": "t", "session_id": cohort["session_id"],
                         "label": y, "score": score})
    return pred, cohort


def test_subgroup_table_flags_the_weakest_and_keeps_small_subgroups() -> None:
    pred, cohort = _subgroup_case()
    sg = subgroup_table(pred, cohort)
    by = {(r["variable"], r["subgroup"]): r for r in sg.iter_rows(named=True)}
    assert by[("sex", "F")]["auroc"] == pytest.approx(1.0)
    assert by[("sex", "M")]["auroc"] < 0.5
    weakest = sg.filter(pl.col("weakest"))
    assert weakest.height == 1 and weakest.row(0, named=True)["subgroup"] == "M"
    # three children (2 positives, 1 negative): reported, with why, not dropped
    kid = by[("age_band", "<18")]
    assert kid["auroc"] is None and kid["n"] == 3 and "too few" in kid["status"] and "positives" in kid["status"]
    assert by[("setting", "unknown")]["n"] == 40  # a missing setting is its own level
    # each subgroup's AUROC is that of its own sessions (ties included)
    j = pred.join(cohort, on="session_id").with_columns(pl.col("score").round(1))
    tied = subgroup_table(j.select(pred.columns), cohort)
    for r in tied.filter(pl.col("auroc").is_not_null()).iter_rows(named=True):
        col = {"age_band": "age_years"}.get(r["variable"], r["variable"])
        sub = j.filter(pl.col(col).map_elements(age_band, return_dtype=pl.String) == r["subgroup"]
                       if col == "age_years" else pl.col(col).fill_null("unknown") == r["subgroup"])
        assert r["auroc"] == pytest.approx(auroc(sub["label"].to_numpy(), sub["score"].to_numpy()))
    assert set(sg["variable"]) == {"age_band", "sex", "site", "setting"}
    with pytest.raises(ValueError, match="min_per_class"):
        subgroup_table(pred, cohort, min_per_class=0)
    none = subgroup_table(pred, cohort, min_per_class=100)
    assert none["auroc"].is_null().all() and not none["weakest"].any()


@pytest.fixture(scope="module")
def card_run(fhir_suite: Path, tmp_path_factory: pytest.TempPathFactory):
    suite = load_suite(fhir_suite)
    cohort = suite.cohort
    ids = cohort["session_id"].to_list()
    good = EmbeddingSet("good", ids, planted_vectors(cohort, {"generalized_slowing": 4.0, "focal_slowing": 4.0}))
    audit = [{"model": "good", "supervised_test_patients": 0, "n_test_patients": 27, "stage1_test_sessions": 12,
              "transductive": True, "note": "stage 1 saw | test sessions"},
             {"model": "other", "supervised_test_patients": np.int64(3), "extra_key": "only here"}]
    out = tmp_path_factory.mktemp("card_run")
    cfg = ProbeConfig(probes=("logistic",), primary="logistic", n_bootstrap=50)
    return run_benchmark(suite, [good], out, config=cfg, stage_audit=audit)


def test_report_has_the_card_with_the_audit_rows(card_run) -> None:
    out = card_run.out
    report = (out / "report.md").read_text()
    assert "## Validity card" in report and "### Probe calibration" in report and "### AUROC by subgroup" in report
    assert "| model | supervised_test_patients | n_test_patients | stage1_test_sessions | transductive | note | " \
           "extra_key |" in report
    assert "| good | 0 | 27 | 12 | yes | stage 1 saw \\| test sessions | – |" in report
    assert "| other | 3 | – | – | – | – | only here |" in report
    assert "![reliability](plots/reliability.png)" in report
    assert (out / "plots" / "reliability.png").stat().st_size > 1000
    meta = json.loads((out / "run.json").read_text())
    assert meta["stage_audit"][0]["transductive"] is True and meta["stage_audit"][1]["supervised_test_patients"] == 3


def test_card_tables_are_written(card_run) -> None:
    out = card_run.out
    cal = pl.read_parquet(out / "calibration.parquet")
    sg = pl.read_parquet(out / "subgroups.parquet")
    n_tasks = card_run.results["task"].n_unique()
    assert cal.filter(pl.col("task") == ALL_TASKS).height == 1 and cal.height == n_tasks + 1
    assert ((cal["ece"] >= 0) & (cal["ece"] <= 1) & (cal["brier"] >= 0) & (cal["brier"] <= 1)).all()
    assert sg["task"].n_unique() == n_tasks
    # at most one weakest subgroup per task, and only an estimable one
    w = sg.filter(pl.col("weakest"))
    assert w["task"].is_unique().all() and w["auroc"].is_not_null().all()
    assert (sg.filter(pl.col("auroc").is_null())["status"].str.starts_with("too few")).all()


def test_report_says_when_no_audit_was_given(fhir_suite: Path, tmp_path: Path) -> None:
    suite = load_suite(fhir_suite)
    ids = suite.cohort["session_id"].to_list()
    x = EmbeddingSet("x", ids, np.random.default_rng(0).normal(size=(len(ids), 4)))
    run_benchmark(suite, [x], tmp_path, config=ProbeConfig(probes=("logistic",), primary="logistic", n_bootstrap=0),
                  plots=False)
    assert "No audit was given for this run" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="stage_audit"):
        run_benchmark(suite, [x], tmp_path, stage_audit=["aligned"])  # type: ignore[list-item]

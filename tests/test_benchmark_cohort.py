"""Cohort table against the synthetic hospital's hidden truth; task generation and suites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from benchmark_tasks.cohort import COHORT_SCHEMA
from benchmark_tasks.config import GeneratorConfig, MatchingConfig, SuiteConfig
from benchmark_tasks.suite import generate_suite, load_suite
from benchmark_tasks.tasks import CohortIndex, TaskDefinition, candidate_tasks, held_out_status, membership
from clef.patients import PatientSplit
from ehr import PHENOTYPE_GROUPS, medication_groups_of, phenotypes_of


def test_cohort_matches_truth(fhir_archive: Path, fhir_cohort: pl.DataFrame) -> None:
    truth = pl.read_parquet(fhir_archive / "truth.parquet")
    c = fhir_cohort
    assert c.schema == pl.Schema(COHORT_SCHEMA)
    assert c.height == truth.height
    j = c.join(truth, on="session_id", suffix="_truth")
    assert j.height == truth.height
    assert (j["patient_id"] == j["patient_id_truth"]).all()
    assert (j["site"] == j["site_truth"]).all()
    assert (j["setting"] == j["setting_truth"]).all()
    assert np.allclose(j["age_years"].to_numpy(), j["age_years_truth"].to_numpy(), atol=0.01)
    assert (j["sex"] == j["sex_truth"].replace({"female": "F", "male": "M"})).all()
    assert j["has_ehr"].all() and j["has_report"].all()
    for r in j.iter_rows(named=True):
        assert r["icd10"] == sorted(r["condition_codes"]), r["session_id"]
        assert r["atc"] == sorted(r["atc_codes"]), r["session_id"]
        assert set(r["phenotypes"]) == phenotypes_of(r["condition_codes"])
        assert set(r["medication_groups"]) == medication_groups_of(r["atc_codes"])
        assert set(r["icd10"]) <= set(r["icd10_ever"]) and set(r["atc"]) <= set(r["atc_ever"])
    # report findings: the extractor reads back what the writer asserted (allowing rare misreads)
    shared = ("generalized_slowing", "focal_slowing", "pdr_slowing", "ied_focal", "ied_generalized", "lpd", "gpd",
              "burst_suppression", "low_voltage", "excess_beta", "mild_slowing", "asymmetry", "seizure")
    agree = [set(r["findings"]) & set(shared) == set(r["report_asserted"]) & set(shared)
             for r in j.iter_rows(named=True)]
    assert np.mean(agree) > 0.9


def test_membership_rules(fhir_cohort: pl.DataFrame) -> None:
    ix = CohortIndex.build(fhir_cohort)
    task = TaskDefinition(name="dx_hypertension", category="phenotype", kind="icd_group", codes=("icd:I10",))
    pos, cand = membership(ix, task, "ever")
    icd = fhir_cohort["icd10"].to_list()
    ever = fhir_cohort["icd10_ever"].to_list()
    assert pos.sum() > 0
    assert all(any(c.startswith("I10") for c in icd[i]) for i in np.flatnonzero(pos))
    assert not any(any(c.startswith("I10") for c in ever[i]) for i in np.flatnonzero(cand))
    pos2, cand2 = membership(ix, task, "session")
    assert (pos2 == pos).all() and cand2.sum() >= cand.sum() and not (pos2 & cand2).any()
    f = TaskDefinition(name="eeg_focal_slowing", category="finding", kind="finding", finding="focal_slowing")
    fp, fc = membership(ix, f)
    found = fhir_cohort["findings"].to_list()
    possible = fhir_cohort["findings_possible"].to_list()
    assert all("focal_slowing" in found[i] for i in np.flatnonzero(fp))
    assert not any("focal_slowing" in found[i] or "focal_slowing" in possible[i] for i in np.flatnonzero(fc))


def test_candidates_cover_groups_and_findings(fhir_cohort: pl.DataFrame) -> None:
    tasks = candidate_tasks(fhir_cohort, GeneratorConfig(atc_level=3))
    names = {t.name for t in tasks}
    assert {f"dx_{g}" for g in PHENOTYPE_GROUPS} <= names
    assert "rx_antiseizure" in names and "eeg_ied_focal" in names
    assert any(t.kind == "icd_category" for t in tasks) and any(t.kind == "atc_class" for t in tasks)
    assert len(names) == len(tasks)
    with pytest.raises(ValueError, match="unknown report findings"):
        candidate_tasks(fhir_cohort, GeneratorConfig(findings=("not_a_finding",)))


def test_task_definition_validates() -> None:
    with pytest.raises(ValueError, match="kind"):
        TaskDefinition(name="x", category="finding", kind="icd_group", codes=("icd:G40",))
    with pytest.raises(ValueError, match="icd:"):
        TaskDefinition(name="x", category="phenotype", kind="icd_group", codes=("atc:N03A",))
    with pytest.raises(ValueError, match="lower-case"):
        TaskDefinition(name="Bad Name", category="finding", kind="finding", finding="lpd")


def test_held_out_status() -> None:
    epi = TaskDefinition(name="dx_epilepsy", category="phenotype", kind="icd_group", codes=("icd:G40", "icd:G41"))
    focal = TaskDefinition(name="dx_epilepsy_focal", category="phenotype", kind="icd_group", codes=("icd:G40.0",))
    asm = TaskDefinition(name="rx_antiseizure", category="medication", kind="atc_group", codes=("atc:N03A",))
    assert held_out_status(focal, ["icd:G40"]) == "held_out"
    assert held_out_status(epi, ["icd:G40"]) == "partial"
    assert held_out_status(epi, ["icd:G40.2"]) == "partial"
    assert held_out_status(asm, ["atc:N03A"]) == "held_out"
    assert held_out_status(asm, ["icd:G40"]) == "seen"
    assert held_out_status(asm, []) == "seen"


def test_generator_min_positives(fhir_archive: Path, fhir_cohort: pl.DataFrame, tmp_path: Path) -> None:
    small = generate_suite(fhir_archive, tmp_path / "a.yaml", cohort=fhir_cohort,
                           config=SuiteConfig(generator=GeneratorConfig(min_positives=6, min_positive_patients=3)))
    big = generate_suite(fhir_archive, tmp_path / "b.yaml", cohort=fhir_cohort,
                         config=SuiteConfig(generator=GeneratorConfig(min_positives=15, min_positive_patients=3)))
    assert small.tasks and big.tasks
    assert all(t.stats.n_positive >= 6 for t in small.tasks)
    assert all(t.stats.n_positive >= 15 for t in big.tasks)
    assert {t.name for t in big.tasks} < {t.name for t in small.tasks}
    lab = big.labels.group_by("task").agg((pl.col("label") == 1).sum().alias("pos"))
    assert lab["pos"].min() >= 15
    with pytest.raises(ValueError, match="no task reached"):
        generate_suite(fhir_archive, tmp_path / "c.yaml", cohort=fhir_cohort,
                       config=SuiteConfig(generator=GeneratorConfig(min_positives=10_000)))


def test_suite_files_and_yaml(fhir_suite: Path) -> None:
    suite = load_suite(fhir_suite)
    suite.verify()
    raw = yaml.safe_load(fhir_suite.read_text())
    assert raw["name"] == "small" and raw["version"] and raw["format_version"] == 1
    assert {"labels", "splits", "balance", "cohort"} <= set(raw["files"]["sha256"])
    for t in raw["tasks"]:
        assert {"name", "category", "kind", "inclusion", "stats"} <= set(t)
        assert t["category"] in ("phenotype", "medication", "finding")
    labels = suite.labels
    assert set(labels["task"].unique()) == {t.name for t in suite.tasks}
    # controls never carry the task's codes (anywhere in the record), positives always do at the session
    cohort = suite.cohort.select("session_id", "icd10", "icd10_ever", "atc", "atc_ever", "findings")
    j = labels.join(cohort, on="session_id")
    for t in suite.tasks:
        rows = j.filter(pl.col("task") == t.name)
        if t.kind == "finding":
            assert all((t.finding in f) == bool(y) for f, y in zip(rows["findings"], rows["label"]))
            continue
        now, ever = ("icd10", "icd10_ever") if t.category == "phenotype" else ("atc", "atc_ever")
        for r in rows.iter_rows(named=True):
            if r["label"]:
                assert any(c.startswith(t.prefixes) for c in r[now]), (t.name, r["session_id"])
            else:
                assert not any(c.startswith(t.prefixes) for c in r[ever]), (t.name, r["session_id"])
    # matched sets never straddle splits
    own = labels.select("task", pl.col("session_id").alias("matched_to"), pl.col("split").alias("pos_split"))
    pairs = labels.join(own, on=["task", "matched_to"], how="left")
    assert pairs["pos_split"].null_count() == 0 and (pairs["split"] == pairs["pos_split"]).all()
    # every task: matched sizes as recorded, both classes in train and test
    for t in suite.tasks:
        rows = labels.filter(pl.col("task") == t.name)
        assert int(rows["label"].sum()) == t.stats.n_positive
        assert rows.height - int(rows["label"].sum()) == t.stats.n_control
        assert t.stats.n_control <= 2 * t.stats.n_positive
        for split in ("train", "test"):
            assert rows.filter(pl.col("split") == split)["label"].n_unique() == 2


def test_generation_is_deterministic(fhir_archive: Path, fhir_cohort: pl.DataFrame, tmp_path: Path) -> None:
    cfg = SuiteConfig(generator=GeneratorConfig(min_positives=8, min_positive_patients=4),
                      matching=MatchingConfig(ratio=1), splits=PatientSplit(salt="s1"))
    a = generate_suite(fhir_archive, tmp_path / "a.yaml", cohort=fhir_cohort, config=cfg)
    b = generate_suite(fhir_archive, tmp_path / "b.yaml", cohort=fhir_cohort, config=cfg)
    assert a.labels.equals(b.labels) and a.splits.equals(b.splits)
    assert a.spec.files.sha256["labels"] == b.spec.files.sha256["labels"]

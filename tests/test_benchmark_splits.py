"""Patient splits: deterministic, by patient; the leak check and the suite digests refuse tampering."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from benchmark_tasks.splits import SplitLeakError, assign_splits, check_no_leak
from benchmark_tasks.suite import SuiteDigestError, load_suite
from clef.patients import PatientSplit
from tests.factories import copy_suite


def test_splits_deterministic_and_by_patient() -> None:
    ids = [f"P{i:05d}" for i in range(4000)]
    a = assign_splits(ids)
    b = assign_splits(list(reversed(ids)) + ids[:10])  # any order, duplicates
    assert a.equals(b)
    assert PatientSplit().of("P00042") == a.filter(pl.col("patient_id") == "P00042")["split"][0]
    frac = a["split"].value_counts().with_columns(pl.col("count") / len(ids))
    f = dict(zip(frac["split"], frac["count"]))
    assert f["train"] == pytest.approx(0.7, abs=0.03) and f["test"] == pytest.approx(0.3, abs=0.03)
    c = assign_splits(ids, PatientSplit(salt="other", train=0.6, val=0.2, test=0.2))
    assert set(c["split"]) == {"train", "val", "test"}
    assert not a.equals(c)
    # a subset of patients keeps its splits
    sub = assign_splits(ids[:100])
    assert sub.equals(a.filter(pl.col("patient_id").is_in(ids[:100])))
    with pytest.raises(ValueError, match="sum to 1"):
        PatientSplit(train=0.5, test=0.3)


def test_leak_check_refuses() -> None:
    labels = pl.DataFrame({"task": ["t1", "t1", "t2", "t2"], "session_id": ["s1", "s2", "s3", "s4"],
                           "patient_id": ["p1", "p2", "p1", "p3"], "split": ["train", "test", "train", "test"]})
    check_no_leak(labels)
    leaked = labels.with_columns(pl.when(pl.col("session_id") == "s3").then(pl.lit("test")).otherwise("split")
                                 .alias("split"))
    with pytest.raises(SplitLeakError, match="patient p1 in \\['test', 'train'\\]"):
        check_no_leak(leaked)
    splits = pl.DataFrame({"patient_id": ["p1", "p2", "p3"], "split": ["train", "test", "test"]})
    check_no_leak(labels, splits)
    with pytest.raises(SplitLeakError, match="disagree with the split table"):
        check_no_leak(labels, splits.with_columns(pl.lit("train").alias("split")))
    with pytest.raises(SplitLeakError, match="more than one split"):
        check_no_leak(labels, pl.concat([splits, pl.DataFrame({"patient_id": ["p1"], "split": ["test"]})]))


def test_suite_splits_are_by_patient(fhir_suite: Path) -> None:
    suite = load_suite(fhir_suite)
    per_patient = suite.labels.group_by("patient_id").agg(pl.col("split").n_unique())
    assert per_patient["split"].max() == 1
    cfg = suite.spec.config.splits
    assert all(cfg.of(p) == s for p, s in suite.splits.iter_rows())


def test_leaked_suite_is_refused(fhir_suite: Path, tmp_path: Path) -> None:
    path = copy_suite(fhir_suite, tmp_path)
    suite = load_suite(path)
    labels = suite.labels
    # move one session of a patient with several sessions to the other split
    multi = labels.group_by("patient_id").agg(pl.col("session_id").n_unique().alias("n")).filter(pl.col("n") > 1)
    pid = multi["patient_id"][0]
    sid = labels.filter(pl.col("patient_id") == pid)["session_id"][0]
    flip = pl.when(pl.col("split") == "test").then(pl.lit("train")).otherwise(pl.lit("test"))
    leaked = labels.with_columns(pl.when(pl.col("session_id") == sid).then(flip).otherwise("split").alias("split"))
    leaked.write_parquet(suite.file("labels"))
    with pytest.raises(SplitLeakError, match="patient leakage"):
        load_suite(path).verify()


def test_edited_suite_is_refused(fhir_suite: Path, tmp_path: Path) -> None:
    path = copy_suite(fhir_suite, tmp_path)
    suite = load_suite(path)
    suite.labels.filter(pl.col("task") != suite.tasks[0].name).write_parquet(suite.file("labels"))
    with pytest.raises(SuiteDigestError, match="does not match the SHA-256"):
        load_suite(path).verify()

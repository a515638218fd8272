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


# ---- what mutation testing showed unchecked (bench/RESULTS.md, "Mutation testing") ---------

def test_a_session_without_a_patient_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="^sessions without a patient id cannot be split by patient; drop them first$"):
        assign_splits(["P1", "", "P2"])
    assert assign_splits(["P2", "P1"])["patient_id"].to_list() == ["P1", "P2"]  # sorted
    assert dict(assign_splits([]).schema) == {"patient_id": pl.String, "split": pl.String}  # typed when empty


def _labels(**changes: list) -> pl.DataFrame:
    rows = {"task": ["t1", "t1", "t2"], "session_id": ["s1", "s2", "s3"], "patient_id": ["p1", "p2", "p1"],
            "split": ["train", "test", "train"]}
    return pl.DataFrame({**rows, **changes}, schema={k: pl.String for k in rows})


@pytest.mark.parametrize("change,message", [
    ({"patient_id": ["p1", None, "p1"]}, "1 null patients, 0 null splits, unknown splits \\[\\]"),
    ({"split": ["train", None, "train"]}, "0 null patients, 1 null splits"),
    ({"split": ["train", "holdout", "train"]}, "unknown splits \\['holdout'\\]"),
])
def test_leak_check_refuses_rows_without_a_patient_or_a_known_split(change: dict, message: str) -> None:
    with pytest.raises(SplitLeakError, match=f"every row needs a patient_id and a split in .*{message}"):
        check_no_leak(_labels(**change))


def test_leak_check_names_the_leak() -> None:
    leaked = _labels(split=["train", "test", "test"])
    with pytest.raises(SplitLeakError, match=r"patient leakage: 1 patient\(s\) appear in more than one split, e\.g\. "
                                             r"patient p1 in \['test', 'train'\] \(tasks \['t1', 't2'\]\)"):
        check_no_leak(leaked)
    check_no_leak(_labels(split=["val", "test", "val"]))  # val is a split like the others


def test_leak_check_against_the_split_table() -> None:
    labels = _labels()
    table = pl.DataFrame({"patient_id": ["p1", "p2"], "split": ["train", "test"]})
    check_no_leak(labels, table)
    check_no_leak(labels, pl.concat([table, table]))  # a patient listed twice with one split is not a leak
    with pytest.raises(SplitLeakError, match=r"disagree with the split table for 1 patient\(s\), e\.g\. session s2 "
                                             r"of patient p2 is labelled 'test' in task t1 but the patient's "
                                             r"split is None"):
        check_no_leak(labels, table.head(1))  # p2 is not in the table
    with pytest.raises(SplitLeakError, match=r"splits table: 1 patient\(s\) listed in more than one split, e\.g\. p2"):
        check_no_leak(labels, pl.concat([table, pl.DataFrame({"patient_id": ["p2"], "split": ["train"]})]))
    with pytest.raises(ValueError, match=r"^splits\b.*split"):
        check_no_leak(labels, table.drop("split"))
    with pytest.raises(ValueError, match=r"^labels\b.*task"):
        check_no_leak(labels.drop("task"))


def test_leak_check_names_the_first_leaking_patient_and_five_of_its_tasks() -> None:
    tasks = [f"t{k}" for k in range(7)]
    labels = pl.DataFrame({"task": tasks + ["t0", "t1"], "session_id": [f"s{k}" for k in range(9)],
                           "patient_id": ["p1"] * 7 + ["p2", "p2"],
                           "split": ["train", "test"] * 3 + ["train", "train", "test"]})
    with pytest.raises(SplitLeakError, match=r"2 patient\(s\) appear in more than one split, e\.g\. patient p1 in "
                                             r"\['test', 'train'\] \(tasks \['t0', 't1', 't2', 't3', 't4'\]\);"):
        check_no_leak(labels)


def test_patient_split_fractions_and_edges() -> None:
    assert PatientSplit().fractions == {"train": 0.7, "test": 0.3}  # an empty val is no split
    three = PatientSplit(train=0.6, val=0.2, test=0.2)
    assert three.fractions == {"train": 0.6, "val": 0.2, "test": 0.2}
    assert PatientSplit(train=0.999999, test=1e-6).of("P1") == "train"
    ids = [f"P{i}" for i in range(3000)]
    counts = assign_splits(ids, three)["split"].value_counts()
    f = {s: n / len(ids) for s, n in counts.iter_rows()}
    assert f == pytest.approx({"train": 0.6, "val": 0.2, "test": 0.2}, abs=0.03)
    with pytest.raises(ValueError, match=r"must sum to 1, found train 0\.6 \+ val 0\.3 \+ test 0\.2 = 1\.1"):
        PatientSplit(train=0.6, val=0.3, test=0.2)

"""Patient-level splits of a suite and the leak check inside it.

A patient's split is the platform's one patient split (:class:`clef.patients.PatientSplit`,
a function of a salted hash of the patient id alone), the same that ``clef align`` trains
on: the same salt gives the same split on any machine, in any order, for any subset of
patients, and every task of a suite shares it. :func:`check_no_leak` refuses a labels
table in which a patient appears in two splits; leaks *across* stages (a checkpoint
aligned on a test patient) are refused by :mod:`benchmark_tasks.leakage`.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from benchmark_tasks.tables import require_columns
from clef.patients import SPLITS, PatientSplit

__all__ = ["SplitLeakError", "assign_splits", "check_no_leak"]


class SplitLeakError(ValueError):
    """A patient appears in more than one split: the benchmark refuses to run."""


def assign_splits(patient_ids: Iterable[str], config: PatientSplit | None = None) -> pl.DataFrame:
    """Split of every distinct patient.

    Parameters
    ----------
    patient_ids : iterable of str
    config : PatientSplit, optional
        Default: the platform's split.

    Returns
    -------
    polars.DataFrame
        ``patient_id``, ``split``, sorted by patient.

    Raises
    ------
    ValueError
        A null or empty patient id (a session without a patient cannot be split).
    """
    ids = sorted(set(patient_ids))
    bad = [p for p in ids if not p]
    if bad:
        raise ValueError("sessions without a patient id cannot be split by patient; drop them first")
    cfg = config or PatientSplit()
    return pl.DataFrame({"patient_id": ids, "split": [cfg.of(p) for p in ids]},
                        schema={"patient_id": pl.String, "split": pl.String})


def check_no_leak(labels: pl.DataFrame, splits: pl.DataFrame | None = None) -> None:
    """Refuse labels in which a patient is in two splits.

    Parameters
    ----------
    labels : polars.DataFrame
        ``task``, ``session_id``, ``patient_id``, ``split`` (all tasks together: a
        patient must be in one split across the whole suite).
    splits : polars.DataFrame, optional
        ``patient_id``, ``split``: the suite's split table; every label's split must be
        its patient's split there.

    Raises
    ------
    SplitLeakError
        Naming the patient(s), their splits and the task(s).
    """
    require_columns(labels, ("task", "session_id", "patient_id", "split"), "labels")
    unknown = sorted(set(labels["split"].unique().drop_nulls().to_list()) - set(SPLITS))
    if unknown or labels["split"].null_count() or labels["patient_id"].null_count():
        raise SplitLeakError(f"labels: every row needs a patient_id and a split in {list(SPLITS)}; found "
                             f"{labels['patient_id'].null_count()} null patients, "
                             f"{labels['split'].null_count()} null splits, unknown splits {unknown}")
    multi = (labels.group_by("patient_id").agg(pl.col("split").unique().sort().alias("splits"),
                                               pl.col("task").unique().sort().alias("tasks"))
             .filter(pl.col("splits").list.len() > 1).sort("patient_id"))
    if multi.height:
        first = multi.row(0, named=True)
        raise SplitLeakError(
            f"patient leakage: {multi.height} patient(s) appear in more than one split, e.g. patient "
            f"{first['patient_id']} in {first['splits']} (tasks {first['tasks'][:5]}); splits must be by "
            "patient: regenerate the suite ('clef tasks generate') instead of editing its tables")
    if splits is not None:
        require_columns(splits, ("patient_id", "split"), "splits")
        dup = splits.group_by("patient_id").agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
        if dup.height:
            raise SplitLeakError(f"splits table: {dup.height} patient(s) listed in more than one split, e.g. "
                                 f"{dup['patient_id'][0]}")
        joined = labels.join(splits.unique("patient_id").rename({"split": "patient_split"}), on="patient_id",
                             how="left")
        wrong = joined.filter(pl.col("patient_split").is_null() | (pl.col("patient_split") != pl.col("split")))
        if wrong.height:
            r = wrong.row(0, named=True)
            raise SplitLeakError(
                f"labels disagree with the split table for {wrong['patient_id'].n_unique()} patient(s), e.g. "
                f"session {r['session_id']} of patient {r['patient_id']} is labelled {r['split']!r} in task "
                f"{r['task']} but the patient's split is {r['patient_split']!r}")

"""The stage-overlap audit: no checkpoint whose supervised training saw a test patient.

A suite's leak check (:func:`benchmark_tasks.splits.check_no_leak`) looks inside the
suite. This module looks across stages: a checkpoint's ``meta.json`` says what it learned
from (``trained_on``, written by ``clef pretrain`` and ``clef align``; see
:mod:`clef.patients`), and :func:`audit_checkpoint` compares that with the suite's test
split.

* **Supervised stages** (stage 2, alignment with reports and EHR): the report findings and
  EHR codes of a patient are the labels of the benchmark's tasks. A checkpoint aligned on
  any test patient of the suite is refused (:class:`StageLeakError`, one line naming how
  many and one example patient hash). An aligned checkpoint without a record (trained
  before records existed) cannot be audited and is refused too, unless the caller accepts
  it explicitly (``allow_unaudited``), in which case the audit row says so.
* **Self-supervised stages** (stage 1, masked tokens; the tokenizer inside the
  checkpoint) use no label. Training them on the test sessions is allowed and reported as
  *transductive*, with the number of test sessions (or patients) each saw; ``clef pretrain
  --exclude-test-patients`` makes stage 1 inductive, and a tokenizer trained on an archive
  without the test patients' files makes the tokenizer inductive.

The audit rows go into the benchmark's validity card (``stage_audit`` of
:func:`benchmark_tasks.run.run_benchmark`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from benchmark_tasks.suite import Suite
from clef.model import TOKENIZER_SUBDIR
from clef.patients import RecordMismatchError, overlap
from tokenizer.hashing import file_sha256

__all__ = ["StageLeakError", "audit_checkpoint", "audit_checkpoints"]

log = logging.getLogger(__name__)


class StageLeakError(ValueError):
    """A checkpoint's supervised training saw a test patient of the suite (or cannot be audited)."""


class _TestSplit:
    """The suite's test patients and sessions; file hashes computed once, on demand."""

    def __init__(self, suite: Suite, archive: Path | None) -> None:
        test = suite.labels.filter(pl.col("split") == "test").select("session_id", "patient_id").unique()
        self.patients = sorted(set(test["patient_id"].to_list()))
        self.sessions = sorted(set(test["session_id"].to_list()))
        self._paths = (suite.cohort.filter(pl.col("session_id").is_in(self.sessions))
                       .select("session_id", "path").drop_nulls())
        self._archive = archive
        self._sha: list[str] | None = None

    def sha256(self) -> list[str]:
        """Content hashes of the test sessions' files found in the archive."""
        if self._sha is None:
            self._sha = []
            if self._archive is not None:
                for p in self._paths["path"].to_list():
                    f = self._archive / p
                    if f.is_file():
                        self._sha.append(file_sha256(f))
            if len(self._sha) < len(self.sessions):
                log.warning("stage-overlap audit: %d of %d test sessions' files found to compare with the "
                            "self-supervised stages' records", len(self._sha), len(self.sessions))
        return self._sha


def _read_meta(path: Path) -> dict[str, Any]:
    f = path / "meta.json"
    if not f.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no meta.json")
    return json.loads(f.read_text())


def _self_supervised(record: dict[str, Any] | None, test: _TestSplit) -> tuple[int | None, int | None]:
    """Test patients and test sessions a self-supervised stage's record holds (None: not recorded)."""
    if not record:
        return None, None
    patients = sessions = None
    if record.get("patients"):
        try:
            patients = overlap(record["patients"], patient_ids=test.patients)[0]
        except RecordMismatchError as exc:
            log.warning("stage-overlap audit: %s", exc)
    if record.get("sessions"):
        sessions = overlap(record["sessions"], source_sha256=test.sha256())[0]
    return patients, sessions


def audit_checkpoint(name: str, checkpoint: str | os.PathLike[str], suite: Suite, *,
                     archive: str | os.PathLike[str] | None = None, allow_unaudited: bool = False) -> dict[str, Any]:
    """Compare what a checkpoint trained on with a suite's test split.

    Parameters
    ----------
    name : str
        The model's name in the benchmark.
    checkpoint : path
        Stage-1 or aligned checkpoint directory.
    suite : Suite
    archive : path, optional
        Archive root holding the suite's files (default: the suite's), to hash the test
        sessions for the self-supervised records.
    allow_unaudited : bool
        Accept an aligned checkpoint without a training record (its row says so).

    Returns
    -------
    dict
        One row of the audit: ``model``, ``stage``, ``n_test_patients``,
        ``n_test_sessions``, ``supervised_test_patients`` (stage 2; None for stage 1),
        ``stage1_test_patients`` / ``stage1_test_sessions`` (None: not recorded),
        ``stage1_excluded``, ``tokenizer_test_sessions`` (the checkpoint's tokenizer),
        ``transductive`` (a self-supervised stage saw test sessions), ``note``.

    Raises
    ------
    StageLeakError
        The checkpoint's alignment trained on the reports or EHR of a test patient, or
        (without ``allow_unaudited``) an aligned checkpoint has no training record.
    """
    test = _TestSplit(suite, Path(archive) if archive is not None else suite.archive())
    return _audit(name, Path(checkpoint), suite, test, allow_unaudited)


def _audit(name: str, path: Path, suite: Suite, test: _TestSplit, allow_unaudited: bool) -> dict[str, Any]:
    meta = _read_meta(path)
    record = meta.get("trained_on")
    stage = int(meta.get("stage", 1))
    row: dict[str, Any] = {"model": name, "stage": stage, "n_test_patients": len(test.patients),
                           "n_test_sessions": len(test.sessions), "supervised_test_patients": None,
                           "stage1_test_patients": None, "stage1_test_sessions": None, "stage1_excluded": None,
                           "tokenizer_test_sessions": None, "transductive": None, "note": ""}
    if stage >= 2:
        sup = (record or {}).get("supervised_patients")
        if sup is None:
            msg = (f"checkpoint {name!r} ({path}) is aligned (stage 2) but records no training patients (trained "
                   "before training records existed): it cannot be audited for test patients; retrain it")
            if not allow_unaudited:
                raise StageLeakError(msg)
            row["note"] = "aligned without a training record: NOT audited"
        else:
            try:
                n, example = overlap(sup, patient_ids=test.patients)
            except RecordMismatchError as exc:
                raise StageLeakError(f"checkpoint {name!r} ({path}): {exc}") from exc
            if n:
                salt = ((record or {}).get("split") or {}).get("salt")
                raise StageLeakError(
                    f"checkpoint {name!r} ({path}) was aligned on the reports/EHR of {n} of the suite's "
                    f"{len(test.patients)} test patients (e.g. patient hash {example}); align it with the suite's "
                    f"patient split (suite salt {suite.spec.config.splits.salt!r}, checkpoint salt {salt!r})")
            row["supervised_test_patients"] = 0
        record = (record or {}).get("stage1")
    row["stage1_test_patients"], row["stage1_test_sessions"] = _self_supervised(record, test)
    row["stage1_excluded"] = (record or {}).get("excluded") if record else None
    tok_meta = path / TOKENIZER_SUBDIR / "meta.json"
    tok_record = json.loads(tok_meta.read_text()).get("trained_on") if tok_meta.is_file() else None
    row["tokenizer_test_sessions"] = _self_supervised(tok_record, test)[1]
    notes = [row["note"]] if row["note"] else []
    for stage, seen in (("stage 1", [row["stage1_test_patients"], row["stage1_test_sessions"]]),
                        ("the tokenizer", [row["tokenizer_test_sessions"]])):
        seen = [v for v in seen if v is not None]
        if not seen:
            notes.append(f"{stage} records no sessions: not audited")
        elif max(seen):
            notes.append(f"transductive: {stage} (self-supervised, no labels) saw test sessions")
    known = [v for v in (row["stage1_test_patients"], row["stage1_test_sessions"], row["tokenizer_test_sessions"])
             if v is not None]
    row["transductive"] = bool(max(known)) if known else None
    row["note"] = "; ".join(notes)
    return row


def audit_checkpoints(suite: Suite, checkpoints: Sequence[tuple[str | None, Path]], *,
                      archive: str | os.PathLike[str] | None = None,
                      allow_unaudited: bool = False) -> list[dict[str, Any]]:
    """:func:`audit_checkpoint` for every ``(name or None, path)`` (name defaults to the folder's)."""
    test = _TestSplit(suite, Path(archive) if archive is not None else suite.archive())
    return [_audit(name or Path(p).name, Path(p), suite, test, allow_unaudited) for name, p in checkpoints]

"""The stage-overlap audit (`benchmark_tasks.leakage`) on small fakes, without a trained pipeline.

A checkpoint here is a folder holding only the ``meta.json`` files the audit reads, and the
benchmark's suite a stand-in with the tables the audit reads (labels, cohort, its archive
and split salt); `tests/test_stage_leakage.py` runs the same audit on trained checkpoints.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest

import benchmark_tasks.leakage as leakage
from benchmark_tasks.leakage import StageLeakError, audit_checkpoint, audit_checkpoints
from clef.patients import patient_record
from tokenizer.deid import patient_hash
from tokenizer.hashing import file_sha256, session_record

#: Labels of two tasks: test patients P1 (sessions s1, s2) and P2 (s3, which has no file),
#: train patient P3 (s4).
LABELS = pl.DataFrame({
    "task": ["t1", "t1", "t1", "t1", "t2"],
    "session_id": ["s1", "s2", "s3", "s4", "s1"],
    "patient_id": ["P1", "P1", "P2", "P3", "P1"],
    "split": ["test", "test", "test", "train", "test"],
})
SPLIT_SALT = "split-salt"
NOTE_STAGE1 = "transductive: stage 1 (self-supervised, no labels) saw test sessions"
NOTE_TOKENIZER = "transductive: the tokenizer (self-supervised, no labels) saw test sessions"


class _Benchmark:
    """What the audit reads of a `benchmark_tasks.suite.Suite`."""

    def __init__(self, archive: Path | None, paths: dict[str, str | None]) -> None:
        self.labels = LABELS
        self.cohort = pl.DataFrame({"session_id": list(paths), "path": list(paths.values())},
                                   schema={"session_id": pl.String, "path": pl.String})
        self._archive = archive
        self.spec = SimpleNamespace(config=SimpleNamespace(splits=SimpleNamespace(salt=SPLIT_SALT)))

    def archive(self) -> Path | None:
        return self._archive


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    (root / "a").mkdir(parents=True)
    for s in ("s1", "s2", "s4"):
        (root / "a" / f"{s}.edf").write_bytes(f"recording {s}".encode())
    return root


def _sha(archive: Path, session: str) -> str:
    return file_sha256(archive / "a" / f"{session}.edf")


def _bench(archive: Path | None, *, every_file: bool = False) -> _Benchmark:
    # s3's path is unknown (null) unless every_file, then it names a file that exists
    paths = {s: f"a/{s}.edf" for s in ("s1", "s2", "s3", "s4")}
    if not every_file:
        paths["s3"] = None
    elif archive is not None:
        (archive / "a" / "s3.edf").write_bytes(b"recording s3")
    return _Benchmark(archive, paths)


def _checkpoint(path: Path, meta: dict[str, Any], tokenizer: dict[str, Any] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps(meta))
    if tokenizer is not None:
        (path / "tokenizer").mkdir()
        (path / "tokenizer" / "meta.json").write_text(json.dumps(tokenizer))
    return path


def _row(**values: Any) -> dict[str, Any]:
    row = {"model": "m", "stage": 1, "n_test_patients": 2, "n_test_sessions": 3, "supervised_test_patients": None,
           "stage1_test_patients": None, "stage1_test_sessions": None, "stage1_excluded": None,
           "tokenizer_test_sessions": None, "transductive": None, "note": ""}
    return {**row, **values}


def test_stage1_on_test_sessions_is_counted_and_reported_transductive(
        archive: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[Path] = []
    monkeypatch.setattr(leakage, "file_sha256", lambda p: hashed.append(p) or file_sha256(p))
    stage1 = {"sessions": session_record([_sha(archive, "s1"), _sha(archive, "s4")]),
              "patients": patient_record(["P1", "P3"]), "excluded": None}
    tokenizer = {"sessions": session_record(_sha(archive, s) for s in ("s1", "s2", "s4"))}
    ck = _checkpoint(tmp_path / "ck", {"trained_on": stage1}, tokenizer={"trained_on": tokenizer})
    with caplog.at_level(logging.WARNING, logger="benchmark_tasks.leakage"):
        row = audit_checkpoint("m", ck, _bench(archive))
    assert row == _row(stage1_test_patients=1, stage1_test_sessions=1, tokenizer_test_sessions=2, transductive=True,
                       note=f"{NOTE_STAGE1}; {NOTE_TOKENIZER}")
    # the test sessions' files are hashed once for both records; s3 has no path to hash
    assert sorted(p.name for p in hashed) == ["s1.edf", "s2.edf"]
    assert caplog.messages == ["stage-overlap audit: 2 of 3 test sessions' files found to compare with the "
                               "self-supervised stages' records"]


def test_inductive_stage1_and_a_tokenizer_without_a_record(archive: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    ck = _checkpoint(tmp_path / "ck", {"stage": 1, "trained_on": {
        "sessions": session_record([_sha(archive, "s4")]), "patients": patient_record(["P3"]),
        "excluded": "test patients"}})
    with caplog.at_level(logging.WARNING, logger="benchmark_tasks.leakage"):
        row = audit_checkpoint("m", ck, _bench(archive, every_file=True))
    assert row == _row(stage1_test_patients=0, stage1_test_sessions=0, stage1_excluded="test patients",
                       transductive=False, note="the tokenizer records no sessions: not audited")
    assert caplog.messages == []  # every test session's file was found


def test_checkpoints_without_records_are_not_audited(archive: Path, tmp_path: Path) -> None:
    # pretrain writes "patients": None when it had no archive to map sessions to patients
    ck = _checkpoint(tmp_path / "ck", {"trained_on": {"sessions": session_record([_sha(archive, "s2")]),
                                                      "patients": None}},
                     tokenizer={"trained_on": None})
    row = audit_checkpoint("m", ck, _bench(archive))
    assert row == _row(stage1_test_sessions=1, transductive=True,
                       note=f"{NOTE_STAGE1}; the tokenizer records no sessions: not audited")
    bare = _checkpoint(tmp_path / "bare", {"format": 1}, tokenizer={"format": 1})
    assert audit_checkpoint("m", bare, _bench(archive)) == _row(
        note="stage 1 records no sessions: not audited; the tokenizer records no sessions: not audited")
    with pytest.raises(FileNotFoundError, match=rf"^checkpoint {re.escape(str(tmp_path))}/none: no meta.json$"):
        audit_checkpoint("m", tmp_path / "none", _bench(archive))


def test_aligned_checkpoint_of_train_patients_passes_and_carries_its_stage1_record(archive: Path,
                                                                                   tmp_path: Path) -> None:
    ck = _checkpoint(tmp_path / "ck", {"stage": 2, "trained_on": {
        "supervised_patients": patient_record(["P3"]), "split": {"salt": SPLIT_SALT},
        "sessions": session_record([_sha(archive, s) for s in ("s1", "s2", "s4")]),  # stage 2's own: not stage 1's
        "stage1": {"sessions": session_record([_sha(archive, "s1")]), "patients": patient_record(["P1", "P2"]),
                   "excluded": None}}})
    row = audit_checkpoint("m", ck, _bench(archive))
    assert row == _row(stage=2, supervised_test_patients=0, stage1_test_patients=2, stage1_test_sessions=1,
                       transductive=True, note=f"{NOTE_STAGE1}; the tokenizer records no sessions: not audited")


def test_aligned_checkpoint_that_saw_a_test_patient_is_refused_in_one_line(archive: Path, tmp_path: Path) -> None:
    ck = _checkpoint(tmp_path / "ck", {"stage": 2, "trained_on": {
        "supervised_patients": patient_record(["P2", "P3"]), "split": {"salt": "other-split"}}})
    msg = (f"checkpoint 'm' ({ck}) was aligned on the reports/EHR of 1 of the suite's 2 test patients (e.g. patient "
           f"hash {patient_hash('P2')}); align it with the suite's patient split (suite salt '{SPLIT_SALT}', "
           "checkpoint salt 'other-split')")
    with pytest.raises(StageLeakError) as err:
        audit_checkpoint("m", ck, _bench(archive))
    assert str(err.value) == msg
    # a stage above 2 is supervised too; a record without its split says so as None
    ck3 = _checkpoint(tmp_path / "ck3", {"stage": 3, "trained_on": {"supervised_patients": patient_record(["P1"])}})
    with pytest.raises(StageLeakError, match=r"of 1 of the suite's 2 test patients .*checkpoint salt None\)$"):
        audit_checkpoint("m", ck3, _bench(archive))


def test_aligned_checkpoint_without_a_record_is_refused_unless_accepted(archive: Path, tmp_path: Path) -> None:
    for i, meta in enumerate(({"stage": 2}, {"stage": 2, "trained_on": {"split": {}}})):
        ck = _checkpoint(tmp_path / f"ck{i}", meta)
        with pytest.raises(StageLeakError) as err:
            audit_checkpoint("m", ck, _bench(archive))
        assert str(err.value) == (f"checkpoint 'm' ({ck}) is aligned (stage 2) but records no training patients "
                                  "(trained before training records existed): it cannot be audited for test "
                                  "patients; retrain it")
        row = audit_checkpoint("m", ck, _bench(archive), allow_unaudited=True)
        assert row == _row(stage=2, note="aligned without a training record: NOT audited; stage 1 records no "
                                         "sessions: not audited; the tokenizer records no sessions: not audited")


def test_patient_records_under_another_salt(archive: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = patient_record(["P1"], salt="another-installation")
    ck = _checkpoint(tmp_path / "ck", {"stage": 2, "trained_on": {"supervised_patients": other}})
    with pytest.raises(StageLeakError, match=rf"^checkpoint 'm' \({re.escape(str(ck))}\): the checkpoint's patient "
                                             "record was made under another de-identification salt"):
        audit_checkpoint("m", ck, _bench(archive))
    # stage 1's patients cannot be compared: a warning, and its sessions are still counted
    ck1 = _checkpoint(tmp_path / "ck1", {"trained_on": {"patients": other,
                                                        "sessions": session_record([_sha(archive, "s1")])}})
    with caplog.at_level(logging.WARNING, logger="benchmark_tasks.leakage"):
        row = audit_checkpoint("m", ck1, _bench(archive, every_file=True))
    assert row["stage1_test_patients"] is None and row["stage1_test_sessions"] == 1
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("stage-overlap audit: the checkpoint's patient record was made under another")


def test_the_archive_given_replaces_the_recorded_one(archive: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    ck = _checkpoint(tmp_path / "ck", {"trained_on": {"sessions": session_record([_sha(archive, "s1")])}})
    assert audit_checkpoint("m", ck, _bench(archive))["stage1_test_sessions"] == 1
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "a").mkdir(parents=True)
    (elsewhere / "a" / "s1.edf").write_bytes(b"another content")
    assert audit_checkpoint("m", ck, _bench(archive), archive=str(elsewhere))["stage1_test_sessions"] == 0
    assert audit_checkpoint("m", ck, _bench(tmp_path / "x"), archive=archive)["stage1_test_sessions"] == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="benchmark_tasks.leakage"):
        assert audit_checkpoint("m", ck, _bench(None))["stage1_test_sessions"] == 0  # nothing to hash
    assert caplog.messages == ["stage-overlap audit: 0 of 3 test sessions' files found to compare with the "
                               "self-supervised stages' records"]


def test_several_checkpoints_share_one_hashing_of_the_test_files(archive: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[Path] = []
    monkeypatch.setattr(leakage, "file_sha256", lambda p: hashed.append(p) or file_sha256(p))
    a = _checkpoint(tmp_path / "first", {"trained_on": {"sessions": session_record([_sha(archive, "s1")])}})
    b = _checkpoint(tmp_path / "second", {"trained_on": {"sessions": session_record([_sha(archive, "s4")])}})
    rows = audit_checkpoints(_bench(archive, every_file=True), [(None, a), ("named", b)])
    assert [r["model"] for r in rows] == ["first", "named"]
    assert [r["stage1_test_sessions"] for r in rows] == [1, 0]
    assert sorted(p.name for p in hashed) == ["s1.edf", "s2.edf", "s3.edf"]
    hashed.clear()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "a").mkdir(parents=True)
    rows = audit_checkpoints(_bench(archive), [(None, a)], archive=str(elsewhere))
    assert rows[0]["stage1_test_sessions"] == 0 and hashed == []
    ck = _checkpoint(tmp_path / "aligned", {"stage": 2})
    with pytest.raises(StageLeakError, match="records no training patients"):
        audit_checkpoints(_bench(archive), [(None, ck)])
    leaky = _checkpoint(tmp_path / "leaky", {"stage": 2, "trained_on": {"supervised_patients": patient_record(["P1"])}})
    with pytest.raises(StageLeakError, match=rf"suite salt '{SPLIT_SALT}', checkpoint salt None\)$"):
        audit_checkpoints(_bench(archive), [(None, a), (None, leaky)])
    assert audit_checkpoints(_bench(archive), [(None, ck)], allow_unaudited=True)[0]["note"].startswith(
        "aligned without a training record: NOT audited")

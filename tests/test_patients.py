"""What a checkpoint records of its training patients and sessions (clef.patients), and how a
later stage compares that record with its test split."""

from __future__ import annotations

import json

import pytest

from clef.patients import RecordMismatchError, overlap, patient_record, salt_id
from tokenizer.deid import patient_hash
from tokenizer.hashing import session_record


def test_salt_id_fingerprints_the_salt_not_the_id() -> None:
    assert salt_id() == salt_id("test-salt")  # the suite's CLEF_DEID_SALT (conftest)
    assert len(salt_id()) == 12 and salt_id("a") != salt_id("b")
    assert "test-salt" not in salt_id()


def test_patient_record_holds_salted_keys_and_the_salt_fingerprint() -> None:
    rec = patient_record(["P1", "P2", "P2", ""], salt="s1")
    assert rec["kind"] == "patients" and rec["salt_id"] == salt_id("s1") and rec["n"] == 2
    assert rec["keys"] == sorted([patient_hash("P1", "s1"), patient_hash("P2", "s1")])
    assert "P1" not in json.dumps(rec)


def test_overlap_counts_common_patients_under_the_same_salt_only() -> None:
    rec = patient_record(["P1", "P2"], salt="s1")
    assert overlap(rec, patient_ids=["P2", "P3", ""], salt="s1") == (1, patient_hash("P2", "s1"))
    assert overlap(rec, patient_ids=["P3"], salt="s1") == (0, None)
    both = overlap(rec, patient_ids=["P1", "P2"], salt="s1")
    assert both == (2, min(patient_hash("P1", "s1"), patient_hash("P2", "s1")))  # the first key, sorted
    with pytest.raises(RecordMismatchError, match=f"salt id {salt_id('s1')}, here {salt_id('s2')}.*CLEF_DEID_SALT"):
        overlap(rec, patient_ids=["P1"], salt="s2")


def test_overlap_of_a_session_record_compares_file_digests() -> None:
    shas = ["a" * 64, "b" * 64]
    rec = session_record(shas)
    assert overlap(rec, source_sha256=["b" * 64, "c" * 64, ""]) == (1, "b" * 16)
    assert overlap(rec, patient_ids=["P1"]) == (0, None)  # patients are not looked for in a session record
    assert overlap({"kind": "sessions"}, source_sha256=shas) == (0, None)  # a record that holds no keys

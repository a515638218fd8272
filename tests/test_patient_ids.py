"""Placeholder patient IDs written by real devices are no patient; the archive's own patient
(``sessions.csv``, FHIR) wins over the header; unknown patients are never merged."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.factories import copy_real, real_file, set_patient_field
from tokenizer import read_recording
from tokenizer.deid import (Deidentified, anonymous_id, deidentify, get_salt, is_placeholder_id, known_patient_hash,
                            parse_edfplus_date, patient_hash)

NK = "nk_chtypes_edfplusC.edf"  # Nihon Kohden export: writes "0 X <birthdate> No_Name" without an ID
EEGMAT = "eegmat_Subject00_1.edf"
OPENBCI = "openbci_multi_annot_bdfplus.bdf"

#: Patient fields as devices and anonymisers write them when no ID was entered.
PLACEHOLDERS = [
    "0 X 01-JAN-2019 No_Name",  # Nihon Kohden
    "0",  # NeuroCom
    "00000000",
    "X X X X",  # EDF+ "unknown" in every subfield
    "X M 01-JAN-1970 X",
    "",
    "Anonymous",
    "unknown",
    "No_Name",
    "N/A F 12-MAR-1961 Anonymous",
]


@pytest.mark.parametrize("field", PLACEHOLDERS)
def test_placeholder_ids_in_a_real_header_give_no_patient_hash(tmp_path: Path, field: str) -> None:
    p = set_patient_field(copy_real(real_file(NK), tmp_path / "nk.edf"), field)
    rec = read_recording(p)
    assert rec.deid.patient_hash is None
    assert any(("placeholder" in w or "no patient ID" in w) and "its own patient" in w for w in rec.warnings)


def test_a_real_id_is_hashed_and_never_shown(tmp_path: Path) -> None:
    p = set_patient_field(copy_real(real_file(NK), tmp_path / "nk.edf"), "MRN0042 F 02-FEB-1980 Jane_Doe")
    rec = read_recording(p)
    assert rec.deid.patient_hash == known_patient_hash("MRN0042") and rec.deid.sex == "F"
    text = json.dumps(rec.summary())
    assert "MRN0042" not in text and "Jane" not in text and not any("placeholder" in w for w in rec.warnings)


def test_three_strangers_on_three_machines_are_not_one_patient(tmp_path: Path) -> None:
    """Before: Nihon Kohden's "0 ... No_Name", NeuroCom's "0" and a blank code all hashed to one patient."""
    files = [set_patient_field(copy_real(real_file(NK), tmp_path / "nk.edf"), "0 X 01-JAN-2019 No_Name"),
             set_patient_field(copy_real(real_file(EEGMAT), tmp_path / "neurocom.edf"), "0"),
             set_patient_field(copy_real(real_file(OPENBCI), tmp_path / "obci.bdf"), "X F 01-JAN-2000 X")]
    assert [read_recording(f).deid.patient_hash for f in files] == [None, None, None]


def test_placeholder_rule_is_not_too_greedy() -> None:
    for real in ("0042", "P000123", "MRN0", "Subject0", "X17", "anonymous-7"):
        assert not is_placeholder_id(real), real
    for code, sex in (("0", "M"), ("X", "F")):
        d, w = deidentify(f"{code} {sex} 01-JAN-1990 Subject0", "Startdate 01-JAN-2020 X X X", "01.01.20")
        assert d.patient_hash is None and d.sex == sex and d.age_years == 30.0  # the rest of the field is kept
    assert known_patient_hash("No_Name") is None and known_patient_hash(None) is None
    assert known_patient_hash("P1") == known_patient_hash(" p1 ")


def test_age_comes_from_the_header_dates_capped_at_90_and_refused_when_implausible() -> None:
    pid = known_patient_hash("P1")
    cases = [  # patient field, recording field, dd.mm.yy startdate -> age, warnings
        ("P1 M 15-JUN-1925 Name", "Startdate 16-jun-2020 X X X", "01.01.01", 90.0, []),  # 95: Safe Harbor cap
        ("P1 F 01-JAN-1990 X", "Startdate 30-FEB-2020 X", "02.07.99", 9.5, []),  # bad EDF+ date: dd.mm.yy, 99 -> 1999
        ("P1 F 01-JAN-2000 X", "X", "01.01.84", 84.0, []),  # 84 -> 2084
        ("P1 F 01-JAN-2000 X", "X", "01.01.85", None, ["implausible age from header dates: age left unknown"]),
        ("P1 F 01-JAN-1850 X", "X", "01.01.99", None, ["implausible age from header dates: age left unknown"]),
        ("P1 F 01-JAN-1990 X", "Startdate X", "1.1.99", None,
         ["birthdate present but recording date unreadable: age unknown"]),
        ("P1 F 01-JAN-1990 X", "X", "31.02.99", None, ["birthdate present but recording date unreadable: age unknown"]),
        ("P1 X X X", "X", "01.01.99", None, []),
        ("P1 F 01-JAN-1990 X", "Recorded 01-JAN-2000", "01.01.99", 9.0, []),  # only a Startdate subfield counts
        ("P1 M 01-JAN-1990", "Startdate 01-JAN-1999", "01.01.01", 9.0, []),  # no name subfield: still EDF+
        ("P1 F X Jane", "X", "01.01.99", None, []),
        ("P1 F 01-JAN-2020 X", "X", "01.01.20", 0.0, []),  # recorded on the day of birth
        ("P1 F 01-JAN-1894 X", "X", "01.07.19", None, ["implausible age from header dates: age left unknown"]),
    ]
    for fields in cases:
        d, w = deidentify(*fields[:3])
        assert (d.age_years, w) == fields[3:], fields
        assert d.patient_hash == pid and d.sex == {"M": "M", "F": "F"}.get(fields[0].split()[1])
    assert deidentify("P1 M 01-JAN-1990 X", "X", "01.01.20")[0].to_dict() == {
        "sex": "M", "age_years": 30.0, "patient_hash": pid}
    assert deidentify("P1 M 01-JAN-1990 X", "X", "01.01.20", salt="other")[0] == Deidentified(
        "M", 30.0, patient_hash("P1", "other"))
    for text in ("X", "1-JAN-19900", "01-FOO-2000", "32-JAN-2000", ""):
        assert parse_edfplus_date(text) is None, text
    assert str(parse_edfplus_date(" 1-jan-2000 ")) == "2000-01-01"


def test_a_placeholder_warning_names_only_the_placeholder() -> None:
    no_id = ": no patient hash; this session counts as its own patient"
    assert deidentify("", "X", "01.01.20")[1] == ["no patient ID in the header" + no_id]
    assert deidentify(" No_Name  X ", "X", "01.01.20")[1] == ["patient ID in the header is a placeholder ('No_Name X')" + no_id]
    assert deidentify("Anonymous", "X", "01.01.20") == (Deidentified(None, None, None), [
        "patient ID in the header is a placeholder ('Anonymous')" + no_id])


def test_hashes_are_salted_sha256_and_anonymous_ids_keep_kinds_apart() -> None:
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    assert patient_hash(" p 1 ") == sha("test-salt\x00P 1") and patient_hash("p1", "s") == sha("s\x00P1")
    assert known_patient_hash("p1", "s") == sha("s\x00P1")
    assert anonymous_id("a/B", "path") == sha("test-salt\x00path\x00a/B") != anonymous_id("a/b", "path")
    assert anonymous_id("x", "session", "s") == sha("s\x00session\x00x") != anonymous_id("x", "path", "s")
    for kind in ("", "a\x00b"):
        with pytest.raises(ValueError, match="kind must be a non-empty name without NUL"):
            anonymous_id("x", kind)


def test_the_salt_is_created_once_privately_and_an_argument_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEF_DEID_SALT")
    monkeypatch.setenv("CLEF_HOME", str(tmp_path / "home"))
    salt = get_salt()
    path = tmp_path / "home" / "deid_salt"
    assert len(salt) == 32 and path.read_text() == salt + "\n" and path.stat().st_mode & 0o777 == 0o600
    assert get_salt() == salt and get_salt("mine") == "mine" and os.listdir(path.parent) == ["deid_salt"]
    monkeypatch.setenv("CLEF_DEID_SALT", "env")
    assert get_salt() == "env" and get_salt("mine") == "mine"


# -- the store: the archive's patient first, unknown patients never merged --------------------

def _archive(root: Path) -> dict[str, Path]:
    """Five real recordings, as a hospital archive holds them: three with placeholder IDs
    (three different people), two with real header IDs."""
    files = {
        "nk_noid.edf": (NK, "0 X 01-JAN-2019 No_Name"),
        "neurocom_noid.edf": (EEGMAT, "0"),
        "obci_noid.bdf": (OPENBCI, "X F 01-JAN-2000 X"),
        "visit1.edf": (EEGMAT, "MRN111 M 01-JAN-1990 John_Roe"),
        "visit2.edf": (NK, "MRN999 M 01-JAN-1990 John_Roe"),  # a typo in the header: the archive knows better
    }
    return {name: set_patient_field(copy_real(real_file(src), root / name), field)
            for name, (src, field) in files.items()}


def _store_from(archive: Path, store: Path) -> None:
    """Record the archive's files in a store the way ``clef embed`` does (its recorder), with
    random vectors in place of a model's."""
    from services.batch import EmbedSummary, _Recorder
    from services.config import EmbedConfig
    from services.discovery import discover
    from tokenizer.header_facts import read_header_facts
    from services.store import EmbeddingStore
    from services.store_writer import StoreWriter
    from services.worker import DONE, FileResult

    files = discover(archive)
    rng = np.random.default_rng(0)
    with StoreWriter(store, archive) as w:
        rec = _Recorder(w, EmbeddingStore(store), "m" * 16, 8, "none", {f.rel: f for f in files}, EmbedConfig(),
                        EmbedSummary())
        for k, f in enumerate(files):
            v = rng.normal(size=8).astype(np.float32)
            rec.record(FileResult(rel=f.rel, size=f.size, mtime_ns=f.mtime_ns, status=DONE, sha256=f"{k:064x}",
                                  facts=read_header_facts(f.path), vector=v, windows=v[None]))
        rec.maybe_flush(force=True)


def test_sessions_csv_patient_takes_precedence_over_the_header(tmp_path: Path) -> None:
    from services.store import EmbeddingStore

    archive = tmp_path / "archive"
    _archive(archive)
    with open(archive / "sessions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session_id", "patient_id", "path"])
        w.writerows([["v1", "PAT-1", "visit1.edf"], ["v2", "PAT-1", "visit2.edf"], ["n1", "", "nk_noid.edf"],
                     ["n2", "0", "neurocom_noid.edf"]])  # a placeholder in the table is no patient either
    _store_from(archive, tmp_path / "store")
    ses = EmbeddingStore(tmp_path / "store").sessions()
    ph = dict(zip(ses["session_id"], ses["patient_hash"]))
    assert ph["v1"] == ph["v2"] == known_patient_hash("PAT-1")  # the archive's patient, not MRN111 / MRN999
    assert ph["n1"] is None and ph["n2"] is None and ph["obci_noid"] is None
    assert "MRN" not in ses.write_csv() and "PAT-1" not in ses.write_csv()


def test_fhir_procedure_patient_takes_precedence_over_the_header(tmp_path: Path) -> None:
    from services.discovery import discover

    archive = tmp_path / "archive"
    _archive(archive)
    (archive / "fhir").mkdir()
    entries = [{"resource": {"resourceType": "Patient", "id": "pat-7", "gender": "male", "birthDate": "1990-01-01"}}]
    for sid in ("visit1", "visit2", "nk_noid"):
        entries.append({"resource": {
            "resourceType": "Procedure", "id": f"proc-{sid.replace('_', '-')}", "status": "completed",
            "identifier": [{"system": "https://hospital.example/sid/eeg-session", "value": sid}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "54550000"}]},
            "subject": {"reference": "Patient/pat-7"}, "performedDateTime": "2020-01-01T09:00:00Z"}})
    (archive / "fhir" / "bundle.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                                              "entry": entries}))
    ph = {f.session_id: f.patient_hash for f in discover(archive)}
    assert ph["visit1"] == ph["visit2"] == ph["nk_noid"] == known_patient_hash("pat-7")
    assert ph["neurocom_noid"] is None and ph["obci_noid"] is None  # not in FHIR: the header decides later


def test_per_patient_search_keeps_every_unknown_patient(tmp_path: Path) -> None:
    from services.search import CohortSearcher

    archive, store = tmp_path / "archive", tmp_path / "store"
    _archive(archive)
    with open(archive / "sessions.csv", "w", newline="") as f:
        f.write("session_id,patient_id,path\nv1,PAT-1,visit1.edf\nv2,PAT-1,visit2.edf\n")
    _store_from(archive, store)
    s = CohortSearcher(store)
    # from a known patient: the three unknown patients are three patients; PAT-1 itself is excluded
    found = [n.session_id for n in s.search_session("v1", k=10, per_patient=True)]
    assert sorted(found) == ["neurocom_noid", "nk_noid", "obci_noid"]
    # from an unknown patient: the other unknowns stay, and PAT-1's two sessions count once
    found = [n.session_id for n in s.search_session("nk_noid", k=10, per_patient=True)]
    assert len(found) == 3 and {"neurocom_noid", "obci_noid"} <= set(found) and len({"v1", "v2"} & set(found)) == 1
    # from the shell, as a user runs it
    r = subprocess.run([sys.executable, "-m", "clef", "search", str(store), "--session", "nk_noid", "-k", "10",
                        "--per-patient", "--json"], capture_output=True, text=True, env=dict(os.environ), timeout=180)
    assert r.returncode == 0, r.stderr
    ids = [n["session_id"] for n in json.loads(r.stdout)["neighbours"]]
    assert sorted(ids) == sorted(found)

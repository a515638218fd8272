"""``clef audit``: one table for a whole archive, from headers (and data on request), on the
real files, on real files damaged as archives damage them, and on a synthetic hospital;
and the mains frequency found in the signal (``clef inspect`` and the audit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clef.audit import audit_archive, label_style
from tests.factories import copy_real, cut_mid_record, keep_records, real_file, set_patient_field
from tokenizer import IngestError, SignalContract, read_header, read_recording
from tokenizer.mains import detect_mains

EEGMAT = "eegmat_Subject00_1.edf"


def _clef(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clef", *args], capture_output=True, text=True, env=dict(os.environ),
                          timeout=300)


def test_label_styles() -> None:
    assert label_style(["EEG FP1-REF", "EEG C3-REF"]) == "EEG X-REF"
    assert label_style(["EEG Fp1-Ref"]) == "EEG X-Ref"
    assert label_style(["Fc5.", "Cz.."]) == "X."
    assert label_style(["FP1-F7", "F7-T7"]) == "X-X"
    assert label_style(["EEG C3-A2", "EEG C3-A2", "EEG Fp1-LE"]) == "EEG X-A2 | EEG X-LE"
    assert label_style([]) == "—"


def test_header_audit_of_the_real_files_agrees_with_reading_them(real_dir: Path) -> None:
    contract = SignalContract()
    audit = audit_archive(real_dir, contract)
    by_path = {f.path: f for f in audit.files}
    assert len(by_path) == 7 and audit.mode == "headers"
    for rel, fa in by_path.items():  # the header's verdict is the reader's (these files need no data to decide)
        try:
            rec = read_recording(real_file(rel), contract)
            rec.check_long_enough(contract)
            kind = None
        except IngestError as exc:
            kind = exc.kind
        assert fa.error_kind == kind, (rel, fa.error_kind, kind)
        assert fa.ok == (kind is None)
    c = audit.counts()
    assert c["outcome"] == {"embedded": 3, "not embedded: too_short": 2, "not embedded: no_signals": 2}
    assert c["format"] == {"EDF+C": 7}
    assert by_path["header_only_white_noise/e2b_chb01_01_sample.edf"].montage == "bipolar"
    assert by_path["eegmat_Subject00_1.edf"].label_style == "EEG X"
    assert by_path["eegmmidb_bci2000_overlap_annot.edf"].label_style == "X."
    assert by_path["eegmat_Subject00_1.edf"].patient_id == "placeholder/none"  # "0 M 01-JAN-1990 Subject0"
    assert audit.reasons()["too_short"]["files"] == 2


def test_header_audit_reads_no_signal(real_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import clef.audit

    def forbidden(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("the header audit read a signal")

    monkeypatch.setattr(clef.audit, "read_recording", forbidden)
    monkeypatch.setattr(clef.audit, "detect_mains", forbidden)
    assert audit_archive(real_dir).n_ok == 3


def test_audit_of_a_damaged_archive_counts_why(tmp_path: Path) -> None:
    a = tmp_path / "archive"
    copy_real(real_file(EEGMAT), a / "ok.edf")
    cut_mid_record(copy_real(real_file(EEGMAT), a / "crashed.edf"), 100)
    keep_records(copy_real(real_file(EEGMAT), a / "stopped.edf"), 3)
    set_patient_field(copy_real(real_file("eegmat_Subject00_2.edf"), a / "site2" / "other.edf"), "MRN77 F 01-JAN-1970 X")
    (a / "notes.edf").write_text("Patient: Jane Doe\n")
    audit = audit_archive(a)
    by = {f.path: f for f in audit.files}
    assert by["crashed.edf"].ok and by["crashed.edf"].truncated_tail_s == 10.0
    assert by["stopped.edf"].error_kind == "too_short" and by["notes.edf"].error_kind == "not_edf"
    c = audit.counts()
    assert c["truncated tail"] == {"1 files, 10 s lost": 1}
    assert c["outcome"] == {"embedded": 3, "not embedded: too_short": 1, "not embedded: not_edf": 1}
    assert c["patient ID"] == {"placeholder/none": 3, "known": 1}
    strict = audit_archive(a, strict=True)
    assert {f.path: f.error_kind for f in strict.files}["crashed.edf"] == "truncated"
    text = json.dumps(audit.to_dict()) + audit.to_markdown()
    assert "MRN77" not in text and "Jane" not in text
    assert str(tmp_path) not in text.replace(str(a), "ROOT")  # paths relative to the archive


def test_cli_audit_json_and_markdown(real_dir: Path) -> None:
    r = _clef("audit", str(real_dir), "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["files_total"] == 7 and d["embedded"] == 3 and d["mode"] == "headers" and d["seconds"] >= 0
    assert d["reasons"]["no_signals"]["files"] == 2 and len(d["files"]) == 7
    r = _clef("audit", str(real_dir), "--markdown", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "| | value | files |" in r.stdout and "| outcome | embedded | 3 |" in r.stdout
    assert "`too_short` (2)" in r.stdout
    assert _clef("audit", str(real_dir / "nope")).returncode != 0


# -- mains ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,mains", [("nk_MB0400FU_edfplusD.edf", 50.0), ("nk_chtypes_edfplusC.edf", 60.0),
                                        ("eegmmidb_bci2000_overlap_annot.edf", 60.0),
                                        ("eegmat_Subject00_1.edf", None),  # notched at 50 Hz at export
                                        ("openbci_multi_annot_bdfplus.bdf", None)])
def test_mains_detected_in_real_files(name: str, mains: float | None) -> None:
    est = detect_mains(read_header(real_file(name)))
    assert est.freq == mains, est


def test_inspect_warns_when_the_mains_differs_from_the_notch() -> None:
    """A Nihon Kohden recording from a 50 Hz site read under the default 60 Hz contract."""
    p = real_file("nk_MB0400FU_edfplusD.edf")
    r = _clef("inspect", "--json", str(p))
    rec = json.loads(r.stdout)
    assert rec["ok"] and rec["mains"]["detected_hz"] == 50.0
    assert any("mains at 50 Hz" in w and "notch is at 60 Hz" in w for w in rec["warnings"])
    r = _clef("inspect", "--json", "--notch", "50", str(p))
    rec = json.loads(r.stdout)
    assert rec["mains"]["detected_hz"] == 50.0 and not any("mains" in w for w in rec["warnings"])
    r = _clef("inspect", str(real_file("eegmat_Subject00_1.edf")))
    assert "mains in the signal: none" in r.stdout


def test_data_audit_of_a_synthetic_hospital(tmp_path: Path) -> None:
    """Five sites with their vendors' habits; the 50 Hz site is found from its signal."""
    from clef.synthetic.hospital import HospitalConfig, synthesize_hospital

    synthesize_hospital(tmp_path / "h", 12, seed=3, config=HospitalConfig(minutes_range=(1.0, 2.0)), workers=2,
                        overwrite=True)
    audit = audit_archive(tmp_path / "h" / "edf", data=True)
    c = audit.counts()
    assert audit.mode == "data" and audit.n_ok == len(audit.files) > 10
    assert set(c["label style"]) == {"EEG X-REF", "EEG X-Ref", "EEG X", "X", "EEG X-LE"}
    assert c["patient ID"] == {"known": len(audit.files)}
    fifty = [f for f in audit.files if f.mains_hz == 50.0]
    assert fifty and all(f.label_style == "EEG X-LE" and f.mains_mismatch for f in fifty)
    assert all(f.mains_hz == 60.0 for f in audit.files if f.label_style != "EEG X-LE")
    assert any("≠ the 60 Hz notch" in v for v in c["mains (detected)"])

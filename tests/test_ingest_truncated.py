"""Real recordings cut short (a crashed recorder, a half-finished copy): the complete records
are read, the lost tail is a warning and ``truncated_tail_s``, strict mode refuses; a record
count of -1; and a recording too short to embed is ``ok: false`` in ``clef inspect``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.factories import copy_real, cut_mid_record, keep_records, real_file, set_record_count
from tokenizer import (
    SignalContract,
    TooShortError,
    TruncatedFileError,
    read_header,
    read_recording,
)
from tokenizer.edf_data import read_digital, to_physical

EEGMAT = "eegmat_Subject00_1.edf"  # EDF+C, 110 records of 1 s (shipped cut), 500 Hz, 19 EEG + A2-A1 + ECG
NK_D = "nk_MB0400FU_edfplusD.edf"  # EDF+D, 29 records of 1 s, 200 Hz
OPENBCI = "openbci_multi_annot_bdfplus.bdf"  # BDF+C (24-bit), 247 records, 125 Hz


def _clef(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clef", *args], capture_output=True, text=True, env=dict(os.environ),
                          timeout=180)


def test_real_file_cut_mid_record_keeps_its_complete_records(tmp_path: Path) -> None:
    p = cut_mid_record(copy_real(real_file(EEGMAT), tmp_path / "crashed.edf"), 100)
    rec = read_recording(p)
    assert rec.duration_s == pytest.approx(100.0) and rec.truncated_tail_s == 10.0
    assert rec.summary()["truncated_tail_s"] == 10.0
    assert any("110 data records" in w and "100 complete" in w and "10 s are lost" in w for w in rec.warnings)
    assert rec.channel_mask.sum() == 19 and np.isfinite(rec.data).all()
    # the records read are the original's, byte for byte
    full, cut = read_header(real_file(EEGMAT)), read_header(p)
    assert cut.n_records == 100 and cut.truncated_tail_s == 10.0 and full.truncated_tail_s == 0.0
    sig = cut.data_signals[0]
    a, b = read_digital(full, [sig])[sig.index], read_digital(cut, [sig])[sig.index]
    assert np.array_equal(a[: b.size], b) and b.size == 100 * sig.samples_per_record


def test_cut_file_reads_as_mne_reads_it(tmp_path: Path) -> None:
    mne = pytest.importorskip("mne")
    p = cut_mid_record(copy_real(real_file(EEGMAT), tmp_path / "half_copied.edf"), 100, fraction=0.3)
    with pytest.warns(RuntimeWarning, match="does not match the file size"):
        raw = mne.io.read_raw_edf(p, preload=True, verbose="warning")
    h = read_header(p)
    sig = next(s for s in h.data_signals if s.label == "EEG Fp1")
    ours = to_physical(read_digital(h, [sig])[sig.index], sig)
    theirs = raw.get_data(picks=["EEG Fp1"], units="uV")[0]
    assert ours.size == theirs.size == 100 * 500
    np.testing.assert_allclose(ours, theirs, atol=1e-6 * np.abs(theirs).max())


def test_strict_mode_refuses_a_cut_file(tmp_path: Path) -> None:
    p = cut_mid_record(copy_real(real_file(EEGMAT), tmp_path / "crashed.edf"), 100)
    with pytest.raises(TruncatedFileError, match=r"announces 110 data records.*100 complete records.*strict"):
        read_recording(p, strict=True)
    with pytest.raises(TruncatedFileError, match="strict"):
        read_header(p, strict=True)


@pytest.mark.parametrize("name,complete,tail", [(NK_D, 20, 9.0), (OPENBCI, 100, 147.0)])
def test_discontinuous_and_24_bit_files_cut_short(tmp_path: Path, name: str, complete: int,
                                                  tail: float) -> None:
    p = cut_mid_record(copy_real(real_file(name), tmp_path / name), complete, fraction=0.7)
    rec = read_recording(p)
    assert rec.truncated_tail_s == tail
    assert rec.recorded_s == pytest.approx(complete * read_header(p).record_duration)
    assert np.isfinite(rec.data).all() and rec.channel_mask.any()


def test_a_file_cut_inside_its_first_record_is_still_refused(tmp_path: Path) -> None:
    p = cut_mid_record(copy_real(real_file(EEGMAT), tmp_path / "stub.edf"), 0, fraction=0.5)
    with pytest.raises(TruncatedFileError, match="0 complete records"):
        read_recording(p)


def test_a_wrong_header_is_not_taken_for_a_short_copy(tmp_path: Path) -> None:
    """Samples per record overstated in one signal: the file looks cut short, but its
    records are not where the header puts them (the time-keeping annotation is missing
    there), so it is refused, not read misaligned."""
    p = copy_real(real_file(EEGMAT), tmp_path / "lies.edf")
    h = read_header(p)
    ns = len(h.signals)
    pos = 256 + ns * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80)  # the samples-per-record fields
    raw = bytearray(p.read_bytes())
    raw[pos: pos + 8] = b"600     "  # signal 1 says 600 per record, 500 are written
    p.write_bytes(bytes(raw))
    with pytest.raises(TruncatedFileError, match="time-keeping annotation where the header puts it"):
        read_recording(p)


def test_record_count_minus_one_with_a_partial_last_record(tmp_path: Path) -> None:
    """The header of a recording whose writer never closed the file says -1 records."""
    p = set_record_count(cut_mid_record(copy_real(real_file(EEGMAT), tmp_path / "open.edf"), 60), -1)
    rec = read_recording(p)
    assert rec.duration_s == pytest.approx(60.0) and rec.truncated_tail_s == 1.0
    assert any("-1 (unknown)" in w for w in rec.warnings)
    assert any("incomplete last data record" in w for w in rec.warnings)
    with pytest.raises(TruncatedFileError, match="never closed"):
        read_recording(p, strict=True)


def test_inspect_reports_the_lost_tail_and_strict_refuses(tmp_path: Path) -> None:
    p = cut_mid_record(copy_real(real_file(EEGMAT), tmp_path / "crashed.edf"), 100)
    r = _clef("inspect", "--json", str(p))
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["ok"] and rec["truncated_tail_s"] == 10.0 and rec["duration_s"] == 100.0
    r = _clef("inspect", "--json", "--strict", str(p))
    assert r.returncode == 1
    rec = json.loads(r.stdout)
    assert not rec["ok"] and rec["error_kind"] == "truncated" and "strict" in rec["error"]


def test_recording_shorter_than_one_spectrogram_window_is_not_ok(tmp_path: Path) -> None:
    """A recording stopped after 3 s reads, but has no 4 s spectrogram window to embed."""
    from clef.cli.inspect import inspect_file

    contract = SignalContract()
    assert contract.spectrogram.window_s == 4.0
    p = keep_records(copy_real(real_file(EEGMAT), tmp_path / "stopped.edf"), 3)
    summary, rec = inspect_file(p, contract)
    assert rec is not None and rec.duration_s == pytest.approx(3.0)
    assert summary["ok"] is False and summary["error_kind"] == "too_short"
    assert "4 s spectrogram window" in summary["error"] and "found 3 s" in summary["error"]
    assert summary["format"] == "EDF+C"  # the rest of the record is kept
    with pytest.raises(TooShortError):
        rec.check_long_enough(contract)
    ok, _ = inspect_file(keep_records(copy_real(real_file(EEGMAT), tmp_path / "five.edf"), 5), contract)
    assert ok["ok"] is True


def test_too_short_is_the_error_of_tokenization_too(tmp_path: Path) -> None:
    from tokenizer.spectrogram_cache import compute_spectrogram

    p = keep_records(copy_real(real_file(EEGMAT), tmp_path / "stopped.edf"), 3)
    with pytest.raises(TooShortError, match="too short to embed"):
        compute_spectrogram(read_recording(p), SignalContract())

"""Bad input: one typed error naming the file, what was expected and what was found."""

from __future__ import annotations

import os
import zipfile

import pytest

from clef.synthetic.recordings import eeg_signals, make_edf
from tokenizer import (
    CorruptHeaderError,
    EmptyFileError,
    IngestError,
    NoDataRecordsError,
    NoEEGChannelsError,
    NoSignalsError,
    NotEDFError,
    TruncatedFileError,
    UnreadableFileError,
    read_header,
    read_recording,
)
from tokenizer.edf_writer import EDFSignal


def _good(tmp_path, name="good.edf", **kw):
    return make_edf(tmp_path / name, eeg_signals(10, 200), **kw)


def _patch(path, offset, text):
    b = bytearray(path.read_bytes())
    b[offset : offset + len(text)] = text
    path.write_bytes(bytes(b))
    return path


def test_truncated_file(tmp_path):
    p = _good(tmp_path)
    p.write_bytes(p.read_bytes()[:-1000])
    with pytest.raises(TruncatedFileError, match=r"announces 10 data records .* truncated.*strict") as e:
        read_recording(p, strict=True)
    assert str(p) in str(e.value)
    assert read_recording(p).truncated_tail_s == 1.0  # without strict: the 9 complete records


def test_truncated_header(tmp_path):
    p = _good(tmp_path)
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(TruncatedFileError, match="header"):
        read_recording(p)


def test_corrupt_number_field(tmp_path):
    p = _patch(_good(tmp_path), 236, b"ten     ")
    with pytest.raises(CorruptHeaderError, match="'number of data records' should be a number, found 'ten'"):
        read_recording(p)


def test_header_length_lies(tmp_path):
    p = _patch(_good(tmp_path), 184, b"9999    ")
    with pytest.raises(CorruptHeaderError, match="header length field says 9999"):
        read_recording(p)


def test_zero_and_negative_record_counts(tmp_path):
    p = _patch(_good(tmp_path, "z.edf"), 236, b"0       ")
    with pytest.raises(NoDataRecordsError, match="header says 0"):
        read_recording(p)
    q = _patch(_good(tmp_path, "n.edf"), 236, b"-5      ")
    with pytest.raises(CorruptHeaderError, match="found -5"):
        read_recording(q)


def test_unknown_record_count_is_derived(tmp_path):
    p = _patch(_good(tmp_path), 236, b"-1      ")
    rec = read_recording(p)
    assert rec.duration_s == 10 and any("-1" in w for w in rec.warnings)


def test_annotation_only_generated(tmp_path):
    p = make_edf(tmp_path / "ann.edf", [], fmt="EDF+C", annotations=[(1.0, None, "W")])
    with pytest.raises(NoSignalsError):
        read_recording(p)


def test_no_eeg_channels(tmp_path):
    sigs = [EDFSignal("ECG", eeg_signals(5, 200)[0].data, 200, unit="mV"), EDFSignal("Resp", eeg_signals(5, 200)[1].data, 200)]
    with pytest.raises(NoEEGChannelsError, match="found none among 2 signals \\('ECG', 'Resp'\\)"):
        read_recording(make_edf(tmp_path / "noeeg.edf", sigs))


def test_non_edf_files(tmp_path):
    txt = tmp_path / "notes.edf"
    txt.write_text("this is a report, not an EDF\n" * 20)
    with pytest.raises(NotEDFError, match="expected EDF/BDF magic"):
        read_recording(txt)
    z = tmp_path / "archive.edf"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("inner.edf", b"0" * 1000)
    with pytest.raises(NotEDFError, match="ZIP archive"):
        read_recording(z)


def test_empty_file(tmp_path):
    e = tmp_path / "empty.edf"
    e.write_bytes(b"")
    with pytest.raises(EmptyFileError, match="0 bytes"):
        read_recording(e)


def test_unreadable_paths(tmp_path):
    with pytest.raises(UnreadableFileError, match="no such file"):
        read_recording(tmp_path / "missing.edf")
    d = tmp_path / "dir.edf"
    d.mkdir()
    with pytest.raises(UnreadableFileError, match="found a directory"):
        read_recording(d)
    loop = tmp_path / "loop.edf"
    os.symlink(loop, loop)
    with pytest.raises(UnreadableFileError):
        read_recording(loop)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_denied(tmp_path):
    p = _good(tmp_path)
    p.chmod(0)
    with pytest.raises(UnreadableFileError, match="permission denied"):
        read_recording(p)


def test_bdf_named_edf_is_read_with_a_warning(tmp_path):
    p = make_edf(tmp_path / "really_bdf.edf", eeg_signals(5, 200), fmt="BDF+C")
    rec = read_recording(p)
    assert rec.format == "BDF+C" and any("content is BDF" in w for w in rec.warnings)


def test_edfplus_d_with_overlapping_records(tmp_path):
    p = make_edf(tmp_path / "o.edf", eeg_signals(3, 200), fmt="EDF+D", record_onsets=[0, 5, 4.5])
    with pytest.raises(CorruptHeaderError, match="record onsets must increase"):
        read_recording(p)


def test_digital_range_inverted_is_corrupt(tmp_path):
    sigs = eeg_signals(5, 200)
    sigs[0].digital_min, sigs[0].digital_max = 100, -100
    p = make_edf(tmp_path / "d.edf", sigs)
    with pytest.raises(CorruptHeaderError, match="digital maximum of signal 1 \\('EEG FP1-REF'\\) must exceed"):
        read_header(p)


def test_every_error_is_an_ingest_error_with_a_kind():
    for cls in (CorruptHeaderError, EmptyFileError, NoDataRecordsError, NoEEGChannelsError, NoSignalsError,
                NotEDFError, TruncatedFileError, UnreadableFileError):
        assert issubclass(cls, IngestError) and cls.kind != IngestError.kind

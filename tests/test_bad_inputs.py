"""Bad input everywhere: a corpus of malformed and odd EDF, FHIR and report files, generated here.

Every case is built in ``tmp_path`` (no committed data) and names the one outcome it
expects: the project's own error class (exactly that class, never a raw ``IndexError``,
``struct.error``, ``UnicodeDecodeError``, ``MemoryError`` ...) with a word its message must
contain, or, for input that is odd but readable, success with a warning that names the
oddity. FHIR never raises for bad data: each case expects exactly one
:class:`ehr.FhirProblem` whose reason names what was wrong. The tables are parametrized so
the size of the corpus shows in the test ids; ``test_batch_*`` runs a handful of the bad
EDF files through the batch embedder.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from clef.synthetic.recordings import eeg_signals, make_edf
from ehr import load_fhir
from reports.errors import ReportError
from reports.pipeline import read_report
from tokenizer import (
    ContractMismatchError,
    CorruptHeaderError,
    EmptyFileError,
    IngestError,
    NoDataRecordsError,
    NotEDFError,
    TooFewChannelsError,
    TruncatedFileError,
    UnreadableFileError,
    read_header,
    read_recording,
)

# --------------------------------------------------------------------------------------
# EDF builders
# --------------------------------------------------------------------------------------

#: Per-signal header fields of EDF, in file order, with their widths.
_SIGNAL_FIELDS = (("label", 16), ("transducer", 80), ("unit", 8), ("physical_min", 8), ("physical_max", 8),
                  ("digital_min", 8), ("digital_max", 8), ("prefilter", 80), ("samples_per_record", 8),
                  ("reserved", 32))
#: Byte offsets of the fixed header fields.
HEADER_BYTES, N_RECORDS, RECORD_DURATION, N_SIGNALS, RESERVED = 184, 236, 244, 252, 192


def _good(tmp: Path, name: str = "good.edf", seconds: float = 10, **kw: Any) -> Path:
    """19 referential channels at 200 Hz, EDF+C, one record per second (+ the annotation channel)."""
    return make_edf(tmp / name, eeg_signals(seconds, 200), **kw)


def _patch(path: Path, offset: int, text: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(text)] = text
    path.write_bytes(bytes(raw))
    return path


def _field(path: Path, name: str, signal: int, value: str) -> Path:
    """Rewrite one per-signal header field (``value`` padded to the field width)."""
    ns = int(path.read_bytes()[N_SIGNALS : N_SIGNALS + 4].decode().strip())
    pos = 256
    for field, width in _SIGNAL_FIELDS:
        if field == name:
            return _patch(path, pos + signal * width, value.encode("latin-1").ljust(width)[:width])
        pos += width * ns
    raise KeyError(name)


def _cut(path: Path, n_bytes: int) -> Path:
    path.write_bytes(path.read_bytes()[:n_bytes])
    return path


def truncated_mid_record(tmp: Path) -> Path:
    p = _good(tmp)
    h = read_header(p)
    return _cut(p, h.header_bytes + 3 * h.record_bytes + h.record_bytes // 2)


def truncated_in_signal_headers(tmp: Path) -> Path:
    return _cut(_good(tmp), 256 + 700)


def header_length_lies(tmp: Path) -> Path:
    return _patch(_good(tmp), HEADER_BYTES, b"5120    ")  # 20 signals need 5376


def header_length_not_a_number(tmp: Path) -> Path:
    return _patch(_good(tmp), HEADER_BYTES, b"5k      ")


def zero_records(tmp: Path) -> Path:
    return _patch(_good(tmp), N_RECORDS, b"0       ")


def negative_records(tmp: Path) -> Path:
    return _patch(_good(tmp), N_RECORDS, b"-7      ")


def unknown_records_without_data(tmp: Path) -> Path:
    p = _good(tmp)
    return _cut(_patch(p, N_RECORDS, b"-1      "), read_header(p).header_bytes + 100)


def records_fractional(tmp: Path) -> Path:
    return _patch(_good(tmp), N_RECORDS, b"9.5     ")


def spr_too_large(tmp: Path) -> Path:
    return _field(_good(tmp), "samples_per_record", 3, "400")  # 400 said, 200 written


def spr_too_small(tmp: Path) -> Path:
    # 100 said, 200 written: 40 records hold more than a record of extra bytes, misaligned
    return _field(_good(tmp, seconds=40), "samples_per_record", 3, "100")


def spr_zero(tmp: Path) -> Path:
    return _field(_good(tmp), "samples_per_record", 0, "0")


def digital_min_equals_max(tmp: Path) -> Path:
    p = _field(_good(tmp), "digital_min", 2, "0")
    return _field(p, "digital_max", 2, "0")


def physical_min_equals_max(tmp: Path) -> Path:
    # also an invariant the fuzzer found broken: accepted, then every sample read as the same value
    p = _field(_good(tmp), "physical_min", 2, "100")
    return _field(p, "physical_max", 2, "100")


def physical_nan(tmp: Path) -> Path:
    return _field(_good(tmp), "physical_min", 0, "nan")


def digital_beyond_16_bit(tmp: Path) -> Path:
    return _field(_good(tmp), "digital_max", 0, "40000")


def record_duration_zero(tmp: Path) -> Path:
    return _patch(_good(tmp), RECORD_DURATION, b"0       ")


def record_duration_years(tmp: Path) -> Path:
    # also found by the fuzzer (--ingest): MemoryError sizing the output from the nominal duration
    return _patch(_good(tmp), RECORD_DURATION, b"99999999")  # 200 samples per 3 years: 2e-6 Hz


def record_duration_1000s(tmp: Path) -> Path:
    # found by bench/fuzz_edf_header.py --ingest: 0.2 Hz, raw ValueError from the band-pass design
    return _patch(_good(tmp), RECORD_DURATION, b"1000    ")


def record_duration_microsecond(tmp: Path) -> Path:
    return _patch(_good(tmp), RECORD_DURATION, b"0.000001")  # 200 samples per µs: 200 MHz


def number_of_signals_negative(tmp: Path) -> Path:
    return _patch(_good(tmp), N_SIGNALS, b"-3  ")


def number_of_signals_exponent(tmp: Path) -> Path:
    # found by bench/fuzz_edf_header.py: '1e30' parsed as a number, then OverflowError in f.read()
    return _patch(_good(tmp), N_SIGNALS, b"1e30")


def physical_range_beyond_float32(tmp: Path) -> Path:
    # found by bench/fuzz_edf_header.py --ingest: read as NaN/inf samples (overflow in to_physical)
    return _field(_field(_good(tmp), "physical_min", 0, "-1e300"), "physical_max", 0, "1e300")


def non_ascii_number(tmp: Path) -> Path:
    return _patch(_good(tmp), N_RECORDS, b"1\xe90     ")


def all_channels_flat(tmp: Path) -> Path:
    sigs = eeg_signals(10, 200)
    for s in sigs:
        s.data[:] = 5.0
        s.physical_min, s.physical_max = -100.0, 100.0
    return make_edf(tmp / "flat.edf", sigs)


def edf_plus_d_without_annotations(tmp: Path) -> Path:
    return _patch(_good(tmp, fmt="EDF"), RESERVED, b"EDF+D")


def edf_plus_d_gap_of_years(tmp: Path) -> Path:
    return make_edf(tmp / "gap.edf", eeg_signals(3, 200), fmt="EDF+D", record_onsets=[0, 1, 1e9])


def bdf_magic_on_edf_data(tmp: Path) -> Path:
    return _patch(_good(tmp), 0, b"\xffBIOSEMI")


def random_bytes(tmp: Path) -> Path:
    p = tmp / "garbage.edf"
    p.write_bytes(np.random.default_rng(9).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    return p


def garbage_after_edf_magic(tmp: Path) -> Path:
    p = tmp / "garbage_magic.edf"
    p.write_bytes(b"0       " + np.random.default_rng(9).integers(128, 256, 8192, dtype=np.uint8).tobytes())
    return p


def zip_named_edf(tmp: Path) -> Path:
    p = tmp / "archive.edf"
    with zipfile.ZipFile(p, "w") as zf:
        zf.write(_good(tmp, "inner.edf"), "inner.edf")
    return p


def gzip_named_edf(tmp: Path) -> Path:
    p = tmp / "compressed.edf"
    p.write_bytes(gzip.compress(_good(tmp, "inner.edf").read_bytes()))
    return p


def empty_file(tmp: Path) -> Path:
    p = tmp / "empty.edf"
    p.write_bytes(b"")
    return p


def directory_named_edf(tmp: Path) -> Path:
    p = tmp / "folder.edf"
    p.mkdir()
    return p


def symlink_loop(tmp: Path) -> Path:
    p = tmp / "loop.edf"
    os.symlink(p, p)
    return p


def dangling_symlink(tmp: Path) -> Path:
    p = tmp / "dangling.edf"
    os.symlink(tmp / "gone.edf", p)
    return p


# ---- odd but readable ----------------------------------------------------------------


def one_channel_flat(tmp: Path) -> Path:
    sigs = eeg_signals(10, 200)
    sigs[2].data[:] = 5.0  # F7
    sigs[2].physical_min, sigs[2].physical_max = -100.0, 100.0
    return make_edf(tmp / "flat1.edf", sigs)


def one_channel_railed(tmp: Path) -> Path:
    sigs = eeg_signals(10, 200)
    x = sigs[4].data  # Fz
    x[: int(0.7 * x.size)] = 1e6  # clipped to the digital maximum in 70% of samples
    sigs[4].physical_min, sigs[4].physical_max = -200.0, 200.0
    return make_edf(tmp / "railed.edf", sigs)


def duplicate_labels(tmp: Path) -> Path:
    sigs = eeg_signals(10, 200)
    sigs[1].label = sigs[0].label  # two 'EEG FP1-REF', no Fp2
    return make_edf(tmp / "dup.edf", sigs)


def bdf_named_edf(tmp: Path) -> Path:
    return make_edf(tmp / "really_bdf.edf", eeg_signals(10, 200), fmt="BDF+C")


def stale_record_count(tmp: Path) -> Path:
    return _patch(_good(tmp, seconds=40), N_RECORDS, b"30      ")  # 40 written, 30 announced


def trailing_padding(tmp: Path) -> Path:
    p = _good(tmp)
    p.write_bytes(p.read_bytes() + b"\x00" * 100)
    return p


@dataclass(frozen=True)
class Fails:
    """Expected failure: exactly this error class, its message containing ``word``."""

    error: type[IngestError]
    word: str


@dataclass(frozen=True)
class Reads:
    """Expected success with a warning containing ``word`` and ``channels`` usable electrodes."""

    word: str
    channels: int


EDF_CASES: list[tuple[Callable[[Path], Path], Fails | Reads]] = [
    (truncated_mid_record, Reads("the last 7 s are lost", 19)),  # its 3 complete records (strict: refused)
    (truncated_in_signal_headers, Fails(TruncatedFileError, "5376-byte header")),
    (header_length_lies, Fails(CorruptHeaderError, "header length field says 5120")),
    (header_length_not_a_number, Fails(CorruptHeaderError, "'header bytes' should be a number")),
    (zero_records, Fails(NoDataRecordsError, "header says 0")),
    (negative_records, Fails(CorruptHeaderError, "number of data records must be >= 0, found -7")),
    (unknown_records_without_data, Fails(NoDataRecordsError, "-1 (unknown)")),
    (records_fractional, Fails(CorruptHeaderError, "should be an integer")),
    (spr_too_large, Fails(TruncatedFileError, "truncated")),
    (spr_too_small, Fails(CorruptHeaderError, "file size does not match the header")),
    (spr_zero, Fails(CorruptHeaderError, "samples per record of signal 1")),
    (digital_min_equals_max, Fails(CorruptHeaderError, "digital maximum of signal 3")),
    (physical_min_equals_max, Fails(CorruptHeaderError, "physical minimum and maximum of signal 3")),
    (physical_nan, Fails(CorruptHeaderError, "not finite")),
    (digital_beyond_16_bit, Fails(CorruptHeaderError, "digital range of signal 1")),
    (record_duration_zero, Fails(CorruptHeaderError, "record duration is 0 s")),
    (record_duration_years, Fails(ContractMismatchError, "expected at least 64 Hz")),
    (record_duration_1000s, Fails(ContractMismatchError, "sampled at 0.2 Hz")),
    (record_duration_microsecond, Fails(ContractMismatchError, "cannot be resampled")),
    (number_of_signals_negative, Fails(CorruptHeaderError, "number of signals")),
    (number_of_signals_exponent, Fails(CorruptHeaderError, "number of signals must be at most 9999")),
    (physical_range_beyond_float32, Fails(CorruptHeaderError, "physical range of EEG channel 'EEG FP1-REF'")),
    (non_ascii_number, Fails(CorruptHeaderError, "not ASCII")),
    (all_channels_flat, Fails(TooFewChannelsError, "flat")),
    (edf_plus_d_without_annotations, Fails(CorruptHeaderError, "time-keeping annotations")),
    (edf_plus_d_gap_of_years, Fails(CorruptHeaderError, "gaps")),
    (bdf_magic_on_edf_data, Fails(TruncatedFileError, "announces")),
    (random_bytes, Fails(NotEDFError, "magic")),
    (garbage_after_edf_magic, Fails(CorruptHeaderError, "not ASCII")),
    (zip_named_edf, Fails(NotEDFError, "ZIP archive")),
    (gzip_named_edf, Fails(NotEDFError, "gzip")),
    (empty_file, Fails(EmptyFileError, "0 bytes")),
    (directory_named_edf, Fails(UnreadableFileError, "directory")),
    (symlink_loop, Fails(UnreadableFileError, "symbolic link")),
    (dangling_symlink, Fails(UnreadableFileError, "symbolic link")),
    (one_channel_flat, Reads("flat", 18)),
    (one_channel_railed, Reads("railed", 18)),
    (duplicate_labels, Reads("duplicates Fp1", 18)),
    (bdf_named_edf, Reads("content is BDF", 19)),
    (stale_record_count, Reads("10 data records after the 30", 19)),
    (trailing_padding, Reads("100 trailing bytes", 19)),
]


@pytest.mark.parametrize("build,expect", EDF_CASES, ids=[b.__name__ for b, _ in EDF_CASES])
def test_edf_corpus(tmp_path: Path, build: Callable[[Path], Path], expect: Fails | Reads) -> None:
    path = build(tmp_path)
    if isinstance(expect, Reads):
        rec = read_recording(path)
        assert any(expect.word in w for w in rec.warnings), rec.warnings
        assert int(rec.channel_mask.sum()) == expect.channels
        assert np.isfinite(rec.data).all()
        return
    with pytest.raises(IngestError) as info:
        read_recording(path)
    err = info.value
    assert type(err) is expect.error, f"{type(err).__name__}: {err}"
    assert expect.word in err.message, err.message
    assert err.path == str(path) and str(path) in str(err)
    assert err.kind == expect.error.kind
    assert err.__cause__ is None  # no raw exception chained into the user's traceback


def test_edf_corpus_is_large_enough() -> None:
    assert len(EDF_CASES) + len(FHIR_CASES) + len(REPORT_CASES) >= 25


# --------------------------------------------------------------------------------------
# FHIR
# --------------------------------------------------------------------------------------

NOW = dt.date(2030, 1, 1)
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def _patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-06-15", **extra}


def _condition(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": ICD, "code": "G40.909"}]}, "onsetDateTime": "2015-01-01", **extra}


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:x:{i}", "resource": r} for i, r in enumerate(resources)]}


def _medication(codings: list[dict[str, str]]) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": "m1", "status": "active",
            "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"coding": codings},
            "effectivePeriod": {"start": "2019-01-01"}}


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


#: (case id, file name, file bytes, expected resource id of the problem, word in its reason)
FHIR_CASES: list[tuple[str, str, bytes, str | None, str]] = [
    ("broken_json", "b.json", b'{"resourceType": "Bundle", "entry": [', None, "invalid JSON at line 1"),
    ("truncated_mid_string", "b.json", b'{"resourceType": "Patient", "id": "p1", "gender": "fem', None,
     "Unterminated string"),
    ("nested_too_deeply", "b.json", b"[" * 100_000 + b"]" * 100_000, None, "nested too deeply"),
    ("ndjson_nested_too_deeply", "b.ndjson", _json(_patient()) + b"\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n",
     None, "line 2: nested too deeply"),
    ("not_an_object", "b.json", b"[1, 2, 3]", None, "expected a FHIR resource (JSON object), found list"),
    ("wrong_resource_type", "b.json", _json({"resourceType": "Patinet", "id": "p1"}), "p1",
     "unsupported resource type 'Patinet'"),
    ("no_resource_type", "b.json", _json({"id": "p1", "gender": "female"}), "p1", "no 'resourceType'"),
    ("bundle_entry_not_a_list", "b.json", _json({"resourceType": "Bundle", "entry": {"resource": {}}}), None,
     "Bundle.entry must be a list"),
    ("condition_without_code", "b.json", _json(_bundle(_patient(), {**_condition(), "code": {"coding": []}})),
     "c1", "Condition has no coding"),
    ("unknown_code_system", "b.json",
     _json(_bundle(_patient(), _condition(code={"coding": [{"system": "http://example.org/local", "code": "E1"}]}))),
     "c1", "no ICD-10-CM code (found codings ['http://example.org/local|E1'])"),
    ("medication_unknown_code_system", "b.json",
     _json(_bundle(_patient(), _medication([{"system": "http://example.org/drugs", "code": "42"}]))),
     "m1", "no mappable medication code"),
    ("future_onset", "b.json", _json(_bundle(_patient(), _condition(onsetDateTime="2099-05-05"))), "c1",
     "Condition onset 2099-05-05 is in the future"),
    ("future_birth_date", "b.json", _json(_bundle(_patient(birthDate="2099-01-01"))), "p1",
     "birthDate 2099-01-01 is in the future"),
    ("naive_timestamp", "b.json", _json(_bundle(_patient(), _condition(onsetDateTime="2015-01-01T10:00:00"))),
     "c1", "dateTime without a time zone at onsetDateTime"),
    ("impossible_date", "b.json", _json(_bundle(_patient(birthDate="2000-02-30"))), "p1", "birthDate"),
    ("non_utf8_cp1252", "b.json", json.dumps(_patient(name=[{"family": "Müller"}]), ensure_ascii=False)
     .encode("cp1252"), None, "'utf-8' codec can't decode"),
    ("binary_named_json", "b.json", bytes(range(256)) * 8, None, "cannot read file"),
    ("empty_json", "b.json", b"", None, "empty file"),
]


@pytest.mark.parametrize("name,fname,content,rid,word", FHIR_CASES, ids=[c[0] for c in FHIR_CASES])
def test_fhir_corpus(tmp_path: Path, name: str, fname: str, content: bytes, rid: str | None, word: str) -> None:
    path = tmp_path / fname
    path.write_bytes(content)
    res = load_fhir(path, now=NOW)  # bad data never raises
    assert len(res.problems) == 1, [p.reason for p in res.problems]
    problem = res.problems[0]
    assert word in problem.reason, problem.reason
    assert problem.resource_id == rid and problem.source.startswith(str(path))


def test_fhir_bad_resources_lose_nothing_else(tmp_path: Path) -> None:
    """A future onset keeps the diagnosis (onset unknown); a zone-less timestamp keeps the
    diagnosis with the day it states (reported); an invalid resource drops only itself."""
    ok = {**_condition(), "id": "c2", "code": {"coding": [{"system": ICD, "code": "R55"}]}}
    bad = {**_condition(), "id": "c4", "code": {"coding": "not a list"}}
    bundle = _bundle(_patient(), _condition(onsetDateTime="2015-01-01T23:30:00"), ok,
                     {**_condition(onsetDateTime="2099-05-05"), "id": "c3"}, bad)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    res = load_fhir(path, now=NOW)
    assert {p.resource_id for p in res.problems} == {"c1", "c3", "c4"}
    rec = res.records["p1"]
    assert rec.sex == "F" and {(c.resource_id, c.onset) for c in rec.conditions} == {
        ("c1", dt.date(2015, 1, 1)), ("c2", dt.date(2015, 1, 1)), ("c3", None)}


# --------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------


def _huge(path: Path) -> None:
    with open(path, "wb") as f:  # sparse: 4 GiB on paper, nothing on disk
        f.truncate(4 * 2**30)


#: (case id, builder writing the file, expected ReportError kind or None for "decodes", word)
REPORT_CASES: list[tuple[str, Callable[[Path], None], str | None, str]] = [
    ("empty", lambda p: p.write_bytes(b""), "empty", "empty"),
    ("bom_only", lambda p: p.write_bytes(b"\xef\xbb\xbf \n"), "empty", "whitespace-only"),
    ("binary_with_nul", lambda p: p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)
                                                .tobytes()), "binary", "NUL bytes"),
    ("binary_8bit_no_nul", lambda p: p.write_bytes(np.random.default_rng(2).integers(1, 256, 4096, dtype=np.uint8)
                                                   .tobytes()), "binary", "ASCII letters"),
    ("huge_sparse", _huge, "too_large", "larger than the 1000000-byte limit"),
    ("directory", lambda p: p.mkdir(), "not_a_file", "found a directory"),
    ("cp1252", lambda p: p.write_bytes("IMPRESSION: Normal EEG \u2013 9 Hz posterior rhythm, r\u00e9sum\u00e9 "
                                       "\u201cok\u201d.".encode("cp1252")), None, "decoded as cp1252"),
    ("latin1_undefined_in_cp1252", lambda p: p.write_bytes("FINDINGS: sharp waves at T3 \u00b1 spikes "
                                                           "\x81.".encode("latin-1")), None, "decoded as latin-1"),
]


@pytest.mark.parametrize("name,build,kind,word", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_report_corpus(tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, build: Callable[[Path], None],
                       kind: str | None, word: str) -> None:
    path = tmp_path / "report.txt"
    build(path)
    if kind is None:
        with caplog.at_level(logging.WARNING, logger="reports.pipeline"):
            text = read_report(path)
        assert word in caplog.text and text.split(":")[0] in ("IMPRESSION", "FINDINGS")
        return
    with pytest.raises(ReportError) as info:
        read_report(path)
    assert type(info.value) is ReportError and info.value.kind == kind
    assert word in str(info.value) and info.value.path == str(path)


# --------------------------------------------------------------------------------------
# Batch embedding over an archive holding bad files
# --------------------------------------------------------------------------------------

#: Bad files put into the archive: relative path → (builder, manifest error_kind, word in the error).
BATCH_BAD: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "bad/truncated.edf": (truncated_mid_record, "too_short", "too short"),  # 3 complete 1-s records
    "bad/header_lies.edf": (header_length_lies, "corrupt_header", "header length field"),
    "bad/zero_records.edf": (zero_records, "no_data_records", "header says 0"),
    "bad/flat_physical.edf": (physical_min_equals_max, "corrupt_header", "physical minimum and maximum"),
    "bad/garbage.edf": (random_bytes, "not_edf", "magic"),
    "bad/archive.edf": (zip_named_edf, "not_edf", "ZIP"),
    "bad/empty.edf": (empty_file, "empty_file", "0 bytes"),
    "bad/loop.edf": (symlink_loop, "unreadable", "symbolic link"),
    "bad/all_flat.edf": (all_channels_flat, "too_few_channels", "flat"),
}


def _place(build: Callable[[Path], Path], dst: Path, scratch: Path) -> None:
    """Build a corpus file in a scratch folder and move it to ``dst`` (links are re-made there)."""
    scratch.mkdir(parents=True)
    src = build(scratch)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(dst, dst)
    else:
        shutil.move(src, dst)


def test_batch_embed_goes_on_past_bad_files_and_keeps_the_store(svc_hospital: Path,  # noqa: F811
                                                                 svc_checkpoint: Path,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    from services.batch import embed_archive
    from services.config import EmbedConfig
    from services.store import EmbeddingStore, vectors_of

    archive, store = tmp_path / "archive", tmp_path / "store"
    sessions = sorted((svc_hospital / "edf").rglob("*.edf"))[:3]
    for k, src in enumerate(sessions[:2]):
        (archive / "good").mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, archive / "good" / f"s{k}.edf")
    cfg = EmbedConfig(workers=1, part_size=100)
    first = embed_archive(archive, svc_checkpoint, store, cfg, progress=False)
    assert (first.embedded, first.failed) == (2, 0)
    before = EmbeddingStore(store).embeddings(windows=False)

    # Now the archive grows a third good file, a BDF named .edf, a folder named .edf, the bad
    # corpus, and one already-embedded file is damaged in place.
    shutil.copy2(sessions[2], archive / "good" / "s2.edf")
    make_edf(archive / "good" / "bdf_inside.edf", eeg_signals(60, 256, seed=3), fmt="BDF+C")
    (archive / "folder.edf").mkdir()
    for k, (rel, (build, _, _)) in enumerate(BATCH_BAD.items()):
        _place(build, archive / rel, tmp_path / f"scratch{k}")
    damaged = archive / "good" / "s1.edf"
    h = read_header(damaged)
    damaged.write_bytes(damaged.read_bytes()[: h.header_bytes + h.record_bytes // 2])

    seen: dict[str, str] = {}
    second = embed_archive(archive, svc_checkpoint, store, cfg, progress=False,
                           on_file=lambda rel, status: seen.__setitem__(rel, status))
    assert (second.embedded, second.unchanged, second.failed) == (2, 1, len(BATCH_BAD) + 1)
    assert second.files == 4 + len(BATCH_BAD)  # the folder named .edf is not a file

    st = EmbeddingStore(store)
    man = st.manifest()
    status = dict(zip(man["path"], man["status"]))
    assert status == {**{f"good/s{k}.edf": "done" for k in (0, 2)}, "good/bdf_inside.edf": "done",
                      "good/s1.edf": "failed", **{rel: "failed" for rel in BATCH_BAD}}
    assert seen == {rel: s for rel, s in status.items() if rel != "good/s0.edf"}  # s0 unchanged: not reprocessed
    errors = {p: (k, e) for p, k, e in zip(man["path"], man["error_kind"], man["error"])}
    for rel, (_, kind, word) in BATCH_BAD.items():
        assert errors[rel][0] == kind and word in errors[rel][1], (rel, errors[rel])
        assert str(tmp_path) not in errors[rel][1]  # archive-relative paths only
    assert errors["good/s1.edf"][0] == "truncated"

    # nothing already stored is lost: both first-run embeddings are there, unchanged
    after = st.embeddings(windows=False)
    assert after.height == 4
    kept = after.filter(pl.col("source_sha256").is_in(before["source_sha256"].to_list())).sort("source_sha256")
    assert np.array_equal(vectors_of(kept), vectors_of(before.sort("source_sha256")))
    assert set(st.sessions()["path"]) >= {"good/s0.edf", "good/s1.edf", "good/s2.edf", "good/bdf_inside.edf"}

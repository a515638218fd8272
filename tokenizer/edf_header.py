"""EDF / EDF+ / BDF / BDF+ header parsing, without loading any signal.

Written by hand rather than taken from a library because no maintained reader does
everything the platform needs from one code path: pyedflib and edfio refuse EDF+D,
MNE loads every channel at float64 and concatenates EDF+D segments, and none reports
header problems as typed errors. The format is small and fully specified
(https://www.edfplus.info/specs/), and every branch here is tested against real files.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tokenizer.errors import (
    CorruptHeaderError,
    EmptyFileError,
    NoDataRecordsError,
    NotEDFError,
    TruncatedFileError,
    UnreadableFileError,
)

_EDF_MAGIC = b"0       "
_BDF_MAGIC = b"\xffBIOSEMI"
_ANNOTATION_LABELS = ("edf annotations", "bdf annotations")
#: Start of every EDF+/BDF+ data record's first annotation signal: the time-keeping TAL.
_TIME_KEEPING = re.compile(rb"^[+-]\d+(?:\.\d*)?\x14\x14")

#: Width in bytes of each per-signal header field, in file order.
_SIGNAL_FIELDS: tuple[tuple[str, int], ...] = (
    ("label", 16), ("transducer", 80), ("unit", 8), ("physical_min", 8), ("physical_max", 8),
    ("digital_min", 8), ("digital_max", 8), ("prefilter", 80), ("samples_per_record", 8), ("reserved", 32),
)


@dataclass(frozen=True)
class SignalHeader:
    """Header of one signal (channel) of an EDF/BDF file."""

    index: int
    label: str
    transducer: str
    unit: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefilter: str
    samples_per_record: int

    @property
    def is_annotation(self) -> bool:
        """True for an ``EDF Annotations`` / ``BDF Annotations`` channel."""
        return self.label.strip().lower() in _ANNOTATION_LABELS

    @property
    def gain(self) -> float:
        """Physical units per digital step (negative when the physical range is inverted)."""
        return (self.physical_max - self.physical_min) / (self.digital_max - self.digital_min)

    @property
    def offset(self) -> float:
        """Physical value of digital zero: ``physical = digital * gain + offset``."""
        return self.physical_min - self.digital_min * self.gain


@dataclass(frozen=True)
class EDFHeader:
    """Parsed header of an EDF/EDF+/BDF/BDF+ file.

    The raw ``patient`` and ``recording`` fields hold PHI: they are kept here only so
    :mod:`tokenizer.deid` can derive the de-identified facts, and never leave the reader.
    """

    path: str
    format: str  # EDF, EDF+C, EDF+D, BDF, BDF+C, BDF+D
    bytes_per_sample: int  # 2 for EDF, 3 for BDF
    patient: str = field(repr=False)
    recording: str = field(repr=False)
    startdate: str = field(repr=False)
    starttime: str = field(repr=False)
    header_bytes: int
    n_records: int
    record_duration: float
    signals: tuple[SignalHeader, ...]
    file_size: int
    warnings: tuple[str, ...] = ()
    #: Seconds announced by the header but not read: records lost to an incomplete tail.
    truncated_tail_s: float = 0.0

    @property
    def is_discontinuous(self) -> bool:
        """True for EDF+D / BDF+D."""
        return self.format.endswith("+D")

    @property
    def record_bytes(self) -> int:
        """Bytes per data record."""
        return sum(s.samples_per_record for s in self.signals) * self.bytes_per_sample

    @property
    def data_signals(self) -> tuple[SignalHeader, ...]:
        """Ordinary (non-annotation) signals."""
        return tuple(s for s in self.signals if not s.is_annotation)

    @property
    def annotation_signals(self) -> tuple[SignalHeader, ...]:
        """Annotation channels (there may be several)."""
        return tuple(s for s in self.signals if s.is_annotation)

    def sfreq_of(self, sig: SignalHeader) -> float:
        """Sampling rate of one signal in Hz."""
        return sig.samples_per_record / self.record_duration

    def sample_offset(self, sig: SignalHeader) -> int:
        """Offset of a signal inside a data record, in samples."""
        return sum(s.samples_per_record for s in self.signals[: sig.index])

    @property
    def duration_s(self) -> float:
        """Nominal duration: records × record duration (gaps of EDF+D not included)."""
        return self.n_records * self.record_duration


def _field(raw: bytes, name: str, path: str) -> str:
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        # Real exports put Latin-1 in free-text fields; numeric fields must be ASCII.
        if name in ("patient", "recording", "label", "transducer", "unit", "prefilter", "reserved"):
            return raw.decode("latin-1").strip()
        raise CorruptHeaderError(path, f"header field '{name}' is not ASCII: {raw!r}") from None


def _number(text: str, name: str, path: str, *, integer: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CorruptHeaderError(path, f"header field '{name}' should be a number, found {text!r}") from None
    if not math.isfinite(value):
        raise CorruptHeaderError(path, f"header field '{name}' is not finite: {text!r}")
    if integer and value != int(value):
        raise CorruptHeaderError(path, f"header field '{name}' should be an integer, found {text!r}")
    return value


def open_edf(path: str | Path) -> BinaryIO:
    """Open an EDF/BDF file for reading, or raise the error :func:`read_header` raises.

    Raises
    ------
    UnreadableFileError
        No such file, a broken link, a directory, or no permission to read it.
    """
    p = str(path)
    if not os.path.exists(p):
        if os.path.islink(p):
            raise UnreadableFileError(p, "expected an EDF/BDF file, found a broken or looping symbolic link")
        raise UnreadableFileError(p, "no such file")
    if os.path.isdir(p):
        raise UnreadableFileError(p, "expected an EDF/BDF file, found a directory")
    try:
        return open(p, "rb")
    except PermissionError as exc:
        raise UnreadableFileError(p, f"permission denied ({exc.strerror})") from None
    except IsADirectoryError:
        raise UnreadableFileError(p, "expected an EDF/BDF file, found a directory") from None
    except OSError as exc:
        raise UnreadableFileError(p, f"cannot read file: {exc.strerror or exc}") from None


def read_header(path: str | Path, *, strict: bool = False, source: BinaryIO | None = None,
                growing: bool = False) -> EDFHeader:
    """Parse and validate the header of an EDF/EDF+/BDF/BDF+ file.

    Only the header is read (plus the file size, and for a file cut short the start of
    two data records), so archives can be indexed quickly.

    A file that ends inside its data (a crashed or half-copied recording) keeps its
    complete records: ``n_records`` counts them, the lost tail is a warning and
    ``truncated_tail_s``, as MNE reads such files. For EDF+/BDF+ the time-keeping
    annotation must sit where the header puts it in the first and last complete record,
    else the header, not the copy, is wrong (samples per record, BDF magic on EDF data)
    and the file is refused. A record count of -1 ("unknown", allowed by the spec only
    while recording: the writer never closed the file) is derived from the file size,
    and a partial last record counts as a lost tail.

    Parameters
    ----------
    path : str or Path
        File to read.
    strict : bool
        Refuse files cut short and files whose record count is -1 instead of reading
        their complete records.
    source : binary file, optional
        ``path`` already open at its start (:func:`open_edf`), read from front to back
        instead of opening it here and left open at the first data record: a reader that
        goes on to the data reads each byte once (:func:`tokenizer.ingest.read_recording`).
    growing : bool
        The file is still being written (:func:`tokenizer.ingest.follow_recording`):
        ``n_records`` counts the complete records in the file now, whatever the header's
        count says (-1, or a count that lags the data), none is an error, and neither a
        half-written last record nor records beyond the count are warned about.

    Returns
    -------
    EDFHeader
        The parsed header.

    Raises
    ------
    tokenizer.IngestError
        A subclass naming the file and what was wrong: unreadable path, empty file, not
        EDF/BDF, corrupt or inconsistent header, zero data records, truncated data.
    """
    p = str(path)
    f = source if source is not None else open_edf(p)
    try:
        size = os.fstat(f.fileno()).st_size
        head = f.read(256)
        if size == 0:
            raise EmptyFileError(p, "expected an EDF/BDF file, found an empty file (0 bytes)")
        magic = head[:8]
        if magic not in (_EDF_MAGIC, _BDF_MAGIC):
            raise NotEDFError(p, f"expected EDF/BDF magic '0       ' or '\\xffBIOSEMI', found {_describe(head)}")
        if len(head) < 256:
            raise TruncatedFileError(p, f"expected a 256-byte header, file has only {size} bytes")
        ns_text = _field(head[252:256], "number of signals", p)
        ns = int(_number(ns_text, "number of signals", p, integer=True))
        if ns < 0:
            raise CorruptHeaderError(p, f"number of signals must be >= 0, found {ns}")
        if ns > 9999:  # "1e30" parses as a number; a 4-character count cannot exceed 9999
            raise CorruptHeaderError(p, f"number of signals must be at most 9999, found {ns_text!r}")
        expected_header = 256 * (ns + 1)
        rest = f.read(256 * ns)
    except OSError as exc:
        raise UnreadableFileError(p, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        if source is None:
            f.close()

    bdf = magic == _BDF_MAGIC
    patient = _field(head[8:88], "patient", p)
    recording = _field(head[88:168], "recording", p)
    startdate = _field(head[168:176], "startdate", p)
    starttime = _field(head[176:184], "starttime", p)
    header_bytes = int(_number(_field(head[184:192], "header bytes", p), "header bytes", p, integer=True))
    reserved = _field(head[192:236], "reserved", p)
    n_records = int(_number(_field(head[236:244], "number of data records", p), "number of data records", p, integer=True))
    record_duration = _number(_field(head[244:252], "record duration", p), "record duration", p)

    if header_bytes != expected_header:
        raise CorruptHeaderError(p, f"header length field says {header_bytes} bytes, but {ns} signals need "
                                    f"256 * ({ns} + 1) = {expected_header}")
    if len(rest) < 256 * ns:
        raise TruncatedFileError(p, f"expected a {expected_header}-byte header for {ns} signals, file has only "
                                    f"{size} bytes")

    kind = "BDF" if bdf else "EDF"
    fmt = next((kind + c for c in ("+C", "+D") if reserved.upper().startswith((kind + c, "EDF" + c))), kind)

    signals = _parse_signals(rest, ns, p, bdf)
    warnings: list[str] = []
    if record_duration < 0:
        raise CorruptHeaderError(p, f"record duration must be >= 0 s, found {record_duration}")

    bytes_per_sample = 3 if bdf else 2
    record_bytes = sum(s.samples_per_record for s in signals) * bytes_per_sample
    data_bytes = size - expected_header
    tail_s = 0.0
    if n_records == -1 and not growing:
        # Allowed by the spec while recording; derive the count from the file size.
        n_records = data_bytes // record_bytes if record_bytes else 0
        if n_records == 0:
            raise NoDataRecordsError(p, f"expected at least one data record, header says -1 (unknown) and the file "
                                        f"holds {data_bytes} bytes of data, less than one {record_bytes}-byte record")
        if strict:
            raise TruncatedFileError(p, f"header says -1 data records (unknown: the recording was never closed) and "
                                        f"the file holds {n_records} complete records; strict mode refuses it")
        warnings.append(f"number of data records was -1 (unknown); derived {n_records} from the file size")
        if data_bytes % record_bytes:
            tail_s = record_duration
            warnings.append(f"incomplete last data record ({data_bytes % record_bytes} of {record_bytes} bytes) "
                            f"dropped: {tail_s:g} s lost")
            data_bytes = n_records * record_bytes  # not "trailing bytes" below
    elif n_records < -1:
        raise CorruptHeaderError(p, f"number of data records must be >= 0, found {n_records}")
    if growing:
        # A recorder's file: its count is -1 or lags the data while it writes, and its last
        # record may be half written; what counts is the complete records there now.
        n_records = data_bytes // record_bytes if record_bytes else 0
        data_bytes = n_records * record_bytes
    elif n_records == 0:
        raise NoDataRecordsError(p, "expected at least one data record, header says 0")
    expected_data = n_records * record_bytes
    if data_bytes < expected_data:
        complete = data_bytes // record_bytes if record_bytes else 0
        cut = (f"header announces {n_records} data records ({expected_data} bytes), "
               f"file holds {data_bytes} bytes ({complete} complete records): the file is truncated")
        if strict:
            raise TruncatedFileError(p, f"{cut}; strict mode refuses it")
        if complete == 0:
            raise TruncatedFileError(p, cut)
        misplaced = _misplaced_record(p, expected_header, record_bytes, bytes_per_sample, signals, (0, complete - 1))
        if misplaced is not None:
            raise TruncatedFileError(p, f"{cut}, and record {misplaced + 1} has no time-keeping annotation where the "
                                        "header puts it, so the header (samples per record, sample size), not only "
                                        "the copy, is wrong")
        tail_s = (n_records - complete) * record_duration
        warnings.append(f"incomplete data: the header announces {n_records} data records, the file holds {complete} "
                        f"complete ones; the last {tail_s:g} s are lost (a crashed or half-copied recording)")
        n_records, expected_data, data_bytes = complete, complete * record_bytes, complete * record_bytes
    extra = data_bytes - expected_data
    if extra >= record_bytes > 0 and extra % record_bytes:
        # More than a record too much, and not whole records (a stale record count): the
        # samples per record (or the header length) are wrong and every record would be
        # read misaligned.
        raise CorruptHeaderError(p, f"file size does not match the header: {n_records} data records of {record_bytes} "
                                    f"bytes (from the samples per record) need {expected_data} bytes, the file holds "
                                    f"{data_bytes} ({extra} bytes more, not a whole number of records)")
    if extra >= record_bytes > 0:
        warnings.append(f"{extra // record_bytes} data records after the {n_records} the header announces ignored")
    elif extra > 0:
        warnings.append(f"{extra} trailing bytes after the last data record ignored")

    if record_duration == 0 and any(not s.is_annotation for s in signals):
        raise CorruptHeaderError(p, "record duration is 0 s but the file holds ordinary signals")

    return EDFHeader(path=p, format=fmt, bytes_per_sample=bytes_per_sample, patient=patient, recording=recording,
                     startdate=startdate, starttime=starttime, header_bytes=header_bytes, n_records=n_records,
                     record_duration=record_duration, signals=signals, file_size=size, warnings=tuple(warnings),
                     truncated_tail_s=float(tail_s))


#: The fixed fields of the first 256 header bytes: (name, first byte, stop byte).
_FIXED_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("version", 0, 8), ("patient", 8, 88), ("recording", 88, 168), ("startdate", 168, 176),
    ("starttime", 176, 184), ("header bytes", 184, 192), ("reserved", 192, 236),
    ("number of data records", 236, 244), ("record duration", 244, 252), ("number of signals", 252, 256),
)
#: Where the number of data records lies in the header (a recorder rewrites it as it writes).
RECORD_COUNT_BYTES = slice(236, 244)


def header_field_at(offset: int, n_signals: int) -> str:
    """The header field that byte ``offset`` of a header of ``n_signals`` signals belongs to,
    in words (``"record duration"``, ``"label of signal 3"``), to say what changed."""
    for name, lo, hi in _FIXED_FIELDS:
        if lo <= offset < hi:
            return name
    pos = 256
    for name, width in _SIGNAL_FIELDS:
        if offset < pos + width * n_signals:
            return f"{name.replace('_', ' ')} of signal {(offset - pos) // width + 1}"
        pos += width * n_signals
    return "data"

def _misplaced_record(p: str, header_bytes: int, record_bytes: int, bps: int, signals: tuple[SignalHeader, ...],
                      records: tuple[int, ...]) -> int | None:
    """First of ``records`` whose time-keeping annotation is not where the header puts it.

    None when all are in place, or when the file has no annotation signal (plain EDF/BDF
    carries nothing that could tell a wrong header from a short copy).
    """
    ann = next((s for s in signals if s.is_annotation), None)
    if ann is None:
        return None
    start = sum(s.samples_per_record for s in signals[: ann.index]) * bps
    n = min(ann.samples_per_record * bps, 64)
    with open(p, "rb") as f:
        for r in records:
            f.seek(header_bytes + r * record_bytes + start)
            if not _TIME_KEEPING.match(f.read(n)):
                return r
    return None


def _parse_signals(raw: bytes, ns: int, p: str, bdf: bool) -> tuple[SignalHeader, ...]:
    cols: dict[str, list[str]] = {}
    pos = 0
    for name, width in _SIGNAL_FIELDS:
        cols[name] = [_field(raw[pos + i * width : pos + (i + 1) * width], name, p) for i in range(ns)]
        pos += width * ns
    dig_lo, dig_hi = (-(2**23), 2**23 - 1) if bdf else (-(2**15), 2**15 - 1)
    out = []
    for i in range(ns):
        label = cols["label"][i]
        where = f"signal {i + 1} ('{label}')"
        nspr = int(_number(cols["samples_per_record"][i], f"samples per record of {where}", p, integer=True))
        if nspr <= 0:
            raise CorruptHeaderError(p, f"samples per record of {where} must be > 0, found {nspr}")
        dmin = int(_number(cols["digital_min"][i], f"digital minimum of {where}", p, integer=True))
        dmax = int(_number(cols["digital_max"][i], f"digital maximum of {where}", p, integer=True))
        pmin = _number(cols["physical_min"][i], f"physical minimum of {where}", p)
        pmax = _number(cols["physical_max"][i], f"physical maximum of {where}", p)
        if not (dig_lo <= dmin <= dig_hi and dig_lo <= dmax <= dig_hi):
            raise CorruptHeaderError(p, f"digital range of {where} must lie in [{dig_lo}, {dig_hi}], "
                                        f"found [{dmin}, {dmax}]")
        sig = SignalHeader(i, label, cols["transducer"][i], cols["unit"][i], pmin, pmax, dmin, dmax,
                           cols["prefilter"][i], nspr)
        if dmax <= dmin and not sig.is_annotation:
            raise CorruptHeaderError(p, f"digital maximum of {where} must exceed its minimum, "
                                        f"found min={dmin} max={dmax}")
        if pmax == pmin and not sig.is_annotation:
            raise CorruptHeaderError(p, f"physical minimum and maximum of {where} must differ, found both {pmin:g} "
                                        "(every sample would read as the same value)")
        out.append(sig)
    return tuple(out)


def _describe(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head[:1] in (b"{", b"["):
        return "JSON-like text"
    return repr(head[:8])

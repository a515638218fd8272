"""A small EDF/EDF+/BDF/BDF+ writer with full control over header quirks.

Real archives hold files with inverted physical ranges, blank units, several
annotation channels, discontinuous records and channels at other rates; the
synthetic hospital and the ingestion tests need to write all of those on purpose,
which general-purpose writers (pyedflib, edfio) do not allow. Files written here are
read back by MNE and pyedflib in the tests, as an independent check.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Sequence

import numpy as np

from tokenizer.atomic import atomic_path

Format = Literal["EDF", "EDF+C", "EDF+D", "BDF", "BDF+C", "BDF+D"]
#: What the header's record count says while an :class:`EDFStreamWriter` writes.
RecordCount = Literal["close", "each", "never"]


@dataclass
class EDFSignal:
    """One signal to write.

    Attributes
    ----------
    label : str
        Channel label as it should appear (``EEG FP1-REF``, ``ECG``, ...), ≤ 16 chars.
    data : ndarray
        Physical values, 1-D, ``n_records * sfreq * record_duration`` samples.
    sfreq : float
        Sampling rate (Hz).
    unit : str
        Physical dimension written to the header (may be blank or anything).
    physical_min, physical_max : float, optional
        Physical range; defaults to the data range. Pass min > max for an inverted range.
    digital_min, digital_max : int, optional
        Digital range; defaults to the full int16 / int24 range.
    transducer, prefilter : str
        Free-text header fields.
    """

    label: str
    data: np.ndarray
    sfreq: float
    unit: str = "uV"
    physical_min: float | None = None
    physical_max: float | None = None
    digital_min: int | None = None
    digital_max: int | None = None
    transducer: str = "AgAgCl electrode"
    prefilter: str = "HP:0.1Hz LP:100Hz"


def _fit(text: str, width: int) -> bytes:
    return text.encode("latin-1", errors="replace")[:width].ljust(width, b" ")


def _num(value: float, width: int = 8) -> bytes:
    """Format a number into at most ``width`` characters, as precisely as fits."""
    if float(value).is_integer() and len(str(int(value))) <= width:
        return _fit(str(int(value)), width)
    for prec in range(width, 0, -1):
        s = f"{value:.{prec}f}".rstrip("0").rstrip(".")
        if len(s) <= width:
            return _fit(s, width)
    s = f"{value:.{max(1, width - 6)}g}"
    return _fit(s[:width], width)


def _tal(onset: float, duration: float | None, texts: Sequence[str]) -> bytes:
    head = f"{onset:+.6f}".rstrip("0").rstrip(".") if onset % 1 else f"{onset:+.0f}"
    if duration is not None:
        head += "\x15" + (f"{duration:.6f}".rstrip("0").rstrip(".") or "0")
    body = "".join(t + "\x14" for t in texts)
    return (head + "\x14" + (body if texts else "\x14")).encode("utf-8") + b"\x00"


def write_edf(path: str | Path, signals: Sequence[EDFSignal], *, fmt: Format = "EDF+C", record_duration: float = 1.0,
              start: datetime = datetime(2020, 1, 1, 9, 0, 0), patient: str = "X X X X", recording: str | None = None,
              annotations: Sequence[tuple[float, float | None, str]] = (), n_annotation_channels: int = 1,
              record_onsets: Sequence[float] | None = None) -> Path:
    """Write an EDF/EDF+/BDF/BDF+ file.

    Parameters
    ----------
    path : str or Path
        Output file (written atomically: temp file + rename).
    signals : sequence of EDFSignal
        Ordinary signals, in file order.
    fmt : str
        ``EDF``, ``EDF+C``, ``EDF+D``, ``BDF``, ``BDF+C`` or ``BDF+D``.
    record_duration : float
        Seconds per data record.
    start : datetime
        Recording start (header date/time).
    patient : str
        Patient identification field (EDF+: ``code sex dd-MMM-yyyy name``).
    recording : str, optional
        Recording identification field; default EDF+ style from ``start``.
    annotations : sequence of (onset, duration, text)
        Annotations (EDF+/BDF+ only), spread over the annotation channels.
    n_annotation_channels : int
        Number of annotation channels (EDF+/BDF+ only).
    record_onsets : sequence of float, optional
        Onset (s) of each record, for EDF+D/BDF+D; default contiguous.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    bdf = fmt.startswith("BDF")
    plus = "+" in fmt
    bps = 3 if bdf else 2
    dlo, dhi = (-(2**23), 2**23 - 1) if bdf else (-(2**15), 2**15 - 1)
    spr = [int(round(s.sfreq * record_duration)) for s in signals]
    if any(abs(n - s.sfreq * record_duration) > 1e-6 for n, s in zip(spr, signals)):
        raise ValueError("every signal's sfreq * record_duration must be an integer")
    n_records = {len(s.data) // n for s, n in zip(signals, spr)} if signals else {1}
    if len(n_records) != 1 or any(len(s.data) % n for s, n in zip(signals, spr)):
        raise ValueError("all signals must cover the same whole number of records")
    n_rec = n_records.pop()
    onsets = list(record_onsets) if record_onsets is not None else [r * record_duration for r in range(n_rec)]
    if len(onsets) != n_rec:
        raise ValueError(f"record_onsets must have {n_rec} entries, found {len(onsets)}")

    # Annotation channels: TAL bytes per record, padded to a common even size.
    ann_payload: list[list[bytes]] = []
    if plus:
        n_ann = max(1, n_annotation_channels)
        per_chan: list[list[list[tuple[float, float | None, str]]]] = [[[] for _ in range(n_rec)] for _ in range(n_ann)]
        for k, (on, dur, text) in enumerate(sorted(annotations, key=lambda a: a[0])):
            r = int(np.searchsorted(np.asarray(onsets), on, side="right")) - 1
            per_chan[k % n_ann][max(r, 0)].append((on, dur, text))
        for c in range(n_ann):
            recs = []
            for r in range(n_rec):
                b = _tal(onsets[r], None, []) if c == 0 else b""
                for on, dur, text in per_chan[c][r]:
                    b += _tal(on, dur, [text])
                recs.append(b)
            ann_payload.append(recs)
        ann_bytes = [max(max(len(b) for b in recs), 2 * bps) for recs in ann_payload]
        ann_spr = [(-(-n // bps) + 1) for n in ann_bytes]
    else:
        ann_spr = []

    ranges = [_range(s, np.asarray(s.data, dtype=np.float64), dlo, dhi) for s in signals]
    digital = [_digital(np.asarray(s.data, dtype=np.float64), *r) for s, r in zip(signals, ranges)]
    head = _header(signals, ranges, ann_spr, fmt=fmt, n_records=n_rec, record_duration=record_duration, start=start,
                   patient=patient, recording=recording)
    body = _records(n_rec, digital, spr, ann_payload, ann_spr, bps)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(head)
        f.write(body.tobytes())
    return path


class EDFStreamWriter:
    """An EDF/EDF+/BDF/BDF+ file written data record by data record.

    What a recorder does (its file grows while it records, and is read while it grows:
    :func:`tokenizer.ingest.follow_recording`), and how a long recording is written
    without holding its signal: the header first, then each :meth:`write` appends whole
    data records, so memory is one call's records whatever the file's length. The
    physical range of every signal is fixed in the header before any sample is known,
    so each :class:`EDFSignal` must give ``physical_min`` and ``physical_max`` (its
    ``data`` is ignored; values beyond the range are clipped, as a recorder's amplifier
    clips). Records are contiguous (``EDF+D`` / ``BDF+D`` are not written this way).

    Parameters
    ----------
    path : str or Path
        Output file.
    signals : sequence of EDFSignal
        The header of each ordinary signal, in file order.
    fmt : {"EDF", "EDF+C", "BDF", "BDF+C"}
        File format.
    record_duration : float
        Seconds per data record.
    start, patient, recording
        Header fields, as for :func:`write_edf`.
    record_count : {"close", "each", "never"}
        The header's record count while the file is written: ``"close"``: -1 ("unknown",
        as the specification allows while recording) until :meth:`close` writes the
        count; ``"each"``: rewritten after every :meth:`write` (a recorder that keeps it
        current; the data are written first, so it never announces a record not yet
        there); ``"never"``: -1 even after :meth:`close` (a recorder that stopped without
        closing its file).
    atomic : bool
        True: written through a temporary file renamed into place by :meth:`close` (a
        generated file no reader sees half-written; removed if the writer fails). False:
        written in place and flushed after every :meth:`write`, so another process reads
        each record as soon as it is written.
    annotation_bytes : int
        Bytes per record of the EDF+/BDF+ annotation channel: the record's time-keeping
        annotation and any annotation :meth:`write` places in it.

    Raises
    ------
    ValueError
        An unknown format or record count, a signal without a physical range, or a rate
        that does not give a whole number of samples per record.
    """

    def __init__(self, path: str | Path, signals: Sequence[EDFSignal], *, fmt: Format = "EDF+C",
                 record_duration: float = 1.0, start: datetime = datetime(2020, 1, 1, 9, 0, 0),
                 patient: str = "X X X X", recording: str | None = None, record_count: RecordCount = "close",
                 atomic: bool = True, annotation_bytes: int = 64) -> None:
        if fmt not in ("EDF", "EDF+C", "BDF", "BDF+C"):
            raise ValueError(f"fmt must be EDF, EDF+C, BDF or BDF+C (contiguous records), found {fmt!r}")
        if record_count not in ("close", "each", "never"):
            raise ValueError(f"record_count must be 'close', 'each' or 'never', found {record_count!r}")
        if not signals:
            raise ValueError("expected at least one ordinary signal, found none")
        if not record_duration > 0:
            raise ValueError(f"record_duration must be > 0 s, found {record_duration}")
        missing = [s.label for s in signals if s.physical_min is None or s.physical_max is None]
        if missing:
            raise ValueError(f"every signal needs physical_min and physical_max (the header is written before any "
                             f"sample), found none for {', '.join(missing)}")
        self.path = Path(path)
        self.signals = tuple(signals)
        self.record_duration = float(record_duration)
        self.record_count = record_count
        self.bps = 3 if fmt.startswith("BDF") else 2
        dlo, dhi = (-(2**23), 2**23 - 1) if self.bps == 3 else (-(2**15), 2**15 - 1)
        self.spr = [int(round(s.sfreq * record_duration)) for s in signals]
        if any(abs(n - s.sfreq * record_duration) > 1e-6 for n, s in zip(self.spr, signals)):
            raise ValueError("every signal's sfreq * record_duration must be an integer")
        self.ranges = [_range(s, np.zeros(0), dlo, dhi) for s in signals]
        self.ann_spr = [-(-max(annotation_bytes, 2 * self.bps) // self.bps)] if "+" in fmt else []
        self.n_records = 0
        head = _header(self.signals, self.ranges, self.ann_spr, fmt=fmt, n_records=-1,
                       record_duration=record_duration, start=start, patient=patient, recording=recording)
        self._stack = ExitStack()
        try:
            target = self._stack.enter_context(atomic_path(self.path)) if atomic else self.path
            if not atomic:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._stack.enter_context(open(target, "wb"))
            self._file.write(head)
            self._file.flush()
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise

    @property
    def record_bytes(self) -> int:
        """Bytes per data record."""
        return (sum(self.spr) + sum(self.ann_spr)) * self.bps

    def write(self, data: Sequence[np.ndarray] | np.ndarray,
              annotations: Sequence[tuple[float, float | None, str]] = ()) -> int:
        """Append whole data records.

        Parameters
        ----------
        data : ndarray (n_signals, n) or sequence of 1-D arrays
            Physical values of every signal, in file order, covering the same whole
            number of records (signals at other rates have other lengths).
        annotations : sequence of (onset, duration, text)
            EDF+/BDF+ annotations (onset in seconds from the recording's start), each
            written in the record of these that holds its onset.

        Returns
        -------
        int
            Records in the file so far.

        Raises
        ------
        ValueError
            Signals that do not cover the same whole number of records, an annotation
            outside these records or longer than ``annotation_bytes``, or a closed writer.
        """
        if self._file.closed:
            raise ValueError(f"{self.path}: the writer is closed")
        if len(data) != len(self.signals):
            raise ValueError(f"expected {len(self.signals)} signals, found {len(data)}")
        counts = {len(x) // n for x, n in zip(data, self.spr)}
        if len(counts) != 1 or any(len(x) % n for x, n in zip(data, self.spr)):
            raise ValueError("all signals must cover the same whole number of records")
        n_rec = counts.pop()
        if n_rec == 0:
            return self.n_records
        first = self.n_records
        payload: list[list[bytes]] = []
        if self.ann_spr:
            recs = [_tal((first + r) * self.record_duration, None, []) for r in range(n_rec)]
            for onset, duration, text in annotations:
                r = int(onset // self.record_duration) - first
                if not 0 <= r < n_rec:
                    raise ValueError(f"annotation {text!r} at {onset:g} s is outside the records written "
                                     f"({first * self.record_duration:g}-{(first + n_rec) * self.record_duration:g} s)")
                recs[r] += _tal(onset, duration, [text])
            width = self.ann_spr[0] * self.bps
            if max(len(b) for b in recs) > width:
                raise ValueError(f"the annotations of a record need more than the {width} bytes of its annotation "
                                 "channel (annotation_bytes)")
            payload = [recs]
        elif annotations:
            raise ValueError("annotations need an EDF+ or BDF+ file")
        digital = [_digital(np.asarray(x, dtype=np.float64), *r) for x, r in zip(data, self.ranges)]
        self._file.write(_records(n_rec, digital, self.spr, payload, self.ann_spr, self.bps).tobytes())
        self._file.flush()
        self.n_records += n_rec
        if self.record_count == "each":
            self._write_count(self.n_records)
        return self.n_records

    def _write_count(self, n: int) -> None:
        """Rewrite the header's record count and return to the end of the data."""
        self._file.seek(236)
        self._file.write(_fit(str(n), 8))
        self._file.seek(0, 2)
        self._file.flush()

    def close(self) -> Path:
        """Write the record count (unless ``record_count="never"``), close the file and, when
        atomic, rename it into place; returns the path. Closing twice does nothing."""
        if not self._file.closed:
            if self.record_count != "never":
                self._write_count(self.n_records)
            self._stack.close()
        return self.path

    def abort(self) -> None:
        """Close the file as it is, its record count not written: a file in place is left
        as a recorder that stopped without closing it leaves it; an atomic one is removed."""
        if not self._file.closed:
            why = RuntimeError(f"{self.path}: writing aborted")
            self._stack.__exit__(RuntimeError, why, None)

    def __enter__(self) -> EDFStreamWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:  # an atomic file is removed, a file in place is left as the failure left it
            self._stack.__exit__(kind, exc, tb)


def _range(s: EDFSignal, x: np.ndarray, dlo: int, dhi: int) -> tuple[float, float, int, int]:
    """A signal's physical and digital range as the header will hold them: ``(pmin, pmax, dmin, dmax)``.

    The physical range defaults to the data's (``x``, which may be empty), and is rounded
    through the header's 8-character text so that the reader sees the same range.
    """
    pmin = s.physical_min if s.physical_min is not None else float(x.min()) if x.size else -1.0
    pmax = s.physical_max if s.physical_max is not None else float(x.max()) if x.size else 1.0
    if pmin == pmax:
        pmin, pmax = pmin - 1.0, pmax + 1.0
    pmin, pmax = float(_num(pmin).decode()), float(_num(pmax).decode())
    return (pmin, pmax, s.digital_min if s.digital_min is not None else dlo,
            s.digital_max if s.digital_max is not None else dhi)


def _digital(x: np.ndarray, pmin: float, pmax: float, dmin: int, dmax: int) -> np.ndarray:
    """Physical values → digital samples (int32), clipped to the digital range."""
    gain = (pmax - pmin) / (dmax - dmin)
    return np.clip(np.round((x - pmin) / gain + dmin), min(dmin, dmax), max(dmin, dmax)).astype(np.int32)


def _header(signals: Sequence[EDFSignal], ranges: Sequence[tuple[float, float, int, int]], ann_spr: Sequence[int], *,
            fmt: Format, n_records: int, record_duration: float, start: datetime, patient: str,
            recording: str | None) -> bytes:
    """The header bytes: the fixed part, then the signal fields, annotation channels last."""
    bdf, plus = fmt.startswith("BDF"), "+" in fmt
    dlo, dhi = (-(2**23), 2**23 - 1) if bdf else (-(2**15), 2**15 - 1)
    n_ann = len(ann_spr)
    labels = [s.label for s in signals] + ["BDF Annotations" if bdf else "EDF Annotations"] * n_ann
    ranges = [*ranges, *[(-1.0, 1.0, dlo, dhi)] * n_ann]
    spr = [int(round(s.sfreq * record_duration)) for s in signals] + list(ann_spr)
    ns = len(labels)
    rec_field = recording if recording is not None else (
        f"Startdate {start.strftime('%d-%b-%Y').upper()} X X X" if plus else "Startdate X")
    head = b"".join([
        b"\xffBIOSEMI" if bdf else b"0       ",
        _fit(patient, 80),
        _fit(rec_field, 80),
        _fit(start.strftime("%d.%m.%y"), 8),
        _fit(start.strftime("%H.%M.%S"), 8),
        _fit(str(256 * (ns + 1)), 8),
        _fit(fmt if plus else ("24BIT" if bdf else ""), 44),
        _fit(str(n_records), 8),
        _num(record_duration),
        _fit(str(ns), 4),
    ])
    fields = [
        [_fit(x, 16) for x in labels],
        [_fit(s.transducer, 80) for s in signals] + [_fit("", 80)] * n_ann,
        [_fit(s.unit, 8) for s in signals] + [_fit("", 8)] * n_ann,
        [_num(r[0]) for r in ranges],
        [_num(r[1]) for r in ranges],
        [_fit(str(r[2]), 8) for r in ranges],
        [_fit(str(r[3]), 8) for r in ranges],
        [_fit(s.prefilter, 80) for s in signals] + [_fit("", 80)] * n_ann,
        [_fit(str(n), 8) for n in spr],
        [_fit("", 32)] * ns,
    ]
    return head + b"".join(b"".join(col) for col in fields)


def _records(n_rec: int, digital: Sequence[np.ndarray], spr: Sequence[int], ann_payload: Sequence[Sequence[bytes]],
             ann_spr: Sequence[int], bps: int) -> np.ndarray:
    """``n_rec`` data records as bytes, shape ``(n_rec, record_bytes)``: the signals'
    digital samples, then each annotation channel's TAL bytes padded with zeros."""
    rec_samples = sum(spr) + sum(ann_spr)
    block = np.zeros((n_rec, rec_samples), dtype=np.int32)
    off = 0
    for d, n in zip(digital, spr):
        block[:, off : off + n] = d.reshape(n_rec, n)
        off += n
    body = _encode(block, bps).reshape(n_rec, rec_samples * bps)
    pos = sum(spr) * bps
    for recs, n in zip(ann_payload, ann_spr):
        width = n * bps
        for r, b in enumerate(recs):
            body[r, pos : pos + width] = np.frombuffer(b.ljust(width, b"\x00"), dtype=np.uint8)
        pos += width
    return body


def _encode(block: np.ndarray, bps: int) -> np.ndarray:
    """int32 samples → little-endian bytes (2 or 3 per sample), shape (n_rec, rec_bytes)."""
    if bps == 2:
        return block.astype("<i2").view(np.uint8).reshape(block.shape[0], -1)
    b = block.astype("<i4").view(np.uint8).reshape(block.shape[0], -1, 4)[:, :, :3]
    return np.ascontiguousarray(b).reshape(block.shape[0], -1)

"""Decoding EDF/BDF data records: selected signals, annotations (TALs), record onsets.

Records are read in bounded chunks and only the requested signals are kept, as compact
integers, so peak memory stays a small multiple of the signals actually used.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Mapping

import numpy as np

from tokenizer.edf_header import EDFHeader, SignalHeader
from tokenizer.errors import CorruptHeaderError

#: Bytes of data records read per chunk.
CHUNK_BYTES = 32 * 2**20

_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*?)\x00", re.DOTALL)


@dataclass(frozen=True)
class Annotation:
    """One annotation: onset (s from the start of the file), duration (s or None), text."""

    onset: float
    duration: float | None
    text: str


def read_digital(header: EDFHeader, signals: Iterable[SignalHeader], n_records: int | None = None, *,
                 source: BinaryIO | None = None) -> dict[int, np.ndarray]:
    """Read the digital samples of some signals, all records, in bounded chunks.

    Parameters
    ----------
    header : EDFHeader
        Parsed header of the file.
    signals : iterable of SignalHeader
        Signals to read.
    n_records : int, optional
        Read only the first ``n_records`` records (default: all).
    source : binary file, optional
        The file, open where its header ends (as :func:`tokenizer.edf_header.read_header`
        leaves it), read on from there instead of opening ``header.path`` again.

    Returns
    -------
    dict
        ``{signal index: samples}``; int16 for EDF, int32 (sign-extended 24-bit) for BDF,
        each of length ``n_records * samples_per_record``.
    """
    sigs = list(signals)
    if not sigs:
        return {}
    total = header.n_records if n_records is None else max(0, min(int(n_records), header.n_records))
    bps = header.bytes_per_sample
    rec_bytes = header.record_bytes
    out: dict[int, np.ndarray] = {
        s.index: np.empty(total * s.samples_per_record, dtype=np.int16 if bps == 2 else np.int32)
        for s in sigs
    }
    offsets = {s.index: header.sample_offset(s) for s in sigs}
    per_chunk = max(1, CHUNK_BYTES // rec_bytes)
    with nullcontext(source) if source is not None else open(header.path, "rb") as f:
        if source is None:
            f.seek(header.header_bytes)
        done = 0
        while done < total:
            k = min(per_chunk, total - done)
            raw = np.frombuffer(f.read(k * rec_bytes), dtype=np.uint8)
            if raw.size < k * rec_bytes:  # the header check makes this unreachable unless the file shrank
                raise CorruptHeaderError(header.path, "file ended while reading data records")
            block = raw.reshape(k, rec_bytes)
            for s in sigs:
                ns = s.samples_per_record
                start = offsets[s.index] * bps
                cols = block[:, start : start + ns * bps]
                dest = out[s.index][done * ns : (done + k) * ns]
                if bps == 2:
                    dest[:] = np.ascontiguousarray(cols).view("<i2").reshape(-1)
                else:
                    b = cols.reshape(k * ns, 3).astype(np.int32)
                    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
                    v -= (v & 0x800000) << 1  # sign-extend 24-bit
                    dest[:] = v
            done += k
    return out


def to_physical(digital: np.ndarray, sig: SignalHeader, scale: float = 1.0, dtype: type = np.float64) -> np.ndarray:
    """Convert digital samples to physical units (times ``scale``).

    Uses the header's linear map, which is also right for an inverted physical range
    (physical minimum above physical maximum: the signal's polarity is flipped, as the
    writer intended).
    """
    gain = sig.gain * scale
    offset = sig.offset * scale
    out = digital.astype(dtype)
    out *= gain
    out += offset
    return out


def read_annotations(header: EDFHeader,
                     digital: Mapping[int, np.ndarray] | None = None) -> tuple[list[Annotation], np.ndarray | None]:
    """Parse every annotation channel of an EDF+/BDF+ file.

    Parameters
    ----------
    header : EDFHeader
        Parsed header.
    digital : mapping, optional
        The annotation channels already read (:func:`read_digital`, by signal index), all
        the records or a run of them (a streamed file's block); default: read them from
        the file.

    Returns
    -------
    annotations : list of Annotation
        All annotations with text, sorted by onset, from all annotation channels.
    record_onsets : ndarray or None
        Start time (s) of each data record given, from the time-keeping TALs of the
        first annotation channel, or None when the file has no annotation channel.
    """
    ann_sigs = header.annotation_signals
    if not ann_sigs:
        return [], None
    raw = digital if digital is not None else read_digital(header, ann_sigs)
    annotations: list[Annotation] = []
    n_records = len(raw[ann_sigs[0].index]) // ann_sigs[0].samples_per_record
    onsets = np.full(n_records, np.nan)
    for j, sig in enumerate(ann_sigs):
        data = raw[sig.index]
        if header.bytes_per_sample == 2:
            buf = data.astype("<i2").tobytes()
            rec_len = sig.samples_per_record * 2
        else:
            b = data.astype("<i4").tobytes()
            # 24-bit samples: keep the three low bytes of each int32
            arr = np.frombuffer(b, dtype=np.uint8).reshape(-1, 4)[:, :3]
            buf = arr.tobytes()
            rec_len = sig.samples_per_record * 3
        for r in range(n_records):
            rec = buf[r * rec_len : (r + 1) * rec_len]
            first = True
            for m in _TAL.finditer(rec):
                onset = float(m.group(1))
                dur = float(m.group(2)) if m.group(2) else None
                texts = [t for t in m.group(3).split(b"\x14") if t]
                if first and j == 0:
                    onsets[r] = onset
                first = False
                for t in texts:
                    text = t.decode("utf-8", errors="replace").strip()
                    if text:
                        annotations.append(Annotation(onset, dur, text))
    annotations.sort(key=lambda a: a.onset)
    if np.isnan(onsets).any():
        return annotations, None
    return annotations, onsets


def contiguous_segments(record_onsets: np.ndarray | None, n_records: int, record_duration: float, tol: float = 1e-3) -> list[tuple[int, int, float]]:
    """Group data records into continuous segments.

    Parameters
    ----------
    record_onsets : ndarray or None
        Onset of each record (s); None means continuous from 0.
    n_records : int
        Number of records.
    record_duration : float
        Duration of one record (s).
    tol : float
        Tolerance (s) when comparing a record's onset with the previous one's end.

    Returns
    -------
    list of (first_record, stop_record, onset_s)
        One entry per continuous run of records.
    """
    if record_onsets is None:
        return [(0, n_records, 0.0)]
    segments: list[tuple[int, int, float]] = []
    start = 0
    base = float(record_onsets[0])
    for r in range(1, n_records):
        expected = record_onsets[r - 1] + record_duration
        if abs(record_onsets[r] - expected) > tol:
            segments.append((start, r, float(record_onsets[start]) - base))
            start = r
    segments.append((start, n_records, float(record_onsets[start]) - base))
    return segments

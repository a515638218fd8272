"""A small EDF/EDF+/BDF/BDF+ writer with full control over header quirks.

Real archives hold files with inverted physical ranges, blank units, several
annotation channels, discontinuous records and channels at other rates; the
synthetic hospital and the ingestion tests need to write all of those on purpose,
which general-purpose writers (pyedflib, edfio) do not allow. Files written here are
read back by MNE and pyedflib in the tests, as an independent check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from tokenizer.atomic import atomic_path

Format = Literal["EDF", "EDF+C", "EDF+D", "BDF", "BDF+C", "BDF+D"]


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

    labels = [s.label for s in signals] + (["BDF Annotations" if bdf else "EDF Annotations"] * len(ann_spr))
    units = [s.unit for s in signals] + [""] * len(ann_spr)
    pmins, pmaxs, dmins, dmaxs = [], [], [], []
    digital: list[np.ndarray] = []
    for s in signals:
        x = np.asarray(s.data, dtype=np.float64)
        pmin = s.physical_min if s.physical_min is not None else float(x.min()) if x.size else -1.0
        pmax = s.physical_max if s.physical_max is not None else float(x.max()) if x.size else 1.0
        if pmin == pmax:
            pmin, pmax = pmin - 1.0, pmax + 1.0
        # Round through the header's 8-character text so the reader sees the same range.
        pmin, pmax = float(_num(pmin).decode()), float(_num(pmax).decode())
        dmin = s.digital_min if s.digital_min is not None else dlo
        dmax = s.digital_max if s.digital_max is not None else dhi
        gain = (pmax - pmin) / (dmax - dmin)
        digital.append(np.clip(np.round((x - pmin) / gain + dmin), min(dmin, dmax), max(dmin, dmax)).astype(np.int32))
        pmins.append(pmin)
        pmaxs.append(pmax)
        dmins.append(dmin)
        dmaxs.append(dmax)
    for _ in ann_spr:
        pmins.append(-1.0)
        pmaxs.append(1.0)
        dmins.append(dlo)
        dmaxs.append(dhi)
    all_spr = spr + ann_spr
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
        _fit(str(n_rec), 8),
        _num(record_duration),
        _fit(str(ns), 4),
    ])
    fields = [
        [_fit(x, 16) for x in labels],
        [_fit(s.transducer, 80) for s in signals] + [_fit("", 80)] * len(ann_spr),
        [_fit(u, 8) for u in units],
        [_num(v) for v in pmins],
        [_num(v) for v in pmaxs],
        [_fit(str(v), 8) for v in dmins],
        [_fit(str(v), 8) for v in dmaxs],
        [_fit(s.prefilter, 80) for s in signals] + [_fit("", 80)] * len(ann_spr),
        [_fit(str(n), 8) for n in all_spr],
        [_fit("", 32)] * ns,
    ]
    head += b"".join(b"".join(col) for col in fields)

    rec_samples = sum(all_spr)
    block = np.zeros((n_rec, rec_samples), dtype=np.int32)
    off = 0
    for d, n in zip(digital, spr):
        block[:, off : off + n] = d.reshape(n_rec, n)
        off += n
    body = _encode(block, bps)
    if ann_spr:
        body = body.reshape(n_rec, rec_samples * bps)
        pos = sum(spr) * bps
        for recs, n in zip(ann_payload, ann_spr):
            width = n * bps
            for r, b in enumerate(recs):
                body[r, pos : pos + width] = np.frombuffer(b.ljust(width, b"\x00"), dtype=np.uint8)
            pos += width

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(head)
        f.write(body.tobytes())
    return path


def _encode(block: np.ndarray, bps: int) -> np.ndarray:
    """int32 samples → little-endian bytes (2 or 3 per sample), shape (n_rec, rec_bytes)."""
    if bps == 2:
        return block.astype("<i2").view(np.uint8).reshape(block.shape[0], -1)
    b = block.astype("<i4").view(np.uint8).reshape(block.shape[0], -1, 4)[:, :, :3]
    return np.ascontiguousarray(b).reshape(block.shape[0], -1)

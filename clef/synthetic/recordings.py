"""Small generated recordings: sine-and-noise EEG written as EDF/BDF.

What the tests and the benchmarks use when they need a file of a given length, rate,
label style or unit, without the simulated physiology of :mod:`clef.synthetic.eeg` (the
synthetic hospital's sessions).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenizer.contract import CANONICAL_CHANNELS
from tokenizer.edf_writer import EDFSignal, EDFStreamWriter, Format, RecordCount, write_edf

#: Channel-label styles of EEG archives, from a canonical 10-20 name (``Fp1``) to a label.
LABEL_STYLES: dict[str, Callable[[str], str]] = {
    "ref": lambda c: f"EEG {c.upper()}-REF",
    "Ref": lambda c: f"EEG {c}-Ref",
    "le": lambda c: f"EEG {c.upper()}-LE",
    "eeg": lambda c: f"EEG {c}",
    "bare": lambda c: c,
    "pol": lambda c: f"POL {c}",
    "bci": lambda c: (c + "..")[:4] if len(c) == 2 else (c + ".")[:4],
}
#: The 10-10 names of the four temporal electrodes the 10-20 system calls T3, T4, T5, T6.
NEW_NAMES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}


def eeg_signals(
    seconds: float = 20,
    sfreq: float = 256,
    *,
    style: str = "ref",
    new_names: bool = False,
    channels: Sequence[str] = CANONICAL_CHANNELS,
    unit: str = "uV",
    scale: float = 1.0,
    freq: float = 10.0,
    amp: float = 30.0,
    seed: int = 0,
) -> list[EDFSignal]:
    """EEG channels: a sine of ``freq`` Hz (phase shifted per channel) plus white noise.

    Parameters
    ----------
    seconds, sfreq : float
        Duration and sampling rate.
    style : str
        A key of :data:`LABEL_STYLES`.
    new_names : bool
        Label T3/T4/T5/T6 by their 10-10 names (T7/T8/P7/P8).
    channels : sequence of str
        Canonical names of the channels, in file order (default: the 19 10-20 electrodes).
    unit : str
        Physical dimension written to the header.
    scale : float
        Factor applied to the µV values (e.g. ``1e-3`` with ``unit="mV"``).
    freq, amp : float
        Frequency (Hz) and amplitude (µV) of the sine; the noise has a 3 µV standard deviation.
    seed : int
        Seed of the noise.

    Returns
    -------
    list of EDFSignal
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sfreq)) / sfreq
    sigs = []
    for k, c in enumerate(channels):
        name = NEW_NAMES.get(c, c) if new_names else c
        x = amp * np.sin(2 * np.pi * freq * t + k) + rng.normal(0, 3, t.size)
        sigs.append(EDFSignal(LABEL_STYLES[style](name), x * scale, sfreq, unit=unit))
    return sigs


def make_edf(path: str | Path, signals: Sequence[EDFSignal] | None = None, **kw: Any) -> Path:
    """Write ``signals`` (default: :func:`eeg_signals`' 19 channels, 20 s, 256 Hz) to ``path``.

    ``kw`` goes to :func:`tokenizer.edf_writer.write_edf` (``fmt``, ``annotations``, ...).
    """
    return write_edf(path, signals if signals is not None else eeg_signals(), **kw)


def record_live(path: str | Path, signals: Sequence[EDFSignal], *, interval_s: float = 1.0,
                records_per_write: int = 1, record_count: RecordCount = "close", fmt: Format = "EDF+C",
                record_duration: float = 1.0, log_path: str | Path | None = None,
                stop_mid_record: bool = False) -> Path:
    """Write ``signals`` to ``path`` as a recorder does: the header, then records as they are "recorded".

    Every ``interval_s`` seconds ``records_per_write`` data records are appended and
    flushed (``interval_s`` shorter than the records' duration: real time compressed).
    Run in another process to test a reader that follows the growing file.

    Parameters
    ----------
    path : str or Path
        The file (written in place, as a recorder writes it).
    signals : sequence of EDFSignal
        The whole recording (:func:`eeg_signals`); a signal without a physical range gets
        its data's range.
    interval_s : float
        Seconds between two writes (the first write comes ``interval_s`` after the header).
    records_per_write : int
        Records appended per write.
    record_count : {"close", "each", "never"}
        What the header's record count says while recording
        (:class:`tokenizer.edf_writer.EDFStreamWriter`).
    fmt : str
        ``EDF``, ``EDF+C``, ``BDF`` or ``BDF+C``.
    record_duration : float
        Seconds per data record.
    log_path : str or Path, optional
        A line ``<records in the file> <time.time()>`` is appended after every write.
    stop_mid_record : bool
        End with half of one more record and no close, as a recorder that crashed.

    Returns
    -------
    Path
    """
    if not interval_s >= 0:
        raise ValueError(f"interval_s must be >= 0, found {interval_s}")
    if records_per_write < 1:
        raise ValueError(f"records_per_write must be at least 1, found {records_per_write}")
    sigs = [s if s.physical_min is not None and s.physical_max is not None
            else dataclasses.replace(s, physical_min=float(np.min(s.data)), physical_max=float(np.max(s.data)))
            for s in signals]
    spr = [int(round(s.sfreq * record_duration)) for s in sigs]
    n_rec = len(sigs[0].data) // spr[0]
    log = open(log_path, "a") if log_path is not None else None
    writer = EDFStreamWriter(path, sigs, fmt=fmt, record_duration=record_duration, record_count=record_count,
                             atomic=False)
    try:
        for r in range(0, n_rec, records_per_write):
            time.sleep(interval_s)
            stop = min(n_rec, r + records_per_write)
            n = writer.write([s.data[r * k : stop * k] for s, k in zip(sigs, spr)])
            if log is not None:
                log.write(f"{n} {time.time():.6f}\n")
                log.flush()
        if stop_mid_record:
            # half a record of zeros, flushed, and the file left as a crash leaves it
            writer.abort()
            with open(path, "ab") as f:
                f.write(b"\0" * (writer.record_bytes // 2))
            return Path(path)
        writer.close()
    finally:
        if log is not None:
            log.close()
    return Path(path)

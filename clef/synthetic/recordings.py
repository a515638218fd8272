"""Small generated recordings: sine-and-noise EEG written as EDF/BDF.

What the tests and the benchmarks use when they need a file of a given length, rate,
label style or unit, without the simulated physiology of :mod:`clef.synthetic.eeg` (the
synthetic hospital's sessions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenizer.contract import CANONICAL_CHANNELS
from tokenizer.edf_writer import EDFSignal, write_edf

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

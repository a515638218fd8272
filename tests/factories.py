"""Builders of generated EDF/BDF files for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from clef.synthetic.edf_writer import EDFSignal, write_edf
from tokenizer import CANONICAL_CHANNELS

STYLES = {
    "ref": lambda c: f"EEG {c.upper()}-REF",
    "Ref": lambda c: f"EEG {c}-Ref",
    "le": lambda c: f"EEG {c.upper()}-LE",
    "eeg": lambda c: f"EEG {c}",
    "bare": lambda c: c,
    "pol": lambda c: f"POL {c}",
    "bci": lambda c: (c + "..")[:4] if len(c) == 2 else (c + ".")[:4],
}
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
    """19 (or fewer) EEG channels: a sine of ``freq`` Hz + noise, in ``unit`` (× ``scale``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sfreq)) / sfreq
    sigs = []
    for k, c in enumerate(channels):
        name = NEW_NAMES.get(c, c) if new_names else c
        x = amp * np.sin(2 * np.pi * freq * t + k) + rng.normal(0, 3, t.size)
        sigs.append(EDFSignal(STYLES[style](name), x * scale, sfreq, unit=unit))
    return sigs


def make_edf(path: Path, signals: Sequence[EDFSignal] | None = None, **kw) -> Path:
    """Write ``signals`` (default: 19 referential channels, 20 s, 256 Hz) to ``path``."""
    return write_edf(path, signals if signals is not None else eeg_signals(), **kw)

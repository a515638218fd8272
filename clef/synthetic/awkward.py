"""A handful of EDF/BDF files with the awkward features of real hospital exports.

Used by ``clef demo`` and the docs to show what ingestion accepts, converts and refuses.
Each file imitates one vendor habit seen in real archives (the real files, with their
provenance, are in ``tests/data/real/``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from scipy import signal

from tokenizer.contract import CANONICAL_CHANNELS
from tokenizer.edf_writer import EDFSignal, write_edf

_NEW = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}


def _eeg(seconds: float, sfreq: float, rng: np.random.Generator, alpha_hz: float = 9.5) -> np.ndarray:
    """Simple EEG-like signal (19, n) µV: shared alpha, posterior maximum, 1/f-ish noise."""
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    env = 1 + 0.5 * np.sin(2 * np.pi * 0.1 * t)
    alpha = 25 * env * np.sin(2 * np.pi * alpha_hz * t)
    post = np.array([0.2 if c.startswith(("Fp", "F")) else 0.5 if c.startswith(("C", "T3", "T4")) else 1.0
                     for c in CANONICAL_CHANNELS])
    noise = signal.detrend(np.cumsum(rng.normal(0, 1, (19, n)), axis=1), axis=1)
    noise *= 8 / noise.std(axis=1, keepdims=True)
    return post[:, None] * alpha[None] + noise + rng.normal(0, 4, (19, n))


def write_awkward_examples(out_dir: str | Path, seed: int = 0, seconds: float = 120.0) -> list[Path]:
    """Write six awkward example files into ``out_dir``.

    1. ``nk_style_edfplusD.edf``: Nihon Kohden style labels (``EEG Fp1-Ref``, ``POL``
       extras), 200 Hz, EDF+D with a 30 s gap, annotations in two channels.
    2. ``tuh_style_mV.edf``: ``EEG FP1-LE`` labels in mV, 250 Hz, EKG and PHOTIC extras,
       header PHI.
    3. ``bare_new_names_500Hz_missing.edf``: bare labels with T7/T8/P7/P8, 500 Hz, two
       electrodes missing, one channel with a blank unit.
    4. ``biosemi_512Hz.bdf``: BDF+ at 512 Hz, 24-bit, inverted physical range on one
       channel, accelerometer at another rate.
    5. ``bipolar_only.edf``: a bipolar montage of two unconnected temporal chains (refused:
       five connected electrodes cannot be converted to potentials; see ``tokenizer.montage``).
    6. ``hypnogram_annotations_only.edf``: annotations, no signals (refused).

    Returns
    -------
    list of Path
        The files, in the order above.
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    start = datetime(2021, 3, 14, 9, 30, 0)
    files = []

    # 1. NK style, EDF+D with a gap
    fs = 200
    x = _eeg(seconds, fs, rng)
    sigs = [EDFSignal(f"EEG {c}-Ref", x[k], fs) for k, c in enumerate(CANONICAL_CHANNELS)]
    sigs += [EDFSignal("POL E", rng.normal(0, 5, x.shape[1]), fs), EDFSignal("POL DC01", np.zeros(x.shape[1]) + 1, fs, unit="mV")]
    half = int(seconds // 2)
    onsets = [float(r) for r in range(half)] + [float(r + 30) for r in range(half, int(seconds))]
    files.append(write_edf(out / "nk_style_edfplusD.edf", sigs, fmt="EDF+D", start=start, record_onsets=onsets,
                           patient="NK0001 F 12-FEB-1967 Alice_Example",
                           recording="Startdate 14-MAR-2021 EEG0042 Tech_Bob NKC-EEG-1200A",
                           annotations=[(5.0, None, "Eyes closed"), (20.0, None, "Eyes open"), (35.0, 10.0, "HV")],
                           n_annotation_channels=2))

    # 2. TUH style, millivolts, 250 Hz
    fs = 250
    x = _eeg(seconds, fs, rng, alpha_hz=8.5) / 1000.0
    sigs = [EDFSignal(f"EEG {c.upper()}-LE", x[k], fs, unit="mV") for k, c in enumerate(CANONICAL_CHANNELS)]
    sigs += [EDFSignal("EEG EKG-LE", np.sin(2 * np.pi * 1.2 * np.arange(x.shape[1]) / fs), fs, unit="mV"),
             EDFSignal("PHOTIC PH", np.zeros(x.shape[1]), fs, unit="mm")]
    files.append(write_edf(out / "tuh_style_mV.edf", sigs, fmt="EDF", start=start,
                           patient="MRN00012345 M 03-AUG-1949 Carl_Sample"))

    # 3. bare labels, new temporal names, 500 Hz, two missing, one blank unit
    fs = 500
    x = _eeg(seconds, fs, rng, alpha_hz=10.0)
    sigs = []
    for k, c in enumerate(CANONICAL_CHANNELS):
        if c in ("Fz", "Pz"):
            continue
        sigs.append(EDFSignal(_NEW.get(c, c), x[k], fs, unit="" if c == "O2" else "uV"))
    files.append(write_edf(out / "bare_new_names_500Hz_missing.edf", sigs, fmt="EDF+C", start=start,
                           patient="X M 30-JUN-2015 X"))

    # 4. BDF+ 512 Hz with an inverted range and an accelerometer at 32 Hz
    fs = 512
    x = _eeg(seconds, fs, rng)
    sigs = [EDFSignal(c, x[k], fs, physical_min=-1000 if k else 1000, physical_max=1000 if k else -1000)
            for k, c in enumerate(CANONICAL_CHANNELS)]
    sigs.append(EDFSignal("acc1", rng.normal(0, 0.01, int(seconds * 32)), 32, unit="g"))
    files.append(write_edf(out / "biosemi_512Hz.bdf", sigs, fmt="BDF+C", start=start,
                           annotations=[(10.0, None, "Trigger 1")]))

    # 5. bipolar only, two temporal chains with no derivation between them
    fs = 256
    x = _eeg(20, fs, rng)
    pairs = [("Fp1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"), ("Fp2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2")]
    idx = {c: k for k, c in enumerate(CANONICAL_CHANNELS)}
    sigs = [EDFSignal(f"{a.upper()}-{_NEW.get(b, b).upper()}", x[idx[a]] - x[idx[b]], fs) for a, b in pairs]
    files.append(write_edf(out / "bipolar_only.edf", sigs, fmt="EDF", start=start))

    # 6. annotation-only (a hypnogram)
    stages = [(30.0 * i, 30.0, f"Sleep stage {s}") for i, s in enumerate("WW1122N3")]
    files.append(write_edf(out / "hypnogram_annotations_only.edf", [], fmt="EDF+C", start=start, annotations=stages))
    return files

"""Mains (power-line) frequency detected in the raw signal of a file, before any notch.

A site's mains is 50 Hz (Europe, most of Asia and Africa, eastern Japan) or 60 Hz (the
Americas, western Japan, Korea, Taiwan). Pick-up shows as a narrow peak at that frequency
in the spectrum of the unfiltered EEG. The contract's notch removes one of the two; a file
recorded on the other mains keeps its line noise and the spectrogram carries it, so
``clef inspect`` and ``clef audit`` compare the two.

The estimate: Welch spectra (2 s segments, 0.5 Hz bins) of the EEG channels over the
first ``max_seconds`` of the file, their median across channels in dB, and for each
candidate the height of its highest bin within ±0.5 Hz above the median of the bins 2-6 Hz
away on either side. A candidate at least :data:`PEAK_DB` above its surroundings is a
clear peak; the higher of the two wins; neither means no clear peak (a file notched at
export, a well-shielded recording, or a rate too low to see the mains).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy.signal import welch

from tokenizer.edf_data import read_digital, to_physical
from tokenizer.edf_header import EDFHeader, SignalHeader

log = logging.getLogger(__name__)

#: Mains frequencies looked for (Hz).
MAINS_CANDIDATES: tuple[float, ...] = (50.0, 60.0)
#: Height (dB) above the neighbouring spectrum that makes a clear line-noise peak. Real
#: files: 9 and 8 dB at 60 Hz (Nihon Kohden, BCI2000 in the US), 37 dB at 50 Hz (a Nihon
#: Kohden export from a 50 Hz site); at most 2.5 dB on white noise.
PEAK_DB = 6.0


@dataclass(frozen=True)
class MainsEstimate:
    """Line-noise peak found in a file's raw EEG.

    Attributes
    ----------
    freq : float or None
        50.0 or 60.0 when that peak is clear, else None.
    peak_db : dict
        ``{candidate Hz: peak height in dB}``; None where the candidate lies too close to
        the Nyquist frequency to be seen.
    seconds : float
        Seconds of signal the estimate used.
    """

    freq: float | None
    peak_db: dict[float, float | None]
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (``detected_hz`` null when there is no clear peak)."""
        return {"detected_hz": self.freq, "peak_db": {f"{k:g}": v for k, v in self.peak_db.items()},
                "seconds": round(self.seconds, 1)}

    def mismatch(self, notch_freq: float | None) -> str | None:
        """A warning when the detected mains differs from a contract's notch, else None."""
        if self.freq is None or notch_freq == self.freq:
            return None
        if notch_freq is None:
            return f"mains at {self.freq:g} Hz detected in the signal, but the contract has no notch"
        return (f"mains at {self.freq:g} Hz detected in the signal, but the contract's notch is at {notch_freq:g} Hz: "
                f"the line noise stays in the spectrogram (read this site with a {self.freq:g} Hz notch, "
                f"e.g. clef inspect --notch {self.freq:g})")


def detect_mains(header: EDFHeader, labels: Iterable[str] | None = None, *,
                 max_seconds: float = 120.0) -> MainsEstimate:
    """Detect the mains frequency in the raw (unfiltered) EEG of a file.

    Parameters
    ----------
    header : EDFHeader
        Parsed header; only the first records are read.
    labels : iterable of str, optional
        Source labels of the EEG channels to use (e.g. the mapped channels of
        ``Recording.channel_report``); default every ordinary signal.
    max_seconds : float
        Seconds of signal read from the start of the file.

    Returns
    -------
    MainsEstimate
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0, found {max_seconds}")
    wanted = None if labels is None else set(labels)
    sigs: list[SignalHeader] = [s for s in header.data_signals if wanted is None or s.label in wanted]
    empty = MainsEstimate(None, {f: None for f in MAINS_CANDIDATES}, 0.0)
    if not sigs:
        return empty
    rate = Counter(header.sfreq_of(s) for s in sigs).most_common(1)[0][0]
    sigs = [s for s in sigs if header.sfreq_of(s) == rate]  # one rate: one spectrum grid
    n_rec = max(1, int(np.ceil(max_seconds / header.record_duration))) if header.record_duration > 0 else 1
    digital = read_digital(header, sigs, n_records=n_rec)
    nper = int(round(2.0 * rate))
    spectra = []
    for s in sigs:
        d = digital[s.index]
        if d.size < nper or d.min(initial=0) == d.max(initial=0):
            continue  # too short for one segment, or flat
        x = to_physical(d, s)
        freqs, p = welch(x - x.mean(), fs=rate, nperseg=nper)
        spectra.append(10 * np.log10(p + 1e-20))
    if not spectra:
        return empty
    db = np.median(np.asarray(spectra), axis=0)
    nyquist = rate / 2
    heights: dict[float, float | None] = {}
    for f0 in MAINS_CANDIDATES:
        if f0 + 1.0 >= nyquist:
            heights[f0] = None
            continue
        near = np.abs(freqs - f0)
        peak = db[near <= 0.5]
        around = db[(near >= 2.0) & (near <= 6.0) & (freqs < nyquist - 0.5)]
        heights[f0] = round(float(peak.max() - np.median(around)), 1) if peak.size and around.size else None
    clear = {f: h for f, h in heights.items() if h is not None and h >= PEAK_DB}
    freq = max(clear, key=clear.__getitem__) if clear else None
    seconds = min(header.n_records, n_rec) * header.record_duration
    log.debug("%s: mains peaks %s dB over %.0f s -> %s", header.path, heights, seconds, freq)
    return MainsEstimate(freq, heights, float(seconds))

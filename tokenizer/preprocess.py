"""Preprocessing to the signal contract: polyphase resampling, zero-phase band-pass and notch.

Each channel is first resampled to the contract rate with a polyphase filter (which
also removes everything above the new Nyquist frequency, mains harmonics included),
then band-passed and notched with one zero-phase second-order-sections cascade
(forward-backward Butterworth + notches). Working channel by channel at the output
rate keeps memory bounded and is several times faster than FIR filtering at the input
rate followed by FFT resampling (see ``bench/ingest.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal

from tokenizer.contract import FilterParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterPlan:
    """The concrete filter applied to one input rate (after capping to Nyquist)."""

    sfreq_in: float
    sfreq_out: float
    up: int
    down: int
    l_freq: float
    h_freq: float
    notches: tuple[float, ...]
    warnings: tuple[str, ...]


def resample_ratio(sfreq_in: float, sfreq_out: float) -> tuple[int, int]:
    """Smallest integers ``up, down`` with ``sfreq_in * up / down == sfreq_out``.

    Non-integer rates are approximated to within 1e-6 relative error; larger ratios
    than 1000/1000 are refused.
    """
    frac = Fraction(sfreq_out / sfreq_in).limit_denominator(1000)
    if abs(float(frac) * sfreq_in - sfreq_out) > 1e-6 * sfreq_out:
        raise ValueError(
            f"cannot resample {sfreq_in} Hz to {sfreq_out} Hz with a rational ratio of "
            f"denominator <= 1000"
        )
    return frac.numerator, frac.denominator


def plan_filter(sfreq_in: float, sfreq_out: float, params: FilterParams) -> FilterPlan:
    """Decide the band edges and notches for one input rate.

    The low-pass edge is capped at 90 % of the input Nyquist frequency for low-rate
    files (e.g. 56 Hz for 125 Hz recordings), with a warning; notches are placed at the
    mains frequency and its harmonics below both Nyquist frequencies.
    """
    up, down = resample_ratio(sfreq_in, sfreq_out)
    warnings: list[str] = []
    nyq = min(sfreq_in, sfreq_out) / 2
    h = params.h_freq
    if h >= 0.9 * nyq:
        h = round(0.9 * nyq, 3)
        warnings.append(
            f"low-pass edge {params.h_freq} Hz is at or above 90% of the Nyquist frequency of "
            f"a {sfreq_in:g} Hz recording; capped to {h} Hz"
        )
    notches: list[float] = []
    if params.notch_freq is not None:
        k = 1
        while k * params.notch_freq < nyq * 0.98:
            notches.append(k * params.notch_freq)
            k += 1
        if not notches:
            warnings.append(
                f"notch at {params.notch_freq} Hz skipped: above the Nyquist frequency of a "
                f"{sfreq_in:g} Hz recording"
            )
    return FilterPlan(sfreq_in, sfreq_out, up, down, params.l_freq, h, tuple(notches), tuple(warnings))


@lru_cache(maxsize=32)
def _sos(sfreq: float, l_freq: float, h_freq: float, notches: tuple[float, ...], q: float, order: int) -> np.ndarray:
    parts = [signal.butter(order, [l_freq, h_freq], btype="bandpass", output="sos", fs=sfreq)]
    for f0 in notches:
        b, a = signal.iirnotch(f0, q, fs=sfreq)
        parts.append(signal.tf2sos(b, a))
    return np.concatenate(parts, axis=0)


def preprocess_channel(x: np.ndarray, plan: FilterPlan, params: FilterParams) -> np.ndarray:
    """Resample and filter one channel (1-D, µV) according to ``plan``.

    Parameters
    ----------
    x : ndarray
        One channel at ``plan.sfreq_in``.
    plan : FilterPlan
        From :func:`plan_filter`.
    params : FilterParams
        Contract filter parameters (order, notch Q).

    Returns
    -------
    ndarray
        float32 samples at ``plan.sfreq_out``; length ``ceil(len(x) * up / down)``.
    """
    y = x if (plan.up == plan.down == 1) else signal.resample_poly(x, plan.up, plan.down)
    sos = _sos(plan.sfreq_out, plan.l_freq, plan.h_freq, plan.notches, params.notch_q, params.order)
    n = y.shape[-1]
    if n < 2:
        return y.astype(np.float32)
    # Pad with an odd extension of up to 10 s so the 0.1 Hz edge settles at both ends.
    padlen = min(n - 1, int(10 * plan.sfreq_out))
    y = signal.sosfiltfilt(sos, y, padlen=padlen)
    return y.astype(np.float32)

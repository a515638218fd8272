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
    """The concrete filter applied to one input rate (after capping to Nyquist).

    Attributes
    ----------
    sfreq_in, sfreq_out : float
        The recording's rate and the contract's, in Hz.
    up, down : int
        The polyphase resampling ratio (:func:`resample_ratio`).
    l_freq, h_freq : float
        Band-pass edges in Hz, the low-pass one capped below the input Nyquist frequency.
    notches : tuple of float
        Mains frequency and harmonics notched, in Hz.
    warnings : tuple of str
        What was capped or skipped (they join the recording's warnings).
    """

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
def _sos(sfreq: float, l_freq: float | None, h_freq: float | None, notches: tuple[float, ...], q: float,
         order: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order sections (float32) of band-pass (high-pass without ``h_freq``, low-pass without
    ``l_freq``, none without both) + notches, and their steady-state ``zi``."""
    parts = []
    if l_freq is not None and h_freq is not None:
        parts.append(signal.butter(order, [l_freq, h_freq], btype="bandpass", output="sos", fs=sfreq))
    elif l_freq is not None:
        parts.append(signal.butter(order, l_freq, btype="highpass", output="sos", fs=sfreq))
    elif h_freq is not None:
        parts.append(signal.butter(order, h_freq, btype="lowpass", output="sos", fs=sfreq))
    for f0 in notches:
        b, a = signal.iirnotch(f0, q, fs=sfreq)
        parts.append(signal.tf2sos(b, a))
    sos = np.concatenate(parts, axis=0)
    return sos.astype(np.float32), signal.sosfilt_zi(sos).astype(np.float32)


@lru_cache(maxsize=32)
def _antialias(sfreq_in: float, sfreq_out: float, up: int, h_freq: float) -> np.ndarray | None:
    """Anti-aliasing FIR for downsampling, sized for our band instead of a generic one.

    Everything above ``h_freq`` is removed by the band-pass afterwards, so content may
    alias as long as it folds back above ``h_freq``: the stop band starts at
    ``sfreq_out - h_freq`` and the transition is ``sfreq_out - 2 h_freq`` wide (50 Hz
    for 75 Hz at 200 Hz), which needs far fewer taps than scipy's default design.
    Returns None (scipy's default) when upsampling or when there is no room.
    """
    width = sfreq_out - 2 * h_freq
    if sfreq_out >= sfreq_in or width <= 1.0:
        return None
    fs_up = sfreq_in * up
    numtaps, beta = signal.kaiserord(60.0, width / (fs_up / 2))
    numtaps |= 1  # odd: linear phase with an integer delay
    return signal.firwin(numtaps, sfreq_out / 2, window=("kaiser", beta), fs=fs_up).astype(np.float32)


def _filtfilt(sos: np.ndarray, zi: np.ndarray, y: np.ndarray, padlen: int) -> np.ndarray:
    """Zero-phase forward-backward filtering along the last axis with odd extension (as
    ``scipy.signal.sosfiltfilt``, reusing cached initial conditions). ``y`` is 2-D
    (channels, samples): scipy's ``sosfilt`` runs several times faster per sample on a
    block of channels than on one, and float32 keeps errors below 0.01 µV."""
    if padlen > 0:
        left = 2 * y[:, :1] - y[:, padlen:0:-1]
        right = 2 * y[:, -1:] - y[:, -2 : -padlen - 2 : -1]
        ext = np.concatenate([left, y, right], axis=1)
    else:
        ext = y
    fwd, _ = signal.sosfilt(sos, ext, axis=-1, zi=zi[:, None, :] * ext[None, :, :1])
    rev = fwd[:, ::-1]
    back, _ = signal.sosfilt(sos, rev, axis=-1, zi=zi[:, None, :] * rev[None, :, :1])
    out = back[:, ::-1]
    return out[:, padlen : out.shape[1] - padlen] if padlen > 0 else out


def resample_channel(x: np.ndarray, plan: FilterPlan) -> np.ndarray:
    """Polyphase-resample one channel (1-D, µV) from ``plan.sfreq_in`` to ``plan.sfreq_out``.

    Returns float32 samples, ``ceil(len(x) * up / down)`` of them.
    """
    x = np.asarray(x, dtype=np.float32)
    if plan.up == plan.down == 1:
        return x
    h = _antialias(plan.sfreq_in, plan.sfreq_out, plan.up, plan.h_freq)
    return signal.resample_poly(x, plan.up, plan.down, window=h if h is not None else ("kaiser", 5.0))


def zero_phase_filter(block: np.ndarray, plan: FilterPlan, params: FilterParams) -> np.ndarray:
    """Band-pass and notch a block of channels at ``plan.sfreq_out``, zero-phase.

    Parameters
    ----------
    block : ndarray, shape (n_channels, n_samples)
        Channels already at the output rate.
    plan : FilterPlan
        From :func:`plan_filter` (band edges and notches for this input rate).
    params : FilterParams
        Contract filter parameters (order, notch Q).

    Returns
    -------
    ndarray
        float32 array of the same shape.
    """
    # Pad with an odd extension of up to 10 s so the 0.1 Hz edge settles at both ends.
    return zero_phase_band(block, plan.sfreq_out, l_freq=plan.l_freq, h_freq=plan.h_freq, notches=plan.notches,
                           q=params.notch_q, order=params.order, padlen=int(10 * plan.sfreq_out))


def zero_phase_band(block: np.ndarray, sfreq: float, *, l_freq: float | None, h_freq: float | None,
                    notches: tuple[float, ...] = (), q: float = 30.0, order: int = 2,
                    padlen: int = 0) -> np.ndarray:
    """High-pass, low-pass (or both: band-pass) and notch a block of channels, zero-phase.

    The one forward-backward Butterworth + notch cascade of this module: the contract's
    preprocessing (:func:`zero_phase_filter`) and the explorer's display filters use it.

    Parameters
    ----------
    block : ndarray, shape (n_channels, n_samples)
        Channels at ``sfreq``.
    sfreq : float
        Sampling rate in Hz.
    l_freq, h_freq : float or None
        High-pass and low-pass edges in Hz (None: that side unfiltered); ``l_freq < h_freq < sfreq / 2``.
    notches : tuple of float
        Frequencies notched, in Hz, each below ``sfreq / 2``.
    q : float
        Quality factor of each notch.
    order : int
        Butterworth order (applied forward and backward: the magnitude response is squared).
    padlen : int
        Samples of odd extension at each end (capped at ``n_samples - 1``).

    Returns
    -------
    ndarray
        float32 array of the same shape (the input, as float32, when nothing is to be done).

    Raises
    ------
    ValueError
        An edge or notch not in (0, sfreq / 2), or ``l_freq >= h_freq``.
    """
    nyq = sfreq / 2
    for name, f in (("l_freq", l_freq), ("h_freq", h_freq), *(("notch", f0) for f0 in notches)):
        if f is not None and not 0 < f < nyq:
            raise ValueError(f"{name} must be in (0, {nyq:g}) Hz (the Nyquist frequency of {sfreq:g} Hz), found {f}")
    if l_freq is not None and h_freq is not None and l_freq >= h_freq:
        raise ValueError(f"l_freq must be below h_freq, found l_freq={l_freq} h_freq={h_freq}")
    block = np.atleast_2d(np.asarray(block, dtype=np.float32))
    n = block.shape[1]
    if n < 2 or (l_freq is None and h_freq is None and not notches):
        return block
    sos, zi = _sos(float(sfreq), l_freq, h_freq, tuple(notches), float(q), int(order))
    return _filtfilt(sos, zi, block, max(0, min(n - 1, padlen))).astype(np.float32, copy=False)

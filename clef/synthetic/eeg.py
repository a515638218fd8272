"""Simulated clinical scalp EEG with planted findings, like :mod:`mne.simulation`.

:func:`simulate_eeg` turns a :class:`~clef.synthetic.spec.SessionSpec` into a
``(19, n)`` float32 array in µV (canonical channel order) and an
:class:`~clef.synthetic.spec.EEGSummary` of what was actually drawn: the vigilance
states, every discrete event (IEDs, seizures, sleep transients, artefacts ...) and the
posterior dominant rhythm (PDR) frequency. It is seeded (``spec.seed``), fast (about a
tenth of a second for 25 minutes at 256 Hz on one core) and every strength is a value of
:class:`EEGSimConfig`.

How a session is drawn
----------------------
1. **Timeline** (at a 10 Hz control rate): a vigilance state sequence that depends on the
   care setting (routine outpatients start awake and often reach drowsiness or N2 sleep;
   EMU patients cycle through sleep; ICU patients are mostly drowsy, and comatose ones,
   with burst suppression or severe encephalopathy, are one ``drowsy`` span because the
   state vocabulary has no coma), eyes-open blocks while awake, and, in routine
   recordings, hyperventilation and photic stimulation.
2. **Latent sources**: 19 spatially smooth 1/f background sources (one under each
   electrode) plus band-limited rhythms (PDR, theta, delta, beta, slow eye movements),
   each an FFT-shaped Gaussian process multiplied by a slowly varying, state-dependent
   amplitude envelope; and transient sources (spindles, vertex waves, K-complexes, IEDs,
   spike-and-wave bursts, periodic discharges, seizures, blinks, muscle ...) built by
   adding short templates at drawn times.
3. **Mixing**: every latent source has a Gaussian-kernel topography on approximate 10-20
   positions (:mod:`clef.synthetic.montage`); brain sources are re-referenced to linked
   ears by default. Findings act on amplitudes (low voltage, asymmetry), envelopes
   (slowing, burst suppression, postictal depression), spectra (PDR frequency) or add
   their own sources. Electrode pops and mains noise are electrode-specific and are not
   re-referenced.

Each component draws from its own child random stream (``default_rng(spec.seed)
.spawn``), so adding or removing one finding leaves the rest of the session (states,
background, artefacts) identical: a session with and without ``excess_beta`` differs only
by the beta.

Conventions: amplitudes in the config are RMS µV at the electrode of maximal weight
(before re-referencing) for ongoing rhythms, and peak µV for transients; surface-negative
discharges are negative numbers (the EEG display convention "negative up" is left to
the viewer). Event kinds are listed in :data:`EVENT_KINDS`; rhythmic runs (periodic
discharges) are one event per run, not per discharge. An event with ``channels == ()``
is diffuse.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Literal

import numpy as np
import scipy.fft as sfft
from pydantic import Field, model_validator

from clef.config import FrozenConfig
from clef.synthetic.montage import Montage, default_montage, mirror, position
from clef.synthetic.spec import EEGEvent, EEGSummary, PlantedFinding, SessionSpec, StateSpan
from tokenizer.contract import CANONICAL_CHANNELS

__all__ = [
    "EEGSimConfig",
    "EVENT_KINDS",
    "LATERALISED_FINDINGS",
    "STATES",
    "normal_pdr_hz",
    "simulate_eeg",
]

logger = logging.getLogger(__name__)

#: Vigilance states used in :attr:`EEGSummary.states`.
STATES: tuple[str, ...] = ("awake", "drowsy", "n2", "n3")

#: Kinds of :class:`EEGEvent` the simulator emits.
EVENT_KINDS: tuple[str, ...] = (
    # findings
    "ied_focal",        # one focal spike or sharp wave (+ slow wave)
    "ied_generalized",  # one burst of generalised spike-and-wave
    "seizure",          # one electrographic seizure (onset to end)
    "lpd",              # one run of lateralised periodic discharges
    "gpd",              # one run of generalised periodic discharges
    "burst",            # one burst of a burst-suppression pattern
    # physiological transients and procedures
    "spindle", "vertex_wave", "k_complex",
    "eyes_open", "hyperventilation", "photic",
    # artefacts
    "blink", "muscle", "electrode_pop", "mains_noise", "ecg",
)

#: Findings that concern one hemisphere; a missing side is drawn and reported.
LATERALISED_FINDINGS: tuple[str, ...] = ("ied_focal", "focal_slowing", "asymmetry", "lpd")

_STREAMS: tuple[str, ...] = (
    "side", "locus", "states", "eyes", "procedures", "background", "rhythms", "sem",
    "pdr", "sleep", "slowing", "ied", "gsw", "seizure", "bs", "periodic", "photic",
    "blink", "muscle", "pop", "mains", "ecg",
)
#: Streams of a person's traits, drawn from ``spec.trait_seed`` when it is set.
_TRAIT_STREAMS: tuple[str, ...] = ("side", "locus", "pdr", "mains", "ecg")
_CTRL_HZ = 10.0  # control rate of envelopes and event rates
_STATE_INDEX = {s: i for i, s in enumerate(STATES)}

Curve = tuple[tuple[float, float], ...]
StateGains = tuple[float, float, float, float]  # awake, drowsy, n2, n3


class EEGSimConfig(FrozenConfig):
    """Every strength of the EEG simulator, with documented defaults.

    Amplitudes are RMS µV at the electrode of maximal weight for ongoing activity and
    peak µV for transients, for a young adult; the age curves scale them. Finding
    effects are given at severity 1 and scale linearly with a finding's severity unless
    stated otherwise. State gains are 4-tuples for (awake, drowsy, n2, n3).

    Parameters
    ----------
    background_uv : float
        RMS of the 1/f background on an average channel.
    background_exponent : float
        Exponent of the background power spectrum, ``P(f) ~ 1 / (knee**b + f**b)``.
    background_knee_hz : float
        Knee frequency below which the background spectrum flattens.
    background_rolloff_hz : float
        Corner of an extra second-order roll-off, so the spectrum falls faster in the
        beta/gamma range (``/ (1 + (f / rolloff)**2)``).
    background_state_gain : 4-tuple
        Background amplitude per state.
    spatial_width_rad : float
        Width (great-circle radians) of the Gaussian kernel mixing each background
        source to the electrodes; larger means more correlation between neighbours.
    reference : {"linked_ears", "average", "none"}
        Reference of the simulated recording.
    amplitude_age_gain : curve
        (age in years, gain) points, linearly interpolated: children have larger EEG.
    pdr_uv : float
        RMS of the awake, eyes-closed PDR at O1/O2.
    pdr_age_hz : curve
        (age, Hz) points of the normal PDR frequency (4 Hz at 4 months, 6 Hz at 1 year,
        8 Hz at 3 years, 10 Hz in adults, 8.5-9 Hz in the elderly); below the first age
        there is no PDR.
    pdr_jitter_hz : float
        SD of a person's PDR around the age norm.
    pdr_bandwidth_hz : float
        SD of the Gaussian spectral peak of the PDR (sets how it waxes and wanes).
    pdr_lateral_correlation : float
        Correlation of the left and right occipital alpha generators.
    pdr_state_gain : 4-tuple
        PDR amplitude per state: the drowsiness attenuation is the second entry (0.3).
    eyes_open_pdr_gain : float
        PDR amplitude with eyes open (reactivity).
    min_pdr_hz : float
        Floor of the PDR frequency after slowing.
    theta_uv, delta_uv, beta_uv : float
        RMS of the diffuse theta (4-7 Hz, fronto-central), polymorphic delta (0.5-3.5
        Hz) and beta (14-25 Hz, fronto-central) activity, awake adult.
    theta_age_gain, delta_age_gain : curve
        Extra slow activity of children and the elderly (multiplies the amplitude).
    theta_state_gain, delta_state_gain, beta_state_gain : 4-tuple
        Amplitude per state (drowsy theta, deep-sleep delta ...).
    state_transition_s : float
        Duration of the smooth ramp between vigilance states.
    slow_eye_movement_uv : float
        RMS of slow roving lateral eye movements in drowsiness (F7 and F8, opposite
        polarity); switched off with the other artefacts.
    spindle_uv, spindle_rate_per_min : float
        Peak amplitude and N2 rate of sleep spindles (12-14 Hz, central).
    vertex_uv, vertex_rate_per_min : float
        Peak amplitude and N2 rate of vertex waves (half the rate in drowsiness).
    k_complex_uv, k_complex_rate_per_min : float
        Peak amplitude and N2 rate of K-complexes.
    routine_awake_only_prob : float
        Probability that a routine recording stays awake throughout.
    routine_sleep_prob : float
        Probability that a drowsy routine adult falls into N2 (children: +0.2).
    procedures : bool
        Simulate hyperventilation and photic stimulation (routine, some EMU).
    hyperventilation_s : float
        Duration of hyperventilation.
    hyperventilation_delta_gain : tuple of float
        Delta amplitude at the end of hyperventilation, (adult, child under 16).
    photic_uv : float
        RMS of the occipital photic driving response.
    photic_freqs_hz : tuple of float
        Flash frequencies of the photic stimulation (10 s trains).
    artefacts : bool
        Master switch of all artefacts (blinks, muscle, pops, mains, ECG).
    blink_uv : float
        Peak amplitude of eye blinks at Fp1/Fp2.
    blink_rate_per_min : tuple of float
        Blink rate (eyes open, eyes closed, drowsy).
    muscle_uv : float
        RMS of muscle bursts (20-70 Hz, temporal), times a per-burst factor 0.5-2.
    muscle_rate_per_min : float
        Muscle bursts per minute awake (less when drowsy, rare asleep).
    pop_uv, pop_rate_per_min : float
        Peak and rate of electrode pops (single channel, step and exponential decay).
    mains_uv : float
        Median RMS of mains interference across channels.
    mains_bad_channel_uv : float
        RMS of mains on a poorly attached electrode.
    mains_bad_channel_prob : float
        Probability that a session has one or two such electrodes (ICU: doubled).
    ecg_uv, ecg_prob : float
        Peak of the ECG artefact and probability that a session shows it.
    ied_uv, ied_rate_per_min, ied_sleep_gain : float
        Peak of focal spikes, their awake rate at severity 1 and the multiplier of the
        rate in drowsiness and sleep. At least one IED is drawn when planted.
    gsw_uv, gsw_hz, gsw_rate_per_min : float
        Peak, frequency and burst rate of generalised spike-and-wave.
    seizure_uv : float
        Peak of the fully evolved seizure discharge.
    seizure_duration_s : (float, float)
        Range of seizure durations.
    gen_slowing_theta_gain, gen_slowing_delta_gain : float
        Extra theta and delta (multiplier minus one) of generalized slowing.
    gen_slowing_pdr_shift_hz, gen_slowing_pdr_atten : float
        PDR slowing (Hz) and attenuation (fraction) of generalized slowing.
    pdr_slowing_shift_hz : float
        PDR slowing of pdr_slowing.
    pdr_absent_severity : float
        pdr_slowing severity from which the PDR is absent (``pdr_hz`` None).
    mild_slowing_pdr_shift_hz, mild_slowing_theta_gain : float
        PDR slowing and extra theta of mild_slowing.
    focal_slowing_uv : float
        RMS of the polymorphic delta of focal slowing at its centre.
    asymmetry_fast_atten, asymmetry_slow_atten : float
        Fractional attenuation of the affected hemisphere's alpha/beta/spindles and of
        its other activity.
    bs_suppression_s : float
        Extra mean suppression duration (s) at severity 1 (bursts last 0.5-3 s).
    bs_suppression_gain : float
        Residual amplitude of the background during suppression.
    bs_burst_uv : float
        Peak of the sharp burst transients.
    low_voltage_atten : float
        Fractional attenuation of all cerebral activity.
    excess_beta_uv : float
        RMS of the added diffuse beta (14-25 Hz, fronto-central).
    lpd_uv, lpd_hz : float
        Peak and repetition rate of lateralised periodic discharges.
    gpd_uv, gpd_hz : float
        Peak and repetition rate of generalised periodic discharges.
    periodic_coverage : (float, float)
        Fraction of the recording covered by periodic discharges at severity 0 and 1.
    coma_slowing_severity : float
        ICU generalized-slowing severity from which the patient is comatose (no
        wakefulness, no blinks, no sleep transients).
    """

    # background
    background_uv: float = Field(9.0, ge=0)
    background_exponent: float = Field(1.5, ge=0, le=4)
    background_knee_hz: float = Field(1.0, gt=0)
    background_rolloff_hz: float = Field(25.0, gt=0)
    background_state_gain: StateGains = (1.0, 1.0, 1.1, 1.2)
    spatial_width_rad: float = Field(0.6, gt=0, le=3)
    reference: Literal["linked_ears", "average", "none"] = "linked_ears"
    amplitude_age_gain: Curve = (
        (0.0, 1.6), (1.0, 2.0), (6.0, 2.0), (12.0, 1.5), (18.0, 1.1), (30.0, 1.0),
        (70.0, 0.9), (100.0, 0.85),
    )
    # posterior dominant rhythm
    pdr_uv: float = Field(11.0, ge=0)
    pdr_age_hz: Curve = (
        (0.25, 3.5), (0.33, 4.0), (1.0, 6.0), (3.0, 8.0), (8.0, 9.0), (15.0, 10.0),
        (50.0, 10.0), (65.0, 9.5), (80.0, 9.0), (95.0, 8.5),
    )
    pdr_jitter_hz: float = Field(0.4, ge=0)
    pdr_bandwidth_hz: float = Field(0.4, gt=0)
    pdr_lateral_correlation: float = Field(0.7, ge=0, le=1)
    pdr_state_gain: StateGains = (1.0, 0.3, 0.05, 0.0)
    eyes_open_pdr_gain: float = Field(0.25, ge=0, le=1)
    min_pdr_hz: float = Field(3.5, gt=0)
    # other rhythms
    theta_uv: float = Field(3.5, ge=0)
    delta_uv: float = Field(3.5, ge=0)
    beta_uv: float = Field(2.5, ge=0)
    theta_age_gain: Curve = (
        (0.0, 3.0), (1.0, 3.0), (3.0, 2.4), (8.0, 1.7), (15.0, 1.2), (25.0, 1.0),
        (65.0, 1.0), (100.0, 1.3),
    )
    delta_age_gain: Curve = ((0.0, 3.0), (1.0, 2.6), (5.0, 1.8), (12.0, 1.3), (20.0, 1.0))
    theta_state_gain: StateGains = (1.0, 2.5, 2.0, 1.5)
    delta_state_gain: StateGains = (1.0, 1.5, 3.5, 8.0)
    beta_state_gain: StateGains = (1.0, 1.2, 0.8, 0.6)
    state_transition_s: float = Field(10.0, gt=0)
    # sleep transients
    slow_eye_movement_uv: float = Field(25.0, ge=0)
    spindle_uv: float = Field(22.0, ge=0)
    spindle_rate_per_min: float = Field(4.0, ge=0)
    vertex_uv: float = Field(65.0, ge=0)
    vertex_rate_per_min: float = Field(2.0, ge=0)
    k_complex_uv: float = Field(90.0, ge=0)
    k_complex_rate_per_min: float = Field(1.0, ge=0)
    # state sequence
    routine_awake_only_prob: float = Field(0.25, ge=0, le=1)
    routine_sleep_prob: float = Field(0.5, ge=0, le=1)
    # activation procedures
    procedures: bool = True
    hyperventilation_s: float = Field(180.0, gt=0)
    hyperventilation_delta_gain: tuple[float, float] = (1.6, 4.0)
    photic_uv: float = Field(5.0, ge=0)
    photic_freqs_hz: tuple[float, ...] = (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 25)
    # artefacts
    artefacts: bool = True
    blink_uv: float = Field(150.0, ge=0)
    blink_rate_per_min: tuple[float, float, float] = (15.0, 1.0, 2.0)
    muscle_uv: float = Field(20.0, ge=0)
    muscle_rate_per_min: float = Field(1.0, ge=0)
    pop_uv: float = Field(150.0, ge=0)
    pop_rate_per_min: float = Field(0.08, ge=0)
    mains_uv: float = Field(0.7, ge=0)
    mains_bad_channel_uv: float = Field(8.0, ge=0)
    mains_bad_channel_prob: float = Field(0.3, ge=0, le=1)
    ecg_uv: float = Field(5.0, ge=0)
    ecg_prob: float = Field(0.4, ge=0, le=1)
    # findings, at severity 1
    ied_uv: float = Field(110.0, ge=0)
    ied_rate_per_min: float = Field(3.0, ge=0)
    ied_sleep_gain: float = Field(2.0, ge=0)
    gsw_uv: float = Field(180.0, ge=0)
    gsw_hz: float = Field(3.0, gt=0)
    gsw_rate_per_min: float = Field(0.6, ge=0)
    seizure_uv: float = Field(130.0, ge=0)
    seizure_duration_s: tuple[float, float] = (30.0, 120.0)
    gen_slowing_theta_gain: float = Field(2.0, ge=0)
    gen_slowing_delta_gain: float = Field(3.5, ge=0)
    gen_slowing_pdr_shift_hz: float = Field(3.0, ge=0)
    gen_slowing_pdr_atten: float = Field(0.5, ge=0, le=1)
    pdr_slowing_shift_hz: float = Field(3.0, ge=0)
    pdr_absent_severity: float = Field(0.8, ge=0, le=1)
    mild_slowing_pdr_shift_hz: float = Field(1.2, ge=0)
    mild_slowing_theta_gain: float = Field(1.0, ge=0)
    focal_slowing_uv: float = Field(30.0, ge=0)
    asymmetry_fast_atten: float = Field(0.6, ge=0, le=1)
    asymmetry_slow_atten: float = Field(0.35, ge=0, le=1)
    bs_suppression_s: float = Field(9.0, ge=0)
    bs_suppression_gain: float = Field(0.08, ge=0, le=1)
    bs_burst_uv: float = Field(150.0, ge=0)
    low_voltage_atten: float = Field(0.75, ge=0, le=1)
    excess_beta_uv: float = Field(14.0, ge=0)
    lpd_uv: float = Field(120.0, ge=0)
    lpd_hz: float = Field(1.0, gt=0)
    gpd_uv: float = Field(120.0, ge=0)
    gpd_hz: float = Field(1.5, gt=0)
    periodic_coverage: tuple[float, float] = (0.3, 0.9)
    coma_slowing_severity: float = Field(0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> "EEGSimConfig":
        for name in ("amplitude_age_gain", "pdr_age_hz", "theta_age_gain", "delta_age_gain"):
            curve = getattr(self, name)
            ages = [a for a, _ in curve]
            if not curve or ages != sorted(ages):
                raise ValueError(f"{name} must be non-empty (age, value) points sorted by age")
        lo, hi = self.seizure_duration_s
        if not 0 < lo <= hi:
            raise ValueError(f"seizure_duration_s must satisfy 0 < lo <= hi, found {lo, hi}")
        lo, hi = self.periodic_coverage
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"periodic_coverage must satisfy 0 <= lo <= hi <= 1, found {lo, hi}")
        if any(f <= 0 for f in self.photic_freqs_hz):
            raise ValueError(f"photic_freqs_hz must be positive, found {self.photic_freqs_hz}")
        return self


def _curve(curve: Curve, x: float) -> float:
    xs, ys = zip(*curve)
    return float(np.interp(x, xs, ys))


def normal_pdr_hz(age_years: float, config: EEGSimConfig | None = None) -> float | None:
    """Age-normal PDR frequency in Hz, or None below the age at which a PDR appears."""
    cfg = config or EEGSimConfig()
    if age_years < cfg.pdr_age_hz[0][0]:
        return None
    return _curve(cfg.pdr_age_hz, age_years)


# --------------------------------------------------------------------------- templates


def _gauss(t: np.ndarray, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - mu) / sd) ** 2)


def _times(sfreq: float, duration_s: float) -> np.ndarray:
    return np.arange(max(1, int(round(duration_s * sfreq)))) / sfreq


def _spike_template(sfreq: float, width_s: float, slow_frac: float) -> np.ndarray:
    """Surface-negative spike/sharp wave with a small positive rebound and slow wave."""
    t = _times(sfreq, 0.6)
    p = 0.04 + 2 * width_s
    w = (-_gauss(t, p, width_s) + 0.3 * _gauss(t, p + 2.5 * width_s, 1.5 * width_s)
         - slow_frac * _gauss(t, p + 2.5 * width_s + 0.14, 0.06))
    return w / np.abs(w).max()


def _lpd_template(sfreq: float) -> np.ndarray:
    t = _times(sfreq, 0.45)
    w = -_gauss(t, 0.06, 0.02) + 0.55 * _gauss(t, 0.13, 0.035) - 0.3 * _gauss(t, 0.26, 0.07)
    return w / np.abs(w).max()


def _gpd_template(sfreq: float) -> np.ndarray:
    """Blunt triphasic wave: small negative, dominant positive, slower negative."""
    t = _times(sfreq, 0.5)
    w = -0.35 * _gauss(t, 0.06, 0.025) + _gauss(t, 0.15, 0.04) - 0.5 * _gauss(t, 0.3, 0.08)
    return w / np.abs(w).max()


def _vertex_template(sfreq: float) -> np.ndarray:
    t = _times(sfreq, 0.4)
    w = -_gauss(t, 0.12, 0.04) + 0.3 * _gauss(t, 0.22, 0.05)
    return w / np.abs(w).max()


def _k_complex_template(sfreq: float) -> np.ndarray:
    t = _times(sfreq, 1.2)
    w = -0.7 * _gauss(t, 0.15, 0.05) + _gauss(t, 0.5, 0.15) - 0.2 * _gauss(t, 0.9, 0.15)
    return -w / np.abs(w).max()  # large surface-negative slow component dominates


def _spindle_template(sfreq: float, freq: float, duration_s: float) -> np.ndarray:
    t = _times(sfreq, duration_s)
    return (np.sin(2 * np.pi * freq * t) * np.hanning(t.size)).astype(float)


def _blink_template(sfreq: float, duration_s: float) -> np.ndarray:
    """Positive frontal deflection: quick rise, slower decay."""
    t = _times(sfreq, duration_s * 1.6)
    peak = 0.35 * duration_s
    w = np.where(t < peak, _gauss(t, peak, 0.3 * peak), _gauss(t, peak, 0.45 * duration_s))
    return w


def _pop_template(sfreq: float, tau_s: float) -> np.ndarray:
    t = _times(sfreq, 5 * tau_s)
    w = np.exp(-t / tau_s) - np.exp(-t / 0.004)
    return w / w.max()


def _band_noise(rng: np.random.Generator, n: int, sfreq: float, lo: float, hi: float) -> np.ndarray:
    """Short band-limited Gaussian noise of unit RMS (for bursts)."""
    x = rng.standard_normal(n)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1 / sfreq)
    spec[(f < lo) | (f > hi)] = 0
    y = np.fft.irfft(spec, n)
    return y / max(float(np.sqrt(np.mean(y ** 2))), 1e-12)


def _add(row: np.ndarray, start: int, template: np.ndarray) -> None:
    """Add a template into a (float32) row at ``start`` (clipped at both ends)."""
    n = row.shape[0]
    a, b = max(start, 0), min(start + template.shape[0], n)
    if b > a:
        row[a:b] += template[a - start: b - start]


def _place(row: np.ndarray, starts: np.ndarray, template: np.ndarray, amps: np.ndarray) -> None:
    """Add one template many times (scaled by ``amps``), overlaps allowed."""
    if starts.size == 0:
        return
    idx = starts[:, None] + np.arange(template.shape[0])[None, :]
    vals = amps[:, None] * template[None, :]
    ok = (idx >= 0) & (idx < row.shape[0])
    np.add.at(row, idx[ok], vals[ok].astype(row.dtype))


# ----------------------------------------------------------------------- random helpers


def _poisson_times(rng: np.random.Generator, rate_per_s: np.ndarray, at_least: int = 0) -> np.ndarray:
    """Event times (s) of an inhomogeneous Poisson process given at the control rate."""
    dt = 1.0 / _CTRL_HZ
    cum = np.cumsum(np.clip(rate_per_s, 0, None)) * dt
    total = float(cum[-1]) if cum.size else 0.0
    if total <= 0:
        return np.zeros(0)
    k = max(int(rng.poisson(total)), at_least)
    u = np.sort(rng.random(k)) * total
    idx = np.minimum(np.searchsorted(cum, u), cum.size - 1)
    return (idx + rng.random(k)) * dt


def _smooth(x: np.ndarray, seconds: float) -> np.ndarray:
    """Moving average over ``seconds`` at the control rate (edges held)."""
    w = int(round(seconds * _CTRL_HZ))
    if w <= 1 or x.size < 2:
        return x.astype(float)
    pad = np.pad(x.astype(float), (w // 2, w - 1 - w // 2), mode="edge")
    c = np.cumsum(np.concatenate([[0.0], pad]))
    return (c[w:] - c[:-w]) / w


# ------------------------------------------------------------------------------ latents


@dataclasses.dataclass
class _Latent:
    """A latent source: a time series and its topography at the 19 electrodes + 2 ears."""

    topo: np.ndarray            # (21,) potentials before re-referencing
    row: np.ndarray             # (n,) float32, unit-ish
    amp: float                  # µV multiplier
    cls: str = "slow"           # "fast" (alpha/beta/spindles) or "slow": asymmetry class


class _Session:
    """Everything drawn for one session; :meth:`run` returns the data and summary."""

    def __init__(self, spec: SessionSpec, sfreq: float, cfg: EEGSimConfig) -> None:
        self.spec, self.sfreq, self.cfg = spec, float(sfreq), cfg
        self.n = int(round(spec.duration_s * sfreq))
        self.duration = float(spec.duration_s)
        self.n_fft = sfft.next_fast_len(self.n, real=True)
        self.n_ctrl = int(math.ceil(self.n / self.sfreq * _CTRL_HZ)) + 1
        self.t_ctrl = np.arange(self.n_ctrl) / _CTRL_HZ
        self._t: np.ndarray | None = None
        root = np.random.default_rng(spec.seed)
        self.rng = dict(zip(_STREAMS, root.spawn(len(_STREAMS))))
        if spec.trait_seed is not None:
            traits = dict(zip(_STREAMS, np.random.default_rng(spec.trait_seed).spawn(len(_STREAMS))))
            self.rng.update({k: traits[k] for k in _TRAIT_STREAMS})
        self.mont: Montage = default_montage(CANONICAL_CHANNELS)
        self.events: list[EEGEvent] = []
        self.brain: list[_Latent] = []
        self.art: list[_Latent] = []
        self.named: dict[str, _Latent] = {}
        self.age = float(spec.age_years)
        self.child = self.age < 16
        self.age_amp = _curve(cfg.amplitude_age_gain, self.age)
        self.findings = self._resolve_findings()
        self.sev = {}
        for f in self.findings:
            self.sev[f.name] = max(self.sev.get(f.name, 0.0), f.severity)
        self.comatose = self.sev.get("burst_suppression", 0) > 0 or (
            spec.setting == "icu" and self.sev.get("generalized_slowing", 0) >= cfg.coma_slowing_severity
        )
        self.brain_gain = np.ones(self.n_ctrl)  # global cerebral envelope (BS, postictal)
        self.extra_delta = np.ones(self.n_ctrl)
        self.alpha_block = np.ones(self.n_ctrl)
        self._loci: dict[str, np.ndarray] = {}
        self.pops: list[tuple[int, int, np.ndarray]] = []

    # ------------------------------------------------------------------ helpers
    @property
    def t(self) -> np.ndarray:
        if self._t is None:
            self._t = np.arange(self.n, dtype=np.float64) / self.sfreq
        return self._t

    def s(self, name: str) -> float:
        return self.sev.get(name, 0.0)

    def upsample(self, ctrl: np.ndarray) -> np.ndarray:
        """Control-rate envelope to the sample rate (float32)."""
        return np.interp(self.t, self.t_ctrl, ctrl).astype(np.float32)

    def ci(self, t_s: float) -> int:
        return int(min(max(round(t_s * _CTRL_HZ), 0), self.n_ctrl - 1))

    def event(self, onset: float, dur: float, kind: str, channels: tuple[str, ...] = ()) -> None:
        onset = float(min(max(onset, 0.0), self.duration))
        dur = float(max(min(dur, self.duration - onset), 0.0))
        self.events.append(EEGEvent(round(onset, 4), round(dur, 4), kind, tuple(channels)))

    def latent(self, key: str, topo: np.ndarray, amp: float = 1.0, cls: str = "slow",
               artefact: bool = False) -> _Latent:
        """A named transient latent (zeros), created on first use."""
        if key not in self.named:
            lat = _Latent(topo, np.zeros(self.n, np.float32), amp, cls)
            (self.art if artefact else self.brain).append(lat)
            self.named[key] = lat
        return self.named[key]

    def band(self, rng: np.random.Generator, shape, lo: float, hi: float) -> np.ndarray:
        """Unit-variance Gaussian process with power spectrum ``shape(f)`` on [lo, hi]."""
        nb = self.n_fft // 2 + 1
        df = self.sfreq / self.n_fft
        k0 = max(1, int(lo / df))
        k1 = min(nb, int(math.ceil(hi / df)) + 1)
        if k1 <= k0:
            return np.zeros(self.n, np.float32)
        p = np.asarray(shape(np.arange(k0, k1) * df), dtype=np.float64)
        u = (rng.random(2 * (k1 - k0), dtype=np.float32) - np.float32(0.5)).view(np.complex64)
        spec = np.zeros(nb, np.complex64)
        spec[k0:k1] = u * (self.n_fft * np.sqrt(3.0 * p / p.sum())).astype(np.float32)
        return sfft.irfft(spec, self.n_fft, workers=1)[: self.n]

    # --------------------------------------------------------------- findings
    def _resolve_findings(self) -> tuple[PlantedFinding, ...]:
        rng = self.rng["side"]
        out = []
        for f in self.spec.findings:
            side = "L" if rng.random() < 0.5 else "R"  # drawn always: stable streams
            if f.severity <= 0:
                continue
            if f.name in LATERALISED_FINDINGS and f.side is None:
                f = dataclasses.replace(f, side=side)
            out.append(f)
        return tuple(out)

    def of(self, name: str) -> list[PlantedFinding]:
        return [f for f in self.findings if f.name == name]

    def locus(self, side: str) -> np.ndarray:
        """A lesion/focus point on one side (temporal or frontal), drawn once per session.

        Both sides are drawn together in a fixed order, so a side's locus does not depend
        on which findings ask for it; lateralised findings on one side share it.
        """
        if not self._loci:
            rng = self.rng["locus"]
            choices = [("F7", "T3"), ("T3",), ("T3", "T5"), ("F3", "F7"), ("Fp1", "F7"), ("C3", "T3")]
            p = np.array([0.45, 0.15, 0.1, 0.12, 0.08, 0.1 if 3 <= self.age <= 13 else 0.0])
            for s in ("L", "R"):
                pt = position(*choices[rng.choice(len(choices), p=p / p.sum())])
                self._loci[s] = pt if s == "L" else mirror(pt)
        return self._loci[side]

    def hemi_center(self, side: str, toward_central: float = 0.5) -> np.ndarray:
        """A point between the side's locus and C3/C4: centre of hemispheric fields."""
        c = (1 - toward_central) * self.locus(side) + toward_central * position("C3" if side == "L" else "C4")
        return c / np.linalg.norm(c)

    # ------------------------------------------------------------------ timeline
    def draw_states(self) -> list[StateSpan]:
        spec, cfg, rng, D = self.spec, self.cfg, self.rng["states"], self.duration
        if self.comatose:
            return [StateSpan(0.0, D, "drowsy")]
        if spec.setting == "routine":
            if rng.random() < cfg.routine_awake_only_prob:
                return [StateSpan(0.0, D, "awake")]
            p_sleep = min(1.0, cfg.routine_sleep_prob + (0.2 if self.child else 0.0))
            first, first_len = "awake", D * rng.uniform(0.3, 0.65)
            means = {"awake": 150.0, "drowsy": 120.0, "n2": 300.0, "n3": 240.0}
            trans = {"awake": {"drowsy": 1.0}, "drowsy": {"n2": p_sleep, "awake": 1 - p_sleep},
                     "n2": {"drowsy": 0.6, "awake": 0.25, "n3": 0.15}, "n3": {"n2": 1.0}}
        elif spec.setting == "emu":
            first = str(rng.choice(["awake", "drowsy", "n2"], p=[0.5, 0.2, 0.3]))
            means = {"awake": 300.0, "drowsy": 120.0, "n2": 420.0, "n3": 300.0}
            first_len = None
            trans = {"awake": {"drowsy": 1.0}, "drowsy": {"n2": 0.7, "awake": 0.3},
                     "n2": {"n3": 0.3, "drowsy": 0.5, "awake": 0.2}, "n3": {"n2": 1.0}}
        else:  # icu
            first = str(rng.choice(["drowsy", "awake"], p=[0.7, 0.3]))
            means = {"awake": 90.0, "drowsy": 500.0, "n2": 240.0, "n3": 240.0}
            first_len = None
            trans = {"awake": {"drowsy": 1.0}, "drowsy": {"awake": 0.5, "n2": 0.5},
                     "n2": {"drowsy": 1.0}, "n3": {"n2": 1.0}}
        spans: list[list] = []
        state, t = first, 0.0
        length = first_len if first_len is not None else max(20.0, rng.gamma(2.0, means[first] / 2))
        while t < D:
            stop = min(D, t + length)
            if spans and spans[-1][2] == state:
                spans[-1][1] = stop
            else:
                spans.append([t, stop, state])
            t = stop
            nxt = trans[state]
            state = str(rng.choice(list(nxt), p=np.array(list(nxt.values())) / sum(nxt.values())))
            length = max(20.0, rng.gamma(2.0, means[state] / 2))
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] < 10.0:
            spans[-2][1] = spans[-1][1]
            spans.pop()
        return [StateSpan(round(a, 3), round(b, 3), s) for a, b, s in spans]

    def timeline(self) -> None:
        """States, eyes, procedures on the control grid."""
        cfg = self.cfg
        self.states = self.draw_states()
        st = np.zeros(self.n_ctrl, int)
        for sp in self.states:
            st[self.ci(sp.start_s): self.ci(sp.stop_s) + 1] = _STATE_INDEX[sp.state]
        self.state_ctrl = st
        self.eyes_open = np.zeros(self.n_ctrl, bool)
        self.hv = np.zeros(self.n_ctrl)
        self.photic_trains: list[tuple[float, float, float]] = []
        forced_closed: list[tuple[float, float]] = []
        # activation procedures, in the first long awake span
        prng = self.rng["procedures"]
        p_hv, p_ph = {"routine": (0.85, 0.9), "emu": (0.3, 0.3), "icu": (0.0, 0.0)}[self.spec.setting]
        do_hv = prng.random() < p_hv and self.age >= 4 and cfg.procedures
        do_ph = prng.random() < p_ph and cfg.procedures and len(cfg.photic_freqs_hz) > 0
        start_off = prng.uniform(60, 120)
        gaps = prng.uniform(4, 8, size=len(cfg.photic_freqs_hz))
        awake = [s for s in self.states if s.state == "awake"]
        if awake and (do_hv or do_ph):
            sp = max(awake, key=lambda s: s.stop_s - s.start_s)
            cur = sp.start_s + start_off
            if do_hv and cur + cfg.hyperventilation_s + 60 <= sp.stop_s:
                a, b = cur, cur + cfg.hyperventilation_s
                ramp = np.clip((self.t_ctrl - a) / (b - a), 0, 1)
                decay = np.clip(1 - (self.t_ctrl - b) / 60.0, 0, 1)
                self.hv = np.where(self.t_ctrl <= b, ramp * (self.t_ctrl >= a), decay)
                self.event(a, b - a, "hyperventilation")
                forced_closed.append((a, b + 30))
                cur = b + 60
            ends = cur + np.cumsum([10 + g for g in gaps])
            n_fit = int(np.sum(ends - gaps <= sp.stop_s - 5))  # a short span gets the first trains
            if do_ph and n_fit >= min(4, len(gaps)):
                a0 = cur
                for f, g in list(zip(cfg.photic_freqs_hz, gaps))[:n_fit]:
                    self.photic_trains.append((cur, 10.0, float(f)))
                    self.event(cur, 10.0, "photic", ("O1", "O2"))
                    cur += 10 + g
                forced_closed.append((a0, cur))
        # eyes-open blocks in awake spans
        erng = self.rng["eyes"]
        eo_rng, ec_rng, start_open = {
            "routine": ((8, 20), (25, 70), False),
            "emu": ((30, 120), (10, 40), True),
            "icu": ((20, 90), (20, 90), True),
        }[self.spec.setting]
        self.eye_transitions: list[float] = []
        for sp in self.states:
            if sp.state != "awake":
                continue
            cur, is_open = sp.start_s, start_open
            while cur < sp.stop_s:
                stop = min(sp.stop_s, cur + erng.uniform(*(eo_rng if is_open else ec_rng)))
                if is_open:
                    a, b = cur, stop
                    for fa, fb in forced_closed:  # procedures are done with eyes closed
                        if a < fb and b > fa:
                            a, b = (min(fb, b), b) if a >= fa else (a, fa)
                    if b - a >= 2.0:
                        self.eyes_open[self.ci(a): self.ci(b)] = True
                        self.event(a, b - a, "eyes_open")
                        self.eye_transitions += [a, b]
                cur, is_open = stop, not is_open

    def gains(self, table: StateGains) -> np.ndarray:
        """A per-state gain on the control grid, ramped over ``state_transition_s``."""
        return _smooth(np.asarray(table, float)[self.state_ctrl], self.cfg.state_transition_s)

    # ---------------------------------------------------------------- sources
    def background(self) -> tuple[np.ndarray, np.ndarray]:
        """19 1/f sources under the electrodes: mixing (21, 19) and rows (19, n)."""
        cfg = self.cfg
        rng = self.rng["background"]
        nb = self.n_fft // 2 + 1
        f = np.arange(1, nb) * (self.sfreq / self.n_fft)
        b = cfg.background_exponent
        p = (1.0 / (cfg.background_knee_hz ** b + f ** b) * (f ** 2 / (f ** 2 + 0.3 ** 2))
             / (1.0 + (f / cfg.background_rolloff_hz) ** 2))
        scale = (self.n_fft * np.sqrt(3.0 * p / p.sum())).astype(np.float32)
        spec = np.zeros((19, nb), np.complex64)
        u = rng.random((19, 2 * (nb - 1)), dtype=np.float32)
        u -= np.float32(0.5)
        spec[:, 1:] = u.view(np.complex64) * scale
        rows = sfft.irfft(spec, self.n_fft, axis=-1, workers=1)[:, : self.n]
        topo = np.stack([self.mont.topography(self.mont.xyz[i], cfg.spatial_width_rad)
                         for i in range(19)], axis=1)  # (21, 19)
        topo /= np.sqrt((topo[:19] ** 2).sum(axis=1)).mean()
        return topo, rows

    def rhythms(self) -> None:
        cfg, rng, m = self.cfg, self.rng["rhythms"], self.mont
        s_gs, s_ps, s_ms = self.s("generalized_slowing"), self.s("pdr_slowing"), self.s("mild_slowing")
        # --- PDR
        prng = self.rng["pdr"]
        jitter = prng.normal(0.0, cfg.pdr_jitter_hz)
        base = normal_pdr_hz(self.age, cfg)
        shift = (cfg.gen_slowing_pdr_shift_hz * s_gs + cfg.pdr_slowing_shift_hz * s_ps
                 + cfg.mild_slowing_pdr_shift_hz * s_ms)
        absent = (base is None or (s_ps > 0 and s_ps >= cfg.pdr_absent_severity)
                  or self.s("burst_suppression") > 0)
        f_pdr = max(cfg.min_pdr_hz, (base or cfg.pdr_age_hz[0][1]) + jitter - shift)
        amp = cfg.pdr_uv * self.age_amp * (1 - cfg.gen_slowing_pdr_atten * s_gs) * (1 - 0.3 * s_ps)
        if absent:
            amp = 0.0
        self.pdr_hz = None if absent else round(float(f_pdr), 2)
        bw = cfg.pdr_bandwidth_hz
        a1, a2 = (self.band(rng, lambda f: _gauss(f, f_pdr, bw), f_pdr - 4 * bw, f_pdr + 4 * bw) for _ in "LR")
        env = (self.gains(cfg.pdr_state_gain) * _smooth(np.where(self.eyes_open, cfg.eyes_open_pdr_gain, 1.0), 0.5)
               * self.alpha_block)
        tl = m.topography(position("O1", "P3", "O1"), 0.55)
        tr = m.topography(position("O2", "P4", "O2"), 0.55)
        rho = cfg.pdr_lateral_correlation
        cols = [tl + rho * tr, math.sqrt(1 - rho ** 2) * tr]
        norm = np.sqrt(cols[0] ** 2 + cols[1] ** 2)[:19].max()
        e = self.upsample(env)
        for col, row in zip(cols, (a1, a2)):
            self.brain.append(_Latent(col / norm, row * e, amp, "fast"))
        # --- theta, delta, beta
        hv_gain = cfg.hyperventilation_delta_gain[1 if self.child else 0]
        hv = 1 + (hv_gain - 1) * self.hv
        theta_amp = (cfg.theta_uv * self.age_amp * _curve(cfg.theta_age_gain, self.age)
                     * (1 + cfg.gen_slowing_theta_gain * s_gs + cfg.mild_slowing_theta_gain * s_ms))
        delta_amp = (cfg.delta_uv * self.age_amp * _curve(cfg.delta_age_gain, self.age)
                     * (1 + cfg.gen_slowing_delta_gain * s_gs + 0.3 * s_ms))
        if absent and base is not None:  # no PDR: posterior theta/delta instead
            theta_amp *= 1 + 0.5 * s_ps
        s_eb = self.s("excess_beta")
        beta_amp = cfg.beta_uv * self.age_amp ** 0.5
        ex = cfg.excess_beta_uv * s_eb * self.age_amp ** 0.5
        theta_env = self.upsample(self.gains(cfg.theta_state_gain) * (1 + 0.5 * (hv - 1)))
        delta_env = self.upsample(self.gains(cfg.delta_state_gain) * hv * self.extra_delta)
        beta_env = self.upsample(self.gains(cfg.beta_state_gain))
        groups = [
            ("theta", lambda f: _gauss(f, 5.5, 1.1), 2.5, 8.5, theta_amp, theta_env,
             [(("F3", "C3"), 0.9), (("F4", "C4"), 0.9)], "slow"),
            ("delta", lambda f: 1.0 / f * (1 - _gauss(f, 0, 0.35)), 0.3, 4.0, delta_amp, delta_env,
             [(("F3", "T3", "C3"), 0.8), (("F4", "T4", "C4"), 0.8), (("Fz", "Fp1", "Fp2"), 0.8)], "slow"),
            ("beta", lambda f: np.exp(-0.5 * np.clip(np.abs(f - 19.5) - 5.5, 0, None) ** 2 / 2.0 ** 2),
             10.0, 32.0, beta_amp + ex, beta_env, [(("F3", "C3"), 0.75), (("F4", "C4"), 0.75)], "fast"),
        ]
        for _, shape, lo, hi, gamp, genv, sources, cls in groups:
            cols = [m.topography(position(*names), w) for names, w in sources]
            norm = np.sqrt(sum(c ** 2 for c in cols))[:19].max()
            for col in cols:
                row = self.band(rng, shape, lo, hi)
                row *= genv
                self.brain.append(_Latent(col / norm, row, gamp, cls))
        # --- slow roving eye movements (drowsiness), an ocular artefact
        if self.cfg.artefacts and np.any(self.state_ctrl == 1) and not self.comatose:
            sem = self.band(self.rng["sem"], lambda f: _gauss(f, 0.25, 0.12), 0.05, 0.7)
            sem *= self.upsample(_smooth((self.state_ctrl == 1).astype(float), 5.0))
            heog = m.topography(position("eye_L"), 0.45) - m.topography(position("eye_R"), 0.45)
            self.art.append(_Latent(heog / np.abs(heog[:19]).max(), sem, cfg.slow_eye_movement_uv))

    def focal_slowing(self) -> None:
        rng = self.rng["slowing"]
        for f in self.of("focal_slowing"):
            row = self.band(rng, lambda x: 1.0 / x * (1 - _gauss(x, 0, 0.4)) + 0.15 * _gauss(x, 5, 1),
                            0.3, 8.0)
            row *= self.upsample(self.gains((1.0, 1.1, 1.2, 1.2)) * self.extra_delta)
            topo = self.mont.topography(self.hemi_center(f.side, 0.25), 0.6)
            self.brain.append(_Latent(topo, row, self.cfg.focal_slowing_uv * self.age_amp * f.severity))

    def sleep_transients(self) -> None:
        if self.comatose:
            return
        cfg, rng, m, sf = self.cfg, self.rng["sleep"], self.mont, self.sfreq
        st = self.state_ctrl
        amp = self.age_amp
        # spindles: N2 (N3 a few), central
        sp_rate = cfg.spindle_rate_per_min / 60 * np.select([st == 2, st == 3], [1.0, 0.3], 0.0)
        times = _poisson_times(rng, sp_rate)
        if times.size:
            lat = self.latent("spindle", m.topography(position("Cz", "C3", "C4"), 0.6), 1.0, "fast")
            lat.topo = lat.topo / lat.topo[:19].max()
            for t0 in times:
                d, fr, a = rng.uniform(0.6, 1.6), rng.uniform(12.0, 14.0), rng.uniform(0.6, 1.3)
                _add(lat.row, int(t0 * sf), a * cfg.spindle_uv * amp * _spindle_template(sf, fr, d))
                self.event(t0, d, "spindle", ("C3", "Cz", "C4"))
        # vertex waves (drowsy: half the rate) and K-complexes
        for kind, rate, gains, topo, tmpl, hi, uv, dur in (
            ("vertex_wave", cfg.vertex_rate_per_min, (0.0, 0.5, 1.0, 0.3),
             m.topography(position("Cz"), 0.5), _vertex_template(sf), 1.3, cfg.vertex_uv, 0.3),
            ("k_complex", cfg.k_complex_rate_per_min, (0.0, 0.0, 1.0, 0.5),
             m.topography(position("Fz", "Cz"), 0.65), _k_complex_template(sf), 1.4, cfg.k_complex_uv, 1.0),
        ):
            times = _poisson_times(rng, rate / 60 * np.asarray(gains)[st])
            if times.size:
                amps = rng.uniform(0.6, hi, times.size) * uv * amp
                _place(self.latent(kind, topo).row, (times * sf).astype(int), tmpl, amps)
                ch = m.channels_above(topo)
                for t0 in times:
                    self.event(t0, dur, kind, ch)

    def photic(self) -> None:
        if not self.photic_trains:
            return
        cfg, rng, sf = self.cfg, self.rng["photic"], self.sfreq
        lat = self.latent("photic", self.mont.topography(position("O1", "O2"), 0.5), 1.0, "fast")
        lat.topo = lat.topo / lat.topo[:19].max()
        ref = self.pdr_hz or 6.0
        for onset, dur, f in self.photic_trains:
            if 2 * f >= 0.45 * sf:
                continue
            t = _times(sf, dur)
            a = cfg.photic_uv * self.age_amp * rng.uniform(0.4, 1.4) * (1 + 1.5 * _gauss(f, ref, 2.0))
            ph = rng.uniform(0, 2 * np.pi)
            w = np.sin(2 * np.pi * f * t + ph) + 0.4 * np.sin(4 * np.pi * f * t + 2 * ph)
            w *= np.clip(t / 0.3, 0, 1)
            _add(lat.row, int(onset * sf), a * w)

    # --------------------------------------------------------------- findings
    def ieds(self) -> None:
        cfg, rng, sf, m = self.cfg, self.rng["ied"], self.sfreq, self.mont
        st = self.state_ctrl
        for f in self.of("ied_focal"):
            topo = m.topography(self.locus(f.side), 0.33)
            lat = self.latent(f"focal_{f.side}", topo)
            ch = m.channels_above(topo)
            rate = cfg.ied_rate_per_min / 60 * f.severity * np.where(st >= 1, cfg.ied_sleep_gain, 1.0)
            times = _poisson_times(rng, rate, at_least=1)
            amp = cfg.ied_uv * (0.7 + 0.3 * f.severity) * self.age_amp ** 0.5
            for t0 in times:
                sharp = rng.random() < 0.4
                width = rng.uniform(0.022, 0.04) if sharp else rng.uniform(0.008, 0.016)
                tmpl = _spike_template(sf, width, rng.uniform(0.25, 0.6))
                _add(lat.row, int(t0 * sf), amp * rng.uniform(0.7, 1.3) * tmpl)
                self.event(t0 + 0.04, 0.3, "ied_focal", ch)
        s = self.s("ied_generalized")
        if s > 0:
            rng = self.rng["gsw"]
            topo = m.topography(position("Fz", "F3", "F4"), 1.1)
            lat = self.latent("generalized", topo)
            ch = m.channels_above(topo)
            rate = cfg.gsw_rate_per_min / 60 * s * np.where(st <= 1, 1.0, 0.5) * (1 + 3 * self.hv)
            times = _poisson_times(rng, rate, at_least=1)
            for t0 in times:
                dur = rng.uniform(1.0, 2.0 + 4.0 * s)
                w = self.gsw_burst(rng, dur)
                _add(lat.row, int(t0 * sf), cfg.gsw_uv * self.age_amp ** 0.5 * (0.7 + 0.3 * s) * w)
                self.event(t0, dur, "ied_generalized", ch)

    def gsw_burst(self, rng: np.random.Generator, dur: float) -> np.ndarray:
        """Spike-and-wave burst at ~3 Hz slowing slightly to its end."""
        sf = self.sfreq
        f0 = self.cfg.gsw_hz * rng.uniform(0.9, 1.15)
        t = _times(sf, dur + 0.5)
        out = np.zeros_like(t)
        c = 0.0
        while c < dur:
            period = 1.0 / (f0 * (1 - 0.15 * c / max(dur, 1e-9)))
            out += (-_gauss(t, c + 0.03, 0.012) + 0.25 * _gauss(t, c + 0.07, 0.02)
                    - 0.7 * _gauss(t, c + 0.45 * period, 0.17 * period))
            c += period
        return out / np.abs(out).max()

    def seizures(self) -> None:
        s = self.s("seizure")
        if s <= 0:
            return
        cfg, rng, sf, m = self.cfg, self.rng["seizure"], self.sfreq, self.mont
        f = self.of("seizure")[0]
        side = f.side
        if side is None:
            foc = self.of("ied_focal")
            if foc:
                side = foc[0].side
            elif self.s("ied_generalized") == 0:
                side = "L" if rng.random() < 0.5 else "R"
        if side is not None and f.side is None:
            self.findings = tuple(dataclasses.replace(x, side=side) if x is f else x for x in self.findings)
        count = 1 + int(rng.random() < 0.5 * s)
        lo, hi = cfg.seizure_duration_s
        D = self.duration
        placed: list[tuple[float, float]] = []
        for _ in range(count):
            dur = min(rng.uniform(lo, hi) * (0.6 + 0.4 * s), 0.4 * D)
            for _try in range(20):
                t0 = rng.uniform(0.1 * D, max(0.1 * D, 0.85 * D - dur))
                if all(t0 > b + 120 or t0 + dur < a - 120 for a, b in placed):
                    break
            else:
                continue
            placed.append((t0, t0 + dur))
        gen_topo = m.topography(position("Fz", "Cz"), 1.2)
        for t0, t1 in placed:
            dur = t1 - t0
            t = _times(sf, dur)
            u = t / dur
            fr = 7.0 * (2.5 / 7.0) ** u * rng.uniform(0.85, 1.15)
            ph = 2 * np.pi * np.cumsum(fr) / sf
            w = np.sin(ph) + 0.5 * np.sin(2 * ph + 0.4) + 0.25 * np.sin(3 * ph + 0.8)
            w /= np.abs(w).max()
            env = (0.15 + 0.85 * np.clip(u / 0.5, 0, 1)) * np.clip((dur - t) / 1.0, 0, 1)
            amp = cfg.seizure_uv * (0.6 + 0.4 * s) * self.age_amp ** 0.5
            spread = np.clip((u - 0.15) / 0.3, 0, 1)
            if side is not None:
                focal = self.latent(f"focal_{side}", m.topography(self.locus(side), 0.33))
                hemi_topo = m.topography(self.hemi_center(side), 0.7)
                hemi = self.latent(f"hemi_{side}", hemi_topo)
                _add(focal.row, int(t0 * sf), amp * w * env)
                _add(hemi.row, int(t0 * sf), 0.8 * amp * w * env * spread)
                ch = m.channels_above(hemi_topo, 0.4)
                if s > 0.6:  # secondary generalisation
                    gen = self.latent("generalized", gen_topo)
                    g = np.clip((u - 0.5) / 0.2, 0, 1)
                    _add(gen.row, int(t0 * sf), 0.7 * amp * w * env * g)
                    ch = CANONICAL_CHANNELS
            else:
                gen = self.latent("generalized", gen_topo)
                _add(gen.row, int(t0 * sf), amp * w * env)
                ch = CANONICAL_CHANNELS
            self.event(t0, dur, "seizure", tuple(ch))
            if self.cfg.artefacts and (side is None or s > 0.6):  # clonic muscle
                self.muscle_burst(t0 + 0.6 * dur, 0.4 * dur, "LR", self.rng["seizure"], 1.0)
            # postictal depression: attenuated background, more delta, no alpha
            post = 60 + 90 * s
            a, b = self.ci(t1), self.ci(t1 + post)
            r = np.linspace(0, 1, max(b - a, 1))[: b - a]
            self.brain_gain[a:b] *= 0.4 + 0.6 * r
            self.extra_delta[a:b] *= 3.0 - 2.0 * r
            self.alpha_block[a:b] *= r

    def periodic(self) -> None:
        cfg, rng, sf, m = self.cfg, self.rng["periodic"], self.sfreq, self.mont
        lo, hi = cfg.periodic_coverage
        items = [("lpd", f) for f in self.of("lpd")]
        if self.s("gpd") > 0:
            items.append(("gpd", self.of("gpd")[0]))
        for kind, f in items:
            if kind == "lpd":
                topo = m.topography(self.hemi_center(f.side), 0.7)
                lat = self.latent(f"hemi_{f.side}", topo)
                tmpl, hz, uv = _lpd_template(sf), cfg.lpd_hz, cfg.lpd_uv
            else:
                topo = m.topography(position("Fz", "F3", "F4"), 1.1)
                lat = self.latent("generalized", topo)
                tmpl, hz, uv = _gpd_template(sf), cfg.gpd_hz, cfg.gpd_uv
            ch = m.channels_above(topo)
            cover = (lo + (hi - lo) * f.severity) * self.duration
            t, used = rng.uniform(0, 60), 0.0
            while t < self.duration and used < cover:
                run = min(rng.uniform(30, 240), cover - used + 5, self.duration - t)
                if run < 5:
                    break
                period = 1.0 / (hz * rng.uniform(0.7, 1.4))
                period = max(period, tmpl.size / sf + 0.05)
                k = int(run / period)
                starts = t + np.arange(k) * period + rng.normal(0, 0.04 * period, k)
                amps = uv * (0.6 + 0.4 * f.severity) * self.age_amp ** 0.5 * rng.uniform(0.7, 1.3, k)
                _place(lat.row, (starts * sf).astype(int), tmpl, amps)
                self.event(t, run, kind, ch)
                used += run
                gap = (self.duration - cover) / max(cover / 120.0, 1.0)
                t += run + rng.uniform(0.3, 1.0) * gap + 2

    def burst_suppression(self) -> None:
        s = self.s("burst_suppression")
        if s <= 0:
            return
        cfg, rng, sf, m = self.cfg, self.rng["bs"], self.sfreq, self.mont
        env = np.full(self.n_ctrl, cfg.bs_suppression_gain)
        topo = m.topography(position("Fz", "Cz"), 1.2)
        lat = self.latent("generalized", topo)
        ch = m.channels_above(topo)
        t = rng.uniform(0, 3)
        while t < self.duration:
            blen = rng.uniform(0.5, 3.0)
            a, b = self.ci(t), self.ci(t + blen)
            env[a:b + 1] = 1.0
            n = int(blen * sf)
            tt = np.arange(n) / sf
            w = (np.sin(2 * np.pi * rng.uniform(1, 2) * tt + rng.uniform(0, 6)) * 0.6
                 + 0.4 * _band_noise(rng, n, sf, 3, 12) * 0.5)
            w[: int(0.12 * sf)] -= _gauss(tt[: int(0.12 * sf)], 0.05, 0.015)  # sharp onset
            w *= np.hanning(n) ** 0.5
            w /= max(np.abs(w).max(), 1e-9)
            _add(lat.row, int(t * sf), cfg.bs_burst_uv * self.age_amp ** 0.5 * rng.uniform(0.6, 1.2) * w)
            self.event(t, blen, "burst", ch)
            t += blen + rng.gamma(2.0, (1.0 + cfg.bs_suppression_s * s) / 2)
        self.brain_gain *= env

    # --------------------------------------------------------------- artefacts
    def muscle_burst(self, t0: float, dur: float, side: str, rng: np.random.Generator, gain: float = 1.0) -> None:
        sf, m = self.sfreq, self.mont
        n = int(dur * sf)
        if n < 4:
            return
        hi = min(70.0, 0.45 * sf)
        env = np.clip(np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.1 * sf), 0, 1)
        chans: list[str] = []
        for sd in side:
            topo = m.topography(position("F7", "T3") if sd == "L" else position("F8", "T4"), 0.4)
            lat = self.latent(f"muscle_{sd}", topo / topo[:19].max(), artefact=True)
            w = _band_noise(rng, n, sf, 20.0, hi) * env
            _add(lat.row, int(t0 * sf), self.cfg.muscle_uv * gain * rng.uniform(0.5, 2.0) * w)
            chans += m.channels_above(topo)
        self.event(t0, dur, "muscle", tuple(chans))

    def artefacts(self) -> None:
        cfg, sf, m = self.cfg, self.sfreq, self.mont
        st, eo = self.state_ctrl, self.eyes_open
        # blinks (not in sleep, none in coma)
        rng = self.rng["blink"]
        if not self.comatose:
            r_eo, r_ec, r_dr = cfg.blink_rate_per_min
            rate = np.select([(st == 0) & eo, st == 0, st == 1], [r_eo, r_ec, r_dr], 0.0) / 60
            times = np.sort(np.concatenate([_poisson_times(rng, rate), np.asarray(self.eye_transitions) + 0.1]))
            if times.size:
                topo = m.topography(position("eye_L"), 0.5) + m.topography(position("eye_R"), 0.5)
                topo = topo / topo[:19].max()
                lat = self.latent("veog", topo, artefact=True)
                for t0 in times:
                    d = rng.uniform(0.2, 0.4)
                    _add(lat.row, int(t0 * sf), cfg.blink_uv * rng.uniform(0.6, 1.3) * _blink_template(sf, d))
                    self.event(t0, d, "blink", ("Fp1", "Fp2"))
        # muscle
        rng = self.rng["muscle"]
        icu = 0.5 if self.spec.setting == "icu" else 1.0
        base = np.select([(st == 0) & eo, st == 0, st == 1], [1.5, 0.7, 0.3], 0.05)
        base *= 0.2 if self.comatose else 1.0
        for t0 in _poisson_times(rng, cfg.muscle_rate_per_min / 60 * base * icu):
            side = str(rng.choice(["L", "R", "LR"], p=[0.4, 0.4, 0.2]))
            self.muscle_burst(t0, rng.uniform(0.3, 3.0), side, rng)
        # electrode pops (single channel; a loose electrode takes most of them)
        rng = self.rng["pop"]
        loose = int(rng.integers(19))
        has_loose = rng.random() < 0.5
        for t0 in _poisson_times(rng, np.full(self.n_ctrl, cfg.pop_rate_per_min / 60)):
            c = loose if (has_loose and rng.random() < 0.7) else int(rng.integers(19))
            tau = rng.uniform(0.1, 0.5)
            a = cfg.pop_uv * rng.uniform(0.5, 1.5) * (1 if rng.random() < 0.5 else -1)
            self.pops.append((c, int(t0 * sf), (a * _pop_template(sf, tau)).astype(np.float32)))
            self.event(t0, 5 * tau, "electrode_pop", (CANONICAL_CHANNELS[c],))
        # mains interference (electrode specific, not re-referenced)
        rng = self.rng["mains"]
        mains_amp = cfg.mains_uv * np.exp(rng.normal(0, 0.5, 19)) * (2.0 if self.spec.setting == "icu" else 1.0)
        p_bad = min(1.0, cfg.mains_bad_channel_prob * (2.0 if self.spec.setting == "icu" else 1.0))
        if rng.random() < p_bad:
            bad = rng.choice(19, size=int(rng.integers(1, 3)), replace=False)
            mains_amp[bad] = cfg.mains_bad_channel_uv * rng.uniform(0.6, 1.5, bad.size)
        ph = rng.uniform(0, 2 * np.pi)
        fm = float(self.spec.mains_hz)
        if fm < 0.5 * sf and cfg.mains_uv + cfg.mains_bad_channel_uv > 0:
            w = np.sin(2 * np.pi * fm * self.t + ph)
            if 3 * fm < 0.5 * sf:
                w += 0.15 * np.sin(2 * np.pi * 3 * fm * self.t + 3 * ph)
            topo = np.zeros(21)
            topo[:19] = mains_amp * math.sqrt(2)
            self.art.append(_Latent(topo, w.astype(np.float32), 1.0, "mains"))
            noisy = tuple(c for c, a in zip(CANONICAL_CHANNELS, mains_amp) if a > 3 * np.median(mains_amp))
            self.event(0.0, self.duration, "mains_noise", noisy)
        # ECG
        rng = self.rng["ecg"]
        if rng.random() < cfg.ecg_prob and cfg.ecg_uv > 0:
            hr = rng.uniform(95, 130) if self.age < 8 else rng.uniform(55, 95)
            rr = 60.0 / hr
            k = int(self.duration / rr) + 1
            beats = rng.uniform(0, rr) + np.cumsum(rr * (1 + rng.normal(0, 0.03, k)))
            beats = beats[beats < self.duration]
            t = _times(sf, 0.45)
            tmpl = (-0.2 * _gauss(t, 0.05, 0.01) + _gauss(t, 0.08, 0.012)
                    - 0.3 * _gauss(t, 0.11, 0.012) + 0.25 * _gauss(t, 0.32, 0.04))
            topo = m.topography(position("T5", "O1", "A1"), 0.8) * (1 if rng.random() < 0.7 else -1)
            topo = topo / np.abs(topo[:19]).max()
            lat = self.latent("ecg", topo, artefact=True)
            amps = np.full(beats.size, cfg.ecg_uv * rng.uniform(0.5, 1.5))
            _place(lat.row, (beats * sf).astype(int), tmpl, amps)
            self.event(0.0, self.duration, "ecg", m.channels_above(topo))

    # ---------------------------------------------------------------- assembly
    def columns(self, topo: np.ndarray, fast: np.ndarray, brain: bool,
                electrode: np.ndarray | None = None) -> np.ndarray:
        """Mixing matrix (19, k) from topographies (21, k) scaled to µV.

        Cerebral columns get the low-voltage and asymmetry gains; electrode-specific
        columns (mains) skip re-referencing.
        """
        cfg, m = self.cfg, self.mont
        cols = topo.copy()
        if brain:
            cols *= 1 - cfg.low_voltage_atten * self.s("low_voltage")
            for f in self.of("asymmetry"):
                att = np.where(fast, cfg.asymmetry_fast_atten, cfg.asymmetry_slow_atten) * f.severity
                cols *= 1 - att[None, :] * m.lateral_weight(f.side)[:, None]
        out = m.reference(cols, cfg.reference)
        if electrode is not None and electrode.any():
            out[:, electrode] = cols[:19, electrode]
        return out.astype(np.float32)

    def mix(self, lats: list[_Latent], brain: bool) -> np.ndarray:
        topo = np.stack([lat.topo * lat.amp for lat in lats], axis=1)
        fast = np.array([lat.cls == "fast" for lat in lats])
        electrode = np.array([lat.cls == "mains" for lat in lats])
        A = self.columns(topo, fast, brain, electrode)
        return A @ np.stack([lat.row for lat in lats])

    def run(self) -> tuple[np.ndarray, EEGSummary]:
        cfg = self.cfg
        self.timeline()
        self.burst_suppression()
        self.seizures()       # before the rhythms: postictal changes their envelopes
        topo_bg, rows_bg = self.background()
        bg_env = self.gains(cfg.background_state_gain)
        if not np.allclose(bg_env, bg_env[0]):
            rows_bg *= self.upsample(bg_env)
        elif bg_env[0] != 1.0:
            rows_bg *= np.float32(bg_env[0])
        self.rhythms()
        self.focal_slowing()
        self.sleep_transients()
        self.photic()
        self.ieds()
        self.periodic()
        if cfg.artefacts:
            self.artefacts()
        # cerebral activity: 19 background sources + the other latents, then the global
        # envelope (burst suppression, postictal depression); then the artefacts
        A_bg = self.columns(topo_bg * (cfg.background_uv * self.age_amp), np.zeros(19, bool), True)
        data = A_bg @ rows_bg
        del rows_bg
        if self.brain:
            data += self.mix(self.brain, brain=True)
        if not np.allclose(self.brain_gain, 1.0):
            data *= self.upsample(self.brain_gain)
        if self.art:
            data += self.mix(self.art, brain=False)
        for c, start, tmpl in self.pops:
            _add(data[c], start, tmpl)
        events = tuple(sorted(self.events, key=lambda e: (e.onset_s, e.kind)))
        awake_s = sum(s.stop_s - s.start_s for s in self.states if s.state == "awake")
        pdr = self.pdr_hz if awake_s >= 10.0 else None
        summary = EEGSummary(pdr_hz=pdr, states=tuple(self.states), events=events,
                             findings=self.findings)
        return np.ascontiguousarray(data, dtype=np.float32), summary


def simulate_eeg(
    spec: SessionSpec, sfreq: float, config: EEGSimConfig | None = None
) -> tuple[np.ndarray, EEGSummary]:
    """Simulate one session's scalp EEG with the findings its spec plants.

    Parameters
    ----------
    spec : SessionSpec
        Duration, age, care setting, planted findings, mains frequency and seed.
    sfreq : float
        Sampling rate in Hz (at least 64).
    config : EEGSimConfig or None
        Strengths of every component; defaults to ``EEGSimConfig()``.

    Returns
    -------
    data : ndarray, shape (19, n), float32
        EEG in µV, channels in :data:`tokenizer.contract.CANONICAL_CHANNELS` order,
        ``n = round(spec.duration_s * sfreq)``, referenced as ``config.reference``.
    summary : EEGSummary
        What was drawn: PDR frequency (None when absent, or when the patient is never
        awake), vigilance states covering ``[0, spec.duration_s]``, events sorted by
        onset, and the planted findings with severity > 0 (lateralised ones with their
        side filled in when the spec left it open).

    Notes
    -----
    Deterministic given ``spec.seed``; each component uses its own child stream of
    ``np.random.default_rng(spec.seed)``, so the session without one finding is the same
    session minus that finding's effect.
    """
    cfg = EEGSimConfig() if config is None else config
    if not isinstance(spec, SessionSpec):
        raise TypeError(f"spec must be a SessionSpec, found {type(spec).__name__}")
    if not (math.isfinite(sfreq) and sfreq >= 64):
        raise ValueError(f"sfreq must be a finite rate of at least 64 Hz, found {sfreq}")
    if not (math.isfinite(spec.duration_s) and spec.duration_s * sfreq >= 1):
        raise ValueError(f"spec.duration_s must give at least one sample, found {spec.duration_s}")
    if not (math.isfinite(spec.age_years) and spec.age_years >= 0):
        raise ValueError(f"spec.age_years must be >= 0, found {spec.age_years}")
    if spec.setting not in ("routine", "emu", "icu"):
        raise ValueError(f"spec.setting must be routine, emu or icu, found {spec.setting!r}")
    if not spec.mains_hz > 0:
        raise ValueError(f"spec.mains_hz must be positive, found {spec.mains_hz}")
    data, summary = _Session(spec, sfreq, cfg).run()
    logger.debug("simulated %s: %d samples, %d events", spec.session_id, data.shape[1], len(summary.events))
    return data, summary

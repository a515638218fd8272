"""Reconstruction quality of a trained VQGAN: what a neurologist reads, kept or lost.

Raw quality (:func:`evaluate_reconstruction`): per-band error per bin and 1-s frame,
codebook usage, perplexity. The per-bin-frame error includes the multitaper estimator's
own noise (3 tapers: about ±2.5 dB per bin and frame), which no tokenizer should
memorise, so it cannot fall far below ~2 dB however good the tokenizer is.

Clinical content (decoded against original spectrogram, same frames):

* :func:`band_power_errors`: band power per channel per epoch (default 10 s, one EEG
  page: mean linear power over the band's bins and the epoch's frames, in dB), the
  absolute difference per present channel and full epoch;
* :func:`awake_epochs` and :func:`pdr_peaks`: the occipital (O1/O2) 4–13 Hz peak
  frequency of both spectrograms in awake epochs (from the vigilance states);
* :func:`hemispheric_differences`: left-minus-right band power (dB) of the homologous
  pairs (:data:`HOMOLOGOUS_PAIRS`) over given frames.

Bands are the repository's one table, :data:`tokenizer.multitaper.CANONICAL_BANDS`, and
band power is :func:`tokenizer.multitaper.band_power_from_psd`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from tokenizer.contract import CANONICAL_CHANNELS
from tokenizer.multitaper import CANONICAL_BANDS, band_power_from_psd
from tokenizer.spectrogram_cache import SessionSpectrogram
from tokenizer.vqgan.model import VQGAN
from tokenizer.windows import WindowSpec, iter_windows

#: Homologous left/right electrode pairs whose band-power differences a reader compares.
HOMOLOGOUS_PAIRS: tuple[tuple[str, str], ...] = (
    ("Fp1", "Fp2"), ("F3", "F4"), ("F7", "F8"), ("C3", "C4"), ("T3", "T4"), ("T5", "T6"), ("P3", "P4"), ("O1", "O2"))
#: Electrodes and band of the posterior dominant rhythm peak.
PDR_CHANNELS: tuple[str, ...] = ("O1", "O2")
PDR_BAND: tuple[float, float] = (4.0, 13.0)


@dataclass
class ReconstructionReport:
    """Quality of a tokenizer over a set of sessions.

    Attributes
    ----------
    band_error_db : dict
        Mean absolute error (dB) per band over valid channels and frames.
    codebook_usage : float
        Fraction of the codebook used at least once by the valid tokens.
    perplexity : float
        ``exp(entropy)`` of the code distribution of valid tokens.
    n_windows, n_tokens : int
    """

    band_error_db: dict[str, float]
    codebook_usage: float
    perplexity: float
    n_windows: int
    n_tokens: int
    code_counts: np.ndarray = field(repr=False)


@torch.no_grad()
def reconstruct_session(model: VQGAN, spec: SessionSpectrogram, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode and decode one session.

    Returns
    -------
    recon : ndarray, (channels, bins, T) float32
        Reconstructed spectrogram in dB (same frames as ``spec``).
    codes : ndarray, (windows, grid_f, grid_t)
    token_mask : ndarray, same shape, bool
    """
    model.eval()
    ws = WindowSpec.from_contract(model.ctx.contract, model.config.input.scale_db)
    outs, codes, masks = [], [], []
    items = list(iter_windows(spec.values, spec.frame_mask, spec.channel_mask, ws))
    for a in range(0, len(items), batch_size):
        chunk = items[a:a + batch_size]
        x = torch.from_numpy(np.stack([c[1] for c in chunk]))
        fm = torch.from_numpy(np.stack([c[2] for c in chunk]))
        c, tm = model.tokenize(x, fm)
        outs.append(model.decode_codes(c).numpy() * ws.scale_db)
        codes.append(c.numpy())
        masks.append(tm.numpy())
    recon = np.concatenate([o.transpose(1, 2, 0, 3).reshape(o.shape[1], o.shape[2], -1) for o in outs], axis=-1)
    return recon[:, :, : spec.n_frames].astype(np.float32), np.concatenate(codes), np.concatenate(masks)


def evaluate_reconstruction(model: VQGAN, spectrograms: Iterable[SessionSpectrogram]) -> tuple[ReconstructionReport, list[np.ndarray]]:
    """Reconstruct every session and summarise the quality (see :class:`ReconstructionReport`)."""
    freqs = np.asarray(model.ctx.freqs)
    n_codes = model.config.quantizer.n_codes
    counts = np.zeros(n_codes, dtype=np.int64)
    err_sum = {b: 0.0 for b in CANONICAL_BANDS}
    err_n = {b: 0 for b in CANONICAL_BANDS}
    recons, n_windows = [], 0
    for spec in spectrograms:
        recon, codes, tmask = reconstruct_session(model, spec)
        recons.append(recon)
        n_windows += codes.shape[0]
        counts += np.bincount(codes[tmask].ravel(), minlength=n_codes)
        valid = spec.channel_mask[:, None, None] & spec.frame_mask[None, None, :]
        diff = np.abs(recon - spec.values.astype(np.float32))
        for b, (lo, hi) in CANONICAL_BANDS.items():
            sel = (freqs >= lo) & (freqs < hi)
            v = np.broadcast_to(valid, diff.shape)[:, sel]
            err_sum[b] += float(diff[:, sel][v].sum())
            err_n[b] += int(v.sum())
    p = counts / max(1, counts.sum())
    nz = p[p > 0]
    report = ReconstructionReport(
        band_error_db={b: err_sum[b] / max(1, err_n[b]) for b in CANONICAL_BANDS},
        codebook_usage=float((counts > 0).mean()),
        perplexity=float(np.exp(-(nz * np.log(nz)).sum())),
        n_windows=n_windows,
        n_tokens=int(counts.sum()),
        code_counts=counts,
    )
    return report, recons


def peak_frequency(spec_db: np.ndarray, freqs: np.ndarray, channels: list[int], frame_mask: np.ndarray,
                   band: tuple[float, float] = (4.0, 13.0)) -> float:
    """Frequency of the largest mean power in ``band`` over ``channels`` (e.g. O1/O2 for the PDR)."""
    p = 10 ** (spec_db[channels][:, :, frame_mask].astype(np.float64) / 10)
    sel = (freqs >= band[0]) & (freqs <= band[1])
    return float(freqs[sel][np.argmax(p[:, sel].mean(axis=(0, 2)))])


def _linear(spec_db: np.ndarray) -> np.ndarray:
    return np.power(10.0, np.asarray(spec_db, dtype=np.float64) / 10.0)


def epoch_band_power(
    spec_db: np.ndarray, freqs: np.ndarray, frame_mask: np.ndarray, *, epoch_frames: int = 10,
    bands: dict[str, tuple[float, float]] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Band power per channel per epoch, in dB.

    Parameters
    ----------
    spec_db : ndarray, (channels, bins, frames)
        Spectrogram in dB.
    freqs : ndarray, (bins,)
        Bin frequencies (Hz).
    frame_mask : ndarray, (frames,) bool
        Valid frames.
    epoch_frames : int
        Frames per epoch (10: one 10-s EEG page at the contract's 1-s step); a trailing
        partial epoch is dropped.
    bands : dict, optional
        ``{name: (low, high)}`` (half-open, Hz); default :data:`CANONICAL_BANDS`.

    Returns
    -------
    power : dict of str to ndarray, (channels, epochs)
        ``10 log10`` of the mean linear power over the band's bins and the epoch's frames.
    full : ndarray, (epochs,) bool
        Epochs whose frames are all valid (only those are compared).

    Raises
    ------
    ValueError
        Mismatched shapes, ``epoch_frames < 1`` or a band holding no bin.
    """
    spec_db = np.asarray(spec_db)
    freqs = np.asarray(freqs)
    frame_mask = np.asarray(frame_mask, bool)
    if spec_db.ndim != 3 or spec_db.shape[1] != freqs.shape[0] or spec_db.shape[2] != frame_mask.shape[0]:
        raise ValueError(f"spectrogram (channels, {freqs.shape[0]} bins, {frame_mask.shape[0]} frames) expected, "
                         f"found {spec_db.shape}")
    if epoch_frames < 1:
        raise ValueError(f"epoch_frames must be >= 1, found {epoch_frames}")
    n_ep = spec_db.shape[2] // epoch_frames
    t = n_ep * epoch_frames
    full = frame_mask[:t].reshape(n_ep, epoch_frames).all(1)
    lin = _linear(spec_db[:, :, :t]).reshape(spec_db.shape[0], spec_db.shape[1], n_ep, epoch_frames).mean(3)
    power = band_power_from_psd(lin, freqs, bands, axis=1)
    return {name: 10 * np.log10(np.maximum(p, 1e-30)) for name, p in power.items()}, full


def band_power_errors(
    original: np.ndarray, decoded: np.ndarray, freqs: np.ndarray, channel_mask: np.ndarray, frame_mask: np.ndarray,
    *, epoch_frames: int = 10, bands: dict[str, tuple[float, float]] | None = None,
) -> dict[str, np.ndarray]:
    """Absolute band-power error (dB) per present channel and full epoch: the clinical error.

    Parameters
    ----------
    original, decoded : ndarray, (channels, bins, frames)
        Spectrograms in dB (same frames).
    freqs, frame_mask, epoch_frames, bands
        As in :func:`epoch_band_power`.
    channel_mask : ndarray, (channels,) bool
        Present electrodes.

    Returns
    -------
    dict of str to ndarray
        Per band, ``|decoded - original|`` of :func:`epoch_band_power`, flattened over
        (present channel, full epoch); average them (pooled over sessions) for the mean
        error.
    """
    if np.shape(original) != np.shape(decoded):
        raise ValueError(f"original {np.shape(original)} and decoded {np.shape(decoded)} differ in shape")
    po, full = epoch_band_power(original, freqs, frame_mask, epoch_frames=epoch_frames, bands=bands)
    pd, _ = epoch_band_power(decoded, freqs, frame_mask, epoch_frames=epoch_frames, bands=bands)
    cm = np.asarray(channel_mask, bool)
    return {b: np.abs(pd[b] - po[b])[cm][:, full].ravel() for b in po}


def awake_epochs(
    spans: Iterable[tuple[float, float]], frame_mask: np.ndarray, *, step_s: float = 1.0, epoch_s: float = 60.0,
    margin_s: float = 10.0,
) -> list[np.ndarray]:
    """Frame masks of consecutive epochs inside awake spans (for :func:`pdr_peaks`).

    Parameters
    ----------
    spans : iterable of (start_s, stop_s)
        Awake periods of the session (the truth's vigilance states).
    frame_mask : ndarray, (frames,) bool
        Valid frames; epochs with an invalid frame are skipped.
    step_s : float
        Seconds per spectrogram frame (the contract's ``spectrogram.step_s``).
    epoch_s : float
        Epoch length (60 s: long enough to hold eyes-closed stretches, which a routine
        recording alternates with 8-20 s eyes-open blocks that attenuate the PDR).
    margin_s : float
        Seconds left out at both ends of a span (state transitions ramp over 10 s, and a
        4-s taper frame reaches 2 s either side of its centre).

    Returns
    -------
    list of ndarray, (frames,) bool
        One mask per epoch, in time order.
    """
    frame_mask = np.asarray(frame_mask, bool)
    if epoch_s <= 0 or step_s <= 0 or margin_s < 0:
        raise ValueError(f"epoch_s and step_s must be positive and margin_s >= 0, found {epoch_s}, {step_s}, {margin_s}")
    n = int(round(epoch_s / step_s))
    out = []
    for start, stop in spans:
        a = int(np.ceil((start + margin_s) / step_s))
        b = min(frame_mask.shape[0], int(np.floor((stop - margin_s) / step_s)))
        for k in range(a, b - n + 1, n):
            if frame_mask[k:k + n].all():
                m = np.zeros_like(frame_mask)
                m[k:k + n] = True
                out.append(m)
    return out


def pdr_peaks(
    original: np.ndarray, decoded: np.ndarray, freqs: np.ndarray, channel_mask: np.ndarray,
    epochs: Iterable[np.ndarray], *, channels: tuple[str, ...] = PDR_CHANNELS,
    channel_names: tuple[str, ...] = CANONICAL_CHANNELS, band: tuple[float, float] = PDR_BAND,
) -> np.ndarray:
    """Occipital peak frequency of original and decoded spectrograms per epoch.

    Parameters
    ----------
    original, decoded : ndarray, (channels, bins, frames)
        Spectrograms in dB.
    freqs : ndarray, (bins,)
    channel_mask : ndarray, (channels,) bool
        Present electrodes (absent ones of ``channels`` are left out).
    epochs : iterable of ndarray, (frames,) bool
        Frames of each epoch (e.g. :func:`awake_epochs`).
    channels, channel_names : tuple of str
        Electrodes averaged (O1/O2) and the spectrogram's channel order.
    band : (float, float)
        Search band (Hz, inclusive): 4-13 Hz holds slowed PDRs too.

    Returns
    -------
    ndarray, (epochs, 2)
        Peak frequency (Hz) of the original and of the decoded spectrogram; empty
        ``(0, 2)`` when no channel of ``channels`` is present.
    """
    idx = [channel_names.index(c) for c in channels if channel_mask[channel_names.index(c)]]
    rows = [] if not idx else [
        (peak_frequency(original, freqs, idx, m, band), peak_frequency(decoded, freqs, idx, m, band)) for m in epochs]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def hemispheric_differences(
    spec_db: np.ndarray, freqs: np.ndarray, channel_mask: np.ndarray, frame_mask: np.ndarray, *,
    pairs: tuple[tuple[str, str], ...] = HOMOLOGOUS_PAIRS, channel_names: tuple[str, ...] = CANONICAL_CHANNELS,
    bands: dict[str, tuple[float, float]] | None = None,
) -> dict[str, np.ndarray]:
    """Left-minus-right band power (dB) of homologous pairs over the valid frames.

    Parameters
    ----------
    spec_db : ndarray, (channels, bins, frames)
        Spectrogram in dB.
    freqs : ndarray, (bins,)
    channel_mask : ndarray, (channels,) bool
    frame_mask : ndarray, (frames,) bool
        Frames averaged (a whole session, or one window's valid frames).
    pairs, channel_names
        Pairs (left, right) and the spectrogram's channel order.
    bands : dict, optional
        Default :data:`CANONICAL_BANDS`.

    Returns
    -------
    dict of str to ndarray, (pairs,)
        Per band, ``10 log10(P_left / P_right)`` of the mean linear band power; NaN for a
        pair with an absent electrode or no valid frame.
    """
    bands = CANONICAL_BANDS if bands is None else bands
    frame_mask = np.asarray(frame_mask, bool)
    freqs = np.asarray(freqs)
    out = {b: np.full(len(pairs), np.nan) for b in bands}
    if not frame_mask.any():
        return out
    power = band_power_from_psd(_linear(np.asarray(spec_db)[:, :, frame_mask]).mean(2), freqs, bands, axis=1)
    for k, (lft, rgt) in enumerate(pairs):
        i, j = channel_names.index(lft), channel_names.index(rgt)
        if not (channel_mask[i] and channel_mask[j]):
            continue
        for b in bands:
            out[b][k] = 10 * np.log10(power[b][i] / power[b][j])
    return out

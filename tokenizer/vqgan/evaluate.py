"""Reconstruction quality of a trained VQGAN: per-band error, codebook usage, perplexity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from tokenizer.spectrogram_cache import SessionSpectrogram
from tokenizer.vqgan.model import VQGAN
from tokenizer.windows import WindowSpec, iter_windows

BANDS: dict[str, tuple[float, float]] = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}


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
    err_sum = {b: 0.0 for b in BANDS}
    err_n = {b: 0 for b in BANDS}
    recons, n_windows = [], 0
    for spec in spectrograms:
        recon, codes, tmask = reconstruct_session(model, spec)
        recons.append(recon)
        n_windows += codes.shape[0]
        counts += np.bincount(codes[tmask].ravel(), minlength=n_codes)
        valid = spec.channel_mask[:, None, None] & spec.frame_mask[None, None, :]
        diff = np.abs(recon - spec.values.astype(np.float32))
        for b, (lo, hi) in BANDS.items():
            sel = (freqs >= lo) & (freqs < hi)
            v = np.broadcast_to(valid, diff.shape)[:, sel]
            err_sum[b] += float(diff[:, sel][v].sum())
            err_n[b] += int(v.sum())
    p = counts / max(1, counts.sum())
    nz = p[p > 0]
    report = ReconstructionReport(
        band_error_db={b: err_sum[b] / max(1, err_n[b]) for b in BANDS},
        codebook_usage=float((counts > 0).mean()),
        perplexity=float(np.exp(-(nz * np.log(nz)).sum())),
        n_windows=n_windows,
        n_tokens=int(counts.sum()),
        code_counts=counts,
    )
    return report, recons


def relative_band_power(spec_db: np.ndarray, freqs: np.ndarray, channel_mask: np.ndarray, frame_mask: np.ndarray,
                        band: tuple[float, float], total: tuple[float, float] = (1.0, 30.0)) -> float:
    """Power in ``band`` over power in ``total`` (linear units, valid channels and frames)."""
    p = 10 ** (spec_db[channel_mask][:, :, frame_mask].astype(np.float64) / 10)
    sel = (freqs >= band[0]) & (freqs < band[1])
    tot = (freqs >= total[0]) & (freqs < total[1])
    return float(p[:, sel].sum() / p[:, tot].sum())


def peak_frequency(spec_db: np.ndarray, freqs: np.ndarray, channels: list[int], frame_mask: np.ndarray,
                   band: tuple[float, float] = (4.0, 13.0)) -> float:
    """Frequency of the largest mean power in ``band`` over ``channels`` (e.g. O1/O2 for the PDR)."""
    p = 10 ** (spec_db[channels][:, :, frame_mask].astype(np.float64) / 10)
    sel = (freqs >= band[0]) & (freqs <= band[1])
    return float(freqs[sel][np.argmax(p[:, sel].mean(axis=(0, 2)))])

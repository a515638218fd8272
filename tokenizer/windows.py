"""Session windows: a recording's spectrogram cut into fixed windows of model input.

A spectrogram ``(channels, bins, T)`` (one frame per second) is split into
``ceil(T / window_frames)`` windows of ``window_frames`` frames (1280 in base; at least
one window). The last (or only) window is zero-padded and its padded frames are False in
``frame_mask``.

Model input of a window (documented once, used everywhere)::

    x = clip(dB, clip_db[0], clip_db[1]) / scale_db      # base: [-40, 40] dB / 40 → [-1, 1]
    x[absent channels] = 0;  x[:, :, invalid frames] = 0

Losses weigh position ``(c, f, t)`` by ``channel_mask[c] * frame_mask[t]``; a token is
valid when its time span holds any valid frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from tokenizer.contract import SignalContract


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut and scaled.

    Attributes
    ----------
    window_frames : int
        Frames per window (``contract.window_s / spectrogram.step_s``).
    clip_db : (float, float)
        dB clip range.
    scale_db : float
        Divisor applied after clipping.
    """

    window_frames: int
    clip_db: tuple[float, float]
    scale_db: float

    @classmethod
    def from_contract(cls, contract: SignalContract, scale_db: float = 40.0) -> "WindowSpec":
        """Spec of ``contract`` (window and clip) with the model's ``scale_db``."""
        ratio = contract.window_s / contract.spectrogram.step_s
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"window_s / spectrogram.step_s must be whole, found {ratio}")
        return cls(int(round(ratio)), tuple(contract.spectrogram.clip_db), float(scale_db))


def n_windows(n_frames: int, window_frames: int) -> int:
    """Windows for a session of ``n_frames`` frames (at least one)."""
    if window_frames < 1:
        raise ValueError(f"window_frames must be >= 1, found {window_frames}")
    return max(1, math.ceil(n_frames / window_frames))


def window_input(
    values: np.ndarray, frame_mask: np.ndarray, channel_mask: np.ndarray, index: int, spec: WindowSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """Model input and frame mask of window ``index``.

    Parameters
    ----------
    values : ndarray, (channels, bins, T)
        Spectrogram in dB (float16 or float32, clipped or not).
    frame_mask : ndarray, (T,), bool
    channel_mask : ndarray, (channels,), bool
    index : int
        Window number, ``0 <= index < n_windows(T, spec.window_frames)``.
    spec : WindowSpec

    Returns
    -------
    x : ndarray, (channels, bins, window_frames), float32
        Clipped and scaled input, zero where masked.
    mask : ndarray, (window_frames,), bool
        Valid frames (False in padding).
    """
    if values.ndim != 3 or values.shape[2] != frame_mask.shape[0] or values.shape[0] != channel_mask.shape[0]:
        raise ValueError(f"values (channels, bins, T) with frame_mask (T,) and channel_mask (channels,) expected, "
                         f"found {values.shape}, {frame_mask.shape}, {channel_mask.shape}")
    w = spec.window_frames
    total = n_windows(values.shape[2], w)
    if not 0 <= index < total:
        raise IndexError(f"window {index} out of range for {total} window(s)")
    lo, hi = index * w, min((index + 1) * w, values.shape[2])
    x = np.zeros((values.shape[0], values.shape[1], w), dtype=np.float32)
    mask = np.zeros(w, dtype=bool)
    mask[: hi - lo] = frame_mask[lo:hi]
    np.clip(values[:, :, lo:hi], spec.clip_db[0], spec.clip_db[1], out=x[:, :, : hi - lo], casting="unsafe")
    x /= np.float32(spec.scale_db)
    x[~channel_mask.astype(bool)] = 0.0
    x[:, :, ~mask] = 0.0
    return x, mask


def iter_windows(
    values: np.ndarray, frame_mask: np.ndarray, channel_mask: np.ndarray, spec: WindowSpec,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(index, x, mask)`` for every window (one window in memory at a time)."""
    for i in range(n_windows(values.shape[2], spec.window_frames)):
        x, m = window_input(values, frame_mask, channel_mask, i, spec)
        yield i, x, m


def split_windows(
    values: np.ndarray, frame_mask: np.ndarray, channel_mask: np.ndarray, spec: WindowSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """All windows at once: ``x`` ``(W, channels, bins, window_frames)`` and masks ``(W, window_frames)``."""
    xs, ms = zip(*((x, m) for _, x, m in iter_windows(values, frame_mask, channel_mask, spec)))
    return np.stack(xs), np.stack(ms)


def token_mask_np(frame_mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Valid tokens ``(..., grid_f, grid_t)`` from valid frames ``(..., frames)`` (any valid frame in the column)."""
    t = frame_mask.shape[-1]
    if t % grid[1]:
        raise ValueError(f"frames ({t}) must be divisible by the token columns ({grid[1]})")
    cols = frame_mask.reshape(*frame_mask.shape[:-1], grid[1], t // grid[1]).any(-1)
    return np.broadcast_to(cols[..., None, :], (*cols.shape[:-1], grid[0], grid[1])).copy()

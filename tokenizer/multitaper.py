"""Multitaper spectrogram of a recording: ``(channels, 128, frames)`` dB, one frame per step.

The estimate of each frame is the one MNE-Python computes with
``psd_array_multitaper(frame, sfreq, bandwidth=1.0, adaptive=False, low_bias=True,
normalization="full")`` (remove_dc on): the frame is demeaned, multiplied by the
low-bias DPSS tapers (eigenvalue > 0.9; three for NW = 2), Fourier-transformed, and the
eigenvalue-weighted mean of the taper powers is doubled for the one-sided spectrum (DC
and Nyquist not doubled) and divided by ``sfreq``, giving µV²/Hz for data in µV. It is
computed here in float32, batched over channels and frames in bounded chunks, with
numpy and a CPU FFT (torch's MKL FFT, or scipy's) for arrays (see :func:`_run_numpy`
for how the demeaning stays cheap and exact, DC offsets included) and torch (on the
tensor's device) for tensors.

Frequencies kept are ``fmin <= f < fmax`` (half-open, unlike MNE's closed interval), so
0–32 Hz at 0.25 Hz resolution gives exactly 128 bins (0, 0.25, …, 31.75 Hz).

Frame ``k`` is centred at ``times[k] = (k + 0.5) * step_s`` and covers the
``window_s * sfreq`` samples starting at ``round((times[k] - window_s / 2) * sfreq)``
(round half up); samples outside the signal are zeros, and such frames, or frames that
touch a sample marked invalid, have ``frame_mask`` False.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.fft
from scipy.signal.windows import dpss

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Floor applied to the PSD (µV²/Hz) before the log, so empty frames give -200 dB, not -inf.
POWER_FLOOR: float = 1e-20

#: Canonical EEG bands in Hz, half-open ``[low, high)``.
CANONICAL_BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
}

#: Frame means farther than this many noise standard deviations from zero (or from their
#: chunk's level) are removed in two passes instead of one (see :func:`_run_numpy`).
_REFINE_ABOVE = 1.0
_GPU_CHUNK_BYTES = 64 * 2**20  # default size of one chunk's complex FFT output on a GPU
_CPU_CHUNK_BYTES = 3 * 2**19  # on a CPU: small, so the working set stays in the caches
_NOT_FINITE = "data must be finite at valid samples (mark gaps in sample_mask), found NaN or inf"


@dataclass(frozen=True)
class Spectrogram:
    """Multitaper spectrogram of one recording.

    Parameters
    ----------
    values : np.ndarray
        float32, shape ``(channels, freqs, frames)``, power in dB of µV²/Hz
        (``10 * log10(psd)``), not clipped.
    freqs : np.ndarray
        float64, shape ``(freqs,)``, bin frequencies in Hz.
    times : np.ndarray
        float64, shape ``(frames,)``, centre of each frame in seconds.
    frame_mask : np.ndarray
        bool, shape ``(frames,)``, True where the frame lies wholly inside valid signal.
    """

    values: np.ndarray
    freqs: np.ndarray
    times: np.ndarray
    frame_mask: np.ndarray

    def __post_init__(self) -> None:
        if self.values.ndim != 3:
            raise ValueError(f"values must be (channels, freqs, frames), found shape {self.values.shape}")
        expected = (self.values.shape[1], self.values.shape[2], self.values.shape[2])
        found = (self.freqs.shape[0], self.times.shape[0], self.frame_mask.shape[0])
        if found != expected:
            raise ValueError(f"freqs/times/frame_mask lengths must be {expected} to match values "
                             f"{self.values.shape}, found {found}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(channels, freqs, frames)``."""
        return tuple(self.values.shape)  # type: ignore[return-value]

    def clipped(self, low: float = -40.0, high: float = 40.0) -> np.ndarray:
        """Values clipped to ``[low, high]`` dB (the model input), as a new float32 array."""
        if low >= high:
            raise ValueError(f"clip range must have low < high, found low={low} high={high}")
        return np.clip(self.values, low, high).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def dpss_tapers(n_win: int, half_nbw: float) -> tuple[np.ndarray, np.ndarray]:
    """Low-bias DPSS tapers, as MNE builds them (read-only, cached).

    Parameters
    ----------
    n_win : int
        Window length in samples.
    half_nbw : float
        Half the time-bandwidth product (``bandwidth * window_s / 2``).

    Returns
    -------
    tapers : ndarray, float64, shape (K, n_win)
        The tapers whose concentration ratio exceeds 0.9 (the most concentrated one when none does).
    ratios : ndarray, float64, shape (K,)
        Their concentration ratios (eigenvalues).
    """
    tapers, ratios = dpss(n_win, half_nbw, int(2 * half_nbw), sym=False, return_ratios=True)
    keep = ratios > 0.9
    if not keep.any():  # MNE's fallback: keep the lowest-bias taper
        keep = ratios == ratios.max()
    tapers, ratios = np.atleast_2d(tapers)[keep], np.atleast_1d(ratios)[keep]
    tapers.flags.writeable = False
    ratios.flags.writeable = False
    return tapers, ratios


def default_chunk_frames(n_channels: int, n_tapers: int, n_win: int, *, on_gpu: bool = False) -> int:
    """Frames per batch of :func:`multitaper_spectrogram` when ``chunk_frames`` is None.

    Small batches on a CPU keep the working set in its caches; a GPU wants big ones.

    Parameters
    ----------
    n_channels, n_tapers, n_win : int
        Channels, tapers and window length in samples.
    on_gpu : bool
        For a tensor on a GPU.

    Returns
    -------
    int
        At least 1.
    """
    per_frame = max(n_channels, 1) * n_tapers * (n_win // 2 + 1) * 8  # complex64 FFT output
    return max(1, (_GPU_CHUNK_BYTES if on_gpu else _CPU_CHUNK_BYTES) // per_frame)


def _validate(
    shape: tuple[int, ...], sfreq: float, window_s: float, step_s: float, bandwidth: float,
    fmin: float, fmax: float, n_frames: int | None, chunk_frames: int | None,
) -> tuple[int, int, int]:
    """Check the options; return ``(n_win, first_bin, stop_bin)``."""
    if len(shape) != 2:
        raise ValueError(f"data must be 2-D (channels, samples), found shape {tuple(shape)}")
    for name, value in (("sfreq", sfreq), ("window_s", window_s), ("step_s", step_s),
                        ("bandwidth", bandwidth)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, found {value!r}")
    if not (math.isfinite(fmin) and fmin >= 0):
        raise ValueError(f"fmin must be >= 0 Hz, found {fmin!r}")
    if not fmax > fmin:
        raise ValueError(f"fmax must exceed fmin, found fmin={fmin} fmax={fmax}")
    if fmax > sfreq / 2:
        raise ValueError(f"fmax must be <= Nyquist ({sfreq / 2} Hz), found {fmax} Hz")
    n_win_f = window_s * sfreq
    n_win = int(round(n_win_f))
    if abs(n_win_f - n_win) > 1e-6 or n_win < 2:
        raise ValueError(f"window_s * sfreq must be a whole number of samples >= 2, found {n_win_f}")
    if shape[1] < n_win:
        raise ValueError(f"signal must hold at least one window ({n_win} samples = {window_s} s), "
                         f"found {shape[1]} samples")
    half_nbw = bandwidth * window_s / 2
    if half_nbw < 0.5:
        raise ValueError(f"bandwidth * window_s / 2 (NW) must be >= 0.5, found {half_nbw} "
                         f"(bandwidth {bandwidth} Hz, window {window_s} s)")
    for name, value in (("n_frames", n_frames), ("chunk_frames", chunk_frames)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, found {value!r}")
    first = math.ceil(fmin * n_win / sfreq - 1e-9)
    stop = min(math.ceil(fmax * n_win / sfreq - 1e-9), n_win // 2 + 1)
    if stop <= first:
        raise ValueError(f"no frequency bin in [{fmin}, {fmax}) Hz at {sfreq / n_win} Hz spacing")
    return n_win, first, stop


def _frame_layout(
    n_samples: int, sfreq: float, window_s: float, step_s: float, n_win: int,
    n_frames: int | None, sample_mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame centres (s), start samples and the frame mask (see the module docstring)."""
    if n_frames is None:
        n_frames = max(math.ceil(n_samples / (step_s * sfreq) - 1e-9), 1)
    times = (np.arange(n_frames) + 0.5) * step_s
    starts = np.floor((times - window_s / 2) * sfreq + 0.5 + 1e-9).astype(np.int64)
    mask = (starts >= 0) & (starts + n_win <= n_samples)
    if sample_mask is not None:
        bad = np.concatenate(([0], np.cumsum(~sample_mask, dtype=np.int64)))
        lo = np.clip(starts, 0, n_samples)
        hi = np.clip(starts + n_win, 0, n_samples)
        mask &= bad[hi] == bad[lo]
    return times, starts, mask


def _scale(
    eigvals: np.ndarray, sfreq: float, first: int, stop: int, n_win: int
) -> tuple[np.ndarray, np.ndarray]:
    """Factors turning ``|X_k(f)|²`` into µV²/Hz: per taper ``(K,)`` and per bin ``(bins,)``.

    ``psd(f) = bin(f) * sum_k taper_k * |X_k(f)|²`` with ``taper_k = 2 λ_k / (sfreq Σλ)``
    and ``bin(f) = 1/2`` at DC and Nyquist (not doubled in the one-sided spectrum), else 1.
    """
    per_taper = 2.0 / (sfreq * eigvals.sum()) * eigvals
    bins = np.arange(first, stop)
    per_bin = np.where((bins == 0) | ((n_win % 2 == 0) & (bins == n_win // 2)), 0.5, 1.0)
    return per_taper, per_bin


def multitaper_spectrogram(
    data: np.ndarray | torch.Tensor,
    sfreq: float,
    *,
    window_s: float = 4.0,
    step_s: float = 1.0,
    bandwidth: float = 1.0,
    fmin: float = 0.0,
    fmax: float = 32.0,
    n_frames: int | None = None,
    sample_mask: np.ndarray | torch.Tensor | None = None,
    chunk_frames: int | None = None,
    threads: int | None = None,
) -> Spectrogram:
    """Multitaper spectrogram in dB of µV²/Hz, one frame per step.

    Parameters
    ----------
    data : np.ndarray or torch.Tensor
        Signal, shape ``(channels, n_samples)``, in µV. A tensor is processed with torch
        on its own device (CPU or CUDA); an array with numpy around a CPU FFT (``threads``).
    sfreq : float
        Sampling rate in Hz.
    window_s, step_s : float
        Taper window and hop in seconds (4 s, 1 s). ``window_s * sfreq`` must be whole.
    bandwidth : float
        Full multitaper bandwidth in Hz; NW = ``bandwidth * window_s / 2`` (2 by default,
        three low-bias tapers).
    fmin, fmax : float
        Bins with ``fmin <= f < fmax`` are kept (0–32 Hz: 128 bins at 0.25 Hz).
    n_frames : int or None
        Number of frames; default ``ceil(n_samples / (step_s * sfreq))``. More frames
        than that pad the session (those frames are zeros and masked).
    sample_mask : array of bool or None
        Shape ``(n_samples,)``, False in gaps. Invalid samples are zeroed (they may hold
        NaN) and frames touching them are masked.
    chunk_frames : int or None
        Frames per batch; by default each batch's complex FFT output is kept near 1.5 MB
        (to stay in CPU caches), or 64 MB for a tensor on a GPU.
    threads : int or None
        Threads for the FFT (array input; a tensor uses torch's own settings). None, or
        torch's intra-op thread count (``torch.get_num_threads()``), runs torch's CPU FFT
        (MKL), the fastest here; another number runs ``scipy.fft`` on that many threads.

    Returns
    -------
    Spectrogram
        ``values`` float32 ``(channels, bins, frames)`` dB (floored at
        ``10 * log10(POWER_FLOOR)``), ``freqs``, ``times`` and ``frame_mask``.

    Raises
    ------
    ValueError
        For a non-2-D input, non-positive rates, ``fmax`` above Nyquist, a window that is
        not a whole number of samples or longer than the signal, a bad mask, or
        non-finite values at valid samples.
    """
    is_torch = type(data).__module__.startswith("torch")
    if not is_torch:
        data = np.asarray(data)
    if data.is_complex() if is_torch else data.dtype.kind not in "biuf":
        raise ValueError(f"data must be real numbers (µV), found dtype {data.dtype}")
    n_win, first, stop = _validate(tuple(data.shape), sfreq, window_s, step_s, bandwidth, fmin, fmax, n_frames,
                                   chunk_frames)
    n_ch, n_samples = data.shape
    if sample_mask is not None:
        if type(sample_mask).__module__.startswith("torch"):
            sample_mask = sample_mask.detach().cpu().numpy()
        sample_mask = np.asarray(sample_mask)
        if sample_mask.shape != (n_samples,) or sample_mask.dtype != np.bool_:
            raise ValueError(f"sample_mask must be bool of shape ({n_samples},), found "
                             f"{sample_mask.dtype} {sample_mask.shape}")
    times, starts, frame_mask = _frame_layout(n_samples, sfreq, window_s, step_s, n_win, n_frames, sample_mask)
    tapers, eigvals = dpss_tapers(n_win, bandwidth * window_s / 2)
    scale = _scale(eigvals, sfreq, first, stop, n_win)
    if chunk_frames is None:
        chunk_frames = default_chunk_frames(n_ch, len(tapers), n_win,
                                            on_gpu=is_torch and data.device.type != "cpu")
    logger.debug("multitaper: %d ch x %d frames, %d tapers, window %d samples, bins %d:%d, chunks of %d frames",
                 n_ch, len(times), len(tapers), n_win, first, stop, chunk_frames)
    run = _run_torch if is_torch else _run_numpy
    values = run(data, sample_mask, starts, n_win, tapers, scale, first, stop, chunk_frames, threads)
    freqs = np.arange(first, stop) * (sfreq / n_win)
    return Spectrogram(values=values, freqs=freqs, times=times, frame_mask=frame_mask)


def _signal32(data: np.ndarray, sample_mask: np.ndarray | None) -> np.ndarray:
    """The signal as C-contiguous float32 with gaps zeroed (copied only when needed).

    Finiteness is checked later, by :func:`_check_finite`, from the frame means.
    """
    gaps = sample_mask is not None and not sample_mask.all()
    x = np.array(data, dtype=np.float32, order="C", copy=None if not gaps else True)
    if gaps:
        x[:, ~sample_mask] = 0.0
    return x


def _check_finite(x: np.ndarray, means: np.ndarray, covered: tuple[int, int]) -> None:
    """Raise unless ``x`` is finite, given the frame means of the samples ``covered``.

    A NaN or inf sample makes the mean of every frame that holds it non-finite, so finite
    means clear the covered samples at no cost; only the samples outside any frame, or a
    sum that overflowed, are checked directly.
    """
    lo, hi = covered
    ok = bool(np.isfinite(means).all()) if hi > lo else True
    ok = ok and all(np.isfinite(x[:, a:b].sum()) for a, b in ((0, lo), (hi, x.shape[1]))
                    if b > a)
    if not (ok or np.isfinite(x).all()):
        raise ValueError(_NOT_FINITE)


def _spread(x: np.ndarray, sample_mask: np.ndarray | None, lag: int, n_pairs: int = 1024
            ) -> np.ndarray:
    """Robust per-channel scale (µV) of the signal's changes over ``lag`` samples: the
    median absolute difference of up to ``n_pairs`` pairs of valid samples ``lag`` apart,
    scaled to a standard deviation (white noise of std σ gives σ). A DC offset does not
    show, nor do occasional steps or gaps."""
    n = x.shape[1]
    lag = min(lag, n - 1)
    idx = np.arange(0, n - lag, max(1, (n - lag) // n_pairs))
    if sample_mask is not None:
        idx = idx[sample_mask[idx] & sample_mask[idx + lag]]
    if not len(idx):
        return np.zeros(x.shape[0])
    diff = np.abs(x[:, idx + lag].astype(np.float64) - x[:, idx])
    scale = np.median(diff, axis=1) / (0.6745 * math.sqrt(2))
    mostly_flat = scale == 0  # the mean then, and +inf for a constant channel
    scale[mostly_flat] = diff[mostly_flat].mean(axis=1) / (2 / math.sqrt(math.pi))
    return np.where(scale > 0, scale, np.inf)


def _live_range(starts: np.ndarray, n_win: int, n_samples: int) -> tuple[int, int]:
    """First and stop index of the frames that overlap the signal (a contiguous run)."""
    live = np.flatnonzero((starts < n_samples) & (starts + n_win > 0))
    return (int(live[0]), int(live[-1]) + 1) if len(live) else (0, 0)


def _run_numpy(
    data: np.ndarray, sample_mask: np.ndarray | None, starts: np.ndarray, n_win: int,
    tapers: np.ndarray, scale: tuple[np.ndarray, np.ndarray], first: int, stop: int,
    chunk: int, threads: int | None,
) -> np.ndarray:
    """The dB spectrogram ``(channels, bins, frames)`` with numpy around a CPU real FFT
    (:func:`_cpu_rfft`: torch's, or ``scipy.fft``).

    Frames go in chunks through float32 buffers allocated once (only the FFT output is
    allocated per chunk). Time goes mostly to the FFT; around it, every step is one pass:

    1. Frame means without reading every frame. With a uniform hop that divides the
       window, a frame is ``n_win / hop`` consecutive blocks of ``hop`` samples, so the
       frame sums are the block sums (one pass over a quarter of the frames' samples at
       4 s / 1 s) times a banded 0/1 matrix (one small matmul).
    2. Demeaning, in one pass from the frames (strided views) into a contiguous buffer.
       Subtracting a float32 mean leaves its rounding as a constant, which shows in the
       weakest (near-DC) bins when the mean is large compared with the signal. So frames
       are read straight from the signal only while their means stay within
       ``_REFINE_ABOVE`` times a robust noise scale (:func:`_spread`) of zero. Otherwise
       (DC offset, drift, padding at the edges) the chunk's stretch of signal is first
       copied minus a level ``c`` per channel, the mean of a subsample rounded to
       ``24 - ceil(log2(n_win))`` significant bits: a constant does not change a
       demeaned frame, ``x - c`` is exact where ``x`` is close to ``c``, the frame means
       left are small, and float32 sums of up to ``n_win`` copies of ``c`` are exact, so
       a frame of zeros (padding, gap) still demeans to exactly zero and gets the floor.
       Chunks with a frame mean still far from its level (a DC step, the edge of a gap)
       are recomputed at the end from the raw frames, demeaned in two passes.
    3. Tapering in one multiply into a ``(tapers, channels, frames, n_win)`` buffer, the
       tapers tiled over the chunk's frames so that numpy runs long contiguous loops, and
       scaled by ``sqrt(2 λ_k / (sfreq Σλ))`` so that the PSD is the plain sum over tapers
       of the squared magnitudes.
    4. ``rfft``; the kept bins are copied out contiguously as float32 (re, im) pairs,
       squared in place, summed over tapers (adds of contiguous blocks), then re + im,
       and written to the ``(channels, bins, frames)`` output.

    Against MNE (float64) this stays within a few 1e-4 dB (typically 1e-5 dB), as did
    the former version, which demeaned every frame in two passes.
    """
    x = _signal32(data, sample_mask)
    n_ch, n_samples = x.shape
    steps = np.diff(starts)
    hop = int(steps[0]) if len(steps) and (steps == steps[0]).all() and steps[0] > 0 else 0
    blocks = hop > 0 and n_win % hop == 0
    n_frames, n_tap, n_bins = len(starts), len(tapers), stop - first
    power = np.zeros((n_ch, n_bins, n_frames), dtype=np.float32)  # 0 where no signal
    means = np.zeros((n_ch, n_frames), dtype=np.float32)
    live0, live1 = _live_range(starts, n_win, n_samples)
    width = max(1, min(chunk, live1 - live0))
    span_max = max((int(starts[min(i + chunk, live1) - 1]) + n_win - int(starts[i])
                    for i in range(live0, live1, chunk)), default=n_win)
    sizes = {"centred": n_ch * n_win, "tapered": n_tap * n_ch * n_win,
             "kept": n_tap * n_ch * 2 * n_bins, "total": n_ch * 2 * n_bins, "psd": n_ch * n_bins}
    seg_buf = np.empty(n_ch * span_max, dtype=np.float32)
    flat = {name: np.empty(size * width, dtype=np.float32) for name, size in sizes.items()}
    views: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def buffers(n_f: int, span: int) -> dict[str, np.ndarray]:
        """Views for a chunk of ``n_f`` frames spanning ``span`` samples (cached)."""
        if (n_f, span) not in views:
            v = {name: flat[name][:sizes[name] * n_f] for name in sizes}
            v["centred"] = v["centred"].reshape(n_ch, n_f, n_win)
            v["tapered"] = v["tapered"].reshape(n_tap, n_ch, n_f, n_win)
            v["kept"] = v["kept"].reshape(n_tap, n_ch, n_f, 2 * n_bins)
            v["total"] = v["total"].reshape(n_ch, n_f, 2 * n_bins)
            v["psd"] = v["psd"].reshape(n_ch, n_f, n_bins)
            v["far"] = np.empty((n_ch, n_f), dtype=np.float32)
            v["seg"] = seg = seg_buf[:n_ch * span].reshape(n_ch, span)
            if hop:  # the frames: a strided view of seg
                v["frames"] = np.lib.stride_tricks.as_strided(
                    seg, (n_ch, n_f, n_win), (seg.strides[0], hop * seg.itemsize, seg.itemsize),
                    writeable=False)
                if blocks:
                    v["blocks"] = seg.reshape(n_ch, span // hop, hop)
                    v["band"] = band[:span // hop, :n_f]
            views[n_f, span] = v
        return views[n_f, span]

    weights, per_bin = scale
    tap = (tapers * np.sqrt(weights)[:, None]).astype(np.float32)
    tap = np.ascontiguousarray(np.broadcast_to(tap[:, None, :], (n_tap, width, n_win)))
    if blocks:  # band[b, f] = 1 where block b lies in frame f
        per = n_win // hop
        band = np.zeros((width - 1 + per, width), dtype=np.float32)
        for f in range(width):
            band[f:f + per, f] = 1.0
    inv_n = np.float32(1.0 / n_win)
    level_step = max(1, hop // 50) if hop else 4  # samples averaged for the level c
    level_mask = np.int32(-1 << min(23, math.ceil(math.log2(n_win))))  # see step 1

    def chunk_power(i: int, j: int, exact: bool, direct: bool) -> bool:
        """Fill ``power[:, :, i:j]`` (and, unless ``exact``, ``means[:, i:j]``); return
        False if ``direct`` met a frame mean far from zero (and fell back on a level)."""
        n_f, a = j - i, int(starts[i])
        span = int(starts[j - 1]) + n_win - a
        lo, hi = max(a, 0), min(a + span, n_samples)
        v = buffers(n_f, span)
        seg, centred = v["seg"], v["centred"]
        if exact:  # the raw frames (zero-padded), demeaned in two passes
            seg[:, :lo - a] = 0.0
            seg[:, hi - a:] = 0.0
            seg[:, lo - a:hi - a] = x[:, lo:hi]
            frames = v["frames"] if hop else _gather(seg, starts[i:j] - a, n_win)
            np.subtract(frames, np.einsum("cfn->cf", frames)[:, :, None] * inv_n, out=centred)
            centred -= np.einsum("cfn->cf", centred)[:, :, None] * inv_n
        elif direct and lo == a and hi == a + span:  # the signal's own frames and blocks
            frames = frames_x[:, i - inner0:j - inner0]
            m = means[:, i:j]
            np.matmul(np.einsum("cbn->cb", blocks_x[:, i - inner0:i - inner0 + span // hop]),
                      band[:span // hop, :n_f], out=m)
            m /= n_win
            if (np.abs(m, out=v["far"]) > limit).any():  # from now on, remove levels
                chunk_power(i, j, exact=False, direct=False)
                return False
            np.subtract(frames, m[:, :, None], out=centred)
        else:  # 1. the chunk's stretch of signal minus its level, 2. frame means
            level = np.add.reduce(x[:, lo:hi:level_step], axis=1, keepdims=True)
            level *= np.float32(1.0 / len(range(lo, hi, level_step)))
            level.view(np.int32)[:] &= level_mask
            if lo > a or hi < a + span:  # padding
                seg[:, :lo - a] = -level
                seg[:, hi - a:] = -level
            np.subtract(x[:, lo:hi], level, out=seg[:, lo - a:hi - a])
            frames = v["frames"] if hop else _gather(seg, starts[i:j] - a, n_win)
            m = means[:, i:j]
            if blocks:
                np.matmul(np.einsum("cbn->cb", v["blocks"]), v["band"], out=m)
            else:
                np.einsum("cfn->cf", frames, out=m)
            m /= n_win
            np.subtract(frames, m[:, :, None], out=centred)
        # 3. taper, 4. FFT and power
        tapered, kept, total, psd = v["tapered"], v["kept"], v["total"], v["psd"]
        np.multiply(centred, tap[:, None, :n_f], out=tapered)
        spec = rfft(tapered)
        np.copyto(kept, spec[..., first:stop].view(np.float32))
        np.multiply(kept, kept, out=kept)
        if n_tap > 1:
            np.add(kept[0], kept[1], out=total)
            for k in range(2, n_tap):
                total += kept[k]
        else:
            np.copyto(total, kept[0])
        pairs = total.view(np.complex64)  # (re², im²) summed over tapers
        np.add(pairs.real, pairs.imag, out=psd)
        power[:, :, i:j] = psd.transpose(0, 2, 1)  # (a ufunc writing there is much slower)
        return True

    rfft = _cpu_rfft(threads)
    limit = (_REFINE_ABOVE * _spread(x, sample_mask, n_win)).astype(np.float32)[:, None]
    inside = np.flatnonzero((starts >= 0) & (starts + n_win <= n_samples))
    direct = blocks and len(inside) > 0
    if direct:  # frames and blocks of hop samples, as views of the signal
        inner0, s0 = int(inside[0]), int(starts[inside[0]])
        frames_x = np.lib.stride_tricks.as_strided(
            x[:, s0:], (n_ch, len(inside), n_win), (x.strides[0], hop * x.itemsize, x.itemsize),
            writeable=False)
        blocks_x = x[:, s0:s0 + (n_samples - s0) // hop * hop].reshape(n_ch, -1, hop)
    bounds = [(i, min(i + chunk, live1)) for i in range(live0, live1, chunk)]
    with np.errstate(invalid="ignore"):  # NaN or inf in the data: raised below
        for i, j in bounds:
            direct = chunk_power(i, j, exact=False, direct=direct) and direct
        # frames whose mean lay far from their chunk's level: redo those chunks exactly
        far = (np.abs(means[:, live0:live1]) > limit).any(axis=0)
        for q in np.unique(np.flatnonzero(far) // chunk):
            chunk_power(*bounds[q], exact=True, direct=False)
    _check_finite(x, means[:, live0:live1],
                  (max(int(starts[live0]), 0), min(int(starts[live1 - 1]) + n_win, n_samples))
                  if live1 > live0 else (0, 0))
    for b in np.flatnonzero(per_bin != 1.0):  # DC and Nyquist are not doubled
        power[:, b] *= per_bin[b]
    np.maximum(power, np.float32(POWER_FLOOR), out=power)
    np.log10(power, out=power)
    power *= 10.0
    return power


def _cpu_rfft(threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """The real FFT over the last axis of a C-contiguous float32 array, on ``threads`` threads.

    With ``threads`` None or equal to torch's intra-op thread count, torch's CPU FFT
    (Intel MKL in the x86 wheels; faster than scipy's pocketfft on 800-sample float32
    frames at one thread, measured in bench/RESULTS.md) on a zero-copy tensor of the
    array; otherwise ``scipy.fft`` with that many threads (torch's thread count is
    process-wide, so it is not changed here).
    """
    import torch

    if threads is None or threads == torch.get_num_threads():
        def rfft(a: np.ndarray) -> np.ndarray:
            return torch.fft.rfft(torch.from_numpy(a), dim=-1).numpy()
        return rfft
    return functools.partial(scipy.fft.rfft, axis=-1, workers=threads, overwrite_x=True)


def _gather(seg: np.ndarray, offsets: np.ndarray, n_win: int) -> np.ndarray:
    """Frames of ``n_win`` samples of ``seg`` starting at ``offsets`` (a copy)."""
    return np.lib.stride_tricks.sliding_window_view(seg, n_win, axis=-1)[:, offsets]


def _run_torch(
    data: torch.Tensor, sample_mask: np.ndarray | None, starts: np.ndarray, n_win: int,
    tapers: np.ndarray, scale: tuple[np.ndarray, np.ndarray], first: int, stop: int,
    chunk: int, threads: int | None,
) -> np.ndarray:
    import torch

    dev = data.device
    x = data.detach().to(dtype=torch.float32)
    if sample_mask is not None and not sample_mask.all():
        x = torch.where(torch.as_tensor(sample_mask, device=dev), x, 0.0)  # gaps may be NaN
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(_NOT_FINITE)
    left = max(0, -int(starts.min()))
    right = max(0, int(starts.max()) + n_win - x.shape[1])
    x = torch.nn.functional.pad(x, (left, right))
    steps = np.diff(starts)
    hop = int(steps[0]) if len(steps) and (steps == steps[0]).all() and steps[0] > 0 else 0
    if hop:  # uniform hop: a view
        frames_all = x[:, int(starts[0]) + left:].unfold(-1, n_win, hop)[:, :len(starts)]
    else:  # gathered chunk by chunk
        offsets = torch.arange(n_win, device=dev)
    weights, per_bin = scale
    tap = torch.from_numpy((tapers * np.sqrt(weights)[:, None]).astype(np.float32)).to(dev)
    power = torch.empty((x.shape[0], len(starts), stop - first), dtype=torch.float32, device=dev)
    with torch.no_grad():
        for i in range(0, len(starts), chunk):
            j = min(i + chunk, len(starts))
            if hop:
                src = frames_all[:, i:j]  # (C, F, N)
            else:
                src = x[:, torch.as_tensor(starts[i:j] + left, device=dev)[:, None] + offsets]
            frames = src - src.mean(dim=-1, keepdim=True)  # demean in two passes (the second
            frames -= frames.mean(dim=-1, keepdim=True)  # removes the first's rounding)
            # tapers pre-scaled as in _run_numpy: the PSD is a plain sum of squares
            spec = torch.fft.rfft(frames[:, :, None, :] * tap, dim=-1)[..., first:stop]
            parts = torch.view_as_real(spec).square_()  # (C, F, K, bins, re/im)
            torch.sum(parts[..., 0] + parts[..., 1], dim=2, out=power[:, i:j])
        for b in np.flatnonzero(per_bin != 1.0):  # DC and Nyquist are not doubled
            power[..., b] *= float(per_bin[b])
        out = 10.0 * torch.log10(power.clamp_min_(POWER_FLOOR)).transpose(1, 2)
    return out.contiguous().cpu().numpy()


def band_power_from_psd(
    psd: np.ndarray, freqs: np.ndarray, bands: dict[str, tuple[float, float]] | None = None, *,
    axis: int = -1, statistic: Literal["mean", "sum"] = "mean",
) -> dict[str, np.ndarray]:
    """Power per band of a linear power spectrum: the one band-power function.

    The other band-power functions (:func:`band_power` of a spectrogram, the VQGAN
    evaluation's per-epoch power, the band-power baseline's features) are thin wrappers
    around this one, so every band of the repository is cut the same way: the bins with
    ``low <= f < high``.

    Parameters
    ----------
    psd : np.ndarray
        Linear power (µV²/Hz); the frequency axis is ``axis``.
    freqs : np.ndarray
        Bin frequencies in Hz, ``(psd.shape[axis],)``.
    bands : dict or None
        ``{name: (low_hz, high_hz)}``, half-open; default :data:`CANONICAL_BANDS`.
    axis : int
        The frequency axis of ``psd``.
    statistic : {"mean", "sum"}
        Mean power over the band's bins (a PSD level) or their sum (the band's power up
        to the bin width; ratios of sums are relative powers).

    Returns
    -------
    dict of str to np.ndarray
        Per band, ``psd`` reduced over ``axis`` (its dtype kept), in the order of ``bands``.

    Raises
    ------
    ValueError
        A band that holds no bin.
    """
    bands = CANONICAL_BANDS if bands is None else bands
    freqs = np.asarray(freqs)
    axis = axis % np.ndim(psd)
    result: dict[str, np.ndarray] = {}
    for name, (low, high) in bands.items():
        sel = (freqs >= low) & (freqs < high)
        if not sel.any():
            raise ValueError(f"band {name!r} ({low}-{high} Hz) holds no bin of the spectrum, whose "
                             f"bins span {freqs[0]}-{freqs[-1]} Hz")
        inside = psd[(slice(None),) * axis + (sel,)]
        result[name] = inside.mean(axis=axis) if statistic == "mean" else inside.sum(axis=axis)
    return result


def band_power(
    spec: Spectrogram, bands: dict[str, tuple[float, float]] | None = None, *, db: bool = True
) -> dict[str, np.ndarray]:
    """Mean power per band, channel and frame of a spectrogram.

    The linear PSD (µV²/Hz) is averaged over the bins with ``low <= f < high``
    (:func:`band_power_from_psd`); with ``db`` the mean is returned in dB
    (``10 * log10``), i.e. the dB of the mean power, not the mean of the dB values.

    Parameters
    ----------
    spec : Spectrogram
        Output of :func:`multitaper_spectrogram` (unclipped dB values).
    bands : dict or None
        ``{name: (low_hz, high_hz)}``; default :data:`CANONICAL_BANDS` (delta 0.5–4,
        theta 4–8, alpha 8–13, beta 13–30 Hz).
    db : bool
        Return dB (default) or linear µV²/Hz.

    Returns
    -------
    dict of str to np.ndarray
        float32 arrays of shape ``(channels, frames)``, in the order of ``bands``.
    """
    linear = np.power(np.float32(10.0), spec.values / np.float32(10.0))
    power = band_power_from_psd(linear, spec.freqs, bands, axis=1)
    if not db:
        return {name: mean.astype(np.float32) for name, mean in power.items()}
    return {name: (10.0 * np.log10(np.maximum(mean, POWER_FLOOR))).astype(np.float32) for name, mean in power.items()}

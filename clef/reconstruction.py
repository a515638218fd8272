"""A session through the tokenizer and back: its input spectrogram, its tokens, its decoded spectrogram.

What the later stages need to measure what the tokenizer keeps (the information-loss
ladder of ``benchmark_tasks.baselines.tokenizer_rungs``): for one EDF/BDF file, the
spectrogram exactly as the VQGAN receives it (the contract's multitaper spectrogram,
clipped to ``clip_db``), the codes of every window, and the spectrogram decoded from those
codes (:func:`tokenizer.vqgan.evaluate.reconstruct_session`, the one encode-decode path),
on the same frames. It lives in ``clef`` because it opens a session-transformer checkpoint
and the tokenizer it holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clef.model import TOKENIZER_SUBDIR
from tokenizer import read_recording
from tokenizer.spectrogram_cache import SessionSpectrogram, SpectrogramCache, compute_spectrogram
from tokenizer.tokens import Tokenizer
from tokenizer.vqgan.evaluate import reconstruct_session

__all__ = ["Reconstructor", "SessionReconstruction", "tokenizer_dir"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionReconstruction:
    """One session as the tokenizer sees and returns it.

    Attributes
    ----------
    original : ndarray, (channels, bins, T) float32
        The tokenizer's input: multitaper spectrogram in dB, clipped to the contract's
        ``clip_db``.
    decoded : ndarray, (channels, bins, T) float32 or None
        Spectrogram decoded from the codes, in dB, same frames (None when not decoded).
    freqs : ndarray, (bins,)
    frame_mask : ndarray, (T,) bool
        Valid frames (both spectrograms are compared on these only).
    channel_mask : ndarray, (channels,) bool
        Present electrodes.
    channels : tuple of str
        Canonical channel names, in order.
    codes : ndarray, (windows, grid_f, grid_t) int
    token_mask : ndarray, same shape, bool
        Valid tokens.
    n_codes : int
        Codebook size.
    """

    original: np.ndarray
    decoded: np.ndarray | None
    freqs: np.ndarray
    frame_mask: np.ndarray
    channel_mask: np.ndarray
    channels: tuple[str, ...]
    codes: np.ndarray
    token_mask: np.ndarray
    n_codes: int


def tokenizer_dir(checkpoint: str | Path) -> Path:
    """The VQGAN checkpoint of ``checkpoint``: its ``tokenizer/`` (a session-transformer
    checkpoint) or itself (a tokenizer checkpoint).

    Raises
    ------
    FileNotFoundError
        Neither holds a ``meta.json``.
    """
    ck = Path(checkpoint)
    for d in (ck / TOKENIZER_SUBDIR, ck):
        if (d / "meta.json").is_file() and (d / "model.safetensors").is_file():
            return d
    raise FileNotFoundError(f"{ck}: expected a tokenizer checkpoint or a session-transformer checkpoint with "
                            f"'{TOKENIZER_SUBDIR}/' inside, found neither")


class Reconstructor:
    """A trained tokenizer that encodes and decodes sessions (CPU, eval mode).

    Parameters
    ----------
    checkpoint : path
        Tokenizer checkpoint, or a session-transformer checkpoint holding one.
    cache_dir : path, optional
        Spectrogram cache (shared with tokenization and embedding); without one, every
        spectrogram is computed from the file (nothing is written).
    batch_size : int
        Windows per encoder/decoder pass.
    """

    def __init__(self, checkpoint: str | Path, *, cache_dir: str | Path | None = None, batch_size: int = 4) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, found {batch_size}")
        self.path = tokenizer_dir(checkpoint)
        self.tokenizer = Tokenizer.from_checkpoint(self.path, batch_size=batch_size)
        self.batch_size = batch_size
        self._cache = SpectrogramCache(cache_dir, self.tokenizer.contract) if cache_dir else None

    @property
    def model_id(self) -> str:
        """First 16 hex digits of the tokenizer's weights SHA-256."""
        return self.tokenizer.tokenizer_id

    @property
    def n_codes(self) -> int:
        """Codebook size."""
        return int(self.tokenizer.model.config.quantizer.n_codes)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid ``(grid_f, grid_t)`` per window."""
        return self.tokenizer.grid

    def spectrogram(self, path: str | Path) -> SessionSpectrogram:
        """The tokenizer's input spectrogram of a file (from the cache when given)."""
        if self._cache is None:
            contract = self.tokenizer.contract
            return compute_spectrogram(read_recording(path, contract), contract)
        spec, _ = self._cache.load_or_compute(path)
        return spec

    def reconstruct(self, path: str | Path, *, decode: bool = True) -> SessionReconstruction:
        """Input spectrogram, codes and (with ``decode``) decoded spectrogram of one file.

        Raises
        ------
        tokenizer.IngestError
            Unreadable file, or one shorter than a taper window.
        """
        spec = self.spectrogram(path)
        model = self.tokenizer.model
        clip = self.tokenizer.contract.spectrogram.clip_db
        original = np.clip(spec.values.astype(np.float32), clip[0], clip[1])
        if decode:
            decoded, codes, tmask = reconstruct_session(model, spec, batch_size=self.batch_size)
        else:
            tokens = self.tokenizer.tokenize_spectrogram(spec)
            decoded, codes, tmask = None, tokens.codes, tokens.token_mask
        return SessionReconstruction(original=original, decoded=decoded, freqs=np.asarray(model.ctx.freqs),
                                     frame_mask=np.asarray(spec.frame_mask, bool),
                                     channel_mask=np.asarray(spec.channel_mask, bool),
                                     channels=tuple(self.tokenizer.contract.channels), codes=np.asarray(codes),
                                     token_mask=np.asarray(tmask, bool), n_codes=self.n_codes)

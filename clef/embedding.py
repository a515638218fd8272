"""The public embedding API: ``clef.embed(source, checkpoint) -> SessionEmbedding``.

``source`` may be an EDF/BDF path, a :class:`~tokenizer.Recording` or
:class:`~tokenizer.tokens.Tokens`; the pipeline is read → spectrogram → tokens →
encoder, in eval mode (deterministic), batched over windows, on CPU or GPU. A path is
streamed (read, preprocessed, transformed and tokenized block by block), so memory does
not grow with the recording's length. Every
window is encoded; the session embedding is the mean of the window embeddings weighted
by their valid tokens, and the per-window embeddings are kept (full nights and long-term
recordings are supported, which the paper leaves out). A short-context checkpoint
(``context_s``) encodes each window as consecutive crops of that many seconds, pooled
into the window's embedding like windows (:meth:`clef.model.SessionTransformer.embed_windows`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch

from clef.config import SessionConfig
from clef.factory import create_model
from clef.model import (
    CHECKPOINT_KIND,
    TOKENIZER_SUBDIR,
    aggregate_windows,
    context_columns,
)
from tokenizer import ChannelMap, ContractMismatchError, Recording
from tokenizer.checkpoint_io import CheckpointError, load_checkpoint
from tokenizer.recording import RecordingInfo
from tokenizer.spectrogram_cache import SpectrogramCache
from tokenizer.tokens import Tokenizer, Tokens

log = logging.getLogger(__name__)

Source = Union[str, Path, Recording, Tokens]


@dataclass(frozen=True)
class SessionEmbedding:
    """Embedding of one session.

    Attributes
    ----------
    vector : ndarray, (dim,) float32
        Session embedding.
    windows : ndarray, (n_windows, dim) float32
        Per-window embeddings (1280 s windows).
    window_tokens : ndarray, (n_windows,) int
        Valid tokens per window (the aggregation weights).
    source_sha256 : str
        SHA-256 of the source file ("" for tokens without one).
    source_path : str
    model_id : str
        First 16 hex digits of the checkpoint's weights SHA-256.
    """

    vector: np.ndarray
    windows: np.ndarray
    window_tokens: np.ndarray
    source_sha256: str
    source_path: str
    model_id: str

    @property
    def n_windows(self) -> int:
        """Number of windows."""
        return int(self.windows.shape[0])

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.vector.shape[0])


class Embedder:
    """A session-transformer checkpoint ready to embed (eval mode, EMA weights).

    Parameters
    ----------
    checkpoint : path
        ``session_transformer`` checkpoint directory; its ``tokenizer/``
        subfolder is needed only to embed EDF files or recordings.
    device : str
        Torch device (``cpu``, ``cuda``, ``cuda:1`` ...).
    batch_size : int
        Windows per forward pass.
    cache_dir : path, optional
        Spectrogram cache for EDF sources.
    channel_map : ChannelMap, optional
        A site's channel aliases EDF sources are read with (``clef embed --channel-map``).
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "cpu", batch_size: int = 8,
                 cache_dir: str | Path | None = None, channel_map: ChannelMap | None = None) -> None:
        ck = load_checkpoint(checkpoint, kind=CHECKPOINT_KIND, map_location="cpu")
        self.path = Path(checkpoint)
        self.cfg = SessionConfig.model_validate(ck.config)
        self.contract = ck.contract
        self.model_id = str(ck.meta["weights_sha256"])[:16]
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.encoder = create_model(self.cfg)
        self.encoder.load_state_dict(ck.state_dict)
        self.encoder.to(self.device).eval()
        #: token columns one forward pass sees (None: whole windows)
        self.context_columns = context_columns(self.cfg.model, self.contract.window_s)
        self._cache_dir = cache_dir
        self.channel_map = channel_map
        self._tokenizer: Tokenizer | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer shipped inside the checkpoint (loaded on first use)."""
        if self._tokenizer is None:
            d = self.path / TOKENIZER_SUBDIR
            if not d.is_dir():
                raise CheckpointError(self.path, f"no '{TOKENIZER_SUBDIR}/' inside: this checkpoint embeds tokens only")
            self._tokenizer = Tokenizer.from_checkpoint(d, device=str(self.device))
            if self._tokenizer.grid != tuple(self.cfg.model.grid or ()):
                raise CheckpointError(self.path, f"tokenizer grid {self._tokenizer.grid} differs from the "
                                                 f"model's {self.cfg.model.grid}")
        return self._tokenizer

    def read_tokens(self, path: str | Path, *, threads: int | None = None,
                    known: Callable[[str], bool] | None = None) -> tuple[RecordingInfo | None, Tokens | None]:
        """Read an EDF/BDF file once and tokenize it as it is read, in memory that does not
        grow with its length (:meth:`tokenizer.tokens.Tokenizer.tokenize_file`); with a
        cache, a file's spectrogram is taken from it when there (a recording of one block)
        or stored there.

        Parameters
        ----------
        path : path
        threads : int, optional
            Threads of the preprocessing.
        known : callable, optional
            Called with the file's SHA-256 once it is read; True stops the work there.

        Returns
        -------
        info : RecordingInfo or None
            Content hash (``source_sha256``), de-identified header facts (``facts``) and
            what the reader decided; None when ``known`` stopped the work.
        tokens : Tokens or None

        Raises
        ------
        tokenizer.IngestError
            The file cannot be read (a subclass naming the problem).
        """
        return self.tokenizer.tokenize_file(path, self._cache(), channel_map=self.channel_map, threads=threads,
                                            known=known)

    def tokens_of(self, source: Source) -> Tokens:
        """Tokens of any source (file, recording or tokens).

        A file is read once and streamed (:meth:`read_tokens`); a recording's spectrogram
        is taken from the cache by its content hash when present.
        """
        if isinstance(source, Tokens):
            return source
        if not isinstance(source, Recording):
            return self.read_tokens(source)[1]  # type: ignore[return-value]
        if source.contract_digest and source.contract_digest != self.contract.digest():
            raise ContractMismatchError(source.source_path, "recording read under another contract than the "
                                        f"checkpoint's ({self.contract.digest()}); differences: "
                                        "re-read it with the checkpoint's contract")
        return self.tokenizer.tokenize_recording(source, self._cache())

    def _cache(self) -> SpectrogramCache | None:
        return (SpectrogramCache(self._cache_dir, self.contract, channel_map=self.channel_map)
                if self._cache_dir else None)

    @torch.no_grad()
    def embed_tokens(self, tokens: Sequence[Tokens]) -> list[SessionEmbedding]:
        """Embed several sessions' tokens, batching windows across sessions."""
        grid = tuple(self.cfg.model.grid or ())
        codes, valid, owner = [], [], []
        for i, t in enumerate(tokens):
            if t.grid != grid:
                raise ValueError(f"tokens of grid {t.grid} given to a model of grid {grid}")
            codes.append(t.codes.reshape(t.n_windows, -1))
            valid.append(t.token_mask.reshape(t.n_windows, -1))
            owner += [i] * t.n_windows
        c = torch.from_numpy(np.concatenate(codes).astype(np.int64))
        v = torch.from_numpy(np.concatenate(valid))
        embs = []
        for a in range(0, c.shape[0], self.batch_size):
            out = self.encoder.embed_windows(c[a:a + self.batch_size].to(self.device),
                                             v[a:a + self.batch_size].to(self.device), self.context_columns)
            embs.append(out.float().cpu())
        w_emb = torch.cat(embs)
        n_tok = v.sum(1)
        owner_t = torch.tensor(owner)
        result = []
        for i, t in enumerate(tokens):
            sel = owner_t == i
            vec = aggregate_windows(w_emb[sel], n_tok[sel])
            result.append(SessionEmbedding(vec.numpy().astype(np.float32), w_emb[sel].numpy().astype(np.float32),
                                           n_tok[sel].numpy(), t.source_sha256, t.source_path, self.model_id))
        return result

    def embed(self, sources: Source | Sequence[Source]) -> SessionEmbedding | list[SessionEmbedding]:
        """Embed one source (returns one embedding) or a sequence (returns a list)."""
        single = isinstance(sources, (str, Path, Recording, Tokens))
        items = [sources] if single else list(sources)  # type: ignore[list-item]
        embs = self.embed_tokens([self.tokens_of(s) for s in items])
        return embs[0] if single else embs


@lru_cache(maxsize=4)
def _embedder(checkpoint: str, device: str) -> Embedder:
    return Embedder(checkpoint, device=device)


def embed(source: Source | Sequence[Source], checkpoint: str | Path, *, device: str = "cpu") -> SessionEmbedding | list[SessionEmbedding]:
    """Embed a session (EDF path, Recording or Tokens), or a list of them.

    Parameters
    ----------
    source : path, Recording, Tokens, or a sequence of them
    checkpoint : path
        Session-transformer checkpoint directory (loaded once and cached per process).
    device : str
        Torch device.

    Returns
    -------
    SessionEmbedding or list of SessionEmbedding

    Examples
    --------
    >>> emb = clef.embed("session.edf", "runs/pretrain")        # doctest: +SKIP
    >>> emb.vector.shape, emb.windows.shape                      # doctest: +SKIP
    """
    return _embedder(str(Path(checkpoint).resolve()), device).embed(source)

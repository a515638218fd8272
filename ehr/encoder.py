"""The EHR set encoder: a transformer over a patient's code tokens, without positions.

The input is a *set* (age bucket, sex, race, ICD-10 and ATC codes; :mod:`ehr.vocab`), so
there is no positional encoding and the output is invariant to the order of the tokens
and to extra padding. Architecture (CLEF's EHR encoder): token embedding
(``padding_idx = 0``) → pre-LN ``nn.TransformerEncoder`` (``depth`` layers, GELU,
feed-forward ``4 * dim``) → final LayerNorm → masked mean pool → ``(B, dim)``.

Training augmentation (:func:`augment_codes`): codes are shuffled within each row and
randomly dropped with probability ``drop_prob``. :class:`EHREncoder` applies it itself
in training mode (like ``nn.Dropout``) with ``config.drop_prob``; demographic tokens
(ids below ``first_code_id``) are never dropped, and at least one token is always kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from ehr.vocab import CodeVocab

__all__ = ["EHREncoder", "EHREncoderConfig", "augment_codes"]


class EHREncoderConfig(BaseModel):
    """Configuration of :class:`EHREncoder`.

    Attributes
    ----------
    dim : int
        Token and output width.
    depth : int
        Transformer layers.
    heads : int
        Attention heads (must divide ``dim``).
    dropout : float
        Dropout inside the transformer layers.
    drop_prob : float
        Probability of dropping each code token in training (:func:`augment_codes`).
    max_len : int
        Longest token row accepted (3 demographic + 30 ICD + 50 ATC tokens = 83).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(default=256, ge=8)
    depth: int = Field(default=4, ge=1)
    heads: int = Field(default=4, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    drop_prob: float = Field(default=0.1, ge=0.0, lt=1.0)
    max_len: int = Field(default=84, ge=1)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> EHREncoderConfig:
        if self.dim % self.heads:
            raise ValueError(f"heads must divide dim, found dim={self.dim}, heads={self.heads}")
        return self


def augment_codes(ids: torch.Tensor, mask: torch.Tensor, *, drop_prob: float,
                  generator: torch.Generator | None = None,
                  first_code_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle each row's tokens and randomly drop some (training augmentation).

    Parameters
    ----------
    ids : torch.LongTensor, shape (B, L)
    mask : torch.BoolTensor, shape (B, L)
        True at real tokens.
    drop_prob : float
        Probability of dropping each droppable token, in ``[0, 1)``.
    generator : torch.Generator, optional
        For reproducible draws (on the device of ``ids``).
    first_code_id : int
        Tokens with an id below it (specials, demographics: ``CodeVocab.first_code_id``)
        are never dropped; 0 makes every token droppable.

    Returns
    -------
    ids, mask : torch.Tensor, shape (B, L)
        Kept tokens first (in random order), then padding (id 0, mask False). Only
        removes tokens; every row with at least one token keeps at least one.
    """
    if ids.shape != mask.shape or ids.dim() != 2:
        raise ValueError(f"ids and mask must both be (B, L), found {tuple(ids.shape)} and {tuple(mask.shape)}")
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must lie in [0, 1), found {drop_prob}")
    mask = mask.bool()
    dev = ids.device
    noise = torch.rand(ids.shape, generator=generator, device=dev)
    droppable = mask & (ids >= first_code_id)
    drop = droppable & (torch.rand(ids.shape, generator=generator, device=dev) < drop_prob)
    keep = mask & ~drop
    # rows that would lose everything keep their token with the highest noise
    empty = ~keep.any(dim=1) & mask.any(dim=1)
    if empty.any():
        best = torch.where(mask, noise, torch.full_like(noise, -1.0)).argmax(dim=1)
        rescue = torch.zeros_like(keep)
        rescue[torch.arange(ids.shape[0], device=dev), best] = True
        keep = keep | (rescue & empty[:, None])
    # kept tokens first in random order, then the rest
    order = torch.argsort(torch.where(keep, noise, noise + 2.0), dim=1)
    new_ids = torch.gather(ids, 1, order)
    new_mask = torch.gather(keep, 1, order)
    return torch.where(new_mask, new_ids, torch.zeros_like(new_ids)), new_mask


class EHREncoder(nn.Module):
    """Set transformer over EHR tokens → one embedding per sample.

    Parameters
    ----------
    vocab_size : int
        Number of token ids (``len(vocab)``).
    config : EHREncoderConfig, optional
        Defaults to ``EHREncoderConfig()``.
    first_code_id : int
        Ids below it are never dropped by the training augmentation
        (``CodeVocab.first_code_id``; 2 protects PAD/UNK only).

    Examples
    --------
    >>> enc = EHREncoder.from_vocab(vocab)                       # doctest: +SKIP
    >>> ids, mask = vocab.encode_batch(token_lists)              # doctest: +SKIP
    >>> z = enc(ids, mask)                                       # (B, 256)  # doctest: +SKIP
    """

    def __init__(self, vocab_size: int, config: EHREncoderConfig | None = None, *, first_code_id: int = 2) -> None:
        super().__init__()
        cfg = config if config is not None else EHREncoderConfig()
        if not isinstance(cfg, EHREncoderConfig):
            raise TypeError(f"config must be an EHREncoderConfig, found {type(cfg).__name__}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an integer >= 2 (PAD and UNK), found {vocab_size!r}")
        self.config = cfg
        self.vocab_size = vocab_size
        self.first_code_id = int(first_code_id)
        self.embed = nn.Embedding(vocab_size, cfg.dim, padding_idx=0)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=4 * cfg.dim, dropout=cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[0].zero_()

    @classmethod
    def from_vocab(cls, vocab: CodeVocab, config: EHREncoderConfig | None = None) -> EHREncoder:
        """An encoder sized for ``vocab`` (demographic tokens protected from dropping)."""
        return cls(len(vocab), config, first_code_id=vocab.first_code_id)

    @property
    def output_dim(self) -> int:
        """Width of the embedding (``config.dim``)."""
        return self.config.dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Embed a batch of token sets.

        Parameters
        ----------
        ids : torch.LongTensor, shape (B, L)
        mask : torch.BoolTensor, shape (B, L), optional
            True at real tokens; defaults to ``ids != 0``.
        generator : torch.Generator, optional
            Random source of the training augmentation.

        Returns
        -------
        torch.Tensor, shape (B, dim)
            Masked mean of the token features; zeros for a row without tokens.
        """
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, L), found shape {tuple(ids.shape)}")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"token rows are longer than config.max_len={self.config.max_len}: found "
                             f"{ids.shape[1]} (truncate with CodeVocab.encode(max_len=...))")
        mask = (ids != 0) if mask is None else mask.bool()
        if mask.shape != ids.shape:
            raise ValueError(f"mask must have the shape of ids {tuple(ids.shape)}, found {tuple(mask.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), found [{int(ids.min())}, "
                             f"{int(ids.max())}]")
        if self.training and self.config.drop_prob > 0:
            ids, mask = augment_codes(ids, mask, drop_prob=self.config.drop_prob, generator=generator,
                                      first_code_id=self.first_code_id)
        has_tokens = mask.any(dim=1)
        attend = mask.clone()
        attend[~has_tokens, 0] = True  # a row without tokens would make attention NaN
        x = self.embed(ids)
        x = self.transformer(x, src_key_padding_mask=~attend)
        x = self.norm(x)
        w = mask.unsqueeze(-1).to(x.dtype)
        x = torch.where(mask.unsqueeze(-1), x, torch.zeros_like(x))
        return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)

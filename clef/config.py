"""Configuration of the session transformer and its pretraining (pydantic, ``extra="forbid"``).

Presets live in ``clef/configs/{tiny,base,large}.yaml``; :func:`load_session_config` takes a
preset name or a path to a YAML file of the same shape (:func:`tokenizer.presets.load_preset`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenizer.presets import load_preset


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Frozen):
    """Transformer encoder over the token grid of one window.

    Attributes
    ----------
    dim, depth, heads : int
        Width, number of pre-LN blocks, attention heads.
    mlp_ratio : float
        Hidden width of the feed-forward block relative to ``dim``.
    dropout : float
        Dropout in attention and feed-forward blocks.
    vocab_size : int or None
        Codebook size of the tokenizer; filled from the tokens when None.
    grid : tuple of int or None
        Token grid (frequency rows, time columns) per window; filled from the tokens.
    context_s : float or None
        Seconds of signal one forward pass sees (the paper's context ablation, e.g. 80).
        None (default): the whole window (1280 s). When set, pretraining sees random crops
        of that many seconds of token columns (``train.batch_size`` windows' worth of crops
        per step, so both contexts see the same tokens per step), and embedding encodes a window as
        consecutive non-overlapping crops pooled like windows
        (:meth:`clef.model.SessionTransformer.embed_windows`). Must be a whole number of
        token columns that divides the window (:func:`clef.model.context_columns`).
    """

    dim: int = Field(128, gt=0)
    depth: int = Field(4, gt=0)
    heads: int = Field(4, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    vocab_size: int | None = Field(None, gt=1)
    grid: tuple[int, int] | None = None
    context_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


class MaskingConfig(_Frozen):
    """MAGE-style variable masking: a ratio per sample from a truncated normal.

    Attributes
    ----------
    mean, std, low, high : float
        Truncated normal of the mask ratio (0.55, 0.25, in [0.5, 1.0]).
    label_smoothing : float
        Label smoothing of the cross-entropy over the codebook.
    """

    mean: float = Field(0.55, ge=0, le=1)
    std: float = Field(0.25, gt=0)
    low: float = Field(0.5, ge=0, le=1)
    high: float = Field(1.0, gt=0, le=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _range(self) -> MaskingConfig:
        if self.low >= self.high:
            raise ValueError(f"masking low ({self.low}) must be below high ({self.high})")
        return self


class MaskAlignConfig(_Frozen):
    """Optional DARE-EEG mask-alignment term: InfoNCE between two masked views of a window.

    Attributes
    ----------
    weight : float
        Weight of the term (0 = off, the default).
    temperature : float
    mask_ratio : float
        Mask ratio of each of the two views.
    """

    weight: float = Field(0.0, ge=0)
    temperature: float = Field(0.1, gt=0)
    mask_ratio: float = Field(0.3, ge=0, lt=1)


class OptimConfig(_Frozen):
    """AdamW with linear warm-up and cosine decay, gradient clipping, EMA of weights."""

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = Field(20, ge=0)
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.99, ge=0, lt=1)


class TrainConfig(_Frozen):
    """Loop settings."""

    max_steps: int = Field(300, gt=0)
    batch_size: int = Field(16, gt=0)
    checkpoint_every: int = Field(100, gt=0)
    log_every: int = Field(10, gt=0)
    seed: int = 0


class SessionConfig(_Frozen):
    """Everything of one session-transformer configuration."""

    name: str = "tiny"
    model: ModelConfig = Field(default_factory=ModelConfig)
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    mask_align: MaskAlignConfig = Field(default_factory=MaskAlignConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def with_data(self, vocab_size: int, grid: tuple[int, int]) -> SessionConfig:
        """Fill (or check) the codebook size and grid from the tokens."""
        m = self.model
        if m.vocab_size not in (None, vocab_size) or (m.grid is not None and tuple(m.grid) != tuple(grid)):
            raise ValueError(
                f"config expects vocab {m.vocab_size} and grid {m.grid}, the tokens have vocab "
                f"{vocab_size} and grid {tuple(grid)}"
            )
        return self.model_copy(update={"model": m.model_copy(update={"vocab_size": vocab_size, "grid": tuple(grid)})})


#: The folder of the shipped presets (``tiny``, ``base``, ``large``).
PRESET_DIR = Path(__file__).resolve().parent / "configs"


def load_session_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> SessionConfig:
    """Load a session-transformer preset (``tiny``, ``base``, ``large``) or a YAML file, validated.

    Parameters
    ----------
    name_or_path : str or Path
        Preset name, or a YAML file (``tiny.yaml`` also resolves to the preset).
    overrides : dict, optional
        Nested values merged on top (e.g. ``{"train": {"max_steps": 10}}``).

    Raises
    ------
    FileNotFoundError
        Neither a file nor a preset.
    """
    return load_preset(name_or_path, SessionConfig, PRESET_DIR, overrides=overrides)

"""Configuration of the session transformer and its pretraining (pydantic, ``extra="forbid"``).

Presets live in ``clef/configs/{tiny,base,large}.yaml``; ``load_preset(SessionConfig, name_or_path)``
(:func:`tokenizer.presets.load_preset`) takes a preset name or a YAML file of the same shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator


class FrozenConfig(BaseModel):
    """A frozen configuration whose unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(FrozenConfig):
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

    dim: PositiveInt = 128
    depth: PositiveInt = 4
    heads: PositiveInt = 4
    mlp_ratio: PositiveFloat = 4.0
    dropout: float = Field(0.0, ge=0, lt=1)
    vocab_size: int | None = Field(None, gt=1)
    grid: tuple[int, int] | None = None
    context_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


class MaskingConfig(FrozenConfig):
    """MAGE-style variable masking: a ratio per sample from a truncated normal.

    Attributes
    ----------
    mean, std, low, high : float
        Truncated normal of the mask ratio (0.55, 0.25, in [0.5, 1.0]).
    label_smoothing : float
        Label smoothing of the cross-entropy over the codebook.
    """

    mean: float = Field(0.55, ge=0, le=1)
    std: PositiveFloat = 0.25
    low: float = Field(0.5, ge=0, le=1)
    high: float = Field(1.0, gt=0, le=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _range(self) -> MaskingConfig:
        if self.low >= self.high:
            raise ValueError(f"masking low ({self.low}) must be below high ({self.high})")
        return self


class MaskAlignConfig(FrozenConfig):
    """Optional DARE-EEG mask-alignment term: InfoNCE between two masked views of a window.

    Attributes
    ----------
    weight : float
        Weight of the term (0 = off, the default).
    temperature : float
    mask_ratio : float
        Mask ratio of each of the two views.
    """

    weight: NonNegativeFloat = 0.0
    temperature: PositiveFloat = 0.1
    mask_ratio: float = Field(0.3, ge=0, lt=1)


class OptimConfig(FrozenConfig):
    """AdamW with linear warm-up and cosine decay, gradient clipping, EMA of weights."""

    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: NonNegativeInt = 20
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    grad_clip: PositiveFloat = 1.0
    ema_decay: float = Field(0.99, ge=0, lt=1)


class TrainConfig(FrozenConfig):
    """Loop settings."""

    max_steps: PositiveInt = 300
    batch_size: PositiveInt = 16
    checkpoint_every: PositiveInt = 100
    log_every: PositiveInt = 10
    seed: int = 0


class StageConfig(FrozenConfig):
    """What the configurations of both training stages hold: a name, the optimiser and the loop.

    Stage 1 is :class:`SessionConfig`, stage 2 :class:`clef.align.config.AlignConfig`.
    """

    name: str = "tiny"
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


class SessionConfig(StageConfig):
    """Everything of one session-transformer configuration."""

    #: The folder of the shipped presets (``tiny``, ``base``, ``large``).
    preset_dir: ClassVar[Path] = Path(__file__).resolve().parent / "configs"

    model: ModelConfig = Field(default_factory=ModelConfig)
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    mask_align: MaskAlignConfig = Field(default_factory=MaskAlignConfig)

    def with_data(self, vocab_size: int, grid: tuple[int, int]) -> SessionConfig:
        """Fill (or check) the codebook size and grid from the tokens."""
        m = self.model
        if m.vocab_size not in (None, vocab_size) or (m.grid is not None and tuple(m.grid) != tuple(grid)):
            raise ValueError(
                f"config expects vocab {m.vocab_size} and grid {m.grid}, the tokens have vocab "
                f"{vocab_size} and grid {tuple(grid)}"
            )
        return self.model_copy(update={"model": m.model_copy(update={"vocab_size": vocab_size, "grid": tuple(grid)})})


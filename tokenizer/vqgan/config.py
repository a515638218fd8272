"""Pydantic configuration of the VQGAN tokenizer and a frozen, self-checking build context.

A configuration is plain data (YAML in ``tokenizer/configs/``); :func:`build_context`
checks it against a :class:`~tokenizer.contract.SignalContract` (frequency bins and frames
per window must be divisible by the encoder's downsampling) and returns the token grid.
Every model is built from a :class:`BuildContext`, never from loose numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenizer.contract import SignalContract
from tokenizer.vqgan.layout import HemisphereLayout, Layout


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(_Strict):
    """How the spectrogram becomes the model input.

    Parameters
    ----------
    scale_db : float
        The dB values, clipped to the contract's ``clip_db`` range, are divided by this
        (40: [-40, 40] dB → [-1, 1]). Absent channels and padded frames are then set to 0
        and masked in every loss.
    """

    scale_db: float = Field(40.0, gt=0)


class ModelConfig(_Strict):
    """Encoder/decoder shape (2-D convolutions over (frequency, time)).

    Parameters
    ----------
    patch : (int, int)
        ``(freq, time)`` patch of the stem. ``(1, 1)``: a 3×3 convolution at the input
        resolution (and a 3×3 output convolution in the decoder). Larger: a
        non-overlapping patch embedding (convolution with kernel = stride = patch) and a
        matching transposed convolution at the decoder's end (cheap; used by ``tiny``).
    channels : list of int
        Feature maps per resolution level; ``len(channels) == len(down) + 1``. Level 0 is
        the stem's resolution, the last level the latent grid.
    num_res_blocks : list of int
        Residual blocks per level (same length as ``channels``); the decoder uses the same.
    down : list of (int, int)
        Downsampling ``(freq, time)`` factor between consecutive levels (strided
        convolutions in the encoder, nearest upsampling + conv in the decoder).
    attn_mid : bool
        One self-attention block in the middle of encoder and decoder (latent resolution).
    z_dim : int
        Latent channels before quantisation (must equal the codebook dimension).
    norm_groups : int
        GroupNorm groups (the largest divisor of a layer's width not above this is used).
    dropout : float
        Dropout inside residual blocks.
    layout : {"joint", "hemispheres"}
        Channel grouping (:mod:`tokenizer.vqgan.layout`): ``joint`` encodes all channels
        as one image (the CLEF reference); ``hemispheres`` encodes each side (its lateral
        electrodes plus the midline) with shared weights and stacks the two token grids
        along the frequency rows, which doubles the tokens per window and keeps
        left/right differences.
    """

    patch: tuple[int, int] = (1, 1)
    channels: list[int] = Field(default_factory=lambda: [64, 128, 256, 256])
    num_res_blocks: list[int] = Field(default_factory=lambda: [1, 2, 2, 2])
    down: list[tuple[int, int]] = Field(default_factory=lambda: [(2, 2), (2, 5), (2, 1)])
    attn_mid: bool = True
    z_dim: int = Field(32, gt=0)
    norm_groups: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    layout: Layout = "joint"

    @model_validator(mode="after")
    def _lengths(self) -> "ModelConfig":
        if len(self.channels) != len(self.down) + 1:
            raise ValueError(f"model.channels needs len(down) + 1 = {len(self.down) + 1} entries, "
                             f"found {len(self.channels)}")
        if len(self.num_res_blocks) != len(self.channels):
            raise ValueError(f"model.num_res_blocks needs {len(self.channels)} entries (one per level), "
                             f"found {len(self.num_res_blocks)}")
        if any(c <= 0 for c in self.channels) or any(n < 0 for n in self.num_res_blocks):
            raise ValueError("model.channels must be positive and num_res_blocks non-negative")
        if any(f < 1 or t < 1 for f, t in [*self.down, self.patch]):
            raise ValueError(f"model.down and model.patch factors must be >= 1, found {self.down}, {self.patch}")
        return self

    @property
    def factor(self) -> tuple[int, int]:
        """Total ``(freq, time)`` downsampling (patch × strides)."""
        return (self.patch[0] * math.prod(f for f, _ in self.down),
                self.patch[1] * math.prod(t for _, t in self.down))


class QuantizerConfig(_Strict):
    """EMA vector quantiser (see :mod:`tokenizer.vqgan.quantizer`).

    Parameters
    ----------
    n_codes, dim : int
        Codebook size and code dimension (8192 × 32 in base). ``n_codes`` must fit int16.
    distance : {"l2", "cosine"}
        Nearest code by squared Euclidean distance, or by cosine similarity (latents and
        codes l2-normalised before lookup, EMA and commitment).
    decay : float
        EMA decay of code counts and sums.
    eps : float
        Laplace smoothing of the counts.
    beta : float
        Commitment loss weight.
    kmeans_init : bool
        Initialise the codebook by k-means on the first training batch's latents.
    kmeans_iters : int
        Lloyd iterations of that initialisation.
    dead_ratio : float
        A code whose EMA count falls below ``dead_ratio`` × the mean EMA count is dead and
        is restarted on a random latent of the current batch.
    usage_window : int
        Steps over which codebook usage (% of codes used) is reported.
    """

    n_codes: int = Field(8192, gt=1, le=32768)
    dim: int = Field(32, gt=0)
    distance: Literal["l2", "cosine"] = "l2"
    decay: float = Field(0.99, gt=0, lt=1)
    eps: float = Field(1e-5, gt=0)
    beta: float = Field(0.25, ge=0)
    kmeans_init: bool = True
    kmeans_iters: int = Field(10, ge=0)
    dead_ratio: float = Field(0.03, ge=0, lt=1)
    usage_window: int = Field(100, ge=1)


class DiscriminatorConfig(_Strict):
    """PatchGAN discriminator with hinge loss.

    Parameters
    ----------
    ndf : int
        Width of the first layer (doubled per layer, capped at 8×).
    n_layers : int
        Strided (2, 2) layers.
    start_step : int
        Generator step from which the adversarial terms are switched on (warm-up).
    weight : float
        Multiplies the adaptive weight (taming's ``disc_weight``).
    max_adaptive_weight : float
        Clamp of the adaptive weight.
    """

    ndf: int = Field(64, gt=0)
    n_layers: int = Field(3, ge=1)
    start_step: int = Field(20000, ge=0)
    weight: float = Field(0.8, ge=0)
    max_adaptive_weight: float = Field(1e4, gt=0)


class LossConfig(_Strict):
    """Inter-channel-emphasised reconstruction, optionally on denoised targets.

    ``L_rec = L1(channel mean) + residual_weight * L1(channel-demeaned residual)``, both
    over valid (present channel, unpadded frame) positions only.

    Every bin of a 1-s multitaper frame carries about ±2.5 dB of estimator noise (3
    tapers), which dwarfs a 1 Hz wide posterior alpha peak in two of 19 channels in a
    plain per-bin L1: a decoder that draws a smooth 1/f template loses little. Two
    optional terms weigh what a reader sees instead:

    ``pooled_weight``
        The same inter-channel L1 on ``pool``-averaged maps (valid positions only): a
        ``(4, 10)`` pool (1 Hz × 10 s) averages most estimator noise out, so the term's
        gradient follows peaks, state changes and lateral differences.
    ``freq_grad_weight``
        L1 of the frequency derivative of those pooled maps (spectral shape: a peak's
        position and height against its neighbours).
    """

    residual_weight: float = Field(2.0, ge=0)
    rec_weight: float = Field(1.0, gt=0)
    pooled_weight: float = Field(0.0, ge=0)
    freq_grad_weight: float = Field(0.0, ge=0)
    pool: tuple[int, int] = (4, 10)

    @model_validator(mode="after")
    def _pool(self) -> "LossConfig":
        if self.pool[0] < 1 or self.pool[1] < 1:
            raise ValueError(f"loss.pool factors must be >= 1, found {self.pool}")
        return self


class OptimConfig(_Strict):
    """Adam for generator and discriminator (betas of taming-transformers).

    ``schedule``: ``constant`` keeps ``lr`` after the linear warm-up; ``cosine`` decays it
    to ``min_lr_ratio * lr`` at the run's last step (``max_steps``; a resumed run with a
    larger ``max_steps`` stretches the remaining decay).
    """

    lr: float = Field(1e-4, gt=0)
    disc_lr: float | None = Field(None, gt=0)
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.05, ge=0, le=1)


class DataConfig(_Strict):
    """Loader settings.

    ``crop_frames``: train on random crops of this many frames of each window (a
    multiple of the time downsampling) instead of whole windows. The encoder and decoder
    are convolutional in time (without ``attn_mid``), so the weights apply to whole
    windows unchanged; a step costs ``crop_frames / window_frames`` of a whole-window
    step, which on a CPU buys several times more optimiser steps per minute.
    ``keep_sessions``: spectrograms kept in memory per loader process (least recently
    used first out; float16, about 12 MB per 40-min session): a crop then costs no file
    read. 0 reads every item from the cache.
    """

    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(2, ge=0)
    crop_frames: int | None = Field(None, ge=1)
    keep_sessions: int = Field(0, ge=0)


class TrainConfig(_Strict):
    """Run settings (CLI flags override ``max_steps``)."""

    max_steps: int = Field(100_000, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    seed: int = 0


class VQGANConfig(_Strict):
    """Complete tokenizer configuration (one YAML file).

    Presets are shipped in ``tokenizer/configs`` (:func:`tokenizer.presets.load_preset`);
    a file without ``name`` takes its stem as the name.

    Examples
    --------
    >>> from tokenizer.presets import load_preset
    >>> build_context(load_preset(VQGANConfig, "tiny")).n_tokens
    512
    """

    preset_dir: ClassVar[Path] = Path(__file__).resolve().parents[1] / "configs"
    name_from_file: ClassVar[bool] = True

    name: str = "custom"
    input: InputConfig = InputConfig()
    model: ModelConfig = ModelConfig()
    quantizer: QuantizerConfig = QuantizerConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _dims(self) -> "VQGANConfig":
        if self.model.z_dim != self.quantizer.dim:
            raise ValueError(f"model.z_dim ({self.model.z_dim}) must equal quantizer.dim ({self.quantizer.dim})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists) for YAML and checkpoints."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class BuildContext:
    """Everything a VQGAN is built from, checked once.

    Attributes
    ----------
    config : VQGANConfig
        The configuration.
    contract : SignalContract
        The signal contract (channels, spectrogram bins, window).
    n_channels, n_freqs, window_frames : int
        Input shape ``(n_channels, n_freqs, window_frames)``.
    grid : (int, int)
        Token ``(row, time)`` grid; ``grid[0] * grid[1]`` tokens per window. Rows are
        frequency bands (``joint``), or the left side's bands then the right side's
        (``hemispheres``).
    hemispheres : HemisphereLayout or None
        The side grouping of a ``hemispheres`` layout.
    """

    config: VQGANConfig
    contract: SignalContract
    n_channels: int
    n_freqs: int
    window_frames: int
    grid: tuple[int, int]
    hemispheres: HemisphereLayout | None = None

    @property
    def image_channels(self) -> int:
        """Input feature maps of the encoder (one side's channels under ``hemispheres``)."""
        return self.hemispheres.n_image_channels if self.hemispheres else self.n_channels

    @property
    def n_tokens(self) -> int:
        """Tokens per window."""
        return self.grid[0] * self.grid[1]

    @property
    def frames_per_token(self) -> int:
        """Spectrogram frames covered by one token column."""
        return self.window_frames // self.grid[1]

    @property
    def freqs(self) -> list[float]:
        """Bin frequencies (Hz) of the spectrogram rows."""
        sp = self.contract.spectrogram
        return [sp.fmin + k / sp.window_s for k in range(sp.n_freqs)]


def window_frames(contract: SignalContract) -> int:
    """Spectrogram frames per session window (``window_s / step_s``; 1280 in base).

    Raises
    ------
    ValueError
        The window is not a whole number of spectrogram steps.
    """
    ratio = contract.window_s / contract.spectrogram.step_s
    if abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"window_s / spectrogram.step_s must be whole, found {contract.window_s} / "
                         f"{contract.spectrogram.step_s} = {ratio}")
    return int(round(ratio))


def build_context(config: VQGANConfig, contract: SignalContract | None = None) -> BuildContext:
    """Check ``config`` against ``contract`` and return the frozen build context.

    Raises
    ------
    ValueError
        Bins or frames per window not divisible by the downsampling factors.
    """
    contract = contract or SignalContract()
    n_freqs = contract.spectrogram.n_freqs
    frames = window_frames(contract)
    ff, ft = config.model.factor
    crop = config.data.crop_frames
    if crop is not None and (crop % ft or crop > frames or config.model.attn_mid):
        raise ValueError(f"config {config.name!r}: data.crop_frames={crop} must be a multiple of the time "
                         f"downsampling ({ft}), at most {frames}, and needs model.attn_mid off")
    if n_freqs % ff or frames % ft:
        raise ValueError(
            f"config {config.name!r}: the input ({n_freqs} bins × {frames} frames) must be divisible by the "
            f"downsampling ({ff} × {ft}) given by model.patch={config.model.patch} and "
            f"model.down={config.model.down}")
    sides = HemisphereLayout.from_channels(contract.channels) if config.model.layout == "hemispheres" else None
    rows = n_freqs // ff * (2 if sides else 1)
    return BuildContext(config=config, contract=contract, n_channels=contract.n_channels, n_freqs=n_freqs,
                        window_frames=frames, grid=(rows, frames // ft), hemispheres=sides)

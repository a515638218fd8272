"""VQGAN tokenizer: a session window's spectrogram (19 × 128 × 1280) → a grid of codes.

Public API: configuration (:func:`load_tokenizer_config`, :func:`build_context`), the model
(:class:`VQGAN`, :class:`PatchDiscriminator`, :class:`VectorQuantizerEMA`) and losses.
Training lives in :mod:`tokenizer.vqgan.training` (needs ``lightning``; imported lazily).
"""

from tokenizer.vqgan.config import (
    BuildContext,
    DataConfig,
    DiscriminatorConfig,
    InputConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    QuantizerConfig,
    TrainConfig,
    VQGANConfig,
    build_context,
    load_tokenizer_config,
    shipped_configs,
)
from tokenizer.vqgan.discriminator import PatchDiscriminator
from tokenizer.vqgan.losses import (
    adaptive_weight,
    band_errors_db,
    generator_adv_loss,
    hinge_d_loss,
    interchannel_l1,
    masked_l1,
)
from tokenizer.vqgan.model import CHECKPOINT_KIND, VQGAN, count_parameters, token_mask
from tokenizer.vqgan.quantizer import QuantizerOutput, VectorQuantizerEMA, kmeans, nearest_codes

__all__ = [
    "BuildContext", "CHECKPOINT_KIND", "DataConfig", "DiscriminatorConfig", "InputConfig", "LossConfig",
    "ModelConfig", "OptimConfig", "PatchDiscriminator", "QuantizerConfig", "QuantizerOutput", "TrainConfig",
    "VQGAN", "VQGANConfig", "VectorQuantizerEMA", "adaptive_weight", "band_errors_db", "build_context",
    "count_parameters", "generator_adv_loss", "hinge_d_loss", "interchannel_l1", "kmeans", "load_tokenizer_config",
    "masked_l1", "nearest_codes", "shipped_configs", "token_mask",
]

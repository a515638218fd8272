"""VQGAN tokenizer: a session window's spectrogram (19 × 128 × 1280) → a grid of codes.

Public API: configuration (:class:`VQGANConfig`, :func:`build_context`), the model
(:class:`VQGAN`, :class:`PatchDiscriminator`, :class:`VectorQuantizerEMA`) and the reconstruction losses.
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
)
from tokenizer.vqgan.discriminator import PatchDiscriminator
from tokenizer.vqgan.losses import interchannel_l1, masked_l1
from tokenizer.vqgan.model import CHECKPOINT_KIND, VQGAN, count_parameters, token_mask
from tokenizer.vqgan.quantizer import QuantizerOutput, VectorQuantizerEMA, kmeans, nearest_codes

__all__ = [
    "BuildContext", "CHECKPOINT_KIND", "DataConfig", "DiscriminatorConfig", "InputConfig", "LossConfig",
    "ModelConfig", "OptimConfig", "PatchDiscriminator", "QuantizerConfig", "QuantizerOutput", "TrainConfig",
    "VQGAN", "VQGANConfig", "VectorQuantizerEMA", "build_context", "count_parameters", "interchannel_l1", "kmeans",
    "masked_l1", "nearest_codes", "token_mask",
]

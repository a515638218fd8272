"""The VQGAN generator: 2-D conv encoder/decoder over (frequency, time) and the quantiser.

Input ``x`` ``(B, channels, freqs, frames)``: the 19 EEG channels are the input feature
maps of a 2-D convolution over the spectrogram's (frequency, time) plane; values are dB
clipped and scaled (``/ 40`` → [-1, 1], see :mod:`tokenizer.windows`), zero where a
channel is absent or a frame padded. Residual blocks (GroupNorm, SiLU), strided
convolutions for downsampling (factor ``(f, t)``: kernel ``(2f-1, 2t-1)``, padding
``(f-1, t-1)``), optional self-attention at the latent resolution, nearest-neighbour
upsampling + convolution in the decoder (taming-transformers lineage).

A ``patch`` larger than 1 replaces the first and last 3×3 convolutions by a patch
embedding and a transposed convolution (kernel = stride = patch), which keeps the
full-resolution work small on CPUs (``tiny``).

Base: 128 bins × 1280 frames, ``down = [(2,2), (2,5), (2,1)]`` → a 16 × 128 latent grid
(2048 tokens per window; a token spans 2 Hz × 10 s).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenizer.checkpoint_io import load_checkpoint
from tokenizer.vqgan.config import BuildContext, VQGANConfig, build_context
from tokenizer.vqgan.layout import stack_sides, unstack_sides
from tokenizer.vqgan.quantizer import QuantizerOutput, VectorQuantizerEMA

#: ``kind`` of VQGAN checkpoints (see :mod:`tokenizer.checkpoint_io`).
CHECKPOINT_KIND = "vqgan"


def _groups(channels: int, max_groups: int) -> int:
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


def _norm(channels: int, max_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels, max_groups), channels, eps=1e-6)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv3×3, twice, plus a (1×1 when widths differ) skip."""

    def __init__(self, c_in: int, c_out: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Multi-head self-attention over all (freq, time) positions, residual."""

    def __init__(self, channels: int, groups: int, head_dim: int = 64) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Strided convolution by ``(f, t)`` (exact for sizes divisible by the factors)."""

    def __init__(self, c_in: int, c_out: int, factor: tuple[int, int]) -> None:
        super().__init__()
        f, t = factor
        self.conv = nn.Conv2d(c_in, c_out, (2 * f - 1, 2 * t - 1), stride=(f, t), padding=(f - 1, t - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by ``(f, t)`` then a 3×3 convolution."""

    def __init__(self, c_in: int, c_out: int, factor: tuple[int, int]) -> None:
        super().__init__()
        self.factor = (float(factor[0]), float(factor[1]))
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest"))


def _mid(channels: int, groups: int, attn: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock(channels, channels, groups, dropout)]
    if attn:
        layers.append(AttnBlock(channels, groups))
    layers.append(ResBlock(channels, channels, groups, dropout))
    return nn.Sequential(*layers)


class PatchEmbed(nn.Conv2d):
    """Non-overlapping patch embedding (a ``Conv2d`` with kernel = stride = ``patch``), computed as one matmul.

    Same parameters and state-dict keys as the convolution; oneDNN's strided
    convolution with a large kernel over 19 input maps was slower on CPU than
    gathering the patches and multiplying (forward and backward, one thread).
    """

    def __init__(self, c_in: int, c_out: int, patch: tuple[int, int]) -> None:
        super().__init__(c_in, c_out, patch, stride=patch)
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pf, pt = self.patch
        u = x.reshape(b, c, h // pf, pf, w // pt, pt).permute(0, 2, 4, 1, 3, 5).reshape(b, h // pf, w // pt, c * pf * pt)
        return F.linear(u, self.weight.reshape(self.out_channels, -1), self.bias).permute(0, 3, 1, 2)


class PatchUnembed(nn.ConvTranspose2d):
    """Inverse of :class:`PatchEmbed` (a ``ConvTranspose2d`` with kernel = stride = ``patch``), as one matmul."""

    def __init__(self, c_in: int, c_out: int, patch: tuple[int, int]) -> None:
        super().__init__(c_in, c_out, patch, stride=patch)
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        b, c, h, w = x.shape
        pf, pt = self.patch
        o = self.out_channels
        y = x.permute(0, 2, 3, 1) @ self.weight.reshape(c, o * pf * pt)  # (b, h, w, o * pf * pt)
        y = y.reshape(b, h, w, o, pf, pt).permute(0, 3, 1, 4, 2, 5).reshape(b, o, h * pf, w * pt)
        return y + self.bias.reshape(1, o, 1, 1)


def _stem(c_in: int, c_out: int, patch: tuple[int, int]) -> nn.Conv2d:
    if patch == (1, 1):
        return nn.Conv2d(c_in, c_out, 3, padding=1)
    return PatchEmbed(c_in, c_out, patch)


def _head(c_in: int, c_out: int, patch: tuple[int, int]) -> nn.Module:
    if patch == (1, 1):
        return nn.Conv2d(c_in, c_out, 3, padding=1)
    return PatchUnembed(c_in, c_out, patch)


class Encoder(nn.Module):
    """``(B, n_channels, n_freqs, frames)`` → latents ``(B, z_dim, grid_f, grid_t)``."""

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        m = ctx.config.model
        g = m.norm_groups
        self.conv_in = _stem(ctx.image_channels, m.channels[0], m.patch)
        levels = []
        for i, ch in enumerate(m.channels):
            blocks: list[nn.Module] = [ResBlock(ch, ch, g, m.dropout) for _ in range(m.num_res_blocks[i])]
            if i < len(m.down):
                blocks.append(Downsample(ch, m.channels[i + 1], m.down[i]))
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.Sequential(*levels)
        self.mid = _mid(m.channels[-1], g, m.attn_mid, m.dropout)
        self.norm_out = _norm(m.channels[-1], g)
        self.conv_out = nn.Conv2d(m.channels[-1], m.z_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.levels(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents ``(B, z_dim, grid_f, grid_t)`` → reconstruction ``(B, n_channels, n_freqs, frames)``."""

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        m = ctx.config.model
        g = m.norm_groups
        self.conv_in = nn.Conv2d(m.z_dim, m.channels[-1], 3, padding=1)
        self.mid = _mid(m.channels[-1], g, m.attn_mid, m.dropout)
        levels = []
        for i in reversed(range(len(m.channels))):
            ch = m.channels[i]
            blocks: list[nn.Module] = [ResBlock(ch, ch, g, m.dropout) for _ in range(m.num_res_blocks[i])]
            if i > 0:
                blocks.append(Upsample(ch, m.channels[i - 1], m.down[i - 1]))
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.Sequential(*levels)
        self.norm_out = _norm(m.channels[0], g)
        self.conv_out = _head(m.channels[0], ctx.image_channels, m.patch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.levels(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


def token_mask(frame_mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Valid tokens ``(B, grid_f, grid_t)`` from valid frames ``(B, frames)``.

    A token is valid when its time span holds at least one valid frame (all frequency
    rows of a column share its validity).
    """
    b, t = frame_mask.shape
    if t % grid[1]:
        raise ValueError(f"frames ({t}) must be divisible by the token columns ({grid[1]})")
    cols = frame_mask.reshape(b, grid[1], t // grid[1]).any(-1)
    return cols[:, None, :].expand(b, grid[0], grid[1])


class VQGAN(nn.Module):
    """Encoder, EMA quantiser and decoder (the generator of the VQGAN).

    Parameters
    ----------
    ctx : BuildContext
        Checked configuration + contract (:func:`~tokenizer.vqgan.config.build_context`).

    Examples
    --------
    >>> from tokenizer.presets import load_preset
    >>> from tokenizer.vqgan import VQGAN, VQGANConfig, build_context
    >>> model = VQGAN(build_context(load_preset(VQGANConfig, "tiny")))
    >>> model.ctx.grid
    (8, 64)
    """

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.encoder = Encoder(ctx)
        self.quantizer = VectorQuantizerEMA(ctx.config.quantizer)
        self.decoder = Decoder(ctx)

    @property
    def config(self) -> VQGANConfig:
        """The configuration."""
        return self.ctx.config

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last layer (for the adaptive GAN weight)."""
        return self.decoder.conv_out.weight

    @property
    def column_frames(self) -> int:
        """Frames per token column."""
        return self.ctx.window_frames // self.ctx.grid[1]

    def _check_input(self, x: torch.Tensor, any_length: bool = False) -> None:
        expected = (self.ctx.n_channels, self.ctx.n_freqs, self.ctx.window_frames)
        crop = self.config.data.crop_frames
        ok_frames = x.ndim == 4 and (x.shape[3] == expected[2] or (
            self.training and crop is not None and x.shape[3] == crop) or (
            any_length and x.shape[3] > 0 and x.shape[3] % self.column_frames == 0))
        if x.ndim != 4 or tuple(x.shape[1:3]) != expected[:2] or not ok_frames:
            frames = f"a multiple of {self.column_frames}" if any_length else str(expected[2])
            raise ValueError(f"input of shape (B, {expected[0]}, {expected[1]}, {frames}) expected, "
                             f"found {tuple(x.shape)}")

    def encode(self, x: torch.Tensor, frame_mask: torch.Tensor | None = None, *,
               any_length: bool = False) -> QuantizerOutput:
        """Encode and quantise windows ``x`` (training crops too); ``frame_mask`` ``(B, frames)`` marks valid frames.

        ``any_length``: accept any whole number of token columns, not only a window (the
        GroupNorm statistics and the attention then see that stretch, so a column's code
        may differ from its code inside a whole window).
        """
        self._check_input(x, any_length)
        sides = self.ctx.hemispheres
        z = stack_sides(self.encoder(sides.split(x))) if sides else self.encoder(x)
        mask = None if frame_mask is None else token_mask(frame_mask, (self.ctx.grid[0], z.shape[3]))
        return self.quantizer(z, mask)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Reconstruct windows from quantised latents."""
        sides = self.ctx.hemispheres
        if sides:
            return sides.merge(self.decoder(unstack_sides(z_q)), self.ctx.n_channels)
        return self.decoder(z_q)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruct windows from code indices ``(B, grid_f, grid_t)``."""
        return self.decode(self.quantizer.lookup(codes.long()))

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, QuantizerOutput]:
        """Reconstruction and quantiser output."""
        q = self.encode(x, frame_mask)
        return self.decode(q.z_q), q

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor, frame_mask: torch.Tensor, *,
                 any_length: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``(B, grid_f, grid_t)`` int64 and token mask, in eval mode (no codebook update).

        ``any_length``: as in :meth:`encode` (``grid_t`` is then the input's columns).
        """
        was = self.training
        self.eval()
        if x.device.type == "cpu":  # oneDNN convolutions run faster on NHWC input; same codes
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            q = self.encode(x, frame_mask, any_length=any_length)
        finally:
            self.train(was)
        return q.codes, token_mask(frame_mask, (self.ctx.grid[0], x.shape[3] // self.column_frames))

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str = "cpu") -> "VQGAN":
        """Load a ``vqgan`` checkpoint directory (safetensors; never unpickles), in eval mode."""
        ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
        config = VQGANConfig.model_validate(ckpt.config)
        model = cls(build_context(config, ckpt.contract))
        model.load_state_dict(ckpt.state_dict, strict=True)
        return model.eval()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


"""PatchGAN discriminator (pix2pix / taming-transformers ``NLayerDiscriminator``).

Input: the 19-channel scaled spectrogram window ``(B, channels, freqs, frames)``; output:
one logit per overlapping patch. GroupNorm replaces BatchNorm (no batch statistics to
synchronise across devices, same behaviour for any batch size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenizer.vqgan.config import BuildContext


def _gn(channels: int) -> nn.GroupNorm:
    g = min(32, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


class PatchDiscriminator(nn.Module):
    """``n_layers`` strided 4×4 convolutions (LeakyReLU 0.2), then two stride-1 layers to a logit map.

    Parameters
    ----------
    ctx : BuildContext
        Input channels and ``discriminator.ndf`` / ``n_layers``.
    """

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        cfg = ctx.config.discriminator
        ndf = cfg.ndf
        layers: list[nn.Module] = [nn.Conv2d(ctx.n_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, cfg.n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False),
                       _gn(ndf * mult), nn.LeakyReLU(0.2)]
        prev, mult = mult, min(2**cfg.n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False),
                   _gn(ndf * mult), nn.LeakyReLU(0.2),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits ``(B, 1, h, w)``."""
        return self.net(x)


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.GroupNorm):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def logit_mask(frame_mask: torch.Tensor, width: int) -> torch.Tensor:
    """Valid logit columns ``(B, 1, 1, width)``: a column is valid when its share of frames holds a valid one."""
    m = F.adaptive_max_pool1d(frame_mask[:, None, :].float(), width)
    return m[:, :, None, :] > 0

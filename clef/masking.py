"""MAGE-style variable masking of token grids."""

from __future__ import annotations

import torch

from clef.config import MaskingConfig


def sample_mask_ratios(n: int, cfg: MaskingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mask ratios from a truncated normal (``cfg.mean``, ``cfg.std``) in [``cfg.low``, ``cfg.high``].

    Uses inverse-CDF sampling, so every draw lies in range (no rejection loop).
    """
    normal = torch.distributions.Normal(0.0, 1.0)
    a = normal.cdf(torch.tensor((cfg.low - cfg.mean) / cfg.std))
    b = normal.cdf(torch.tensor((cfg.high - cfg.mean) / cfg.std))
    u = torch.rand(n, generator=generator) * (b - a) + a
    r = cfg.mean + cfg.std * normal.icdf(u.clamp(1e-6, 1 - 1e-6))
    return r.clamp(cfg.low, cfg.high)


def random_token_mask(valid: torch.Tensor, ratios: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose ``ceil(ratio × n_valid)`` valid tokens per row to mask.

    Parameters
    ----------
    valid : Tensor, (B, N) bool
        Valid (non-padding) tokens.
    ratios : Tensor, (B,)
        Mask ratio per row.

    Returns
    -------
    Tensor, (B, N) bool
        True where a token is masked (always a subset of ``valid``; at least one per row
        that has a valid token).
    """
    b, n = valid.shape
    scores = torch.rand(b, n, generator=generator, device=valid.device if generator is None else "cpu").to(valid.device)
    scores = scores.masked_fill(~valid, 2.0)  # invalid tokens sort last
    n_valid = valid.sum(1)
    k = torch.ceil(ratios.to(valid.device) * n_valid).long().clamp(min=1)
    k = torch.minimum(k, n_valid)
    ranks = scores.argsort(1).argsort(1)
    return (ranks < k[:, None]) & valid

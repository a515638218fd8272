"""VQGAN losses: inter-channel-emphasised reconstruction, hinge GAN, adaptive weight, band errors.

All losses are mask-aware: ``channel_mask`` ``(B, C)`` marks present electrodes and
``frame_mask`` ``(B, T)`` unpadded frames; only positions valid in both count.

Inter-channel reconstruction (ARCHITECTURE.md, "Reference parameters"; the paper's Eq. 2
is not public)::

    mu(x)   = mean over present channels of x            (B, 1, F, T)
    r(x)    = x - mu(x) on present channels              (B, C, F, T)
    L_rec   = L1(mu(x_hat), mu(x)) + w * L1(r(x_hat), r(x))

With ``w > 0`` a lateralised or focal difference (one hemisphere or one electrode
differing from the others) costs more than a diffuse one of the same plain L1, because
it lives in the residual that the shared channel mean would otherwise drown.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokenizer.multitaper import CANONICAL_BANDS


def _masks(x: torch.Tensor, channel_mask: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cm = channel_mask[:, :, None, None].to(x.dtype)
    fm = frame_mask[:, None, None, :].to(x.dtype)
    return cm, fm


def channel_mean(x: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
    """Mean over present channels, ``(B, 1, F, T)``."""
    cm = channel_mask[:, :, None, None].to(x.dtype)
    return (x * cm).sum(1, keepdim=True) / cm.sum(1, keepdim=True).clamp_min(1.0)


def interchannel_l1(
    x: torch.Tensor, x_hat: torch.Tensor, channel_mask: torch.Tensor, frame_mask: torch.Tensor,
    residual_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Inter-channel-emphasised L1 (see the module docstring).

    Parameters
    ----------
    x, x_hat : Tensor, (B, C, F, T)
        Target and reconstruction.
    channel_mask : Tensor, (B, C), bool
    frame_mask : Tensor, (B, T), bool
    residual_weight : float
        Weight ``w`` of the channel-demeaned residual term.

    Returns
    -------
    loss : Tensor
        ``mean_l1 + w * residual_l1``.
    parts : dict
        ``mean_l1`` (mean over valid (b, f, t)) and ``residual_l1`` (mean over valid
        (b, c, f, t)).
    """
    cm, fm = _masks(x, channel_mask, frame_mask)
    n_freq = x.shape[2]
    mu, mu_hat = channel_mean(x, channel_mask), channel_mean(x_hat, channel_mask)
    mean_l1 = ((mu_hat - mu).abs() * fm).sum() / (fm.sum() * n_freq).clamp_min(1.0)
    res = (x_hat - mu_hat) - (x - mu)
    valid = cm * fm
    residual_l1 = (res.abs() * valid).sum() / (valid.sum() * n_freq).clamp_min(1.0)
    return mean_l1 + residual_weight * residual_l1, {"mean_l1": mean_l1, "residual_l1": residual_l1}


def pool_valid(
    x: torch.Tensor, x_hat: torch.Tensor, frame_mask: torch.Tensor, pool: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Average ``x`` and ``x_hat`` over ``pool = (bins, frames)`` blocks of valid frames.

    Parameters
    ----------
    x, x_hat : Tensor, (B, C, F, T)
    frame_mask : Tensor, (B, T), bool
    pool : (int, int)
        Block size; a trailing remainder of bins or frames is dropped.

    Returns
    -------
    pooled_x, pooled_x_hat : Tensor, (B, C, F // pool[0], T // pool[1])
        Means over each block's valid frames (0 where a block has none).
    pooled_frame_mask : Tensor, (B, T // pool[1]), bool
        Blocks holding at least one valid frame.
    """
    pf, pt = pool
    fm = frame_mask[:, None, None, :].to(x.dtype)
    share = F.avg_pool2d(fm.expand(-1, 1, x.shape[2], -1), (pf, pt))  # fraction of valid frames per block
    den = share.clamp_min(1e-6)
    px = F.avg_pool2d(x * fm, (pf, pt)) / den
    pxh = F.avg_pool2d(x_hat * fm, (pf, pt)) / den
    return px, pxh, share[:, 0, 0, :] > 0


def pooled_losses(
    x: torch.Tensor, x_hat: torch.Tensor, channel_mask: torch.Tensor, frame_mask: torch.Tensor, *,
    pool: tuple[int, int], residual_weight: float,
) -> dict[str, torch.Tensor]:
    """Inter-channel L1 of pooled maps and of their frequency derivative (see :class:`LossConfig`).

    Returns
    -------
    dict
        ``pooled_l1``: :func:`interchannel_l1` of the :func:`pool_valid` maps;
        ``freq_grad_l1``: the same of their first difference along frequency.
    """
    px, pxh, pfm = pool_valid(x, x_hat, frame_mask, pool)
    pooled, _ = interchannel_l1(px, pxh, channel_mask, pfm, residual_weight)
    grad, _ = interchannel_l1(px.diff(dim=2), pxh.diff(dim=2), channel_mask, pfm, residual_weight)
    return {"pooled_l1": pooled, "freq_grad_l1": grad}


def masked_l1(x: torch.Tensor, x_hat: torch.Tensor, channel_mask: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Plain L1 over valid positions (for comparison and logging)."""
    cm, fm = _masks(x, channel_mask, frame_mask)
    valid = cm * fm
    return ((x_hat - x).abs() * valid).sum() / (valid.sum() * x.shape[2]).clamp_min(1.0)


def band_errors_db(
    x: torch.Tensor, x_hat: torch.Tensor, channel_mask: torch.Tensor, frame_mask: torch.Tensor,
    freqs: list[float] | torch.Tensor, scale_db: float, bands: dict[str, tuple[float, float]] | None = None,
) -> dict[str, torch.Tensor]:
    """Mean absolute reconstruction error per band, in dB, over valid positions.

    ``bands`` default: delta 0.5–4, theta 4–8, alpha 8–13, beta 13–30 Hz (half-open).
    Inputs are scaled values; errors are multiplied back by ``scale_db``.
    """
    bands = CANONICAL_BANDS if bands is None else bands
    freqs = torch.as_tensor(freqs, device=x.device)
    cm, fm = _masks(x, channel_mask, frame_mask)
    err = (x_hat.detach().float() - x.float()).abs() * (cm * fm)
    n_valid = (cm * fm).sum().clamp_min(1.0)
    out = {}
    for name, (lo, hi) in bands.items():
        sel = (freqs >= lo) & (freqs < hi)
        out[name] = err[:, :, sel].sum() / (n_valid * sel.sum().clamp_min(1)) * scale_db
    return out


def _masked_mean(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(v.dtype).expand_as(v)
    return (v * m).sum() / m.sum().clamp_min(1.0)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: ``mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat)))``, over valid patches, halved."""
    return 0.5 * (_masked_mean(F.relu(1.0 - logits_real), mask) + _masked_mean(F.relu(1.0 + logits_fake), mask))


def generator_adv_loss(logits_fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Adversarial loss of the generator: ``-mean(D(x_hat))`` over valid patches."""
    return -_masked_mean(logits_fake, mask)


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, *,
                    scale: float, max_weight: float) -> torch.Tensor:
    """taming-transformers' adaptive GAN weight at the decoder's last layer.

    ``scale * ||d rec / d W|| / (||d g / d W|| + 1e-4)``, clamped to ``[0, max_weight]``
    and detached. Returns 0 when not differentiable (e.g. in eval mode).
    """
    if not (rec_loss.requires_grad and g_loss.requires_grad):
        return torch.zeros((), device=rec_loss.device)
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = rec_grad.float().norm() / (g_grad.float().norm() + 1e-4)
    return (w.clamp(0.0, max_weight) * scale).detach()

"""Vector quantiser with EMA codebook updates, k-means initialisation and dead-code restart.

Lookup
    ``distance="l2"``: the code nearest in squared Euclidean distance
    (``argmin_k |e_k|² - 2 z·e_k``). ``distance="cosine"``: latents and codes are
    l2-normalised first and the code of largest cosine similarity is chosen; the
    normalised latent is what the decoder sees (through the straight-through estimator),
    and the EMA and the commitment loss work on normalised vectors too.
Codebook updates
    No codebook loss: after each training forward the codes move to the exponential
    moving average (``decay``) of the latents assigned to them, with Laplace-smoothed
    counts (van den Oord et al. 2017, appendix; as in taming-transformers' EMA quantiser).
    Only valid (unpadded) tokens count. Under ``torch.distributed`` counts and sums are
    all-reduced, and random choices (k-means seeds, restarts) are broadcast from rank 0,
    so every replica holds the same codebook.
Initialisation
    With ``kmeans_init`` the codebook is set by k-means (k-means++ seeds, then
    ``kmeans_iters`` Lloyd iterations) on the valid latents of the first training batch.
Dead codes
    A code whose EMA count falls below ``dead_ratio`` × the mean EMA count is restarted
    on a random valid latent of the current batch, with the mean count (a grace period).
Gradients
    Straight-through: ``z + (z_q - z).detach()``; the encoder gets the commitment loss
    ``beta * mean((z - sg(z_q))²)`` over valid tokens.

Everything here runs in float32, with autocast disabled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tokenizer.vqgan.config import QuantizerConfig

log = logging.getLogger(__name__)

_CHUNK = 16384  # latents per distance block (bounded memory: chunk × n_codes floats)


@dataclass
class QuantizerOutput:
    """Result of quantising a latent grid.

    Attributes
    ----------
    z_q : Tensor, (B, D, H, W)
        Quantised latents with straight-through gradients.
    codes : Tensor, (B, H, W), int64
        Code indices.
    commit_loss : Tensor, scalar
        ``beta`` × commitment loss over valid tokens.
    perplexity : Tensor, scalar
        ``exp(entropy)`` of the code histogram of this batch's valid tokens.
    batch_usage : Tensor, scalar
        Fraction of codes used by this batch's valid tokens.
    """

    z_q: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    perplexity: torch.Tensor
    batch_usage: torch.Tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t)
    return t


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


def nearest_codes(x: torch.Tensor, codebook: torch.Tensor, *, cosine: bool, chunk: int = _CHUNK) -> torch.Tensor:
    """Index of the nearest code for each row of ``x`` ``(N, D)``, in bounded chunks.

    With ``cosine`` both are expected l2-normalised and the largest dot product wins.
    """
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    e2 = None if cosine else (codebook * codebook).sum(1)
    for i in range(0, x.shape[0], chunk):
        dots = x[i:i + chunk] @ codebook.t()
        out[i:i + chunk] = dots.argmax(1) if cosine else (e2 - 2 * dots).argmin(1)
    return out


def kmeans_pp_seeds(x: torch.Tensor, k: int, rounds: int = 64) -> torch.Tensor:
    """k-means++ seeding in at most ``rounds`` rounds: ``k`` rows of ``x`` drawn ∝ squared distance to the seeds so far.

    Each round draws ``ceil(k / rounds)`` seeds at once (exact k-means++ when ``k <= rounds``),
    which keeps large codebooks (8192 codes) fast.
    """
    n = x.shape[0]
    per = max(1, -(-k // rounds))
    seeds = [torch.randint(n, (1,), device=x.device)]
    d2 = ((x - x[seeds[0]]) ** 2).sum(1)
    have = 1
    while have < k:
        m = min(per, k - have)
        total = d2.sum()
        if total > 0 and int((d2 > 0).sum()) >= m:
            new = torch.multinomial(d2 / total, m, replacement=False)
        else:
            new = torch.randint(n, (m,), device=x.device)
        seeds.append(new)
        d2 = torch.minimum(d2, torch.cdist(x, x[new]).pow(2).min(1).values)
        have += m
    return x[torch.cat(seeds)].clone()


def kmeans(x: torch.Tensor, k: int, iters: int, *, cosine: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of ``x`` ``(N, D)`` from k-means++ seeds; returns centres ``(k, D)`` and counts ``(k,)``.

    With fewer rows than ``k`` some seeds repeat (with a little noise); such codes end up
    dead and are restarted later.
    """
    centres = kmeans_pp_seeds(x, k)
    if x.shape[0] < k:
        centres += 1e-3 * x.std() * torch.randn_like(centres)
    if cosine:
        centres = F.normalize(centres, dim=1)
    counts = torch.zeros(k, device=x.device)
    for _ in range(max(iters, 1)):
        assign = nearest_codes(x, centres, cosine=cosine)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        used = counts > 0
        centres[used] = sums[used] / counts[used, None]
        if cosine:
            centres = F.normalize(centres, dim=1)
    return centres, counts


class VectorQuantizerEMA(nn.Module):
    """EMA vector quantiser (see the module docstring).

    Parameters
    ----------
    config : QuantizerConfig
        Codebook size and dimension, distance, decay, restart and init settings.

    Notes
    -----
    Buffers (all saved in the state dict): ``codebook`` ``(K, D)``, ``cluster_size``
    ``(K,)`` EMA counts, ``embed_sum`` ``(K, D)`` EMA sums, ``initted`` (k-means done),
    ``last_used`` ``(K,)`` training step at which each code was last used, ``steps``.
    """

    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = config
        k, d = config.n_codes, config.dim
        init = torch.randn(k, d)
        if config.distance == "cosine":
            init = F.normalize(init, dim=1)
        self.register_buffer("codebook", init)
        self.register_buffer("cluster_size", torch.ones(k))
        self.register_buffer("embed_sum", init.clone())
        self.register_buffer("initted", torch.tensor(not config.kmeans_init))
        self.register_buffer("last_used", torch.full((k,), -1, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def cosine(self) -> bool:
        """Whether lookup is by cosine similarity."""
        return self.config.distance == "cosine"

    def recent_usage(self) -> float:
        """Fraction of codes used in the last ``usage_window`` training steps."""
        since = int(self.steps) - self.config.usage_window
        used = (self.last_used > since) & (self.last_used > 0)
        return float(used.float().mean())

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors for indices ``(B, H, W)`` → ``(B, D, H, W)``."""
        return self.codebook[codes].permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """Quantise ``z`` ``(B, D, H, W)``; ``mask`` ``(B, H, W)`` bool marks valid tokens.

        In training mode the codebook is initialised (once), EMA-updated and dead codes
        are restarted, from valid tokens only.
        """
        b, d, h, w = z.shape
        if d != self.config.dim:
            raise ValueError(f"latents of dimension {self.config.dim} expected, found {d}")
        if mask is None:
            mask = torch.ones((b, h, w), dtype=torch.bool, device=z.device)
        elif mask.shape != (b, h, w):
            raise ValueError(f"token mask of shape {(b, h, w)} expected, found {tuple(mask.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = z.float().permute(0, 2, 3, 1).reshape(-1, d)
            if self.cosine:
                flat = F.normalize(flat, dim=1)
            valid = mask.reshape(-1)
            if self.training and not bool(self.initted):
                self._init_kmeans(flat.detach()[valid])
            codes = nearest_codes(flat.detach(), self.codebook, cosine=self.cosine)
            counts = torch.bincount(codes[valid], minlength=self.config.n_codes).float()
            zq = self.codebook[codes].clone()  # the codes as they were at lookup
            if self.training:
                self._update(flat.detach(), codes, valid, counts)
            vf = valid.float()[:, None]
            n_valid = (vf.sum() * d).clamp_min(1.0)
            commit = self.config.beta * (((flat - zq.detach()) ** 2) * vf).sum() / n_valid
            zq_st = flat + (zq - flat).detach()
            p = counts / counts.sum().clamp_min(1.0)
            perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
            usage = (counts > 0).float().mean()
        zq_st = zq_st.view(b, h, w, d).permute(0, 3, 1, 2).contiguous()
        return QuantizerOutput(z_q=zq_st, codes=codes.view(b, h, w), commit_loss=commit,
                               perplexity=perplexity, batch_usage=usage)

    @torch.no_grad()
    def _init_kmeans(self, x: torch.Tensor) -> None:
        cfg = self.config
        if x.shape[0] == 0:
            return
        centres, counts = kmeans(x, cfg.n_codes, cfg.kmeans_iters, cosine=self.cosine)
        _broadcast(centres)
        _broadcast(counts)
        size = counts.clamp_min(1.0)
        self.codebook.copy_(centres)
        self.cluster_size.copy_(size)
        self.embed_sum.copy_(centres * size[:, None])
        self.initted.fill_(True)
        log.info("codebook initialised by k-means on %d latents (%d codes, %d iterations)",
                 x.shape[0], cfg.n_codes, cfg.kmeans_iters)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> None:
        cfg = self.config
        self.steps += 1
        counts = _all_reduce(counts.clone())
        sums = torch.zeros_like(self.codebook).index_add_(0, codes[valid], flat[valid])
        _all_reduce(sums)
        self.last_used[counts > 0] = self.steps
        if counts.sum() == 0:
            return
        self.cluster_size.mul_(cfg.decay).add_(counts, alpha=1 - cfg.decay)
        self.embed_sum.mul_(cfg.decay).add_(sums, alpha=1 - cfg.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + cfg.eps) / (n + cfg.n_codes * cfg.eps) * n
        book = self.embed_sum / smoothed[:, None]
        self.codebook.copy_(F.normalize(book, dim=1) if self.cosine else book)
        self._restart_dead(flat[valid])

    @torch.no_grad()
    def _restart_dead(self, x: torch.Tensor) -> None:
        cfg = self.config
        mean = self.cluster_size.mean()
        dead = self.cluster_size < cfg.dead_ratio * mean
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        if x.shape[0]:
            new = x[torch.randint(x.shape[0], (n_dead,), device=x.device)].clone()
        else:  # no valid latent here: keep the codes (rank 0's choice is broadcast anyway)
            new = self.codebook[dead].clone()
        _broadcast(new)
        self.codebook[dead] = new
        self.cluster_size[dead] = mean
        self.embed_sum[dead] = new * mean
        log.debug("restarted %d dead codes at step %d", n_dead, int(self.steps))

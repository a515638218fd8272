"""The session transformer: a pre-LN transformer encoder over the VQGAN token grid.

One model I/O contract (as in braindecode): :meth:`SessionTransformer.forward` returns an
:class:`EncoderOutput` with token features and a window embedding; task heads (the
masked-token head of pretraining, probes, projections) live outside the encoder.
Sessions longer than one window are encoded window by window; :func:`aggregate_windows`
turns per-window embeddings into the session embedding (documented: a mean weighted by
each window's valid tokens). A model with a short context (``ModelConfig.context_s``, the
paper's context ablation) sees crops of consecutive token columns instead of whole
windows: :meth:`SessionTransformer.embed_windows` cuts a window into such crops
(:func:`column_crops`) and pools them exactly as windows are pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clef.config import ModelConfig

#: ``kind`` recorded in a session-transformer checkpoint's ``meta.json``.
CHECKPOINT_KIND = "session_transformer"
#: Folder inside a session-transformer checkpoint holding the tokenizer it was trained on.
TOKENIZER_SUBDIR = "tokenizer"


@dataclass
class EncoderOutput:
    """What the encoder returns.

    Attributes
    ----------
    token_features : Tensor, (B, N, dim)
        Contextual features of every token (N = grid_f × grid_t), after the final norm.
    window_embedding : Tensor, (B, dim)
        Mean of the token features over valid tokens.
    valid : Tensor, (B, N) bool
        Valid (non-padding) tokens.
    """

    token_features: torch.Tensor
    window_embedding: torch.Tensor
    valid: torch.Tensor


class SessionTransformer(nn.Module):
    """Transformer encoder over a window's token grid.

    Parameters
    ----------
    cfg : ModelConfig
        ``vocab_size`` and ``grid`` must be set (they come from the tokenizer).

    Notes
    -----
    Positions: a learned embedding of the frequency row plus a learned embedding of the
    time column (factorised 2-D position), added to the token embedding. A crop of ``t``
    columns (short context) takes the first ``t`` column embeddings: positions are
    relative to the crop, as in a model whose whole input is that long. The extra
    token id ``vocab_size`` is ``[MASK]``. Padding tokens are excluded from attention
    (key padding mask) and from the pooled embedding.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None or cfg.grid is None:
            raise ValueError("ModelConfig.vocab_size and .grid must be set before building the model")
        self.cfg = cfg
        gf, gt = cfg.grid
        self.mask_id = cfg.vocab_size
        self.tok = nn.Embedding(cfg.vocab_size + 1, cfg.dim)
        self.pos_f = nn.Parameter(torch.zeros(gf, cfg.dim))
        self.pos_t = nn.Parameter(torch.zeros(gt, cfg.dim))
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.heads, int(cfg.dim * cfg.mlp_ratio), cfg.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos_f, std=0.02)
        nn.init.normal_(self.pos_t, std=0.02)

    @property
    def n_tokens(self) -> int:
        """Tokens per window."""
        gf, gt = self.cfg.grid  # type: ignore[misc]
        return gf * gt

    def positions(self, columns: int | None = None) -> torch.Tensor:
        """(grid_f × columns, dim) position embeddings, row-major over (frequency, time).

        ``columns`` (default: the whole grid) time columns from the first.
        """
        pos_t = self.pos_t if columns is None else self.pos_t[:columns]
        return (self.pos_f[:, None, :] + pos_t[None, :, :]).reshape(-1, self.cfg.dim)

    def forward(self, codes: torch.Tensor, valid: torch.Tensor, masked: torch.Tensor | None = None) -> EncoderOutput:
        """Encode windows.

        Parameters
        ----------
        codes : Tensor, (B, N) or (B, grid_f, t), integer
            Token ids in ``[0, vocab_size)``: whole windows (``N = grid_f × grid_t``), or
            crops of ``t <= grid_t`` consecutive columns, which must be given in the 3-D
            shape (short context).
        valid : Tensor, same number of elements, bool
            Valid tokens (False for padding).
        masked : Tensor, same number of elements, bool, optional
            Tokens replaced by ``[MASK]`` (pretraining).
        """
        b = codes.shape[0]
        gf, gt = self.cfg.grid  # type: ignore[misc]
        columns = None
        if codes.ndim == 3 and codes.shape[1] == gf and 0 < codes.shape[2] < gt:
            columns = int(codes.shape[2])
        codes = codes.reshape(b, -1).long()
        valid = valid.reshape(b, -1).bool()
        if columns is None and codes.shape[1] != self.n_tokens:
            raise ValueError(f"expected {self.n_tokens} tokens per window (grid {self.cfg.grid}), or a crop "
                             f"({gf}, t <= {gt}), found {codes.shape[1]}")
        if masked is not None:
            codes = codes.masked_fill(masked.reshape(b, -1).bool(), self.mask_id)
        x = self.tok(codes) + self.positions(columns)[None]
        x = self.norm(self._encode(x, valid))
        w = valid.to(x.dtype)[..., None]
        emb = (x * w).sum(1) / w.sum(1).clamp(min=1.0)
        return EncoderOutput(token_features=x, window_embedding=emb, valid=valid)

    def embed_windows(self, codes: torch.Tensor, valid: torch.Tensor, columns: int | None = None) -> torch.Tensor:
        """Embeddings ``(B, dim)`` of whole windows, in this model's context.

        Parameters
        ----------
        codes, valid : Tensor, (B, N) or (B, grid_f, grid_t)
            Whole windows.
        columns : int, optional
            Context in token columns (:func:`context_columns`). None or the whole grid:
            ``forward(codes, valid).window_embedding``, unchanged. Fewer: each window is cut
            into consecutive non-overlapping crops of ``columns`` columns
            (:func:`column_crops`), each crop encoded on its own, and a window's embedding
            is the mean of its crops' embeddings weighted by their valid tokens, the
            pooling :func:`aggregate_windows` applies to windows; a window without a valid
            token gets zeros, as in :meth:`forward`.
        """
        gf, gt = self.cfg.grid  # type: ignore[misc]
        if columns is None or columns >= gt:
            return self(codes, valid).window_embedding
        b = codes.shape[0]
        crops, crop_valid, owner = column_crops(codes.reshape(b, gf, gt), valid.reshape(b, gf, gt), columns)
        if crops.shape[0] == 0:
            return torch.zeros(b, self.cfg.dim, dtype=self.tok.weight.dtype, device=codes.device)
        emb = self(crops, crop_valid).window_embedding
        return aggregate_windows(emb, crop_valid.reshape(crops.shape[0], -1).sum(1), owner, b)

    def _encode(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Run the blocks so that padding tokens are never attended to.

        In training, one call with a key padding mask. In inference, rows without padding
        go through unmasked in one call (:func:`pre_ln_inference`), and each padded row is encoded
        on its valid tokens only (equivalent to masking the others, several times
        cheaper on CPU); padded rows with as many valid tokens are gathered into one call
        (a batch of windows of one recording, or an explanation's occluded variants, share
        their padding: one call runs the matrix products on a taller operand); padding
        positions are left at their input embedding.
        """
        if self.training or torch.is_grad_enabled():
            attend = valid.clone()
            attend[~valid.any(1)] = True  # a row with no valid token attends to itself
            return self.blocks(x, src_key_padding_mask=~attend)
        out = x.clone()
        full = valid.all(1)
        if full.any():
            out[full] = pre_ln_inference(self.blocks, x[full])
        counts = valid.sum(1)
        padded = torch.nonzero(~full & (counts > 0)).flatten()
        for n in counts[padded].unique().tolist():
            rows = padded[counts[padded] == n]
            idx = torch.nonzero(valid[rows])[:, 1].reshape(len(rows), n)  # each row's valid tokens, in order
            out[rows[:, None], idx] = pre_ln_inference(self.blocks, x[rows[:, None], idx])
        return out

    def embed_windows_weighted(self, codes: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor,
                               columns: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Window (or crop) embeddings with a presence weight per token, differentiable in the weights.

        A token of weight ``w`` counts ``w`` times as a key of every attention (its
        attention weights multiplied by ``w`` before normalising) and in the pooled mean: weight 1 everywhere is
        :meth:`embed_windows`, weight 0 is the token taken away as a gap in the token mask
        (neither attended to nor pooled). The derivative in a token's weight is the
        first-order effect of taking it away (``clef.explain``'s time attribution).

        Parameters
        ----------
        codes, valid : Tensor, (B, grid_f, grid_t)
            Whole windows.
        weight : Tensor, (B, grid_f, grid_t) float
            Presence weights in ``[0, 1]`` (those of invalid tokens are not used).
        columns : int, optional
            Context in token columns, as in :meth:`embed_windows`.

        Returns
        -------
        embeddings : Tensor, (K, dim)
            Of each window (or crop of ``columns`` columns) holding a valid token.
        mass : Tensor, (K,)
            The sum of its valid tokens' weights (the valid-token count at weight 1), the
            weight :func:`aggregate_windows` gives it when pooling.
        owner : Tensor, (K,) long
            The window of each.
        """
        gf, gt = self.cfg.grid  # type: ignore[misc]
        b = codes.shape[0]
        codes, valid, weight = codes.reshape(b, gf, gt), valid.reshape(b, gf, gt).bool(), weight.reshape(b, gf, gt)
        owner = torch.arange(b, device=codes.device)
        if columns is not None and columns < gt:
            k = gt // columns
            crops, crop_valid, owner = column_crops(codes, valid, columns)
            keep = valid.reshape(b, gf, k, columns).permute(0, 2, 1, 3).reshape(b * k, -1).any(1)
            weight = weight.reshape(b, gf, k, columns).permute(0, 2, 1, 3).reshape(b * k, gf, columns)[keep]
            codes, valid = crops, crop_valid
        keep = valid.reshape(codes.shape[0], -1).any(1)
        codes, valid, weight, owner = codes[keep], valid[keep], weight[keep], owner[keep]
        n_cols = codes.shape[-1]
        pos = self.positions(None if n_cols == gt else n_cols)
        embs, mass = [], []
        for r in range(codes.shape[0]):  # each on its valid tokens only, as in inference
            idx = torch.nonzero(valid[r].reshape(-1)).flatten()
            w = weight[r].reshape(-1)[idx].to(self.tok.weight.dtype)
            x = self.tok(codes[r].reshape(-1)[idx].long()) + pos[idx]
            x = self.norm(pre_ln_inference(self.blocks, x[None], key_weight=w[None]))[0]
            embs.append((x * w[:, None]).sum(0) / w.sum().clamp(min=1e-12))
            mass.append(w.sum())
        if not embs:
            empty = torch.zeros(0, self.cfg.dim, dtype=self.tok.weight.dtype, device=codes.device)
            return empty, empty[:, 0], owner
        return torch.stack(embs), torch.stack(mass), owner

def pre_ln_inference(blocks: nn.TransformerEncoder, x: torch.Tensor,
                     key_weight: torch.Tensor | None = None) -> torch.Tensor:
    """``blocks(x)`` for inference without padding, with attention that never holds the
    ``(heads, N, N)`` score matrix.

    Same weights and arithmetic as PyTorch's encoder for pre-LN layers with exact GELU
    (dropout off), but attention through
    :func:`torch.nn.functional.scaled_dot_product_attention` (a fused kernel on CPU and
    GPU). PyTorch's own inference fast path materialises the scores: for a 2048-token
    window of ``base`` (6 heads) that is ~100 MB a layer, allocated and page-faulted
    anew each time. The fused kernel never holds the scores, so a window costs less time
    and far fewer page faults, and two worker processes no longer slow each other down
    through the memory system (measured in bench/RESULTS.md).

    Parameters
    ----------
    blocks : nn.TransformerEncoder
        Of ``nn.TransformerEncoderLayer`` (``batch_first``); layers that are not pre-LN
        with GELU go through PyTorch's own path.
    x : Tensor, (B, N, dim)
        Input features, no padding.
    key_weight : Tensor, (B, N), optional
        A presence weight of each key, multiplying its attention weights before they are
        normalised (softmax of the logits plus ``log`` weight; weight 0: the key is
        masked): :meth:`SessionTransformer.embed_windows_weighted`. Differentiable; computed
        as attention over the weighted values with the weights as one more value column
        (numerator and normaliser from one fused call, which has a backward pass that
        never holds the scores either, unlike an additive mask's).

    Returns
    -------
    Tensor, (B, N, dim)
    """
    b, n, d = x.shape
    weight = None if key_weight is None else key_weight.to(x.dtype)[:, None, :, None]
    for layer in blocks.layers:
        attn = layer.self_attn
        if not (layer.norm_first and getattr(layer, "activation_relu_or_gelu", 0) == 2 and attn.batch_first
                and attn._qkv_same_embed_dim and attn.in_proj_bias is not None):
            if weight is not None:
                raise ValueError("key_weight needs pre-LN layers with GELU and a packed in-projection")
            x = layer(x)
            continue
        heads = attn.num_heads
        qkv = nn.functional.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        if weight is None:
            a = nn.functional.scaled_dot_product_attention(q, k, v)
        else:  # weighted values and the weights as one more column (queries and keys padded with a zero
            # column, as the fused kernel wants one head size): numerator and normaliser in one call
            zero = q.new_zeros(b, heads, n, 1)
            a = nn.functional.scaled_dot_product_attention(
                torch.cat([q, zero], -1), torch.cat([k, zero], -1),
                torch.cat([v * weight, weight.expand(b, heads, n, 1)], -1), scale=(d // heads) ** -0.5)
            a = a[..., :-1] / a[..., -1:]
        x = x + attn.out_proj(a.transpose(1, 2).reshape(b, n, d))
        x = x + layer.linear2(nn.functional.gelu(layer.linear1(layer.norm2(x))))
    return blocks.norm(x) if blocks.norm is not None else x


class MaskedTokenHead(nn.Module):
    """Pretraining head: predicts the codebook id of every token (separate from the encoder)."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, vocab_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) → (B, N, vocab_size) logits."""
        return self.proj(self.norm(features))


def context_columns(cfg: ModelConfig, window_s: float) -> int | None:
    """Token columns of a model's context (``cfg.context_s``), or None for the whole window.

    Parameters
    ----------
    cfg : ModelConfig
        With ``grid`` set.
    window_s : float
        Seconds the grid's columns span (the contract's ``window_s``, 1280).

    Raises
    ------
    ValueError
        ``context_s`` longer than the window, not a whole number of columns, or a number
        of columns that does not divide the grid (crops would differ in length).
    """
    if cfg.context_s is None:
        return None
    if cfg.grid is None:
        raise ValueError("ModelConfig.grid must be set to resolve context_s")
    gt = cfg.grid[1]
    column_s = window_s / gt
    cols = cfg.context_s / column_s
    if cfg.context_s > window_s or abs(cols - round(cols)) > 1e-6 or gt % round(cols):
        raise ValueError(f"context_s must be a whole number of token columns ({column_s:g} s each) that divides the "
                         f"{gt} columns of a {window_s:g} s window, found {cfg.context_s:g} s")
    return None if round(cols) == gt else int(round(cols))


def column_crops(codes: torch.Tensor, valid: torch.Tensor, columns: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
    """Cut windows ``(B, grid_f, grid_t)`` into consecutive crops of ``columns`` time columns.

    Returns
    -------
    crops, crop_valid : Tensor, (K, grid_f, columns)
        Crops holding at least one valid token, window by window, in time order.
    owner : Tensor, (K,) long
        Window of each crop.
    """
    b, gf, gt = codes.shape
    if columns < 1 or gt % columns:
        raise ValueError(f"crops of {columns} columns must divide the {gt} columns of a window")
    k = gt // columns
    crops = codes.reshape(b, gf, k, columns).permute(0, 2, 1, 3).reshape(b * k, gf, columns)
    crop_valid = valid.reshape(b, gf, k, columns).permute(0, 2, 1, 3).reshape(b * k, gf, columns)
    owner = torch.arange(b, device=codes.device).repeat_interleave(k)
    keep = crop_valid.reshape(b * k, -1).any(1)
    return crops[keep], crop_valid[keep], owner[keep]


def aggregate_windows(window_embeddings: torch.Tensor, n_valid_tokens: torch.Tensor,
                      owner: torch.Tensor | None = None, n_sessions: int | None = None) -> torch.Tensor:
    """Session embedding: mean of window embeddings weighted by their valid tokens.

    The one pooling of windows into sessions (and of crops into windows): inference
    (:class:`clef.embedding.SessionEmbedder`), training (:class:`clef.align.module.AlignModule`)
    and :meth:`SessionTransformer.embed_windows` call it, so that a model is trained on
    the embedding it serves. A session none of whose windows holds a valid token gets
    the plain mean of its windows.

    Parameters
    ----------
    window_embeddings : Tensor, (W, dim)
    n_valid_tokens : Tensor, (W,)
    owner : Tensor, (W,) int64, optional
        Session of each window (``0 .. n_sessions - 1``), for several sessions at once;
        None: the windows of one session.
    n_sessions : int, optional
        Number of sessions (required with ``owner``); a session without windows gets zeros.

    Returns
    -------
    Tensor
        ``(dim,)`` without ``owner``, ``(n_sessions, dim)`` with it.
    """
    w = n_valid_tokens.to(window_embeddings.dtype).clamp(min=0)
    if owner is None:
        if not bool((w > 0).any()):
            return window_embeddings.mean(0)
        return (window_embeddings * w[:, None]).sum(0) / w.sum()
    if n_sessions is None:
        raise ValueError("aggregate_windows: n_sessions is required with owner")

    def per_session(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros((n_sessions, *v.shape[1:]), dtype=v.dtype, device=v.device).index_add_(0, owner, v)

    w = torch.where((per_session(w) > 0)[owner], w, torch.ones_like(w))  # no valid token: the plain mean
    return per_session(window_embeddings * w[:, None]) / per_session(w).clamp(min=1.0)[:, None]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in module.parameters())

"""Short-window foundation models applied to whole sessions: sliding windows + aggregation.

The CLEF paper embeds each 1280 s session with its baselines (LaBraM, CBraMod, REVE) by
cutting it into the baseline's own short windows and aggregating the window embeddings.
:class:`WindowedEmbedder` does that for any torch module mapping ``(B, channels,
samples)`` to ``(B, dim)``; :class:`LabramShaped` is a randomly initialised model of
LaBraM-base's published shape (1 s / 200-sample patches per channel, 12 transformer
layers of width 200 with 10 heads), used to measure the cost of that path when
braindecode's own ``Labram`` cannot be imported (its torchaudio dependency has no CPU
build on some machines).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    import polars as pl

    from benchmark_tasks.embeddings import EmbeddingSet

log = logging.getLogger(__name__)


def sliding_windows(data: np.ndarray, sfreq: float, window_s: float = 30.0, step_s: float | None = None,
                    sample_mask: np.ndarray | None = None, min_valid: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(channels, n)`` into windows.

    Parameters
    ----------
    data : ndarray, (channels, n)
    sfreq : float
    window_s, step_s : float
        Window length and hop (default hop = window: non-overlapping).
    sample_mask : ndarray, (n,) bool, optional
        Recorded samples; windows with less than ``min_valid`` recorded are dropped.

    Returns
    -------
    windows : ndarray, (W, channels, window samples) float32
    starts : ndarray, (W,) int
        First sample of each window.
    """
    win = int(round(window_s * sfreq))
    hop = int(round((step_s or window_s) * sfreq))
    if data.ndim != 2:
        raise ValueError(f"data of shape (channels, n) expected, found {data.shape}")
    n = data.shape[1]
    if n < win:
        pad = np.zeros((data.shape[0], win), dtype=np.float32)
        pad[:, :n] = data
        return pad[None], np.array([0])
    starts = np.arange(0, n - win + 1, hop)
    if sample_mask is not None:
        keep = [s for s in starts if sample_mask[s:s + win].mean() >= min_valid]
        starts = np.array(keep if keep else starts[:1])
    view = np.lib.stride_tricks.sliding_window_view(data, win, axis=1)[:, starts]  # (C, W, win)
    return np.ascontiguousarray(view.transpose(1, 0, 2), dtype=np.float32), starts


class WindowedEmbedder:
    """Embed a whole session with a short-window model: windows → model → mean.

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, channels, window samples)`` to ``(B, dim)``.
    window_s, step_s : float
        The model's own window (30 s for the paper's baselines) and hop.
    batch_size : int
    device : str
    """

    def __init__(self, model: nn.Module, window_s: float = 30.0, step_s: float | None = None, batch_size: int = 8,
                 device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.window_s, self.step_s, self.batch_size, self.device = window_s, step_s, batch_size, device

    @torch.no_grad()
    def embed(self, data: np.ndarray, sfreq: float, sample_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Session vector ``(dim,)`` (mean over windows) and window embeddings ``(W, dim)``."""
        windows, _ = sliding_windows(data, sfreq, self.window_s, self.step_s, sample_mask)
        outs = []
        for a in range(0, len(windows), self.batch_size):
            x = torch.from_numpy(windows[a:a + self.batch_size]).to(self.device)
            outs.append(self.model(x).float().cpu())
        w = torch.cat(outs).numpy()
        return w.mean(0), w


class LabramShaped(nn.Module):
    """A LaBraM-base-shaped encoder with random weights (for cost comparisons and tests).

    Patches of ``patch`` samples per channel → linear patch embedding → + channel and
    time embeddings → ``depth`` pre-LN transformer layers → mean over patches. In
    inference the layers run as CLEF's own model does (``fused_attention``, the default:
    :func:`clef.model.pre_ln_inference`), or through PyTorch's default encoder path.
    """

    def __init__(self, n_channels: int = 19, patch: int = 200, dim: int = 200, depth: int = 12, heads: int = 10,
                 max_patches: int = 64, fused_attention: bool = True) -> None:
        super().__init__()
        self.patch = patch
        self.fused_attention = fused_attention
        self.embed = nn.Linear(patch, dim)
        self.chan = nn.Parameter(torch.randn(n_channels, dim) * 0.02)
        self.time = nn.Parameter(torch.randn(max_patches, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, 0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, samples)`` → ``(B, dim)``."""
        b, c, n = x.shape
        t = n // self.patch
        p = x[:, :, : t * self.patch].reshape(b, c, t, self.patch)
        h = self.embed(p) + self.chan[None, :c, None, :] + self.time[None, None, :t, :]
        h = h.reshape(b, c * t, -1)
        if torch.is_grad_enabled() or not self.fused_attention:
            h = self.blocks(h)
        else:  # the inference path CLEF's own model takes, so that costs compare like with like
            from clef.model import pre_ln_inference

            h = pre_ln_inference(self.blocks, h)
        return self.norm(h).mean(1)


def windowed_embeddings(model: nn.Module, sessions: pl.DataFrame, archive: str | Path, *, name: str,
                        window_s: float = 30.0, step_s: float | None = None, input_scale: float = 1.0,
                        batch_size: int = 8, device: str = "cpu", progress: bool = False,
                        kind: str = "braindecode") -> EmbeddingSet:
    """Session vectors of a short-window model: read → windows → model → mean (as CLEF's baselines).

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, 19, window samples)`` (canonical channels, 200 Hz) to ``(B, dim)``.
    sessions : polars.DataFrame
        ``session_id`` and ``path`` (relative to ``archive``).
    archive : path
    name : str
        Name of the set in the results.
    window_s, step_s : float
        The model's window and hop in seconds.
    input_scale : float
        Multiplier from µV to the model's input units (LaBraM and CBraMod take 100 µV
        units: 0.01).
    batch_size : int
    device : str
    progress : bool
    kind : str

    Returns
    -------
    EmbeddingSet
        A baseline; unreadable files are left out (logged).
    """
    from benchmark_tasks.baselines.bandpower import read_session
    from benchmark_tasks.embeddings import EmbeddingSet
    from benchmark_tasks.progress import track

    embedder = WindowedEmbedder(model, window_s=window_s, step_s=step_s, batch_size=batch_size, device=device)
    rows = sessions.filter(sessions["path"].is_not_null()).select("session_id", "path").unique("session_id")
    rows = rows.sort("session_id")
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    for sid, rel in track(list(rows.iter_rows()), f"embed {name}", enabled=progress):
        try:
            sig = read_session(Path(archive) / rel)
            vec, _ = embedder.embed(sig.data * np.float32(input_scale), sig.sfreq, sig.sample_mask)
        except Exception as exc:  # one unreadable file does not stop the run
            log.warning("%s: session %s not embedded: %s", name, sid, exc)
            continue
        ids.append(sid)
        vecs.append(vec.astype(np.float32))
    vectors = np.stack(vecs) if vecs else np.zeros((0, 1), np.float32)
    return EmbeddingSet(name, ids, vectors, kind=kind, source=str(archive), baseline=True)

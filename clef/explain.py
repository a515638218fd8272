"""Explanations: where a session's score comes from, over channels, regions, time and frequency.

``clef explain SESSION --checkpoint CKPT (--task TASK --probes RESULTS | --neighbour ID)``
and :func:`explain` attribute a score of one session — a probe's probability (the
benchmark's :class:`benchmark_tasks.probes.TaskProbe`, or any ``(n, dim) -> (n,)``
callable) or the cosine similarity of its embedding to another session's
(:func:`similarity_scorer`) — to the parts of the session, by **occlusion**: a part is
taken away, the session is embedded again and scored, and the part's attribution is the
score's drop (``baseline - occluded``; positive: the part supports the score).

Occlusion is chosen over gradients because it is faithful by construction (each number
is what the model does without that part, not a local linearisation through the
VQGAN's non-differentiable quantiser), it needs nothing of the model but its forward
pass (any probe, any checkpoint, the similarity of two sessions alike), and each part is
taken away the way the platform already handles missing data, or for a hemisphere by the
other side's copy, so the occluded session is one the model is built to see:

* **channels and lobes** (``channel``, and the ``frontal``, ``temporal``, ``central``,
  ``parietal`` and ``occipital`` values of ``region``, :func:`channel_regions`): the
  channel (or every channel of the lobe) is absent through the channel mask, as an
  electrode that was not recorded: its rows of the tokenizer's input are zero
  (:func:`tokenizer.windows.window_input`), and the windows are tokenized again;
* **hemispheres** (the ``left`` and ``right`` values of ``region``, the lateral electrodes
  of each side), by ``hemisphere_baseline``: ``mirror`` (default) replaces the side's
  electrodes by their homologues on the other side (Fp1 by Fp2, T3 by T4, ...,
  :func:`mirror_hemisphere`), the counterfactual "this side as the other one", a
  symmetric session of the kind the tokenizer and the encoder were trained on;
  ``absent`` zeroes them through the channel mask as for a lobe. A whole side absent is
  an input no training session held: zero scaled input is a flat 0 dB spectrum (not the
  lowest power: most of a real spectrogram lies below it), the side's tokens take codes
  that are rare in training, and the session's embedding lands far from every real
  session, so a side's drop measures the model's reaction to a one-sided blank as much
  as the finding (``bench/explain_occlusion_ood.py``, bench/RESULTS.md "Explanations");
* **time** (``time``, one value per ``minute_s``): the tokens of that minute are invalid
  in the token mask, as a gap in the recording: the transformer neither attends to nor
  pools them. With ``time_method="gradient"`` this occlusion is taken to first
  order: every token gets a presence weight (1 as it is, 0 a gap:
  :meth:`clef.model.SessionTransformer.embed_windows_weighted`), and a minute's value is
  the sum of the score's derivatives in its tokens' weights, from one forward and one
  backward pass instead of one encoder pass per minute (a minute is a small part of a
  window, so the first order is close: ``bench/explain_speed.py`` compares it with the
  exact occlusion); ``time_method="occlusion"`` encodes the window holding each minute
  again without it; the default, ``auto``, takes the exact occlusion unless it costs more
  encoder passes than the gradient's forward and backward pass (:data:`GRADIENT_PASSES`
  per window), as it does for sessions of more than a few minutes;
* **frequency** (``band``, one value per band of :data:`tokenizer.multitaper.CANONICAL_BANDS`):
  the band's bins of every channel and frame are replaced by the straight line (in dB)
  between the bins just outside it, so the band carries only the power its neighbours
  imply (a peak or an excess in it is gone, the spectrum's slope is kept), and the
  windows are tokenized again.

The spectrogram is computed once; every occluded variant is made from it (a copy of the
model input with rows zeroed or bins replaced, or a token mask), and the variants are
batched through the tokenizer and the encoder; a window whose codes an occlusion left
unchanged is not encoded again. The channel, region and band occlusions stay exact: they
change most of a window's codes, where a first-order estimate through the encoder is far
off (bench/RESULTS.md, "Explanations"). Absent channels get NaN (nothing to take away), as
do minutes without a valid frame.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clef.embedding import Embedder
from clef.model import aggregate_windows
from tokenizer import Recording
from tokenizer.ingest import RecordingStream
from tokenizer.multitaper import CANONICAL_BANDS
from tokenizer.spectrogram_cache import SessionSpectrogram, checked_frames, compute_spectrogram
from tokenizer.vqgan.layout import HemisphereLayout
from tokenizer.windows import split_windows, token_mask_np

__all__ = [
    "GRADIENT_PASSES",
    "HEMISPHERE_BASELINES",
    "REGION_NAMES",
    "Explanation",
    "Scorer",
    "channel_regions",
    "explain",
    "inpaint_band",
    "mirror_hemisphere",
    "read_spectrogram",
    "similarity_scorer",
]

log = logging.getLogger(__name__)

#: Cost of the gradient's forward and backward pass, in encoder passes per window
#: (bench/explain_speed.py, bench/RESULTS.md "Explanations"): ``time_method="auto"`` occludes
#: the time steps one by one when that takes no more passes.
GRADIENT_PASSES = 4
#: A score function: session embeddings ``(n, dim)`` → scores ``(n,)``.
Scorer = Callable[[np.ndarray], np.ndarray]

#: How a hemisphere is taken away (:func:`explain`'s ``hemisphere_baseline``): its electrodes
#: replaced by their homologues, or absent (zero input) as a lobe is.
HEMISPHERE_BASELINES: tuple[str, ...] = ("mirror", "absent")
#: Regions occluded as one, in this order: hemispheres (lateral electrodes), then lobes.
REGION_NAMES: tuple[str, ...] = ("left", "right", "frontal", "temporal", "central", "parietal", "occipital")
#: 10-20 name stems of each lobe (the letters before the number or ``z``).
_LOBES = {"fp": "frontal", "f": "frontal", "t": "temporal", "c": "central", "p": "parietal", "o": "occipital"}


def channel_regions(channels: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Indices of the channels of each region of :data:`REGION_NAMES`.

    The hemispheres are the lateral electrodes of each side
    (:class:`tokenizer.vqgan.layout.HemisphereLayout`: odd numbers left, even right); the
    lobes are named by the electrode's letters (``Fp``/``F`` frontal, ``T`` temporal,
    ``C`` central, ``P`` parietal, ``O`` occipital), midline electrodes included.

    Raises
    ------
    ValueError
        A channel without a 10-20 side, or one whose letters name no lobe.
    """
    layout = HemisphereLayout.from_channels(channels)
    out: dict[str, list[int]] = {r: [] for r in REGION_NAMES}
    out["left"] = list(layout.left[:layout.n_lateral])
    out["right"] = list(layout.right[:layout.n_lateral])
    for i, name in enumerate(channels):
        stem = name.rstrip("0123456789zZ").lower()
        if stem not in _LOBES:
            raise ValueError(f"channel {name!r}: a 10-20 name of a lobe (Fp, F, T, C, P, O) expected")
        out[_LOBES[stem]].append(i)
    return {r: tuple(sorted(v)) for r, v in out.items()}


def similarity_scorer(reference: np.ndarray) -> Scorer:
    """Cosine similarity of each embedding to ``reference`` (another session's embedding)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(ref))
    if not math.isfinite(norm) or norm == 0:
        raise ValueError("a reference embedding with a finite, non-zero norm expected")
    ref = ref / norm

    def score(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n = np.linalg.norm(x, axis=-1)
        return (x @ ref) / np.where(n > 0, n, 1.0)

    return score


@dataclass
class Explanation:
    """Occlusion attribution of one session's score (see the module docstring).

    Every attribution is ``baseline - score without the part``.

    Attributes
    ----------
    target : str
        What was explained: ``probe:<task>`` or ``similarity:<session>``.
    baseline : float
        The session's score, nothing occluded.
    channels : tuple of str
        Contract channel order.
    channel : ndarray, (channels,)
        Per channel (NaN: absent in the recording).
    regions : tuple of str
    region : ndarray, (regions,)
    minute_s : float
        Seconds per time step.
    time : ndarray, (minutes,)
        Per time step from the start (NaN: no valid frame).
    bands : dict of str to (float, float)
        The band table used (Hz).
    band : ndarray, (bands,)
    freqs : ndarray, (bins,)
        Spectrogram bin frequencies (Hz).
    csa : ndarray, (2, minutes, bins) float32
        Left and right hemisphere CSA (mean dB over each side's present lateral
        electrodes per bin and step; NaN without valid frames), for the figure.
    source_path, source_sha256, model_id : str
    seconds : float
        Wall time of the attribution (the reading excluded).
    n_variants : int
        Sessions scored: the baseline and the occluded ones (the time steps among them
        only when the time was attributed by occlusion).
    embedding : ndarray, (dim,) float32
        The session embedding, nothing occluded (what the neighbours are searched with).
    time_method : str
        ``occlusion`` or ``gradient`` (the time attribution to first order, see :func:`explain`).
    hemisphere_baseline : str
        How the ``left`` and ``right`` regions were taken away: ``mirror`` or ``absent``
        (:data:`HEMISPHERE_BASELINES`).
    extra : dict
        Added to :meth:`to_dict` (e.g. the nearest labelled sessions).
    """

    target: str
    baseline: float
    channels: tuple[str, ...]
    channel: np.ndarray
    regions: tuple[str, ...]
    region: np.ndarray
    minute_s: float
    time: np.ndarray
    bands: dict[str, tuple[float, float]]
    band: np.ndarray
    freqs: np.ndarray
    csa: np.ndarray
    source_path: str
    source_sha256: str
    model_id: str
    seconds: float
    n_variants: int
    embedding: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    time_method: str = "occlusion"
    hemisphere_baseline: str = "mirror"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hemisphere(self) -> str | None:
        """``left`` or ``right``: the hemisphere whose occlusion drops the score more (None on a tie or NaN)."""
        left, right = (float(self.region[self.regions.index(s)]) for s in ("left", "right"))
        if not (math.isfinite(left) and math.isfinite(right)) or left == right:
            return None
        return "left" if left > right else "right"

    @property
    def top_minute(self) -> int | None:
        """Index of the most attributed time step (None when every step is NaN)."""
        return None if not np.isfinite(self.time).any() else int(np.nanargmax(self.time))

    @property
    def top_band(self) -> str | None:
        """Name of the most attributed band (None when every band is NaN)."""
        return None if not np.isfinite(self.band).any() else list(self.bands)[int(np.nanargmax(self.band))]

    def band_shares(self) -> dict[str, float]:
        """Each band's positive attribution over the sum of the bands' positive attributions."""
        pos = np.clip(np.nan_to_num(self.band, nan=0.0), 0, None)
        total = float(pos.sum())
        return {b: (float(v) / total if total > 0 else float("nan")) for b, v in zip(self.bands, pos)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as null; the CSA is left out: it is the figure's)."""
        def arr(a: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(a, dtype=np.float64)]

        return {
            "target": self.target, "baseline": self.baseline, "model_id": self.model_id,
            "source_path": self.source_path, "source_sha256": self.source_sha256,
            "method": "occlusion: baseline score minus the score without the part (the time steps to first "
                      "order when time_method is 'gradient')",
            "time_method": self.time_method, "hemisphere_baseline": self.hemisphere_baseline,
            "channel": dict(zip(self.channels, arr(self.channel))),
            "region": dict(zip(self.regions, arr(self.region))),
            "time": {"step_s": self.minute_s, "start_s": [k * self.minute_s for k in range(len(self.time))],
                     "attribution": arr(self.time)},
            "band": {b: {"hz": list(self.bands[b]), "attribution": v} for b, v in zip(self.bands, arr(self.band))},
            "summary": {"hemisphere": self.hemisphere, "top_minute": self.top_minute, "top_band": self.top_band,
                        "band_shares": self.band_shares()},
            "seconds": round(self.seconds, 3), "n_variants": self.n_variants, **self.extra,
        }


def read_spectrogram(path: str | Path, embedder: Embedder, *, threads: int | None = None) -> SessionSpectrogram:
    """A file's whole spectrogram under the checkpoint's contract, read once (streamed).

    Raises
    ------
    tokenizer.IngestError
        The file cannot be read, or holds no spectrogram window (:class:`~tokenizer.TooShortError`).
    """
    contract = embedder.contract
    stream = RecordingStream(path, contract, threads=threads, channel_map=embedder.channel_map)

    def finish() -> bool:
        if stream.info is not None:
            stream.info.check_long_enough(contract)
        return stream.info is not None

    blocks = list(checked_frames(str(path), stream, contract, finish=finish))
    values = np.concatenate([b.values for b in blocks], axis=2)
    return SessionSpectrogram(values, np.concatenate([b.frame_mask for b in blocks]).astype(bool),
                              blocks[-1].channel_mask.astype(bool), stream.source_sha256 or "", str(path))


def inpaint_band(x: np.ndarray, freqs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """``x`` (..., bins, frames) with the band's bins on the straight line between the bins just outside it.

    The frequency occlusion of :func:`explain` (``x`` in dB or dB scaled); ``freqs`` are the bins' Hz.
    """
    sel = np.flatnonzero((freqs >= band[0]) & (freqs < band[1]))
    if sel.size == 0:
        raise ValueError(f"band {band} holds no bin of the spectrogram ({freqs[0]:g}-{freqs[-1]:g} Hz)")
    lo, hi = max(int(sel[0]) - 1, 0), min(int(sel[-1]) + 1, len(freqs) - 1)
    a, b = x[..., lo, :], x[..., hi, :]
    w = ((freqs[sel] - freqs[lo]) / max(freqs[hi] - freqs[lo], 1e-9)).astype(x.dtype)
    out = x.copy()
    out[..., sel, :] = a[..., None, :] + w[:, None] * (b - a)[..., None, :]
    return out


def mirror_hemisphere(x: np.ndarray, channels: tuple[str, ...], side: str) -> np.ndarray:
    """A copy of the model input ``x (..., channels, bins, frames)`` with ``side``'s lateral
    electrodes replaced by their homologues on the other side (``hemisphere_baseline="mirror"``).

    Both sides then carry the other side's signal, so under the ``hemispheres`` tokenizer
    layout the two sides' images, and their token rows, are the same. A homologue absent
    in the recording (zero input) makes its partner absent too.

    Raises
    ------
    ValueError
        ``side`` is not ``left`` or ``right``, or the channels have no 10-20 homologues.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side: 'left' or 'right' expected, found {side!r}")
    layout = HemisphereLayout.from_channels(channels)
    left, right = list(layout.left[:layout.n_lateral]), list(layout.right[:layout.n_lateral])
    dst, src = (left, right) if side == "left" else (right, left)
    out = x.copy()
    out[..., dst, :, :] = x[..., src, :, :]
    return out


def explain(source: str | Path | Recording | SessionSpectrogram, embedder: Embedder | str | Path, score: Scorer, *,
            target: str = "score", minute_s: float = 60.0, bands: Mapping[str, tuple[float, float]] | None = None,
            channels: bool = True, time_method: str = "auto", hemisphere_baseline: str = "mirror",
            batch_size: int = 8, threads: int | None = None) -> Explanation:
    """Occlusion attribution of ``score`` on one session (see the module docstring).

    Parameters
    ----------
    source : path, Recording or SessionSpectrogram
        The session: an EDF/BDF file (read once), a recording read under the checkpoint's
        contract, or its spectrogram.
    embedder : Embedder or path
        The session-transformer checkpoint (with its ``tokenizer/``), loaded or not; an
        object with the same ``tokenizer``, ``contract``, ``encoder``, ``context_columns``,
        ``device`` and ``model_id`` serves too (the tests' hand-built model).
    score : callable
        ``(n, dim)`` embeddings → ``(n,)`` scores: a probe
        (``benchmark_tasks.probes.load_probes(RESULTS)[task]``) or :func:`similarity_scorer`.
    target : str
        Name of what is explained, recorded in the result.
    minute_s : float
        Seconds per time step; a whole number of token columns.
    bands : mapping, optional
        ``{name: (low_hz, high_hz)}``; default :data:`tokenizer.multitaper.CANONICAL_BANDS`.
    channels : bool
        Occlude every channel on its own too (the scalp map); False: regions only
        (fewer variants: 13 fewer tokenizer and encoder passes).
    time_method : {"auto", "gradient", "occlusion"}
        How the time steps are attributed: ``gradient``, the first-order effect of taking
        each step's tokens away, from one forward and one backward pass through the
        encoder (:meth:`clef.model.SessionTransformer.embed_windows_weighted`);
        ``occlusion``, one encoder pass per step and window it touches, each step's
        tokens a gap in the token mask; ``auto`` (default): occlusion when it takes at
        most :data:`GRADIENT_PASSES` encoder passes per window or the encoder has no
        presence weights, else gradient. The one used is ``Explanation.time_method``.
    hemisphere_baseline : {"mirror", "absent"}
        How the ``left`` and ``right`` regions are taken away: ``mirror`` (default), the
        side's electrodes replaced by their homologues (:func:`mirror_hemisphere`);
        ``absent``, zero input as for a lobe (the earlier behaviour). Channels and lobes
        are always absent.
    batch_size : int
        Windows per tokenizer and encoder pass.
    threads : int, optional
        Threads of the preprocessing when reading a file.

    Returns
    -------
    Explanation

    Raises
    ------
    tokenizer.IngestError
        The file cannot be read or is too short.
    ValueError
        A bad option, a spectrogram of another shape than the contract's, or a scorer
        that does not return one finite score per embedding.
    """
    if not (math.isfinite(minute_s) and minute_s > 0):
        raise ValueError(f"minute_s: a positive number of seconds expected, found {minute_s}")
    if batch_size < 1:
        raise ValueError(f"batch_size: at least 1 expected, found {batch_size}")
    if time_method not in ("auto", "gradient", "occlusion"):
        raise ValueError(f"time_method: 'auto', 'gradient' or 'occlusion' expected, found {time_method!r}")
    if hemisphere_baseline not in HEMISPHERE_BASELINES:
        raise ValueError(f"hemisphere_baseline: one of {HEMISPHERE_BASELINES} expected, found {hemisphere_baseline!r}")
    emb = Embedder(embedder) if isinstance(embedder, (str, Path)) else embedder
    weighted = hasattr(emb.encoder, "embed_windows_weighted")
    if time_method == "gradient" and not weighted:
        raise ValueError("time_method='gradient' needs an encoder with presence weights (embed_windows_weighted)")
    bands = dict(CANONICAL_BANDS if bands is None else bands)
    if not bands:
        raise ValueError("bands: at least one band expected")
    tok = emb.tokenizer
    contract = emb.contract
    if isinstance(source, SessionSpectrogram):
        spec = source
    elif isinstance(source, Recording):
        spec = compute_spectrogram(source, contract)
    else:
        spec = read_spectrogram(source, emb, threads=threads)
    sp = contract.spectrogram
    freqs = sp.fmin + np.arange(sp.n_freqs) / sp.window_s
    if spec.values.shape[:2] != (len(contract.channels), len(freqs)):
        raise ValueError(f"a spectrogram of shape ({len(contract.channels)}, {len(freqs)}, T) expected, found "
                         f"{spec.values.shape}")
    gf, gt = tok.grid
    wf = tok.spec.window_frames
    column_s = wf / gt * sp.step_s
    per_step = minute_s / column_s
    if abs(per_step - round(per_step)) > 1e-6 or round(per_step) < 1:
        raise ValueError(f"minute_s: a whole number of token columns ({column_s:g} s each) expected, found {minute_s:g}")
    per_step = int(round(per_step))
    t0 = time.perf_counter()
    cmask = spec.channel_mask.astype(bool)
    fmask = spec.frame_mask.astype(bool)
    x0, m0 = split_windows(spec.values, fmask, cmask, tok.spec)  # (W, C, F, wf), (W, wf)
    n_win = x0.shape[0]
    valid0 = token_mask_np(m0, (gf, gt))  # (W, gf, gt)
    regions = channel_regions(tuple(contract.channels))

    # -- the spectral variants: (kind, name, input)
    variants: list[tuple[str, str, np.ndarray]] = [("baseline", "", x0)]
    present = np.flatnonzero(cmask)
    if channels:
        for c in present:
            x = x0.copy()
            x[:, c] = 0.0
            variants.append(("channel", contract.channels[c], x))
    for r, idx in regions.items():
        idx_present = [i for i in idx if cmask[i]]
        if not idx_present:
            continue
        if r in ("left", "right") and hemisphere_baseline == "mirror":
            x = mirror_hemisphere(x0, tuple(contract.channels), r)
        else:
            x = x0.copy()
            x[:, idx_present] = 0.0
        variants.append(("region", r, x))
    for b, rng in bands.items():
        x = inpaint_band(x0, freqs, rng)
        x[:, ~cmask] = 0.0
        x *= m0[:, None, None, :]
        variants.append(("band", b, x))
    codes = _tokenize(tok, [v[2] for v in variants], m0, batch_size)  # (V, W, gf, gt)

    # -- window embeddings of every spectral variant (a window whose codes an occlusion left
    # as they were reuses the embedding of the first variant with those codes)
    w_emb = _encode_distinct(emb, codes, valid0, batch_size)  # (V, W, dim)
    n_tok = np.broadcast_to(valid0.reshape(n_win, -1).sum(1), (len(variants), n_win))
    sess = [_pool(w_emb[v], n_tok[v]) for v in range(len(variants))]

    col_step = np.arange(n_win * gt) // per_step  # time step of each token column, session-wide
    col_valid = valid0.any(1).reshape(-1)  # (W * gt,)
    steps_valid = sorted({int(k) for k in col_step[col_valid]})
    n_steps = steps_valid[-1] + 1 if steps_valid else 0  # steps of padding only, after the end, left out
    if time_method == "auto":
        passes = sum(len({int(c) // gt for c in np.flatnonzero(col_step == k)}) for k in steps_valid)
        windows = int(valid0.reshape(n_win, -1).any(1).sum())
        time_method = "gradient" if weighted and passes > GRADIENT_PASSES * windows else "occlusion"
    t_drop = None
    if time_method == "gradient" and steps_valid:
        t_drop = _time_gradient(emb, codes[0], valid0, w_emb[0], score, col_step, n_steps)[steps_valid]
    elif steps_valid:
        t_codes, t_valid, t_owner = [], [], []
        for k in steps_valid:
            for w in sorted({int(c) // gt for c in np.flatnonzero(col_step == k)}):
                v = valid0[w].copy()
                cols = np.flatnonzero(col_step[w * gt:(w + 1) * gt] == k)
                v[:, cols] = False
                t_codes.append(codes[0, w])
                t_valid.append(v)
                t_owner.append((k, w))
        t_emb = _encode(emb, np.stack(t_codes), np.stack(t_valid), batch_size)
        for k in steps_valid:
            we, nt = w_emb[0].copy(), n_tok[0].copy()
            for j, (kk, w) in enumerate(t_owner):
                if kk == k:
                    we[w], nt[w] = t_emb[j], t_valid[j].sum()
            sess.append(_pool(we, nt))

    # -- scores
    e = np.stack(sess).astype(np.float64)
    s = np.asarray(score(e), dtype=np.float64).reshape(-1)
    if s.shape[0] != e.shape[0] or not np.isfinite(s).all():
        raise ValueError(f"the scorer must return one finite score per embedding: {e.shape[0]} expected, found "
                         f"{s.shape[0]} ({int(np.isfinite(s).sum())} finite)")
    base = float(s[0])
    drop = base - s
    channel = np.full(len(contract.channels), np.nan)
    region = np.full(len(REGION_NAMES), np.nan)
    band = np.full(len(bands), np.nan)
    for (kind, name, _), d in zip(variants, drop):
        if kind == "channel":
            channel[contract.channels.index(name)] = d
        elif kind == "region":
            region[REGION_NAMES.index(name)] = d
        elif kind == "band":
            band[list(bands).index(name)] = d
    tattr = np.full(n_steps, np.nan)
    for k, d in zip(steps_valid, drop[len(variants):] if t_drop is None else t_drop):
        tattr[k] = d
    seconds = time.perf_counter() - t0
    log.info("explained %s of %s: %d variants in %.2f s", target, Path(spec.source_path).name, len(s), seconds)
    return Explanation(target=target, baseline=base, channels=tuple(contract.channels), channel=channel,
                       regions=REGION_NAMES, region=region, minute_s=float(minute_s), time=tattr, bands=bands,
                       band=band, freqs=freqs, csa=_csa(spec, regions, n_steps, minute_s, sp.step_s),
                       source_path=spec.source_path, source_sha256=spec.source_sha256, model_id=emb.model_id,
                       seconds=seconds, n_variants=len(s), embedding=np.asarray(sess[0], np.float32),
                       time_method=time_method, hemisphere_baseline=hemisphere_baseline)


@torch.inference_mode()
def _tokenize(tok: Any, inputs: list[np.ndarray], frame_mask: np.ndarray, batch_size: int) -> np.ndarray:
    """Codes ``(V, W, gf, gt)`` of each variant's windows, batched across variants."""
    n_win = frame_mask.shape[0]
    pairs = [(v, w) for v in range(len(inputs)) for w in range(n_win)]
    gf, gt = tok.grid
    out = np.zeros((len(inputs), n_win, gf, gt), dtype=np.int64)
    for a in range(0, len(pairs), batch_size):
        batch = pairs[a:a + batch_size]
        x = torch.from_numpy(np.stack([inputs[v][w] for v, w in batch])).to(tok.device)
        m = torch.from_numpy(np.stack([frame_mask[w] for _, w in batch])).to(tok.device)
        c, _ = tok.model.tokenize(x, m)
        c = c.cpu().numpy()
        for j, (v, w) in enumerate(batch):
            out[v, w] = c[j]
    return out


@torch.inference_mode()
def _encode(emb: Embedder, codes: np.ndarray, valid: np.ndarray, batch_size: int) -> np.ndarray:
    """Window embeddings ``(n, dim)`` of whole windows (the model's context, as the embedder)."""
    out = []
    for a in range(0, codes.shape[0], batch_size):
        c = torch.from_numpy(np.ascontiguousarray(codes[a:a + batch_size])).long().to(emb.device)
        v = torch.from_numpy(np.ascontiguousarray(valid[a:a + batch_size])).to(emb.device)
        out.append(emb.encoder.embed_windows(c, v, emb.context_columns).float().cpu().numpy())
    return np.concatenate(out)


def _encode_distinct(emb: Embedder, codes: np.ndarray, valid: np.ndarray, batch_size: int) -> np.ndarray:
    """Window embeddings ``(V, W, dim)`` of every variant's windows ``codes (V, W, gf, gt)``, each
    distinct code grid of a window encoded once (``valid (W, gf, gt)`` is every variant's)."""
    n_var, n_win = codes.shape[:2]
    first: dict[tuple[int, bytes], int] = {}
    src = np.empty((n_var, n_win), dtype=np.int64)  # row of the encoded batch each (variant, window) takes
    todo: list[tuple[int, int]] = []
    for v in range(n_var):
        for w in range(n_win):
            key = (w, codes[v, w].tobytes())
            if key not in first:
                first[key] = len(todo)
                todo.append((v, w))
            src[v, w] = first[key]
    if len(todo) < n_var * n_win:
        log.info("%d of %d occluded windows have the codes of an earlier one: not encoded again",
                 n_var * n_win - len(todo), n_var * n_win)
    out = _encode(emb, np.stack([codes[v, w] for v, w in todo]), np.stack([valid[w] for _, w in todo]), batch_size)
    return out[src]


def _score_gradient(score: Scorer, e: np.ndarray) -> np.ndarray:
    """Gradient of ``score`` at the embedding ``e (dim,)``, by central differences.

    The scorer is a black box (a probe, a similarity); one call scores the ``2 * dim``
    points, a step of 1e-3 of the embedding's root mean square along each axis.
    """
    d = e.shape[0]
    h = 1e-3 * max(float(np.sqrt(np.mean(e ** 2))), 1e-6)
    pts = np.concatenate([e + h * np.eye(d), e - h * np.eye(d)])
    s = np.asarray(score(pts), dtype=np.float64).reshape(-1)
    if s.shape[0] != 2 * d or not np.isfinite(s).all():
        raise ValueError(f"the scorer must return one finite score per embedding: {2 * d} expected, found "
                         f"{s.shape[0]} ({int(np.isfinite(s).sum())} finite)")
    return (s[:d] - s[d:]) / (2 * h)


def _time_gradient(emb: Embedder, codes: np.ndarray, valid: np.ndarray, window_embeddings: np.ndarray,
                   score: Scorer, col_step: np.ndarray, n_steps: int) -> np.ndarray:
    """First-order time attribution ``(n_steps,)`` of the baseline codes ``(W, gf, gt)``.

    Every valid token gets a presence weight (1: as it is, 0: a gap in the token mask,
    :meth:`clef.model.SessionTransformer.embed_windows_weighted`); the score's derivative in
    each weight is the first-order effect of taking that token away, and a step's value
    is the sum over its tokens: ``baseline - score without the step`` to first order.
    One forward and one backward pass instead of one encoder pass per step, window by
    window (a token's weight acts only through its window's embedding: the other windows
    enter as their baseline ``window_embeddings (W, dim)``, so memory does not grow with
    the session's length).
    """
    dev = emb.device
    n_tok = valid.reshape(valid.shape[0], -1).sum(1)
    base = torch.from_numpy(np.asarray(window_embeddings, np.float32) * n_tok[:, None]).to(dev)  # weighted sums
    num0, den0 = base.sum(0), float(n_tok.sum())
    g = torch.from_numpy(_score_gradient(score, (num0 / den0).double().cpu().numpy())).float().to(dev)
    grad = np.zeros(valid.shape, dtype=np.float64)
    params = [p for p in emb.encoder.parameters() if p.requires_grad]
    try:
        for p in params:  # the weights' gradient is not wanted: the backward pass skips it
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            for w in np.flatnonzero(n_tok > 0):
                c = torch.from_numpy(np.ascontiguousarray(codes[w:w + 1])).long().to(dev)
                v = torch.from_numpy(np.ascontiguousarray(valid[w:w + 1])).to(dev)
                weight = torch.ones(v.shape, dtype=torch.float32, device=dev, requires_grad=True)
                e, mass, _ = emb.encoder.embed_windows_weighted(c, v, weight, emb.context_columns)
                num = num0 - base[w] + (e * mass[:, None]).sum(0)
                den = den0 - float(n_tok[w]) + mass.sum()
                (num / den).backward(g)
                assert weight.grad is not None
                grad[w] = (weight.grad[0] * v[0]).double().cpu().numpy()
    finally:
        for p in params:
            p.requires_grad_(True)
    per_col = grad.sum(1).reshape(-1)  # (W * gt,)
    return np.bincount(col_step, weights=per_col, minlength=n_steps)[:n_steps]


def _pool(window_embeddings: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """The session embedding, pooled as the embedder pools (:func:`clef.model.aggregate_windows`)."""
    return aggregate_windows(torch.from_numpy(np.asarray(window_embeddings, np.float32)),
                             torch.from_numpy(np.array(n_tokens))).numpy()


def _csa(spec: SessionSpectrogram, regions: dict[str, tuple[int, ...]], n_steps: int, step_s: float,
         frame_s: float) -> np.ndarray:
    """Left and right CSA ``(2, n_steps, bins)``: mean dB over each side's present electrodes per step."""
    per = max(1, int(round(step_s / frame_s)))
    v = spec.values
    out = np.full((2, n_steps, v.shape[1]), np.nan, dtype=np.float32)
    for s, side in enumerate(("left", "right")):
        idx = [i for i in regions[side] if spec.channel_mask[i]]
        if not idx:
            continue
        side_db = v[idx].astype(np.float32).mean(0)  # (bins, T)
        for k in range(n_steps):
            sel = np.flatnonzero(spec.frame_mask[k * per:(k + 1) * per]) + k * per
            if sel.size:
                out[s, k] = side_db[:, sel].mean(1)
    return out

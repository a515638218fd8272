"""The tokenizer's rungs of the information-loss ladder: what survives spectrogram → codes → spectrogram.

Issue 16's ladder probes one suite with representations that lose more and more of the
recording, so that where planted signal is lost can be read off. The rungs here come from
one pass of each session through a trained tokenizer (:class:`clef.reconstruction.Reconstructor`):

``input_bandpower``
    The band-power baseline's 129 features (:func:`~benchmark_tasks.baselines.bandpower.spectrum_features`:
    relative band power per channel, total log power, posterior dominant rhythm, left/right
    asymmetries, over :data:`~tokenizer.multitaper.CANONICAL_BANDS`) of the session-mean
    power of the **tokenizer's input spectrogram** (the contract's multitaper spectrogram,
    1 s frames, clipped to ``clip_db``), averaged in linear power over the valid frames.
``decoded_bandpower``
    The same features of the spectrogram **decoded from the session's codes**, on the same
    frames and channels: ``input_bandpower`` minus ``decoded_bandpower`` is the
    tokenizer's loss alone.
``codes``
    Bag of codes: the normalised histogram of the session's valid codes (``n_codes``
    values summing to 1).
``code_rows``
    Bag of codes per frequency row of the token grid: counts of (row, code), normalised
    over the session (``grid_f × n_codes`` values summing to 1), which keeps where in
    frequency a code sits. Wide: 8 × 512 = 4096 with the tiny tokenizer, 16 × 8192 =
    131 072 with base (use it with the tiny one).

The classic baseline (``benchmark_tasks.baselines.bandpower``) reads the recording itself
and computes the same features from its own multitaper spectrogram: the contract's tapers
(4 s, 1 Hz bandwidth) but non-overlapping 4 s frames, not clipped. It is not the
tokenizer's input, so the first rung recomputes the features on that input (1 s steps,
clipped to ``clip_db``); the first two rungs are then one function of two spectrograms
on the same frames. Per-session results are cached in
``CACHE/tokenizer-rungs-v1-<tokenizer id>.parquet`` keyed by the file's path, size and
modification time; sparse code counts are stored, not the wide histograms.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from benchmark_tasks.baselines.bandpower import session_files, spectrum_features
from benchmark_tasks.embeddings import EmbeddingSet
from benchmark_tasks.progress import track
from benchmark_tasks.tables import require_columns
from tokenizer.atomic import write_parquet_atomic

if TYPE_CHECKING:
    from clef.reconstruction import Reconstructor, SessionReconstruction

__all__ = ["FEATURE_VERSION", "OPTION_RUNGS", "RUNGS", "RungFeatures", "code_histogram_embeddings", "code_histograms",
           "decoded_bandpower_embeddings", "parse_rung_option", "rung_features", "spectrogram_bandpower_embeddings",
           "tokenizer_rungs"]

log = logging.getLogger(__name__)

#: Version of the rung definitions: part of the cache file name.
FEATURE_VERSION = "tokenizer-rungs-v1"
#: Rungs in ladder order (names of the embedding sets).
RUNGS: tuple[str, ...] = ("input_bandpower", "decoded_bandpower", "codes", "code_rows")

_SCHEMA = {"session_id": pl.String, "key": pl.String, "input": pl.List(pl.Float64),
           "decoded": pl.List(pl.Float64), "code_index": pl.List(pl.Int32), "code_count": pl.List(pl.Int32)}


@dataclass(frozen=True)
class RungFeatures:
    """One session's rungs.

    Attributes
    ----------
    input : ndarray, (129,)
        Band-power features of the input spectrogram.
    decoded : ndarray, (129,) or None
        Of the decoded spectrogram (None when not decoded).
    code_index : ndarray, int32
        ``row * n_codes + code`` of every (row, code) pair seen in valid tokens.
    code_count : ndarray, int32
        Its count.
    """

    input: np.ndarray
    decoded: np.ndarray | None
    code_index: np.ndarray
    code_count: np.ndarray


def _session_features(spec_db: np.ndarray, rec: SessionReconstruction) -> np.ndarray:
    """Band-power features of a session-mean spectrum (linear power over valid frames)."""
    frames = rec.frame_mask if rec.frame_mask.any() else np.ones_like(rec.frame_mask)
    psd = np.power(10.0, spec_db[:, :, frames].astype(np.float64) / 10.0).mean(2)
    return spectrum_features(psd, rec.freqs, rec.channels, rec.channel_mask)


def rung_features(rec: SessionReconstruction) -> RungFeatures:
    """The rungs of one session through the tokenizer.

    Both band-power vectors use the same frames (the input's valid ones) and channels.
    """
    gf = rec.codes.shape[1]
    rows = np.broadcast_to(np.arange(gf)[None, :, None], rec.codes.shape)
    flat = rows[rec.token_mask].astype(np.int64) * rec.n_codes + rec.codes[rec.token_mask].astype(np.int64)
    index, count = np.unique(flat, return_counts=True)
    decoded = None if rec.decoded is None else _session_features(rec.decoded, rec)
    return RungFeatures(_session_features(rec.original, rec), decoded, index.astype(np.int32), count.astype(np.int32))


def code_histograms(index: list[np.ndarray], count: list[np.ndarray], n_codes: int, grid_f: int,
                    per_row: bool) -> np.ndarray:
    """Dense normalised code histograms of sessions (the bag-of-codes rungs).

    Parameters
    ----------
    index, count : list of ndarray
        Per session, the token indices present (``row * n_codes + code``, as
        :class:`RungFeatures` holds them) and how often each occurs.
    n_codes : int
        Codebook size.
    grid_f : int
        Rows of the token grid.
    per_row : bool
        One histogram per grid row (``code_rows``) instead of one over the whole grid (``codes``).

    Returns
    -------
    ndarray, float32
        ``(sessions, n_codes)``, or ``(sessions, grid_f * n_codes)`` with ``per_row``; each row sums to 1
        (0 for a session without tokens).
    """
    width = grid_f * n_codes if per_row else n_codes
    out = np.zeros((len(index), width), dtype=np.float32)
    for i, (idx, cnt) in enumerate(zip(index, count)):
        col = idx if per_row else idx % n_codes
        np.add.at(out[i], col, cnt.astype(np.float32))
        total = out[i].sum()
        if total > 0:
            out[i] /= total
    return out


#: Sessions computed between two writes of the cache (a killed run loses at most these).
SAVE_EVERY = 100

_WORKER: dict[str, Reconstructor] = {}


def _row(recon: Reconstructor, sid: str, path: Path, key: str,
         decode: bool) -> tuple[str, dict[str, object] | None, str]:
    """One session's cache row, or the reason it failed (one bad file does not stop the run)."""
    try:
        f = rung_features(recon.reconstruct(path, decode=decode))
    except Exception as exc:  # reported by the caller
        return sid, None, f"{type(exc).__name__}: {exc}"
    return sid, {"session_id": sid, "key": key, "input": f.input.tolist(),
                 "decoded": None if f.decoded is None else f.decoded.tolist(),
                 "code_index": f.code_index.tolist(), "code_count": f.code_count.tolist()}, ""


def _init_worker(checkpoint: str, spectrogram_cache: str | None, batch_size: int) -> None:
    import torch

    from clef.reconstruction import Reconstructor

    torch.set_num_threads(1)  # one core per worker process
    _WORKER["recon"] = Reconstructor(checkpoint, cache_dir=spectrogram_cache, batch_size=batch_size)


def _work(item: tuple[str, Path, str, bool]) -> tuple[str, dict[str, object] | None, str]:
    return _row(_WORKER["recon"], *item)


def _rows(recon: Reconstructor, todo: list[tuple[str, Path, str]], decode: bool, workers: int, checkpoint: str,
          spectrogram_cache: str | None, batch_size: int) -> Iterator[tuple[str, dict[str, object] | None, str]]:
    if workers <= 1 or len(todo) <= 1:
        for sid, path, key in todo:
            yield _row(recon, sid, path, key, decode)
        return
    # spawned, not forked: the parent holds torch's threads and a loaded model
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(checkpoint, spectrogram_cache, batch_size)) as ex:
        yield from ex.map(_work, [(sid, path, key, decode) for sid, path, key in todo])


def tokenizer_rungs(checkpoint: str | os.PathLike[str], sessions: pl.DataFrame, archive: str | os.PathLike[str], *,
                    rungs: Sequence[str] = RUNGS, cache_dir: str | os.PathLike[str] | None = None,
                    spectrogram_cache: str | os.PathLike[str] | None = None, batch_size: int = 4,
                    workers: int = 1, progress: bool = False, prefix: str = "") -> list[EmbeddingSet]:
    """Embedding sets of the tokenizer's rungs, from one pass per session.

    Parameters
    ----------
    checkpoint : path
        Tokenizer checkpoint, or a session-transformer checkpoint holding one.
    sessions : polars.DataFrame
        ``session_id`` and ``path`` (relative to ``archive``).
    archive : path
    rungs : sequence of str
        Among :data:`RUNGS`; the decoder runs only when ``decoded_bandpower`` is asked for.
    cache_dir : path, optional
        Folder of the per-session cache; sessions already there (same file) are not
        recomputed. Written every :data:`SAVE_EVERY` sessions, so a killed run resumes.
    spectrogram_cache : path, optional
        The tokenizer's spectrogram cache.
    batch_size : int
        Windows per encoder/decoder pass.
    workers : int
        Processes (one torch thread each); 1: in this process.
    progress : bool
    prefix : str
        Prepended to the set names (several tokenizers in one run).

    Returns
    -------
    list of EmbeddingSet
        In the order of ``rungs``; baselines, ``kind`` the rung's name, ``model_id`` the
        tokenizer's. Unreadable or missing files are left out (logged).

    Raises
    ------
    ValueError
        An unknown rung, an empty list, or ``workers`` below 1.
    FileNotFoundError
        No tokenizer in ``checkpoint``.
    """
    unknown = [r for r in rungs if r not in RUNGS]
    if unknown or not rungs:
        raise ValueError(f"rungs among {list(RUNGS)} expected, found {list(rungs)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, found {workers}")
    require_columns(sessions, ("session_id", "path"), "sessions for the tokenizer rungs")
    from clef.reconstruction import Reconstructor

    recon = Reconstructor(checkpoint, cache_dir=spectrogram_cache, batch_size=batch_size)
    decode = "decoded_bandpower" in rungs
    cache_file = Path(cache_dir) / f"{FEATURE_VERSION}-{recon.model_id}.parquet" if cache_dir else None
    cached: dict[str, dict[str, object]] = {}
    if cache_file is not None and cache_file.is_file():
        cached = {r["session_id"]: r for r in pl.read_parquet(cache_file).iter_rows(named=True)}
    result: dict[str, dict[str, object]] = {}
    todo: list[tuple[str, Path, str]] = []
    for sid, p, key in session_files(sessions, archive, "tokenizer rungs"):
        hit = cached.get(sid)
        if hit is not None and hit["key"] == key and (hit["decoded"] is not None or not decode):
            result[sid] = hit
        else:
            todo.append((sid, p, key))
    failed: list[str] = []
    new = 0

    def save() -> None:
        if cache_file is not None and new:
            merged = {**cached, **result}
            write_parquet_atomic(pl.DataFrame([merged[s] for s in sorted(merged)], schema=_SCHEMA), cache_file)

    rows_iter = _rows(recon, todo, decode, workers, str(checkpoint),
                      None if spectrogram_cache is None else str(spectrogram_cache), batch_size)
    for sid, row, msg in track(rows_iter, "tokenizer rungs", total=len(todo), enabled=progress):
        if row is None:
            failed.append(f"{sid}: {msg}")
            continue
        result[sid] = row
        new += 1
        if new % SAVE_EVERY == 0:
            save()
    save()
    for msg in failed[:10]:
        log.warning("tokenizer rungs: %s", msg)
    if failed:
        log.warning("tokenizer rungs: %d sessions failed", len(failed))
    ids = sorted(result)
    out = []
    if "code_rows" in rungs and recon.grid[0] * recon.n_codes > 50_000:
        log.warning("code_rows: %d x %d = %d values per session (dense); probes on it need memory and time",
                    recon.grid[0], recon.n_codes, recon.grid[0] * recon.n_codes)
    for rung in rungs:
        if rung in ("input_bandpower", "decoded_bandpower"):
            col = "input" if rung == "input_bandpower" else "decoded"
            vectors = np.array([result[s][col] for s in ids], dtype=np.float64).reshape(len(ids), -1)
        else:
            vectors = code_histograms([np.asarray(result[s]["code_index"], np.int64) for s in ids],
                                      [np.asarray(result[s]["code_count"], np.int64) for s in ids], recon.n_codes,
                                      recon.grid[0], per_row=rung == "code_rows")
        out.append(EmbeddingSet(prefix + rung, ids, vectors, kind=rung, model_id=recon.model_id,
                                source=str(recon.path), baseline=True))
    return out


def spectrogram_bandpower_embeddings(checkpoint: str | os.PathLike[str], sessions: pl.DataFrame,
                                     archive: str | os.PathLike[str], **kwargs: object) -> EmbeddingSet:
    """Band-power features of the tokenizer's input spectrogram (``input_bandpower``; see the module docstring).

    ``kwargs`` as in :func:`tokenizer_rungs`.
    """
    return tokenizer_rungs(checkpoint, sessions, archive, rungs=("input_bandpower",), **kwargs)[0]  # type: ignore[arg-type]


def decoded_bandpower_embeddings(checkpoint: str | os.PathLike[str], sessions: pl.DataFrame,
                                 archive: str | os.PathLike[str], **kwargs: object) -> EmbeddingSet:
    """The same features of the spectrogram decoded from the session's codes (``decoded_bandpower``).

    ``kwargs`` as in :func:`tokenizer_rungs`.
    """
    return tokenizer_rungs(checkpoint, sessions, archive, rungs=("decoded_bandpower",), **kwargs)[0]  # type: ignore[arg-type]


def code_histogram_embeddings(checkpoint: str | os.PathLike[str], sessions: pl.DataFrame,
                              archive: str | os.PathLike[str], *, per_row: bool = False,
                              **kwargs: object) -> EmbeddingSet:
    """Bag of codes (``codes``), or per frequency row of the token grid with ``per_row`` (``code_rows``).

    ``kwargs`` as in :func:`tokenizer_rungs`.
    """
    rung = "code_rows" if per_row else "codes"
    return tokenizer_rungs(checkpoint, sessions, archive, rungs=(rung,), **kwargs)[0]  # type: ignore[arg-type]


#: ``--baseline`` kinds of ``clef benchmark run`` and the rungs each adds.
OPTION_RUNGS: dict[str, tuple[str, ...]] = {"input-bandpower": ("input_bandpower",),
                                            "decoded-bandpower": ("decoded_bandpower",), "codes": ("codes",),
                                            "code-rows": ("code_rows",), "tokenizer-rungs": RUNGS}


def parse_rung_option(text: str) -> tuple[tuple[str, ...], Path]:
    """``KIND=CHECKPOINT`` of ``clef benchmark run --baseline`` → (rungs, checkpoint).

    ``KIND`` is one of :data:`OPTION_RUNGS` (``tokenizer-rungs``: all four).

    Raises
    ------
    ValueError
        Not ``KIND=CHECKPOINT`` or an unknown kind.
    """
    kind, sep, path = text.partition("=")
    kind, path = kind.strip(), path.strip()
    if not sep or not path or kind not in OPTION_RUNGS:
        raise ValueError(f"--baseline {text!r}: KIND=CHECKPOINT expected, KIND one of {', '.join(OPTION_RUNGS)}")
    return OPTION_RUNGS[kind], Path(path)

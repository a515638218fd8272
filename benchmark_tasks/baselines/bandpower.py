"""Handcrafted multitaper band-power features of whole sessions (the spectral baseline).

Per session, from the multitaper PSD (4 s tapers, bandwidth 1 Hz, the contract's
parameters; non-overlapping frames, since only session averages are kept) averaged in
linear power over the frames of recorded signal:

* ``rel_<band>_<ch>``: relative power of delta (0.5-4 Hz), theta (4-8), alpha (8-13) and
  beta (13-30) per channel, over the 0.5-30 Hz total (76 features);
* ``logpow_<ch>``: log10 of the 0.5-30 Hz total power per channel (19);
* ``pdr_hz`` and ``pdr_rel``: posterior dominant rhythm peak, the frequency of the
  largest 6-13 Hz power of the mean O1/O2/P3/P4 spectrum and that peak's share of the
  4-15 Hz power (2);
* ``asym_<band>_<left>_<right>``: log10 power ratio left/right of the eight homologous
  pairs (Fp1/Fp2, F7/F8, F3/F4, T3/T4, C3/C4, T5/T6, P3/P4, O1/O2) per band (32).

129 features; absent electrodes give NaN (the probes impute the training mean).
Features are cached per session in ``CACHE/bandpower-v1.parquet``, keyed by the file's
path, size and modification time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmark_tasks.embeddings import EmbeddingSet
from benchmark_tasks.progress import track
from benchmark_tasks.tables import require_columns
from tokenizer.atomic import write_parquet_atomic
from tokenizer.contract import CANONICAL_CHANNELS, SignalContract
from tokenizer.ingest import read_recording
from tokenizer.multitaper import CANONICAL_BANDS, band_power_from_psd, multitaper_spectrogram

__all__ = ["FEATURE_VERSION", "PAIRS", "SessionSignal", "bandpower_embeddings", "bandpower_features",
           "feature_names", "read_session", "spectrum_features"]

log = logging.getLogger(__name__)

#: Version of the feature definition: part of the cache file name.
FEATURE_VERSION = "bandpower-v1"

PAIRS: tuple[tuple[str, str], ...] = (("Fp1", "Fp2"), ("F7", "F8"), ("F3", "F4"), ("T3", "T4"), ("C3", "C4"),
                                      ("T5", "T6"), ("P3", "P4"), ("O1", "O2"))
POSTERIOR: tuple[str, ...] = ("O1", "O2", "P3", "P4")
_TOTAL = (0.5, 30.0)
_PDR = (6.0, 13.0)
_PDR_CONTEXT = (4.0, 15.0)


@dataclass(frozen=True)
class SessionSignal:
    """A session's signal in canonical form (what the baselines need of a Recording)."""

    data: np.ndarray
    sfreq: float
    sample_mask: np.ndarray
    channel_mask: np.ndarray
    channels: tuple[str, ...]


def read_session(path: str | os.PathLike[str]) -> SessionSignal:
    """Read an EDF/BDF file into the canonical montage, rate and units (contract defaults).

    Raises
    ------
    tokenizer.IngestError
        A file that cannot be read (its subclass says why).
    """
    rec = read_recording(path, SignalContract(), threads=1)
    return SessionSignal(rec.data, float(rec.sfreq), np.asarray(rec.sample_mask, bool),
                         np.asarray(rec.channel_mask, bool), tuple(rec.channels))


def feature_names(channels: tuple[str, ...] | None = None) -> list[str]:
    """Names of the 129 features, in vector order."""
    chans = channels or tuple(CANONICAL_CHANNELS)
    names = [f"rel_{b}_{c}" for b in CANONICAL_BANDS for c in chans]
    names += [f"logpow_{c}" for c in chans]
    names += ["pdr_hz", "pdr_rel"]
    names += [f"asym_{b}_{lft}_{rgt}" for b in CANONICAL_BANDS for lft, rgt in PAIRS]
    return names


def spectrum_features(psd: np.ndarray, freqs: np.ndarray, channels: tuple[str, ...],
                      channel_mask: np.ndarray) -> np.ndarray:
    """The feature vector of a session-mean PSD.

    Parameters
    ----------
    psd : ndarray, (channels, freqs)
        Linear power (µV²/Hz) averaged over the session's frames.
    freqs : ndarray, (freqs,)
    channels : tuple of str
        Canonical names (``T3``/``T4``/``T5``/``T6`` style).
    channel_mask : ndarray, (channels,) bool
        Present electrodes; absent ones give NaN features.

    Returns
    -------
    ndarray, (129,) float64
    """
    psd = np.where(channel_mask[:, None], np.asarray(psd, dtype=np.float64), np.nan)

    with np.errstate(divide="ignore", invalid="ignore"):
        total = band_power_from_psd(psd, freqs, {"total": _TOTAL}, axis=1, statistic="sum")["total"]
        bands = band_power_from_psd(psd, freqs, CANONICAL_BANDS, axis=1, statistic="sum")
        rel = [bands[b] / total for b in CANONICAL_BANDS]
        logpow = np.log10(np.maximum(total, 1e-12))
        logpow = np.where(channel_mask, logpow, np.nan)
        post = [channels.index(c) for c in POSTERIOR if c in channels and channel_mask[channels.index(c)]]
        pdr_hz = pdr_rel = np.nan
        if post:
            spec = psd[post].mean(0)
            sel = (freqs >= _PDR[0]) & (freqs < _PDR[1])
            ctx = (freqs >= _PDR_CONTEXT[0]) & (freqs < _PDR_CONTEXT[1])
            k = int(np.argmax(spec[sel]))
            pdr_hz = float(freqs[sel][k])
            pdr_rel = float(spec[sel][k] / spec[ctx].sum()) if spec[ctx].sum() > 0 else np.nan
        asym = []
        for b in CANONICAL_BANDS:
            for lft, rgt in PAIRS:
                if lft in channels and rgt in channels:
                    i, j = channels.index(lft), channels.index(rgt)
                    asym.append(np.log10(bands[b][i] / bands[b][j]))
                else:
                    asym.append(np.nan)
    vec = np.concatenate([*rel, logpow, [pdr_hz, pdr_rel], np.asarray(asym, dtype=np.float64)])
    return np.where(np.isfinite(vec), vec, np.nan)


def bandpower_features(path: str | os.PathLike[str]) -> np.ndarray:
    """The 129 band-power features of one EDF/BDF file (see the module docstring).

    Raises
    ------
    tokenizer.IngestError
        Unreadable file.
    ValueError
        A recording shorter than one 4 s taper window.
    """
    sig = read_session(path)
    spec = multitaper_spectrogram(sig.data, sig.sfreq, window_s=4.0, step_s=4.0, bandwidth=1.0, fmin=0.0, fmax=32.0,
                                  sample_mask=sig.sample_mask)
    frames = spec.frame_mask if spec.frame_mask.any() else np.ones_like(spec.frame_mask)
    linear = np.power(10.0, spec.values[:, :, frames].astype(np.float64) / 10.0)
    return spectrum_features(linear.mean(2), spec.freqs, sig.channels, sig.channel_mask)


def _one(args: tuple[str, str]) -> tuple[str, np.ndarray | None, str]:
    sid, path = args
    try:
        return sid, bandpower_features(path), ""
    except Exception as exc:  # reported by the caller; one bad file does not stop the run
        return sid, None, f"{type(exc).__name__}: {exc}"


def file_key(path: Path) -> str:
    """Cache key of a session file: resolved path, size and modification time."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def session_files(sessions: pl.DataFrame, archive: str | os.PathLike[str],
                  label: str) -> list[tuple[str, Path, str]]:
    """``(session_id, file, cache key)`` of every session whose file exists under ``archive``.

    Sessions without a path are left out; files not found are counted in one warning
    (``label`` names the caller), never an error: a baseline embeds what it can.
    """
    root = Path(archive)
    rows = sessions.filter(pl.col("path").is_not_null()).select("session_id", "path").unique("session_id").sort(
        "session_id")
    found, missing = [], 0
    for sid, rel in rows.iter_rows():
        p = root / rel
        if not p.is_file():
            missing += 1
            continue
        found.append((sid, p, file_key(p)))
    if missing:
        log.warning("%s: %d of %d session files not found under %s", label, missing, rows.height, root)
    return found


def bandpower_embeddings(sessions: pl.DataFrame, archive: str | os.PathLike[str], *,
                         cache_dir: str | os.PathLike[str] | None = None, workers: int = 1, progress: bool = False,
                         name: str = "bandpower") -> EmbeddingSet:
    """Band-power feature vectors of sessions, computed in parallel and cached.

    Parameters
    ----------
    sessions : polars.DataFrame
        ``session_id`` and ``path`` (relative to ``archive``).
    archive : path
        Archive root.
    cache_dir : path, optional
        Folder of ``bandpower-v1.parquet``; sessions already there (same file path, size
        and modification time) are not recomputed.
    workers : int
        Processes.
    progress : bool
    name : str

    Returns
    -------
    EmbeddingSet
        ``kind="bandpower"``, a baseline; unreadable or missing files are left out (logged).
    """
    require_columns(sessions, ("session_id", "path"), "sessions for band power")
    cache_file = Path(cache_dir) / f"{FEATURE_VERSION}.parquet" if cache_dir else None
    cached: dict[str, tuple[str, np.ndarray]] = {}
    if cache_file is not None and cache_file.is_file():
        c = pl.read_parquet(cache_file)
        cached = {s: (k, np.asarray(v, dtype=np.float64)) for s, k, v in
                  zip(c["session_id"].to_list(), c["key"].to_list(), c["vector"].to_list())}
    result: dict[str, tuple[str, np.ndarray]] = {}
    todo: list[tuple[str, str]] = []
    keys: dict[str, str] = {}
    for sid, p, key in session_files(sessions, archive, "band power"):
        keys[sid] = key
        if sid in cached and cached[sid][0] == key:
            result[sid] = cached[sid]
        else:
            todo.append((sid, str(p)))
    failed: list[str] = []
    if todo:
        if workers > 1 and len(todo) > 1:
            # spawned, not forked: a caller that has run torch holds its thread pool, and a
            # forked child waiting on those threads' locks never starts (seen in the validity study)
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as ex:
                outs: Any = ex.map(_one, todo, chunksize=4)
                for sid, vec, msg in track(outs, "band power", total=len(todo), enabled=progress):
                    (result.__setitem__(sid, (keys[sid], vec)) if vec is not None else failed.append(f"{sid}: {msg}"))
        else:
            for sid, vec, msg in track(map(_one, todo), "band power", total=len(todo), enabled=progress):
                (result.__setitem__(sid, (keys[sid], vec)) if vec is not None else failed.append(f"{sid}: {msg}"))
    for f in failed[:10]:
        log.warning("band power: %s", f)
    if failed:
        log.warning("band power: %d sessions failed", len(failed))
    ids = sorted(result)
    if cache_file is not None and todo and ids:
        merged = {**cached, **result}
        sids = sorted(merged)
        write_parquet_atomic(pl.DataFrame({"session_id": sids, "key": [merged[s][0] for s in sids],
                                           "vector": [merged[s][1].tolist() for s in sids]},
                                          schema={"session_id": pl.String, "key": pl.String,
                                                  "vector": pl.List(pl.Float64)}), cache_file)
    vectors = np.stack([result[s][1] for s in ids]) if ids else np.zeros((0, len(feature_names())))
    return EmbeddingSet(name, ids, vectors, kind="bandpower", model_id=FEATURE_VERSION, source=str(Path(archive)),
                        baseline=True)

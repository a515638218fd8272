"""Assemble the models of a benchmark run: stores, checkpoints and baselines, in report order.

Order: embedding stores (``--embeddings``), checkpoints (``--checkpoint``), then the
baselines: the randomly initialised encoder, band power, the tokenizer's ladder rungs
(``--baseline``), braindecode models. The first
non-baseline model is the *primary* one (its probes are served).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from benchmark_tasks.embeddings import EmbeddingSet, embed_checkpoint, load_embeddings
from benchmark_tasks.suite import Suite
from tokenizer.contract import CANONICAL_CHANNELS

__all__ = ["ModelSources", "collect_models", "suite_sessions"]

log = logging.getLogger(__name__)


@dataclass
class ModelSources:
    """What to probe.

    Attributes
    ----------
    embeddings : list of (name or None, path)
        Embedding stores or Parquet files.
    models : list of str
        ``model_id`` / name filter of the stores.
    checkpoints : list of (name or None, path)
        Session-transformer checkpoints to embed the suite's sessions with.
    bandpower : bool or None
        Band-power baseline; None: when the archive's files are found.
    random_encoder : bool or None
        Randomly initialised encoder (architecture and tokenizer of the first
        checkpoint); None: when a checkpoint is given.
    braindecode : list of str
        ``NAME=WEIGHTS`` of braindecode models.
    tokenizer_rungs : list of (rungs, checkpoint)
        Rungs of :mod:`benchmark_tasks.baselines.tokenizer_rungs` and the tokenizer (or
        session-transformer) checkpoint they come from
        (:func:`~benchmark_tasks.baselines.tokenizer_rungs.parse_rung_option`).
    random_seed : int
    """

    embeddings: list[tuple[str | None, Path]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    checkpoints: list[tuple[str | None, Path]] = field(default_factory=list)
    bandpower: bool | None = None
    random_encoder: bool | None = None
    braindecode: list[str] = field(default_factory=list)
    tokenizer_rungs: list[tuple[tuple[str, ...], Path]] = field(default_factory=list)
    random_seed: int = 0


def suite_sessions(suite: Suite) -> pl.DataFrame:
    """``session_id`` and ``path`` of every session a suite labels."""
    ids = suite.labels["session_id"].unique().to_list()
    return suite.cohort.filter(pl.col("session_id").is_in(ids)).select("session_id", "path")


def _archive_has_files(archive: Path | None, sessions: pl.DataFrame) -> bool:
    if archive is None or not archive.is_dir():
        return False
    paths = sessions["path"].drop_nulls().head(5).to_list()
    return bool(paths) and all((archive / p).is_file() for p in paths)


def collect_models(suite: Suite, sources: ModelSources, *, archive: str | os.PathLike[str] | None = None,
                   cache_dir: str | os.PathLike[str] | None = None,
                   spectrogram_cache: str | os.PathLike[str] | None = None, device: str = "cpu", workers: int = 1,
                   progress: bool = False) -> list[EmbeddingSet]:
    """Load or compute every model's vectors for the suite's sessions.

    Parameters
    ----------
    suite : Suite
    sources : ModelSources
    archive : path, optional
        Archive root (default: the one recorded in the suite).
    cache_dir : path, optional
        Band-power and checkpoint-embedding caches.
    spectrogram_cache : path, optional
    device : str
    workers : int
        Processes for band power and the tokenizer rungs.
    progress : bool

    Raises
    ------
    FileNotFoundError
        A store, checkpoint or archive that does not exist.
    ValueError
        Nothing to probe, or a braindecode option that is not ``NAME=WEIGHTS``.
    ImportError
        braindecode requested but not importable here.
    """
    root = Path(archive) if archive is not None else suite.archive()
    sessions = suite_sessions(suite)
    out: list[EmbeddingSet] = []
    for name, path in sources.embeddings:
        out += load_embeddings(path, name=name, models=sources.models or None)
    needs_archive = bool(sources.checkpoints or sources.braindecode or sources.bandpower or sources.tokenizer_rungs)
    if needs_archive and (root is None or not root.is_dir()):
        raise FileNotFoundError(f"archive {root} not found: checkpoints and baselines embed the EDF files; pass "
                                "--archive")
    cache = Path(cache_dir) if cache_dir is not None else None
    for name, path in sources.checkpoints:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"--checkpoint {path}: no such checkpoint folder")
        out.append(embed_checkpoint(path, sessions, root, name=name, device=device, spectrogram_cache=spectrogram_cache,
                                    cache_dir=cache / "embeddings" if cache else None, progress=progress))
    use_random = sources.random_encoder if sources.random_encoder is not None else bool(sources.checkpoints)
    if use_random:
        if not sources.checkpoints:
            raise ValueError("the random-encoder baseline is built like a checkpoint: give --checkpoint")
        ck = sources.checkpoints[0][1]
        out.append(embed_checkpoint(ck, sessions, root, name="random_encoder", random_init=True,
                                    seed=sources.random_seed, device=device, spectrogram_cache=spectrogram_cache,
                                    cache_dir=cache / "embeddings" if cache else None, progress=progress))
    use_bp = sources.bandpower if sources.bandpower is not None else _archive_has_files(root, sessions)
    if use_bp:
        from benchmark_tasks.baselines.bandpower import bandpower_embeddings

        out.append(bandpower_embeddings(sessions, root, cache_dir=cache, workers=workers, progress=progress))
    elif sources.bandpower is None:
        log.info("band-power baseline skipped: the archive's EDF files were not found (%s)", root)
    if sources.tokenizer_rungs:
        from benchmark_tasks.baselines.tokenizer_rungs import RUNGS, tokenizer_rungs

        by_ck: dict[Path, set[str]] = {}
        for rungs, ck in sources.tokenizer_rungs:
            by_ck.setdefault(Path(ck), set()).update(rungs)
        for ck, rungs in by_ck.items():  # one pass through each tokenizer for all its rungs
            prefix = f"{ck.name}_" if len(by_ck) > 1 else ""
            out += tokenizer_rungs(ck, sessions, root, rungs=[r for r in RUNGS if r in rungs], cache_dir=cache,
                                   spectrogram_cache=spectrogram_cache, workers=workers, progress=progress,
                                   prefix=prefix)
    for spec in sources.braindecode:
        from benchmark_tasks.baselines.braindecode_models import (
            BRAINDECODE_MODELS,
            load_braindecode_model,
            parse_braindecode_option,
        )
        from benchmark_tasks.baselines.windowed import windowed_embeddings

        bname, weights = parse_braindecode_option(spec)
        info = BRAINDECODE_MODELS[bname]
        net = load_braindecode_model(bname, weights, channels=tuple(CANONICAL_CHANNELS))
        out.append(windowed_embeddings(net, sessions, root, name=bname, window_s=info.window_s,
                                       input_scale=info.input_scale, device=device, progress=progress))
    if not out:
        raise ValueError("nothing to probe: give --embeddings STORE, --checkpoint NAME=PATH or --bandpower")
    return out

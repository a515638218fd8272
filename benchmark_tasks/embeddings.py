"""Session embeddings the benchmark probes: from a store, a checkpoint, or a baseline.

An :class:`EmbeddingSet` is one model's vectors for a set of sessions. They come from

* an **embedding store** written by the batch embedder (``STORE/embeddings/part-*.parquet``
  with ``session_id``, ``vector`` and ``model_id``), or any Parquet file / folder of
  Parquet files with ``session_id`` + ``vector`` (+ ``model_id``):
  :func:`load_embeddings`;
* a **session-transformer checkpoint** (stage 1 or aligned), embedded here through the
  public :class:`clef.embedding.Embedder`, or the same architecture **randomly
  initialised** (the encoder re-drawn, the checkpoint's tokenizer kept):
  :func:`embed_checkpoint`;
* the **band-power** and **windowed foundation-model** baselines
  (:mod:`benchmark_tasks.baselines`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmark_tasks.progress import track
from benchmark_tasks.tables import require_columns
from tokenizer.atomic import write_parquet_atomic

__all__ = ["EmbeddingSet", "embed_checkpoint", "load_embeddings", "read_held_out", "store_parts"]

log = logging.getLogger(__name__)


@dataclass
class EmbeddingSet:
    """One model's session vectors.

    Attributes
    ----------
    name : str
        Name in the results (file-name safe).
    session_ids : list of str
    vectors : ndarray, (n, dim)
    kind : str
        ``store``, ``checkpoint``, ``random``, ``bandpower`` or ``braindecode``.
    model_id : str
        Identity of the weights (first hex digits of their SHA-256) when known.
    held_out : tuple of str
        Concepts held out of the model's alignment (``icd:G40``), from ``meta.json``.
    source : str
        Where the vectors came from.
    baseline : bool
        A comparison model (not a candidate for the served probes).
    """

    name: str
    session_ids: list[str]
    vectors: np.ndarray
    kind: str = "store"
    model_id: str = ""
    held_out: tuple[str, ...] = ()
    source: str = ""
    baseline: bool = False
    _row: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.session_ids):
            raise ValueError(f"embeddings {self.name}: vectors (n, dim) for {len(self.session_ids)} sessions expected, "
                             f"found {self.vectors.shape}")
        self._row = {s: i for i, s in enumerate(self.session_ids)}
        if len(self._row) != len(self.session_ids):
            raise ValueError(f"embeddings {self.name}: session ids are not unique")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def has(self, session_ids: Sequence[str]) -> np.ndarray:
        """Which of ``session_ids`` have a vector (bool mask)."""
        return np.array([s in self._row for s in session_ids], dtype=bool)

    def take(self, session_ids: Sequence[str]) -> np.ndarray:
        """Vectors of ``session_ids`` in that order (all must be present)."""
        try:
            return self.vectors[[self._row[s] for s in session_ids]]
        except KeyError as exc:
            raise KeyError(f"embeddings {self.name}: no vector for session {exc.args[0]}") from None


def store_parts(path: str | os.PathLike[str]) -> list[Path]:
    """Parquet files of an embeddings source: a file, a store (``embeddings/part-*.parquet``) or a folder."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such embeddings file or store")
    for sub in (p / "embeddings", p):
        parts = sorted(sub.glob("part-*.parquet")) or (sorted(sub.glob("*.parquet")) if sub == p else [])
        if parts:
            return parts
    raise FileNotFoundError(f"{p}: expected STORE/embeddings/part-*.parquet or Parquet files, found none")


def _matrix(series: pl.Series, what: str) -> np.ndarray:
    lengths = series.list.len().unique().to_list()
    if len(lengths) != 1:
        raise ValueError(f"{what}: vectors of one length expected, found lengths {sorted(lengths)[:5]}")
    return series.cast(pl.List(pl.Float32)).list.to_array(int(lengths[0])).to_numpy().astype(np.float32)


def load_embeddings(path: str | os.PathLike[str], *, name: str | None = None,
                    models: Sequence[str] | None = None) -> list[EmbeddingSet]:
    """Embedding sets of a store, a Parquet file or a folder of Parquet files.

    Parameters
    ----------
    path : path
    name : str, optional
        Name of the set; with several ``model_id`` values, ``name/model_id``.
        Default: the ``model_id``, else the file or folder stem.
    models : sequence of str, optional
        Keep only these ``model_id`` values (or names).

    Returns
    -------
    list of EmbeddingSet
        One per ``model_id`` (sessions listed twice keep their first vector).

    Raises
    ------
    FileNotFoundError, ValueError
        No Parquet files, missing ``session_id`` / ``vector``, ragged vectors, or
        ``models`` matching nothing.
    """
    parts = store_parts(path)
    frames = []
    for part in parts:
        df = pl.read_parquet(part)
        require_columns(df, ("session_id", "vector"), str(part))
        if "model_id" not in df.columns:
            df = df.with_columns(pl.lit("").alias("model_id"))
        frames.append(df.select("session_id", pl.col("model_id").cast(pl.String).fill_null(""), "vector"))
    table = pl.concat(frames, how="vertical_relaxed")
    stem = Path(path).stem if Path(path).is_file() else Path(path).name
    out: list[EmbeddingSet] = []
    ids = sorted(table["model_id"].unique().to_list())
    for mid in ids:
        sub = table.filter(pl.col("model_id") == mid)
        n = sub.height
        sub = sub.unique("session_id", keep="first", maintain_order=True)
        if sub.height < n:
            log.warning("%s: %d duplicate session rows of model %s ignored", path, n - sub.height, mid or "?")
        base = name or mid or stem
        set_name = f"{name}/{mid}" if name and len(ids) > 1 and mid else base
        out.append(EmbeddingSet(set_name, sub["session_id"].to_list(), _matrix(sub["vector"], str(path)), kind="store",
                                model_id=mid, source=str(path)))
    if models:
        keep = [e for e in out if e.name in models or e.model_id in models]
        if not keep:
            raise ValueError(f"{path}: no model among {list(models)}; the store holds "
                             f"{[e.model_id or e.name for e in out]}")
        out = keep
    return out


def read_held_out(checkpoint: str | os.PathLike[str]) -> tuple[str, ...]:
    """``held_out_concepts`` of a checkpoint's ``meta.json`` (empty for stage 1 or none)."""
    meta = Path(checkpoint) / "meta.json"
    if not meta.is_file():
        return ()
    try:
        value = json.loads(meta.read_text(encoding="utf-8")).get("held_out_concepts") or []
    except (OSError, json.JSONDecodeError):
        return ()
    return tuple(str(v) for v in value)


#: Tokens of sessions per (tokenizer, file), shared by the checkpoints of one run.
_MEMO: dict[tuple[str, str], Any] = {}
_MEMO_MAX = 20_000  # sessions whose tokens are kept for the next checkpoint with the same tokenizer


def _tokenizer_key(checkpoint: Path) -> str:
    meta = checkpoint / "tokenizer" / "meta.json"
    try:
        return str(json.loads(meta.read_text()).get("weights_sha256", meta))
    except (OSError, json.JSONDecodeError):
        return str(checkpoint.resolve())


def embed_checkpoint(checkpoint: str | os.PathLike[str], sessions: pl.DataFrame, archive: str | os.PathLike[str], *,
                     name: str | None = None, random_init: bool = False, seed: int = 0, device: str = "cpu",
                     batch_size: int = 8, spectrogram_cache: str | os.PathLike[str] | None = None,
                     cache_dir: str | os.PathLike[str] | None = None, progress: bool = False) -> EmbeddingSet:
    """Embed sessions with a session-transformer checkpoint through :class:`clef.embedding.Embedder`.

    Parameters
    ----------
    checkpoint : path
        Stage-1 or aligned checkpoint directory, with its ``tokenizer/``.
    sessions : polars.DataFrame
        ``session_id`` and ``path`` (EDF path relative to ``archive``).
    archive : path
        Archive root.
    name : str, optional
        Name of the set (default: the checkpoint folder's name, ``random`` prefixed).
    random_init : bool
        Re-draw the encoder's weights (seeded) and keep the checkpoint's tokenizer: the
        "randomly initialised encoder" baseline.
    seed : int
        Seed of the random initialisation.
    device : str
    batch_size : int
        Windows per forward pass.
    spectrogram_cache : path, optional
        Spectrogram cache folder of the tokenizer (reused across runs).
    cache_dir : path, optional
        Where the session vectors are cached (``<name>-<model_id>.parquet``); reruns
        embed only sessions not there yet.
    progress : bool

    Returns
    -------
    EmbeddingSet
        Sessions that could not be read are left out (logged).
    """
    import torch

    from clef.embedding import Embedder

    ck = Path(checkpoint)
    emb = Embedder(ck, device=device, batch_size=batch_size, cache_dir=spectrogram_cache)
    model_id = emb.model_id
    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = type(emb.encoder)(emb.cfg.model)
        emb.encoder.load_state_dict(fresh.state_dict())
        emb.encoder.eval()
        model_id = f"random{seed}-{model_id}"
    set_name = name or (f"random_{ck.name}" if random_init else ck.name)
    require_columns(sessions, ("session_id", "path"), "sessions to embed")
    todo = sessions.filter(pl.col("path").is_not_null()).select("session_id", "path").unique("session_id").sort(
        "session_id")
    cache_file = Path(cache_dir) / f"{set_name}-{model_id}.parquet" if cache_dir else None
    done: dict[str, np.ndarray] = {}
    if cache_file is not None and cache_file.is_file():
        cached = pl.read_parquet(cache_file)
        done = dict(zip(cached["session_id"].to_list(), _matrix(cached["vector"], str(cache_file))))
    tok_key = _tokenizer_key(ck)
    root = Path(archive)
    failed = 0
    new = [r for r in todo.iter_rows(named=True) if r["session_id"] not in done]
    chunk: list[tuple[str, Any]] = []

    def flush() -> None:
        if chunk:
            for (sid, _), e in zip(chunk, emb.embed_tokens([t for _, t in chunk])):
                done[sid] = e.vector
            chunk.clear()

    for r in track(new, f"embed {set_name}", enabled=progress):
        key = (tok_key, str((root / r["path"]).resolve()))
        try:
            tokens = _MEMO.get(key)
            if tokens is None:
                tokens = emb.tokens_of(root / r["path"])
                if len(_MEMO) < _MEMO_MAX:
                    _MEMO[key] = tokens
        except Exception as exc:  # an unreadable file is left out, not fatal
            failed += 1
            log.warning("%s: session %s not embedded: %s", set_name, r["session_id"], exc)
            continue
        chunk.append((r["session_id"], tokens))
        if len(chunk) >= batch_size:
            flush()
    flush()
    if failed:
        log.warning("%s: %d of %d sessions could not be embedded", set_name, failed, todo.height)
    ids = sorted(done)
    vectors = np.stack([done[s] for s in ids]) if ids else np.zeros((0, 1), np.float32)
    if cache_file is not None and new and ids:
        write_parquet_atomic(pl.DataFrame({"session_id": ids, "vector": list(vectors.astype(np.float32))},
                                          schema={"session_id": pl.String, "vector": pl.List(pl.Float32)}), cache_file)
    return EmbeddingSet(set_name, ids, vectors, kind="random" if random_init else "checkpoint", model_id=model_id,
                        held_out=() if random_init else read_held_out(ck), source=str(ck), baseline=random_init)

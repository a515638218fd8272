"""FAISS index over a store's session embeddings (cosine similarity).

Vectors are L2-normalised and searched by inner product, so scores are cosine
similarities. Kinds:

- ``flat``: exact (``IndexFlatIP``); ``auto`` picks it up to ``IndexConfig.flat_max``
  sessions (50 000 by default).
- ``ivf``: inverted lists (``IndexIVFFlat``, about 4 √n lists, ``nprobe`` = nlist / 32 but
  at least 32; filtered searches probe up to 2× more); ``auto`` above ``flat_max``.
  Query time and recall on 1M clustered 256-d vectors: ``bench/search.py``.
- ``hnsw``: graph (``IndexHNSWFlat``, M = 32); fast queries, slow to build on few cores.

Saved in ``STORE/index/<model_id>/``: ``index-<digest>.faiss``, ``ids-<digest>.parquet``
(FAISS row → ``session_id``, ``source_sha256``) and ``index.json`` (kind, parameters, the
store digest it covers, the SHA-256 of both files), the pointer, replaced last, so a reader
never sees a new index with an old id map, and a process killed while saving leaves the
previous index in use. Saving holds ``index/.<model_id>.lock`` (``flock``) and removes
what killed writers left (temp files, files no pointer names). Loading checks both files
against the recorded SHA-256: a tampered or corrupted index is refused
(:class:`StoreError`), and :func:`ensure_index` rebuilds it from the store.

:func:`ensure_index` brings an index up to date when the store has grown: new sessions
are added (an IVF index is re-trained once the store has grown ``rebuild_growth`` times,
and an ``auto`` flat index becomes IVF past ``flat_max``).
:func:`index_signature` tells a long-running reader (``clef serve``) cheaply that the
store grew or the index was replaced, so that it loads the change.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from tokenizer.atomic import atomic_path, write_json_atomic, write_parquet_atomic
from tokenizer.hashing import file_sha256
from services.config import IndexConfig
from services.store import EmbeddingStore, StoreError, digest_of, vectors_of
from services.store_writer import utc_now

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
KINDS = ("auto", "flat", "ivf", "hnsw")
INDEX_SCHEMA = "clef.index/1"


def _faiss():  # noqa: ANN202
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise StoreError(f"cohort search needs the 'faiss-cpu' package, not importable here ({exc})") from None
    return faiss


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows left at zero), float32, C-contiguous."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(n, 1e-12), dtype=np.float32)


def default_nlist(n: int) -> int:
    """About 4 √n lists, a power of two in [64, 65536], with at least 39 vectors per list."""
    nlist = min(max(2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1))), 64), 65536)
    return int(min(nlist, 2 ** int(math.log2(max(n // 39, 1)))))


@dataclass
class CohortIndex:
    """A loaded index and its id map.

    Attributes
    ----------
    index : faiss.Index
    kind : str
        ``flat``, ``ivf`` or ``hnsw``.
    requested : str
        The kind asked for (``auto`` or one of the above).
    model_id : str
    session_ids, shas : list of str
        FAISS row → session id / content hash.
    digest : str
        Digest of the content hashes covered.
    params : dict
        ``nlist``, ``nprobe``, ``m``, ``ef_search``, ``trained_n`` as relevant.
    norms : ndarray, optional
        L2 norm of each row's raw embedding (raw = stored row × norm: probes take raw
        vectors, so a service answers from memory); None for an index saved before norms
        were kept.
    """

    index: Any
    kind: str
    requested: str
    model_id: str
    session_ids: list[str]
    shas: list[str]
    digest: str
    params: dict[str, Any] = field(default_factory=dict)
    norms: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Vectors in the index."""
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """Vector width."""
        return int(self.index.d)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Stored (normalised) vectors of some rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(rows)

    def raw_vectors(self, rows: np.ndarray) -> np.ndarray | None:
        """Raw (unnormalised) embeddings of some rows, or None when the index keeps no norms."""
        if self.norms is None:
            return None
        rows = np.asarray(rows, dtype=np.int64)
        return self.vectors(rows) * self.norms[rows, None]

    def search_params(self, k: int, selector: Any | None, fraction: float = 1.0) -> Any:
        """FAISS search parameters of this kind (selector, nprobe, efSearch).

        ``fraction`` is the share of sessions the selector allows: a filtered search
        visits more lists / graph nodes (× fraction^-1/4, at most × 2) so that recall holds
        (fewer allowed vectors per list); very selective filters are answered exactly.
        """
        faiss = _faiss()
        widen = min(2.0, max(fraction, 1e-9) ** -0.25)
        if self.kind == "ivf":
            nprobe = min(int(self.params["nlist"]), math.ceil(int(self.params["nprobe"]) * widen))
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        if self.kind == "hnsw":
            ef = math.ceil(int(self.params["ef_search"]) * widen)
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef, k))
        return faiss.SearchParameters(sel=selector) if selector is not None else None


def index_dir(store: EmbeddingStore, model_id: str) -> Path:
    """``STORE/index/<model_id>``."""
    return store.path / "index" / model_id


def _choose(kind: str, n: int, cfg: IndexConfig) -> str:
    if kind not in KINDS:
        raise ValueError(f"index kind must be one of {', '.join(KINDS)}, found {kind!r}")
    if kind == "auto":
        return "flat" if n <= cfg.flat_max else "ivf"
    return kind


def new_index(kind: str, x: np.ndarray, cfg: IndexConfig, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """An empty (IVF: trained on ``x`` or a sample of it) FAISS index of ``kind`` and its parameters."""
    faiss = _faiss()
    n, d = x.shape
    if kind == "flat":
        return faiss.IndexFlatIP(d), {}
    if kind == "hnsw":
        idx = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = cfg.hnsw_ef_construction
        idx.hnsw.efSearch = cfg.hnsw_ef_search
        return idx, {"m": cfg.hnsw_m, "ef_construction": cfg.hnsw_ef_construction, "ef_search": cfg.hnsw_ef_search}
    nlist = cfg.ivf_nlist or default_nlist(n)
    if n < nlist:
        raise ValueError(f"an IVF index of {nlist} lists needs at least {nlist} vectors, found {n}; "
                         "use --kind flat (exact) for a store this small")
    nprobe = min(nlist, cfg.ivf_nprobe or max(32, nlist // 32))
    idx = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    idx.cp.seed = seed
    idx.train(x if n <= cfg.ivf_train_max
              else x[np.sort(np.random.default_rng(seed).choice(n, cfg.ivf_train_max, replace=False))])
    idx.nprobe = nprobe
    return idx, {"nlist": nlist, "nprobe": nprobe, "trained_n": int(n)}


def _model_rows(store: EmbeddingStore, model_id: str) -> pl.DataFrame:
    return store.embeddings(model_id, windows=False).select("session_id", "source_sha256", "vector")


def _norms(raw: np.ndarray) -> np.ndarray:
    return np.linalg.norm(raw.astype(np.float64), axis=1).astype(np.float32)


def build_index(store: EmbeddingStore | str | Path, model_id: str | None = None, kind: IndexKind = "auto",
                config: IndexConfig | None = None) -> CohortIndex:
    """Build (and save) the index of one model's session embeddings.

    Parameters
    ----------
    store : EmbeddingStore or path
    model_id : str, optional
        Default: the store's only model.
    kind : {"auto", "flat", "ivf", "hnsw"}
    config : IndexConfig, optional

    Returns
    -------
    CohortIndex
    """
    cfg = config or IndexConfig()
    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    store.require()
    model_id = store.resolve_model(model_id)
    df = _model_rows(store, model_id)
    if df.height == 0:
        raise StoreError(f"store {store.path}: no embeddings of model {model_id} to index")
    raw = vectors_of(df)
    x = normalise(raw)
    chosen = _choose(kind, df.height, cfg)
    t0 = time.perf_counter()
    idx, params = new_index(chosen, x, cfg)
    idx.add(x)
    if chosen == "ivf":
        idx.make_direct_map()
    shas = df["source_sha256"].to_list()
    ci = CohortIndex(idx, chosen, kind, model_id, df["session_id"].to_list(), shas, digest_of(shas), params,
                     _norms(raw))
    log.info("built %s index of %d sessions (dim %d) in %.1f s", chosen, ci.n, ci.dim, time.perf_counter() - t0)
    save_index(store, ci)
    return ci


@contextmanager
def _locked(d: Path) -> Iterator[None]:
    """Hold ``STORE/index/.<model_id>.lock`` (``flock``; the kernel releases it if the process is killed)."""
    fd = os.open(d.parent / f".{d.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_unreferenced(d: Path) -> list[str]:
    """Delete what ``index.json`` does not name: earlier files and a killed writer's leftovers.

    Call it holding :func:`_locked` (no other writer is then half-way through a save).
    """
    meta = json.loads((d / "index.json").read_text()) if (d / "index.json").is_file() else {}
    keep = {"index.json", meta.get("index_file"), meta.get("ids_file")}
    removed = []
    for p in d.iterdir():
        if p.name not in keep and (p.is_file() or p.is_symlink()):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def save_index(store: EmbeddingStore, ci: CohortIndex) -> Path:
    """Write the index, its id map and ``index.json`` (the pointer, last), under the folder's lock."""
    faiss = _faiss()
    d = index_dir(store, ci.model_id)
    d.mkdir(parents=True, exist_ok=True)
    with _locked(d):
        stamp = f"{ci.digest}-{time.time_ns() % 10**9:09d}"
        f_index, f_ids = d / f"index-{stamp}.faiss", d / f"ids-{stamp}.parquet"
        with atomic_path(f_index) as tmp:
            faiss.write_index(ci.index, str(tmp))
        ids = {"row": np.arange(ci.n, dtype=np.int64), "session_id": ci.session_ids, "source_sha256": ci.shas}
        if ci.norms is not None:
            ids["norm"] = ci.norms
        write_parquet_atomic(pl.DataFrame(ids), f_ids)
        write_json_atomic({
            "schema": INDEX_SCHEMA, "kind": ci.kind, "requested": ci.requested, "model_id": ci.model_id, "n": ci.n,
            "dim": ci.dim, "store_digest": ci.digest, "params": ci.params, "index_file": f_index.name,
            "ids_file": f_ids.name, "index_sha256": file_sha256(f_index), "ids_sha256": file_sha256(f_ids),
            "metric": "cosine (inner product of L2-normalised vectors)",
            "built": utc_now().isoformat(), "faiss": faiss.__version__}, d / "index.json", indent=2, sort_keys=True)
        _remove_unreferenced(d)
    return d


def index_signature(store: EmbeddingStore, model_id: str) -> tuple[Any, ...]:
    """A cheap token that changes when the store grows or the saved index is replaced.

    The committed part names of the ``embeddings`` and ``sessions`` tables (parts are
    immutable once renamed into place; the sessions parts land just after their
    embeddings) and the identity of ``index.json`` (replaced by a rename on every save:
    a new inode). Costs a directory listing per table and one ``stat``, no Parquet read.
    """
    parts = []
    for table in ("embeddings", "sessions"):
        try:
            with os.scandir(store.path / table) as it:
                names = sorted(e.name for e in it if e.name.startswith("part-") and e.name.endswith(".parquet"))
        except FileNotFoundError:
            names = []
        parts.append(hashlib.sha256("\n".join(names).encode()).hexdigest()[:16])
    try:
        st = (index_dir(store, model_id) / "index.json").stat()
        pointer: tuple[int, ...] = (st.st_ino, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        pointer = ()
    return (*parts, pointer)


def load_index(store: EmbeddingStore | str | Path, model_id: str | None = None) -> CohortIndex:
    """Load a saved index.

    Raises
    ------
    FileNotFoundError
        No index saved for that model (run ``clef index STORE``).
    """
    faiss = _faiss()
    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    model_id = store.resolve_model(model_id)
    d = index_dir(store, model_id)
    if not (d / "index.json").is_file():
        raise FileNotFoundError(f"no index of model {model_id} in {store.path} (run 'clef index {store.path}')")
    meta = json.loads((d / "index.json").read_text())
    if meta.get("schema") != INDEX_SCHEMA:
        raise StoreError(f"index {d}: schema {INDEX_SCHEMA} expected, found {meta.get('schema')}")
    for key in ("index", "ids"):
        f = d / str(meta.get(f"{key}_file"))
        if not f.is_file():
            raise StoreError(f"index {d}: {f.name} named by index.json is missing; run "
                             f"'clef index {store.path}' to rebuild it")
        recorded = meta.get(f"{key}_sha256")
        if recorded is not None and file_sha256(f) != recorded:
            raise StoreError(f"index {d}: {f.name} does not match the SHA-256 recorded in index.json (tampered "
                             f"with or corrupted); refusing to load it; run 'clef index {store.path}' to rebuild it")
    idx = faiss.read_index(str(d / meta["index_file"]))
    ids = pl.read_parquet(d / meta["ids_file"]).sort("row")
    if ids.height != idx.ntotal:
        raise StoreError(f"index {d}: id map of {idx.ntotal} rows expected, found {ids.height}; rebuild it")
    if meta["kind"] == "ivf":
        idx.make_direct_map()
    elif meta["kind"] == "hnsw":
        idx.hnsw.efSearch = int(meta["params"].get("ef_search", 96))
    norms = ids["norm"].to_numpy().astype(np.float32) if "norm" in ids.columns else None
    return CohortIndex(idx, meta["kind"], meta.get("requested", meta["kind"]), model_id, ids["session_id"].to_list(),
                       ids["source_sha256"].to_list(), meta["store_digest"], meta.get("params", {}), norms)


def ensure_index(store: EmbeddingStore | str | Path, model_id: str | None = None, kind: IndexKind | None = None,
                 config: IndexConfig | None = None, *, rebuild: bool = False) -> tuple[CohortIndex, str]:
    """Load the index, bringing it up to date with the store; build it when absent.

    Parameters
    ----------
    store : EmbeddingStore or path
    model_id : str, optional
    kind : str, optional
        Build / rebuild as this kind (default: the saved index's requested kind, else
        ``auto``). A different kind than the saved one rebuilds.
    config : IndexConfig, optional
    rebuild : bool
        Rebuild from scratch.

    Returns
    -------
    CohortIndex
    str
        What was done: ``loaded``, ``updated``, ``built`` or ``rebuilt``.
    """
    cfg = config or IndexConfig()
    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    store.require()
    model_id = store.resolve_model(model_id)
    try:
        ci = load_index(store, model_id)
    except FileNotFoundError:
        return build_index(store, model_id, kind or "auto", cfg), "built"
    except StoreError as exc:  # the index is derived from the store: rebuild a broken one
        log.warning("%s: rebuilding the index", exc)
        return build_index(store, model_id, kind or "auto", cfg), "rebuilt"
    want = kind or ci.requested
    if rebuild or (kind is not None and kind != ci.requested):
        return build_index(store, model_id, want, cfg), "rebuilt"
    current = set(store.embeddings(model_id, windows=False)["source_sha256"].to_list())
    have = set(ci.shas)
    if not have <= current:
        log.info("index of %s covers sessions no longer in the store: rebuilding", model_id)
        return build_index(store, model_id, want, cfg), "rebuilt"
    new = current - have
    if not new:
        d = index_dir(store, model_id)
        if len(list(d.iterdir())) > 3:  # more than index.json and its two files
            with _locked(d):
                removed = _remove_unreferenced(d)
            log.info("index of %s: removed %d file(s) left by an interrupted save", model_id, len(removed))
        return ci, "loaded"
    total = len(current)
    if _choose(want, total, cfg) != ci.kind or (ci.kind == "ivf" and total > cfg.rebuild_growth * ci.params.get("trained_n", total)):
        return build_index(store, model_id, want, cfg), "rebuilt"
    df = _model_rows(store, model_id).filter(pl.col("source_sha256").is_in(list(new)))
    raw = vectors_of(df)
    x = normalise(raw)
    if ci.kind == "ivf":
        ci.index.make_direct_map()  # kept up to date by add
    ci.index.add(x)
    ci.norms = None if ci.norms is None else np.concatenate([ci.norms, _norms(raw)])
    ci.session_ids += df["session_id"].to_list()
    ci.shas += df["source_sha256"].to_list()
    ci.digest = digest_of(ci.shas)
    save_index(store, ci)
    log.info("index of %s: %d new session(s) added (%d in all)", model_id, df.height, ci.n)
    return ci, "updated"

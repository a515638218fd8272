"""The embedding store: Parquet tables of sessions, embeddings and the manifest.

Layout (schemas in :mod:`services.schemas`)::

    STORE/store.json               schema version, archive root, models present
    STORE/manifest/part-*.parquet  one row per file per attempt (done / failed)
    STORE/sessions/part-*.parquet  one row per distinct file content (non-PHI metadata)
    STORE/embeddings/part-*.parquet one row per (file content, model)
    STORE/index/<model_id>/        FAISS index, its id map and the store digest it covers

Parts are committed by :class:`services.store_writer.StoreWriter`: a part of every table is
written in full into ``STORE/.staging/`` and then renamed into place, so the table folders
never hold a half-written file and users can read them directly::

    pl.read_parquet("STORE/embeddings/*.parquet")

:class:`EmbeddingStore` reads the same tables with a guard: rows are de-duplicated by
``(source_sha256, model_id)`` (the writer never writes duplicates).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from services.schemas import SCHEMAS, STORE_SCHEMA, TABLES

log = logging.getLogger(__name__)


class StoreError(Exception):
    """A store folder is missing, of another schema, or does not hold what was asked."""


def part_files(root: Path, table: str) -> list[Path]:
    """Committed parts of ``table`` (sorted by part number)."""
    return sorted((root / table).glob("part-*.parquet"))


class EmbeddingStore:
    """Read access to an embedding store folder.

    Parameters
    ----------
    path : path
        The store folder (``clef embed ... --store STORE``).

    Examples
    --------
    >>> store = EmbeddingStore("runs/store")                      # doctest: +SKIP
    >>> ids, x = store.matrix(store.models()[0])                  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- layout ---------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        """True when the folder holds a store (``store.json``)."""
        return (self.path / "store.json").is_file()

    def require(self) -> None:
        """Raise :class:`StoreError` unless this is a store of the supported schema."""
        if not self.path.is_dir():
            raise StoreError(f"store {self.path}: expected a store folder (written by 'clef embed'), found "
                             + ("a file" if self.path.exists() else "nothing"))
        if not self.exists:
            raise StoreError(f"store {self.path}: expected store.json (written by 'clef embed'), found none")
        schema = self.info().get("schema")
        if schema != STORE_SCHEMA:
            raise StoreError(f"store {self.path}: schema {STORE_SCHEMA} expected, found {schema}")

    def info(self) -> dict[str, Any]:
        """Contents of ``store.json`` (empty dict when absent)."""
        p = self.path / "store.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def models(self) -> list[str]:
        """Model ids with embeddings in the store (sorted)."""
        df = self._read("embeddings", columns=["model_id"])
        return sorted(df["model_id"].unique().to_list())

    def resolve_model(self, model_id: str | None) -> str:
        """The model to use: ``model_id`` if present, else the store's only model.

        Raises
        ------
        StoreError
            No embeddings, an unknown model, or several models and none chosen.
        """
        models = self.models()
        if model_id is not None:
            if model_id not in models:
                raise StoreError(f"store {self.path}: model {model_id} not found; models present: "
                                 f"{', '.join(models) or 'none'}")
            return model_id
        if not models:
            raise StoreError(f"store {self.path}: no embeddings yet (run 'clef embed' first)")
        if len(models) > 1:
            raise StoreError(f"store {self.path}: one model expected, found {len(models)} "
                             f"({', '.join(models)}); choose one with --model")
        return models[0]

    # -- tables ---------------------------------------------------------------------------
    def _read(self, table: str, columns: list[str] | None = None) -> pl.DataFrame:
        if table not in TABLES:
            raise ValueError(f"table must be one of {TABLES}, found {table!r}")
        parts = part_files(self.path, table)
        if not parts:
            df = pl.DataFrame(schema=SCHEMAS[table])
            return df.select(columns) if columns else df
        return pl.concat([self._read_part(p, columns) for p in parts], how="vertical_relaxed")

    def _read_part(self, part: Path, columns: list[str] | None) -> pl.DataFrame:
        try:
            # Columns added to a table later (sessions.reference) are null in older parts.
            expected = SCHEMAS.get(part.parent.name, {})
            present = pl.read_parquet_schema(part)
            absent = [c for c in (columns or expected) if c not in present and c in expected]
            if not absent:
                return pl.read_parquet(part, columns=columns)
            df = pl.read_parquet(part, columns=[c for c in columns if c in present] if columns else None)
            df = df.with_columns(pl.lit(None, dtype=expected[c]).alias(c) for c in absent)
            if columns:
                return df.select(columns)
            return df.select([c for c in expected if c in df.columns] + [c for c in df.columns if c not in expected])
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise StoreError(f"store {self.path}: part {part.relative_to(self.path)} is unreadable (corrupted or "
                             f"tampered with: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                             f"restore it from a backup, or delete {part.name} from every table folder (manifest, "
                             "sessions, embeddings) and run 'clef embed' again to redo those sessions") from None

    def manifest(self, *, history: bool = False, model_id: str | None = None) -> pl.DataFrame:
        """The manifest: the current row of every ``(path, model_id)``, or every attempt.

        Parameters
        ----------
        history : bool
            Return every attempt (the raw log) instead of the latest row per file.
        model_id : str, optional
            Only rows of this model.
        """
        df = self._read("manifest")
        if model_id is not None:
            df = df.filter(pl.col("model_id") == model_id)
        if history:
            return df
        # Parts are read in commit order: the last row of a (path, model) is its state.
        return df.unique(subset=["path", "model_id"], keep="last", maintain_order=True)

    def sessions(self) -> pl.DataFrame:
        """Session metadata, one row per distinct file content (``source_sha256``)."""
        return self._read("sessions").unique(subset=["source_sha256"], keep="first", maintain_order=True)

    def embeddings(self, model_id: str | None = None, *, windows: bool = True) -> pl.DataFrame:
        """Embeddings (all models, or one), de-duplicated by ``(source_sha256, model_id)``.

        Parameters
        ----------
        model_id : str, optional
            Only this model's rows.
        windows : bool
            Include the ``window_vectors`` column (large for long recordings).
        """
        cols = None if windows else [c for c in SCHEMAS["embeddings"] if c != "window_vectors"]
        df = self._read("embeddings", columns=cols)
        if model_id is not None:
            df = df.filter(pl.col("model_id") == model_id)
        return df.unique(subset=["source_sha256", "model_id"], keep="first", maintain_order=True)

    def matrix(self, model_id: str | None = None) -> tuple[list[str], np.ndarray]:
        """Session ids and their embeddings as one ``(n, dim)`` float32 matrix.

        Parameters
        ----------
        model_id : str, optional
            The model (default: the store's only model).

        Returns
        -------
        list of str
            Session ids, in row order.
        ndarray, (n, dim) float32
        """
        model_id = self.resolve_model(model_id)
        df = self.embeddings(model_id, windows=False)
        return df["session_id"].to_list(), vectors_of(df)

    def vector(self, session_id: str, model_id: str) -> np.ndarray | None:
        """The stored (raw, unnormalised) embedding of one session, or None."""
        parts = part_files(self.path, "embeddings")
        if not parts:
            return None
        df = (pl.scan_parquet(parts).filter((pl.col("session_id") == session_id) & (pl.col("model_id") == model_id))
              .select("vector").head(1).collect())
        return vectors_of(df)[0] if df.height else None

    def digest(self, model_id: str) -> str:
        """Digest of the embedded contents of one model (changes whenever the store grows)."""
        return digest_of(self._read("embeddings", columns=["source_sha256", "model_id"])
                         .filter(pl.col("model_id") == model_id)["source_sha256"].unique().to_list())


def digest_of(shas: list[str]) -> str:
    """Digest of a set of content hashes (order-free)."""
    return hashlib.sha256("\n".join(sorted(shas)).encode()).hexdigest()[:16]


def vectors_of(df: pl.DataFrame, column: str = "vector") -> np.ndarray:
    """The ``list<float32>`` column of an embeddings frame as an ``(n, dim)`` float32 array."""
    if df.height == 0:
        return np.zeros((0, 0), np.float32)
    lengths = df[column].list.len().unique().to_list()
    if len(lengths) != 1:
        raise StoreError(f"embeddings of one width expected in column {column!r}, found widths {sorted(lengths)}")
    flat = df[column].explode().to_numpy()
    return np.ascontiguousarray(flat.astype(np.float32, copy=False).reshape(df.height, int(lengths[0])))

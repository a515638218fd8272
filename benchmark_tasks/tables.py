"""Table I/O of the benchmark: atomic Parquet writes, column checks.

Every table is written with polars to a temporary file beside its destination and then
renamed over it, so a crash never leaves half a table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["require_columns", "write_json_atomic", "write_parquet_atomic", "write_text_atomic"]


def _tmp_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_parquet_atomic(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` atomically (temporary file + rename); parents are created.

    Returns
    -------
    Path
        The destination.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_of(path)
    try:
        df.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write UTF-8 text atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_of(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write an object as indented JSON atomically."""
    return write_text_atomic(json.dumps(obj, indent=1, sort_keys=False) + "\n", path)


def require_columns(df: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` naming the missing columns of a table.

    Parameters
    ----------
    df : polars.DataFrame
    columns : iterable of str
        Required column names.
    what : str
        The table, as the message should name it (a path or a role).
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: expected columns {list(columns)}, missing {missing} (found {df.columns})")

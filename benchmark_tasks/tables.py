"""Table checks of the benchmark.

Tables are written atomically with :func:`tokenizer.atomic.write_parquet_atomic`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["require_columns"]


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

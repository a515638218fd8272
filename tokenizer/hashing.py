"""Content hashes of files: the identity of a recording, a checkpoint's weights, a table."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

__all__ = ["file_sha256", "key_record", "session_record"]


def file_sha256(path: str | os.PathLike[str], chunk: int = 4 * 2**20) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks (bounded memory).

    Parameters
    ----------
    path : path
    chunk : int
        Bytes read at a time.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def key_record(keys: Iterable[str], **extra: Any) -> dict[str, Any]:
    """A compact, comparable record of a set of keys: count, digest and the sorted keys.

    What a checkpoint trained on is kept as such a record in its ``meta.json``
    (``trained_on``), so that a later stage can check it against a test split.
    """
    keys = sorted(set(keys))
    return {"n": len(keys), "digest": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16], "keys": keys,
            **extra}


def session_record(source_sha256: Iterable[str]) -> dict[str, Any]:
    """Record of a set of sessions by file content: the first 16 hex digits of each SHA-256."""
    return key_record((s[:16] for s in source_sha256 if s), kind="sessions")

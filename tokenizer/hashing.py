"""Content hashes of files: the identity of a recording, a checkpoint's weights, a table."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256"]


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

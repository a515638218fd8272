"""Content hashes of files: the identity of a recording, a checkpoint's weights, a table."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from types import TracebackType
from typing import Any, BinaryIO

__all__ = ["HashingReader", "file_sha256", "key_record", "session_record"]

#: Bytes read at a time when hashing what a reader left unread.
CHUNK = 4 * 2**20


def file_sha256(path: str | os.PathLike[str], chunk: int = CHUNK) -> str:
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


class HashingReader:
    """A binary file read front to back once, hashed from the very bytes read.

    What reads the file (its header, then its data records) reads through this object;
    :meth:`sha256` then hashes whatever is left (trailing bytes, an incomplete last
    record), so the file's identity costs no second pass over it.

    Parameters
    ----------
    file : binary file
        Open at its start; closed with this reader.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes (all that is left when negative), hashing them."""
        block = self._file.read(n)
        self._hash.update(block)
        return block

    def fileno(self) -> int:
        """The file descriptor (``os.fstat`` of the file)."""
        return self._file.fileno()

    def sha256(self, chunk: int = CHUNK) -> str:
        """SHA-256 hex digest of the whole file: the bytes read so far and the rest."""
        while block := self._file.read(chunk):
            self._hash.update(block)
        return self._hash.hexdigest()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> HashingReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


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

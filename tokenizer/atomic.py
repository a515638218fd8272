"""Atomic file writes: a temporary file beside the target, renamed over it once complete.

The one implementation of the repository's atomic writes: a reader sees the old file or
the new one, never a half-written one, and a writer killed mid-write leaves only a
temporary ``.<name>.tmp-<pid>-<ns>`` that :func:`remove_stale_temps` recognises by the pid it
holds (:func:`pid_alive`, the repository's one process-liveness check). It lives in ``tokenizer``, the lowest layer that writes
files, so that ``clef``, ``benchmark_tasks`` and ``services`` use it too. (``ehr``, in the
same layer, writes one file, its vocabulary, inside a checkpoint folder that is itself
renamed into place.)

The object comes first and the path second, as in :func:`json.dump` and :func:`torch.save`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

__all__ = ["atomic_path", "pid_alive", "remove_stale_temps", "replace_dir", "write_bytes_atomic",
           "write_json_atomic", "write_parquet_atomic", "write_text_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write ``path`` through: renamed over ``path`` when the block ends.

    Parents are created. The temporary file is removed when the block raises.

    Parameters
    ----------
    path : path
        The destination.
    suffix : str
        Appended to the temporary name, for writers that infer a format from it
        (``".png"``) or append one (``np.save`` adds ``".npy"``).

    Yields
    ------
    Path
        ``.<name>.tmp-<pid>-<ns><suffix>`` beside ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.time_ns()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(data: bytes | bytearray | memoryview, path: str | os.PathLike[str]) -> Path:
    """Write bytes atomically; returns the destination."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write UTF-8 text atomically; returns the destination."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(obj: Any, path: str | os.PathLike[str], *, indent: int | None = 1,
                      sort_keys: bool = False) -> Path:
    """Write ``obj`` as JSON (and a final newline) atomically; returns the destination."""
    return write_text_atomic(json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n", path)


def write_parquet_atomic(df: pl.DataFrame, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write a polars table as Parquet atomically (``kwargs`` go to ``write_parquet``); returns the destination."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, **kwargs)
    return Path(path)


def replace_dir(staging: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Put a complete folder ``staging`` in place of ``path`` (two renames; the old folder is then removed).

    A folder cannot be renamed over another one, so an existing ``path`` is first renamed
    aside to ``.<name>.old-<pid>-<ns>``; a process killed between the two renames leaves
    that folder, which :func:`tokenizer.checkpoint_io.recover_checkpoint` puts back.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(path, old)
        os.replace(staging, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, path)
    return path


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (used to spot leftovers of killed writers).

    A ``PermissionError`` means the process exists but belongs to another user: alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(folder: str | Path, pattern: str) -> list[Path]:
    """Remove the files or directories matching ``pattern`` in ``folder`` left by dead processes.

    Temporary names hold the writer's process id after ``.tmp-`` / ``.staging-``
    (``.name.tmp-<pid>-<ns>``); entries whose writer still runs are kept.

    Returns
    -------
    list of Path
        What was removed.
    """
    removed = []
    for p in Path(folder).glob(pattern):
        m = re.search(r"\.(?:tmp|staging)-(\d+)", p.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed

"""Crash-safe writes to an embedding store (one writer at a time).

A commit writes one part of each table (``manifest``, ``sessions``, ``embeddings``) into
``STORE/.staging/part-NNNNNN/``, marks it ``READY`` and renames the files into the table
folders, the manifest last. A process killed at any point (``kill -9``) leaves either an
unmarked staging folder (deleted on the next open: its files were never recorded and are
done again) or a marked one (rolled forward on the next open): nothing is lost, nothing is
duplicated, and the table folders never hold a partial file.

A lock (``STORE/.lock``, ``flock``; released by the kernel when the process dies) keeps a
second run from writing the same store at the same time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from services.schemas import SCHEMAS, STORE_SCHEMA, TABLES
from services.store import EmbeddingStore, StoreError
from tokenizer.atomic import write_json_atomic

log = logging.getLogger(__name__)

_PART = re.compile(r"^part-(\d+)(?:\.parquet)?$")
_READY = "READY"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def utc_now() -> datetime:
    """Current UTC time (microseconds)."""
    return datetime.now(timezone.utc)


class StoreWriter:
    """Exclusive, crash-safe writer of one store.

    Parameters
    ----------
    path : path
        Store folder (created when absent).
    archive : path
        Archive root the manifest paths are relative to (recorded in ``store.json``).
    anonymous_ids : bool
        The rows hold salted hashes instead of session ids and paths (``clef embed
        --anonymous-ids``): recorded in ``store.json`` (the archive root as a hash too), and
        a store written one way refuses the other, which would store every file twice.

    Use as a context manager: the lock is taken on entry and released on exit.
    """

    def __init__(self, path: str | Path, archive: str | Path, *, anonymous_ids: bool = False) -> None:
        self.path = Path(path)
        self.archive = str(Path(archive).resolve())
        self.anonymous_ids = bool(anonymous_ids)
        if self.anonymous_ids:
            from tokenizer.deid import anonymous_id

            self.archive = anonymous_id(self.archive, "archive")
        self._lock_fd: int | None = None
        self._next = 0

    def __enter__(self) -> "StoreWriter":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening --------------------------------------------------------------------------
    def open(self) -> None:
        """Create the layout, take the lock, finish or discard interrupted commits."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store {self.path}: expected a folder, found a file")
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"store {self.path}: another 'clef embed' is writing it (lock {self.path / '.lock'} "
                             "held); wait for it to finish") from None
        self._lock_fd = fd
        for t in TABLES:
            (self.path / t).mkdir(exist_ok=True)
        (self.path / ".staging").mkdir(exist_ok=True)
        info = EmbeddingStore(self.path).info()
        if info and info.get("schema") != STORE_SCHEMA:
            self.close()
            raise StoreError(f"store {self.path}: schema {STORE_SCHEMA} expected, found {info.get('schema')}")
        if info and bool(info.get("anonymous_ids", False)) != self.anonymous_ids:
            self.close()
            was = "with" if info.get("anonymous_ids") else "without"
            raise StoreError(f"store {self.path}: written {was} --anonymous-ids; embed into it the same way, or "
                             "into a new store (mixing would store every file under two ids)")
        if not info:
            info = {"schema": STORE_SCHEMA, "created": utc_now().isoformat(), "archive": self.archive, "models": {},
                    "anonymous_ids": self.anonymous_ids}
            write_json_atomic(info, self.path / "store.json", indent=2, sort_keys=True)
        elif info.get("archive") not in (None, self.archive):
            log.warning("store %s was built from archive %s; now embedding %s (paths are relative to each root)",
                        self.path, info.get("archive"), self.archive)
        self.recover()
        names = [p.name for d in (*TABLES, ".staging") for p in (self.path / d).iterdir()]
        self._next = 1 + max((int(m.group(1)) for n in names if (m := _PART.match(n))), default=0)

    def recover(self) -> int:
        """Roll forward commits marked ready, delete unmarked ones; returns commits rolled forward."""
        rolled = 0
        for d in sorted((self.path / ".staging").iterdir()):
            if not d.is_dir():
                d.unlink(missing_ok=True)
                continue
            if (d / _READY).is_file():
                self._publish(d)
                rolled += 1
                log.info("store %s: finished interrupted commit %s", self.path, d.name)
            else:
                shutil.rmtree(d, ignore_errors=True)
                log.info("store %s: discarded unfinished commit %s", self.path, d.name)
        return rolled

    def _publish(self, staged: Path) -> None:
        # The manifest goes last: a file counts as done only once its manifest row is visible.
        for table in ("embeddings", "sessions", "manifest"):
            src = staged / f"{table}.parquet"
            if src.is_file():
                os.replace(src, self.path / table / f"{staged.name}.parquet")
        (staged / _READY).unlink(missing_ok=True)
        staged.rmdir()

    # -- writing --------------------------------------------------------------------------
    def commit(self, manifest: Sequence[dict[str, Any]], sessions: Sequence[dict[str, Any]] = (),
               embeddings: Sequence[dict[str, Any]] = (), *, models: dict[str, dict[str, Any]] | None = None) -> str | None:
        """Write one part of each non-empty table atomically.

        Parameters
        ----------
        manifest, sessions, embeddings : sequence of dict
            Rows (see :mod:`services.schemas`).
        models : dict, optional
            ``{model_id: {"dim": ..., "checkpoint": ...}}`` to record in ``store.json``.

        Returns
        -------
        str or None
            The part name, or None when there was nothing to write.
        """
        if self._lock_fd is None:
            raise StoreError("StoreWriter.commit called on a closed writer")
        if not (manifest or sessions or embeddings):
            return None
        name = f"part-{self._next:06d}"
        self._next += 1
        staged = self.path / ".staging" / name
        staged.mkdir()
        for table, rows in (("embeddings", embeddings), ("sessions", sessions), ("manifest", manifest)):
            if rows:
                f = staged / f"{table}.parquet"
                pl.DataFrame(list(rows), schema=SCHEMAS[table]).write_parquet(f)
                _fsync(f)
        if models:
            self._record_models(models)
        marker = staged / _READY
        marker.write_text(name)
        _fsync(marker)
        _fsync(staged)
        self._publish(staged)
        return name

    def _record_models(self, models: dict[str, dict[str, Any]]) -> None:
        info = EmbeddingStore(self.path).info()
        known = info.setdefault("models", {})
        if all(m in known for m in models):
            return
        for mid, meta in models.items():
            known.setdefault(mid, {**meta, "added": utc_now().isoformat()})
        info["updated"] = utc_now().isoformat()
        write_json_atomic(info, self.path / "store.json", indent=2, sort_keys=True)

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

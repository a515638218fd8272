"""Work on one file: read (bytes, hash and header facts in one pass) → tokens → session model.

Used by both engines: each process of the local pool (:mod:`services.batch`) runs
:meth:`FileEmbedder.process` (both stages); the Ray engine runs :meth:`FileEmbedder.prepare`
in CPU workers and :meth:`FileEmbedder.finish` in model workers (GPU when present).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from services.discovery import ArchiveFile
from tokenizer.channels import ChannelMap
from tokenizer.header_facts import HeaderFacts

log = logging.getLogger(__name__)

#: Result statuses of one file (``known``: its content is already in the store).
DONE, FAILED, KNOWN = "done", "failed", "known"


@dataclass
class FileResult:
    """Outcome of one file."""

    rel: str
    size: int
    mtime_ns: int
    status: str
    sha256: str | None = None
    error_kind: str | None = None
    error: str | None = None
    seconds: float = 0.0
    facts: HeaderFacts | None = None
    vector: np.ndarray | None = None
    windows: np.ndarray | None = None
    tokens: Any = field(default=None, repr=False)  # set between the two stages only


def one_line(exc: BaseException, path: str = "", rel: str = "") -> str:
    """The error on one line, with the archive-relative path instead of the absolute one."""
    text = re.sub(r"\s*[\r\n]+\s*", " ", str(exc)).strip() or type(exc).__name__
    return text.replace(path, rel) if path else text


def limit_threads(n: int = 1) -> Any:
    """Cap BLAS/OpenMP threads of this process (parallelism comes from the workers, not threads).

    Returns the limiter (``.restore_original_limits()`` undoes it), or None.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return None
    return threadpool_limits(max(1, n))


class FileEmbedder:
    """A checkpoint loaded once per worker, applied to files.

    Parameters
    ----------
    checkpoint : path
        Session-transformer checkpoint (with its tokenizer).
    device : str
        Torch device of the models.
    batch_size : int
        Windows per forward pass.
    cache_dir : path, optional
        Spectrogram cache (none by default: an archive's spectrograms are large).
    threads : int
        Threads of this process: torch intra-op, BLAS and reading (1: parallelism comes
        from the workers).
    channel_map : ChannelMap, optional
        A site's channel aliases (``clef embed --channel-map``).
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "cpu", batch_size: int = 8,
                 cache_dir: str | Path | None = None, threads: int = 1,
                 channel_map: ChannelMap | None = None) -> None:
        import torch

        from clef.embedding import Embedder

        self.threads = max(1, threads)
        self._restore = (limit_threads(self.threads), torch.get_num_threads())
        torch.set_num_threads(self.threads)
        self.embedder = Embedder(checkpoint, device=device, batch_size=batch_size, cache_dir=cache_dir,
                                 channel_map=channel_map)
        self.model_id = self.embedder.model_id

    def restore_threads(self) -> None:
        """Give the process back the thread settings it had before (for in-process use)."""
        import torch

        limiter, n = self._restore
        if limiter is not None:
            limiter.restore_original_limits()
        torch.set_num_threads(n)

    def prepare(self, item: ArchiveFile, known: Iterable[str] | set[str] = frozenset()) -> FileResult:
        """Read one file (its bytes once: hash, header facts, signal) and tokenize it as it is
        read, in bounded memory (CPU work); content whose hash is ``known`` is not tokenized."""
        t0 = time.perf_counter()
        r = FileResult(rel=item.rel, size=item.size, mtime_ns=item.mtime_ns, status=DONE)
        try:
            def hashed(sha: str) -> bool:  # as soon as the file is read: known content is not preprocessed
                r.sha256 = sha
                return sha in known

            info, r.tokens = self.embedder.read_tokens(item.path, threads=self.threads, known=hashed)
            if info is None:
                r.status = KNOWN
            else:
                r.facts = info.facts
        except Exception as exc:  # noqa: BLE001 - every file must end done or failed, with its reason
            kind = getattr(exc, "kind", None)
            if not isinstance(kind, str):
                log.exception("%s: unexpected error", item.rel)
                kind = f"internal:{type(exc).__name__}"
            return self._fail(r, kind, one_line(exc, str(item.path), item.rel), t0)
        r.seconds = time.perf_counter() - t0
        return r

    def finish(self, prepared: Sequence[FileResult]) -> list[FileResult]:
        """Run the session model on the prepared files (batched across files)."""
        todo = [r for r in prepared if r.status == DONE and r.tokens is not None]
        if todo:
            t0 = time.perf_counter()
            try:
                embs = self.embedder.embed_tokens([r.tokens for r in todo])
            except Exception as exc:  # noqa: BLE001 - recorded per file
                log.exception("session model failed on %d file(s)", len(todo))
                for r in todo:
                    self._fail(r, f"internal:{type(exc).__name__}", one_line(exc), None)
            else:
                share = (time.perf_counter() - t0) / len(todo)
                for r, e in zip(todo, embs):
                    r.vector, r.windows = e.vector, e.windows
                    r.seconds += share
        for r in prepared:
            r.tokens = None
        return list(prepared)

    def process(self, item: ArchiveFile, known: Iterable[str] | set[str] = frozenset()) -> FileResult:
        """Both stages on one file."""
        return self.finish([self.prepare(item, known)])[0]

    @staticmethod
    def _fail(r: FileResult, kind: str, message: str, t0: float | None) -> FileResult:
        r.status, r.error_kind, r.error = FAILED, kind, message
        r.tokens = None
        if t0 is not None:
            r.seconds = time.perf_counter() - t0
        return r


# -- the local pool's worker processes: one FileEmbedder each -------------------------------
_WORKER: dict[str, Any] = {}


def init_worker(checkpoint: str, device: str, batch_size: int, cache_dir: str | None, known: frozenset[str],
                channel_map: ChannelMap | None = None) -> None:
    """Pool initializer: exit with the driver, load the checkpoint once, one thread."""
    parent = multiprocessing.parent_process()  # the driver: the pool's processes are spawned
    if parent is not None:
        # its sentinel becomes ready when the driver exits, kill -9 included
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), name="clef-exit-with-driver",
                         daemon=True).start()
    _WORKER["embedder"] = FileEmbedder(checkpoint, device=device, batch_size=batch_size, cache_dir=cache_dir,
                                       channel_map=channel_map)
    _WORKER["known"] = known


def run_in_worker(item: ArchiveFile) -> FileResult:
    """Pool task: process one file in this worker."""
    return _WORKER["embedder"].process(item, _WORKER["known"])

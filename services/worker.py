"""Work on one file: hash, header, read + spectrogram + tokens, then the session model.

Used by both engines: the local process pool runs :meth:`FileEmbedder.process` (both
stages) in each worker; the Ray engine runs :meth:`FileEmbedder.prepare` in CPU workers
and :meth:`FileEmbedder.finish` in model workers (GPU when present).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from tokenizer.errors import IngestError
from tokenizer.hashing import file_sha256
from tokenizer.header_facts import HeaderFacts, read_header_facts

if TYPE_CHECKING:
    from tokenizer.channels import ChannelMap

log = logging.getLogger(__name__)

#: Result statuses of one file (``known``: its content is already in the store).
DONE, FAILED, KNOWN = "done", "failed", "known"


@dataclass(frozen=True)
class WorkItem:
    """A file to process (plain data: crosses process boundaries)."""

    path: str
    rel: str
    size: int
    mtime_ns: int


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
    pid: int = 0  # process that read the file (the driver's own, for files its lane embedded)


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
        Torch intra-op threads (1: parallelism comes from the workers).
    channel_map : ChannelMap, optional
        A site's channel aliases (``clef embed --channel-map``).
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "cpu", batch_size: int = 8,
                 cache_dir: str | Path | None = None, threads: int = 1,
                 channel_map: ChannelMap | None = None) -> None:
        import torch

        from clef.embedding import Embedder

        self._restore = (limit_threads(threads), torch.get_num_threads())
        torch.set_num_threads(max(1, threads))
        self.embedder = Embedder(checkpoint, device=device, batch_size=batch_size, cache_dir=cache_dir,
                                 channel_map=channel_map)
        self.model_id = self.embedder.model_id

    @property
    def channel_map(self) -> ChannelMap | None:
        """The channel aliases files are read with."""
        return self.embedder.channel_map

    @channel_map.setter
    def channel_map(self, value: ChannelMap | None) -> None:
        # set after loading too: a worker forked from a preloaded embedder gets the run's map
        self.embedder.channel_map = value

    def restore_threads(self) -> None:
        """Give the process back the thread settings it had before (for in-process use)."""
        import torch

        limiter, n = self._restore
        if limiter is not None:
            limiter.restore_original_limits()
        torch.set_num_threads(n)

    def prepare(self, item: WorkItem, known: Iterable[str] | set[str] = frozenset()) -> FileResult:
        """Hash, header and tokens of one file (CPU work); ``known`` hashes are not tokenized."""
        t0 = time.perf_counter()
        r = FileResult(rel=item.rel, size=item.size, mtime_ns=item.mtime_ns, status=DONE, pid=os.getpid())
        try:
            r.sha256 = file_sha256(item.path)
        except OSError as exc:
            return self._fail(r, "unreadable", f"{item.rel}: cannot read the file ({exc.strerror or exc})", t0)
        if r.sha256 in known:
            r.status = KNOWN
            r.seconds = time.perf_counter() - t0
            return r
        try:
            r.facts = read_header_facts(item.path, channels=self.embedder.contract.channels,
                                        channel_map=self.channel_map)
            r.tokens = self.embedder.tokens_of(item.path)
        except IngestError as exc:
            return self._fail(r, exc.kind, one_line(exc, item.path, item.rel), t0)
        except Exception as exc:  # noqa: BLE001 - every file must end done or failed, with its reason
            kind = getattr(exc, "kind", None)
            if not isinstance(kind, str):
                log.exception("%s: unexpected error", item.rel)
                kind = f"internal:{type(exc).__name__}"
            return self._fail(r, kind, one_line(exc, item.path, item.rel), t0)
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

    def process(self, item: WorkItem, known: Iterable[str] | set[str] = frozenset()) -> FileResult:
        """Both stages on one file."""
        return self.finish([self.prepare(item, known)])[0]

    @staticmethod
    def _fail(r: FileResult, kind: str, message: str, t0: float | None) -> FileResult:
        r.status, r.error_kind, r.error = FAILED, kind, message
        r.tokens = None
        if t0 is not None:
            r.seconds = time.perf_counter() - t0
        return r


# -- process-pool plumbing (one FileEmbedder per worker process) --------------------------
_WORKER: dict[str, Any] = {}

#: Environment variable naming the checkpoint the fork server preloads (:mod:`services.pool_preload`).
CHECKPOINT_ENV = "CLEF_POOL_PRELOAD"


def preload_key(checkpoint: str, batch_size: int, cache_dir: str | None) -> str:
    """The key of a checkpoint preloaded by the fork server (CPU only): JSON ``[path, batch, cache]``."""
    return json.dumps([os.path.abspath(checkpoint), int(batch_size), cache_dir])


def _exit_with_driver(driver_pid: int | None = None) -> None:
    """End this worker when the driver dies (``kill -9`` included) instead of working on as an orphan.

    The driver is this process's parent for a spawned worker, and the fork server's
    parent for a forked one (the fork server itself outlives the driver while any of its
    children lives, as they hold its keep-alive pipe). So the worker watches the driver's
    pid (``driver_pid``, a pidfd where Linux has them, else a poll every 0.5 s), and on
    Linux also asks the kernel to kill it when its own parent dies.
    """
    import select
    import signal
    import threading

    parent = os.getppid()
    driver = parent if driver_pid is None else driver_pid
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            pass

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - someone else's pid: ours is gone
            return False
        return True

    def watch() -> None:
        try:
            fd = os.pidfd_open(driver)  # readable once the driver has exited
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])
            os._exit(1)
        while True:
            time.sleep(0.5)
            if os.getppid() != parent or not alive(driver):
                os._exit(1)

    if driver_pid is not None and not alive(driver_pid):
        os._exit(1)
    threading.Thread(target=watch, name="clef-driver-watch", daemon=True).start()


def init_worker(checkpoint: str, device: str, batch_size: int, cache_dir: str | None, known: frozenset[str],
                driver_pid: int | None = None, model_id: str | None = None,
                channel_map: ChannelMap | None = None) -> None:
    """Pool initializer: exit with the driver (``driver_pid``, default the parent), load the
    checkpoint once per process (or take the fork server's, when it preloaded this one
    with the weights ``model_id``), one torch thread, the run's ``channel_map``."""
    _exit_with_driver(driver_pid)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    preload = sys.modules.get("services.pool_preload")  # only in workers forked from the fork server
    fe = preload.take(checkpoint, batch_size, cache_dir, model_id) if preload and device == "cpu" else None
    if fe is None:
        fe = FileEmbedder(checkpoint, device=device, batch_size=batch_size, cache_dir=cache_dir)
    fe.channel_map = channel_map
    _WORKER["embedder"] = fe
    _WORKER["known"] = known


def run_in_worker(item: WorkItem) -> FileResult:
    """Pool task: process one file in this worker."""
    return _WORKER["embedder"].process(item, _WORKER["known"])

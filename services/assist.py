"""The driver's share of a local pool run: files embedded in the driver while the workers start.

A pool worker is ready ~3 s after the run starts (the fork server's imports, then the
checkpoint); the driver has its checkpoint loaded already and one core to spare in that
time. :class:`DriverAssist` embeds files from the same queue in a thread of the driver
until the first worker delivers a result, then finishes the file in hand and stops, so
crashes in native code (out of memory on a huge file) stay contained in workers for the
rest of the run. Torch and numpy release the GIL in their kernels, so the thread does not
hold up the driver's bookkeeping.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator

from services.worker import FileEmbedder, FileResult, WorkItem

log = logging.getLogger(__name__)


class SharedQueue:
    """Work items handed out once each to several consumers (thread-safe)."""

    def __init__(self, items: Iterable[WorkItem]) -> None:
        self._it: Iterator[WorkItem] = iter(items)
        self._lock = threading.Lock()

    def next(self) -> WorkItem | None:
        """The next item, or None when all have been handed out."""
        with self._lock:
            return next(self._it, None)


class DriverAssist:
    """Embeds files in the driver process until :meth:`stop` (see the module docstring).

    Parameters
    ----------
    embedder : FileEmbedder
        The driver's own, already loaded.
    source : SharedQueue
        The queue the pool is fed from.
    known : iterable of str
        Content hashes already in the store (not embedded again).
    """

    def __init__(self, embedder: FileEmbedder, source: SharedQueue, known: Iterable[str]) -> None:
        self._embedder, self._source, self._known = embedder, source, known
        self._results: queue.SimpleQueue[FileResult] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0  # taken from the queue, result not yet collected
        self.processed = 0
        self._thread = threading.Thread(target=self._work, name="clef-driver-assist", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:  # taking an item and counting it as pending: one step for `busy`
                if self._stop.is_set():
                    return
                item = self._source.next()
                if item is None:
                    return
                self._pending += 1
            self._results.put(self._embedder.process(item, self._known))  # never raises: failures are results

    def stop(self) -> None:
        """Take no new file (the one in hand is finished)."""
        if not self._stop.is_set():
            self._stop.set()
            log.debug("driver assist stops after %d file(s)", self.processed + self._pending)

    @property
    def busy(self) -> bool:
        """A file is in hand, or results wait to be collected, or more may be taken."""
        with self._lock:
            return self._pending > 0 or (self._thread.is_alive() and not self._stop.is_set())

    def collect(self, timeout: float = 0.0) -> list[FileResult]:
        """Results ready now (waiting up to ``timeout`` seconds for the first one)."""
        out: list[FileResult] = []
        try:
            out.append(self._results.get(timeout=timeout) if timeout > 0 else self._results.get_nowait())
            while True:
                out.append(self._results.get_nowait())
        except queue.Empty:
            pass
        with self._lock:
            self._pending -= len(out)
        self.processed += len(out)
        return out

    def close(self) -> None:
        """Stop and wait for the file in hand (its result stays collectable)."""
        self.stop()
        self._thread.join()

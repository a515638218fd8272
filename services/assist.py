"""The driver's lane of a local run: files embedded in the driver next to the pool.

With ``--workers K`` the driver is one of the K lanes: its checkpoint is loaded already,
so :class:`DriverAssist` embeds files from the queue the pool is fed from, in a thread of
the driver, from the first second of the run, while ``K - 1`` pool processes start and
then work beside it. Torch and numpy release the GIL in their kernels, so the thread
does not hold up the driver's bookkeeping (a fraction of a percent of a core).

A crash in native code (a process killed for memory) is contained in a pool process,
whose files are recorded as ``worker_died``; in the driver it ends the run. So that such
a file cannot end every later run too, :class:`InHand` keeps the file the driver's lane
has in hand on disk: a run that finds it left behind knows which file the dead run was
embedding, and a file in hand at two deaths is recorded as failed (``process_died``)
instead of being tried a third time (one death may be a ``kill -9`` from outside).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

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


class InHand:
    """The file the driver's lane has in hand, on disk (``STORE/.driver-in-hand.json``).

    Parameters
    ----------
    store : path
        The store folder.
    """

    NAME = ".driver-in-hand.json"
    #: Deaths with a file in hand after which it is recorded as failed.
    LIMIT = 2

    def __init__(self, store: str | Path) -> None:
        self.path = Path(store) / self.NAME
        self.suspects: dict[tuple[str, int, int], int] = {}  # (rel, size, mtime_ns) -> deaths so far

    @staticmethod
    def key(item: WorkItem) -> tuple[str, int, int]:
        """What names a file version here: path, size and mtime."""
        return item.rel, item.size, item.mtime_ns

    def left_behind(self) -> tuple[tuple[str, int, int], int] | None:
        """The file a dead run had in hand and how many deaths it has seen (this one included)."""
        try:
            d = json.loads(self.path.read_text())
            return (str(d["rel"]), int(d["size"]), int(d["mtime_ns"])), int(d["deaths"]) + 1
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # torn or foreign: nothing to learn from it
            log.warning("ignoring %s (%s)", self.path, exc)
            return None

    def take(self, item: WorkItem) -> None:
        """Record ``item`` as in hand (atomic: the file is whole or absent)."""
        tmp = self.path.with_name(f"{self.NAME}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"rel": item.rel, "size": item.size, "mtime_ns": item.mtime_ns,
                                   "deaths": self.suspects.get(self.key(item), 0)}))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        """Nothing in hand (the run ended without dying)."""
        self.path.unlink(missing_ok=True)


def process_in_hand(embedder: FileEmbedder, item: WorkItem, known: Iterable[str],
                    in_hand: InHand | None) -> FileResult:
    """``embedder.process(item)`` with ``item`` recorded as in hand meanwhile (never raises
    for a bad file: failures are results)."""
    if in_hand is None:
        return embedder.process(item, known)
    in_hand.take(item)
    r = embedder.process(item, known)
    in_hand.clear()
    return r


class DriverAssist:
    """Embeds files in a thread of the driver until the queue is empty or :meth:`stop`.

    Parameters
    ----------
    embedder : FileEmbedder
        The driver's own, already loaded.
    source : SharedQueue
        The queue the pool is fed from.
    known : iterable of str
        Content hashes already in the store (not embedded again).
    in_hand : InHand, optional
        Where the file in hand is recorded (see the module docstring).
    """

    def __init__(self, embedder: FileEmbedder, source: SharedQueue, known: Iterable[str],
                 in_hand: InHand | None = None) -> None:
        self._embedder, self._source, self._known, self._in_hand = embedder, source, known, in_hand
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
            self._results.put(process_in_hand(self._embedder, item, self._known, self._in_hand))

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

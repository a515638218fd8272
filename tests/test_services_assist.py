"""The driver's share of a pool run (services/assist.py): every file handed out once, and
the driver stops taking files when told."""

from __future__ import annotations

import threading
import time

from services.assist import DriverAssist, SharedQueue
from services.worker import FileResult, WorkItem


class _SlowEmbedder:
    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def process(self, item: WorkItem, known: frozenset[str]) -> FileResult:
        self.gate.wait(5)
        time.sleep(0.01)
        return FileResult(rel=item.rel, size=item.size, mtime_ns=item.mtime_ns, status="done")


def test_driver_assist_shares_the_queue_and_stops() -> None:
    items = [WorkItem(path=f"/archive/{i}.edf", rel=f"{i}.edf", size=1, mtime_ns=0) for i in range(40)]
    queue = SharedQueue(items)
    gate = threading.Event()
    assist = DriverAssist(_SlowEmbedder(gate), queue, frozenset())  # type: ignore[arg-type]
    pool_share = [queue.next() for _ in range(5)]
    assert assist.busy
    gate.set()
    time.sleep(0.05)
    assist.stop()
    assist.close()
    done = assist.collect()
    rest = []
    while (it := queue.next()) is not None:
        rest.append(it)
    assert 1 <= len(done) < len(items) - len(pool_share)  # it helped, then stopped taking files
    handed = [r.rel for r in done] + [i.rel for i in pool_share] + [i.rel for i in rest]
    assert sorted(handed) == sorted(i.rel for i in items)  # each file exactly once
    assert not assist.busy and assist.collect() == []


def test_driver_assist_drains_the_queue_when_never_stopped() -> None:
    items = [WorkItem(path=f"/archive/{i}.edf", rel=f"{i}.edf", size=1, mtime_ns=0) for i in range(6)]
    gate = threading.Event()
    gate.set()
    assist = DriverAssist(_SlowEmbedder(gate), SharedQueue(items), frozenset())  # type: ignore[arg-type]
    got: list[FileResult] = []
    deadline = time.monotonic() + 10
    while assist.busy and time.monotonic() < deadline:
        got += assist.collect(timeout=0.1)
    assert sorted(r.rel for r in got) == sorted(i.rel for i in items)

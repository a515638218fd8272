"""``python -m services.explorer.predraw STORE ARCHIVE CACHE PARENT_PID`` (the contract as JSON on stdin):
the spectrograms of a store's sessions drawn ahead onto the explorer's disk cache
(:meth:`services.explorer.signals.SessionSignals.predraw`), as ``clef serve --warm-explorer``
starts it (:meth:`~services.explorer.signals.SessionSignals.start_predraw`). It stops when its
parent, the service, is gone.
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("services.explorer.predraw")


def main(argv: list[str]) -> int:
    """Draw; returns the exit status."""
    from services.explorer.signals import SessionSignals
    from services.store import EmbeddingStore
    from tokenizer.contract import SignalContract

    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    store, archive, cache, parent = argv[0], argv[1], argv[2], int(argv[3])
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    contract = SignalContract.model_validate_json(sys.stdin.read())
    sig = SessionSignals(archive, contract, cache_dir=cache)
    sessions = EmbeddingStore(store).sessions()
    metas = sessions.select([c for c in ("source_sha256", "path", "duration_s") if c in sessions.columns])
    t0 = time.perf_counter()
    n = sig.predraw(metas.iter_rows(named=True), stop=lambda: os.getppid() != parent)
    log.info("explorer: %d spectrogram(s) drawn ahead in %.1f s", n, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What the service holds: embedder, searcher, probes and keys; the searcher follows the store."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from benchmark_tasks.probes import TaskProbe, load_probes
from services.auth import ApiKeys
from services.config import ServeConfig
from services.index import index_signature
from services.search import CohortSearcher
from services.store import EmbeddingStore, StoreError

__all__ = ["ServiceState"]

log = logging.getLogger(__name__)


class ServiceState:
    """What the app holds: embedder, searcher, probes, keys.

    The checkpoint, probes and keys are loaded once at start-up. The searcher (index +
    session metadata) follows the store: :meth:`current`, called once per request, checks
    at most every ``cfg.reload_seconds`` whether the store grew or the index was rebuilt
    (:func:`services.index.index_signature`: directory listings and a ``stat``), and if so
    loads the change in a background thread (:meth:`check`; the load also brings the saved
    index up to date, as start-up does). Requests keep being answered by the current
    searcher meanwhile; the new one is swapped in with one assignment, and a request uses
    the searcher it started with throughout (FAISS rows and metadata stay consistent).
    """

    def __init__(self, cfg: ServeConfig, keys: ApiKeys) -> None:
        from clef.embedding import Embedder

        self.cfg = cfg
        self.keys = keys
        self.store = EmbeddingStore(cfg.store)
        self.store.require()
        self.embedder = Embedder(cfg.checkpoint, device=cfg.device)
        self.model_id = self.embedder.model_id
        if self.model_id not in self.store.models():
            raise StoreError(f"the checkpoint's model {self.model_id} has no embeddings in {cfg.store} "
                             f"(models there: {', '.join(self.store.models()) or 'none'}); run 'clef embed' with it")
        self._reload_lock = threading.Lock()  # held by a check, or by a reload until it ends
        self._signature = index_signature(self.store, self.model_id)  # before loading: later changes are seen
        self.searcher = CohortSearcher(self.store, self.model_id)
        self._signature = self._signature[:-1] + index_signature(self.store, self.model_id)[-1:]  # our own save
        self._checked = time.monotonic()
        self._failed: tuple[tuple[Any, ...], float] | None = None  # signature whose load failed, and when
        self.generation = 0  # searchers loaded since start-up
        self.probes: dict[str, TaskProbe] = load_probes(cfg.probes, model_id=self.model_id, dim=self.searcher.index.dim)
        self.lock = threading.Lock()  # one embedding at a time: bounded memory and CPU
        self.max_bytes = int(cfg.max_upload_mb * 2**20)
        self._text_lock = threading.Lock()  # loads the report tower, and projects a searcher, once
        self._tower: Any = None  # services.text_search.ReportTower, loaded by the first text search
        self._no_tower: Exception | None = None
        log.info("serving model %s: %d sessions, %d probe task(s)", self.model_id, self.searcher.index.n,
                 len(self.probes))

    def text_searcher(self) -> Any:
        """A :class:`~services.text_search.TextSearcher` over the current searcher.

        The checkpoint's report tower (and its text encoder) is loaded by the first call;
        the sessions' EEG projections are computed once per loaded searcher (cached on it,
        so a reload of the store projects again).

        Raises
        ------
        services.text_search.NoReportTowerError
            The served checkpoint has no report tower (remembered: not tried again).
        """
        from services.text_search import NoReportTowerError, ReportTower, TextSearcher

        searcher = self.current()
        with self._text_lock:
            if self._no_tower is not None:
                raise self._no_tower
            if self._tower is None:
                try:
                    self._tower = ReportTower(self.cfg.checkpoint, device=self.cfg.device)
                except NoReportTowerError as exc:
                    self._no_tower = exc
                    raise
            return TextSearcher(self.store, self._tower, searcher=searcher)

    def current(self) -> CohortSearcher:
        """The searcher to answer a request with; starts a background reload when the store changed."""
        if self.cfg.reload_seconds > 0 and time.monotonic() - self._checked >= self.cfg.reload_seconds:
            self.check()
        return self.searcher

    def check(self, *, wait: bool = False) -> bool:
        """Compare the store's signature with the loaded one; reload when it changed.

        A store state that failed to load is tried again when the store changes again,
        or after ``max(60, 10 × reload_seconds)`` seconds.

        Parameters
        ----------
        wait : bool
            Reload in this thread (tests, tools) instead of a background thread, even a
            state that failed before.

        Returns
        -------
        bool
            True when a reload was started (or, with ``wait``, done successfully).
        """
        if not self._reload_lock.acquire(blocking=False):
            return False  # another request is checking, or a reload is running
        handed_over = False
        try:
            self._checked = time.monotonic()
            try:
                sig = index_signature(self.store, self.model_id)
            except OSError as exc:  # the store folder went away: keep serving what is loaded
                log.warning("store %s cannot be checked (%s); serving the loaded index", self.store.path, exc)
                return False
            if sig == self._signature:
                return False
            if (not wait and self._failed is not None and self._failed[0] == sig
                    and time.monotonic() - self._failed[1] < max(60.0, 10 * self.cfg.reload_seconds)):
                return False
            if wait:
                return self._reload(sig)
            threading.Thread(target=self._reload_and_release, args=(sig,), name="clef-reload", daemon=True).start()
            handed_over = True
            return True
        finally:
            if not handed_over:
                self._reload_lock.release()

    def _reload_and_release(self, sig: tuple[Any, ...]) -> None:
        try:
            self._reload(sig)
        finally:
            self._reload_lock.release()

    def _reload(self, sig: tuple[Any, ...]) -> bool:
        t0 = time.perf_counter()
        old = self.searcher
        try:
            searcher = CohortSearcher(self.store, self.model_id, old.cfg)
            if searcher.index.dim != old.index.dim:
                raise StoreError(f"the index now has dimension {searcher.index.dim}, not {old.index.dim}")
        except Exception as exc:  # noqa: BLE001 - a bad store state must not take the service down
            expected = isinstance(exc, (StoreError, OSError))
            log.error("reloading the index of %s failed, serving the loaded one (%d sessions) until the store "
                      "changes again: %s", self.store.path, old.index.n, " ".join(str(exc).split()),
                      exc_info=not expected)
            self._failed = (sig, time.monotonic())
            return False
        self._failed = None
        self.searcher = searcher  # one assignment: requests see the old or the new searcher, whole
        # ensure_index may have saved an updated index: that save is not a change to load again
        self._signature = sig[:-1] + index_signature(self.store, self.model_id)[-1:]
        self.generation += 1
        log.info("index of %s reloaded (%s) in %.1f s: %d → %d sessions", self.store.path, searcher.index_action,
                 time.perf_counter() - t0, old.index.n, searcher.index.n)
        return True

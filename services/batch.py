"""Batch embedding of an EDF/BDF archive into an embedding store (resumable, idempotent).

The driver lists the archive, reads the store's manifest and plans the work: a file whose
path, size and modification time match a ``done`` row is skipped without reading it; one
whose last attempt ``failed`` is skipped unless ``retry_failed``. Everything else goes to
the workers, which read each file once (its bytes give the content hash, the
de-identified header facts and the signal), then compute the spectrogram, the tokens and
the session embedding; content already in the store (a renamed or copied file) is
recorded without being embedded again. The driver reads no recording: it alone writes
the store, in parts committed atomically (:mod:`services.store_writer`) every
``part_size`` files or ``flush_seconds``. A killed run loses at most the uncommitted
files, which the next run does again; nothing is written twice.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import polars as pl

from services.config import EmbedConfig, load_channel_map
from services.discovery import ArchiveFile, discover
from services.schemas import DONE, FAILED
from services.store import EmbeddingStore, StoreError
from services.store_writer import StoreWriter, utc_now
from services.worker import KNOWN, FileResult, init_worker, run_in_worker

log = logging.getLogger(__name__)


@dataclass
class EmbedSummary:
    """Outcome of :func:`embed_archive`."""

    files: int = 0
    embedded: int = 0
    unchanged: int = 0
    known: int = 0
    failed: int = 0
    failed_skipped: int = 0
    parts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model_id: str = ""
    engine: str = "local"
    workers: int = 1

    @property
    def sessions_per_min(self) -> float:
        """Files embedded per minute of wall time."""
        return 60.0 * self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {"files": self.files, "embedded": self.embedded, "unchanged": self.unchanged, "known": self.known,
                "failed": self.failed, "failed_skipped": self.failed_skipped, "parts": len(self.parts),
                "seconds": round(self.seconds, 3), "sessions_per_min": round(self.sessions_per_min, 2),
                "model_id": self.model_id, "engine": self.engine, "workers": self.workers}


class _Recorder:
    """Turns results into store rows and commits them in parts (driver side)."""

    def __init__(self, writer: StoreWriter, store: EmbeddingStore, model_id: str, dim: int, checkpoint: str,
                 files: dict[str, ArchiveFile], cfg: EmbedConfig, summary: EmbedSummary) -> None:
        self.w, self.model_id, self.cfg, self.summary, self.files = writer, model_id, cfg, summary, files
        self.models = {model_id: {"dim": dim, "checkpoint": checkpoint}}
        sessions = store.sessions()
        self.session_path = dict(zip(sessions["source_sha256"].to_list(), sessions["path"].to_list()))
        self.sid_of = dict(zip(sessions["source_sha256"].to_list(), sessions["session_id"].to_list()))
        self.session_ids = set(self.sid_of.values())
        emb = store.embeddings(model_id, windows=False)
        self.done = set(emb["source_sha256"].to_list())
        man = store.manifest(model_id=model_id)
        failed = man.filter((pl.col("status") == FAILED) & pl.col("sha256").is_not_null())
        self.failed = {s: (k, e) for s, k, e in zip(failed["sha256"], failed["error_kind"], failed["error"])}
        self.done_path = {s: p for s, p in zip(man["sha256"], man["path"]) if s in self.done}
        self.rows: dict[str, list[dict]] = {"manifest": [], "sessions": [], "embeddings": []}
        self.last_flush = time.monotonic()

    def known_hashes(self) -> frozenset[str]:
        """Hashes the workers need not embed (done, or failed and not retried)."""
        return frozenset(self.done | (set() if self.cfg.retry_failed else set(self.failed)))

    def _manifest(self, r: FileResult, status: str, kind: str | None, error: str | None) -> None:
        self.rows["manifest"].append({"path": r.rel, "sha256": r.sha256, "size": r.size, "status": status,
                                      "error_kind": kind, "error": error, "seconds": round(r.seconds, 4),
                                      "updated": utc_now(), "model_id": self.model_id, "mtime_ns": r.mtime_ns})

    def record(self, r: FileResult) -> str:
        """Record one result; returns the status shown to the user."""
        sha = r.sha256
        if r.status == FAILED:
            self._manifest(r, FAILED, r.error_kind, r.error)
            if sha:
                self.failed[sha] = (r.error_kind, r.error)
            self.summary.failed += 1
            log.warning("failed: %s", r.error)
            return FAILED
        if sha in self.done or r.status == KNOWN:
            if sha in self.done:
                first = self.done_path.get(sha) or self.session_path.get(sha)
                same = first is not None and first != r.rel
                self._manifest(r, DONE, "same_content" if same else None,
                               f"same bytes as {first}, embedded once" if same else None)
                self.summary.known += 1
                return "known"
            kind, error = self.failed.get(sha, ("unknown", "failed earlier"))  # type: ignore[arg-type]
            self._manifest(r, FAILED, kind, error)
            self.summary.failed_skipped += 1
            return FAILED
        assert sha is not None and r.vector is not None and r.windows is not None and r.facts is not None
        f = self.files[r.rel]
        if sha not in self.sid_of:
            sid = f.session_id
            if sid in self.session_ids:
                sid = str(Path(r.rel).with_suffix("").as_posix())
                log.warning("session id %s already in the store for other content; %s stored as %s",
                            f.session_id, r.rel, sid)
            self.rows["sessions"].append({
                "session_id": sid, "source_sha256": sha, "path": r.rel, "format": r.facts.format,
                "duration_s": r.facts.duration_s, "n_windows": int(r.windows.shape[0]), "sex": r.facts.sex,
                # the archive's patient (sessions.csv / FHIR) takes precedence over the header's
                "age_years": r.facts.age_years, "patient_hash": f.patient_hash or r.facts.patient_hash, "site": f.site,
                "setting": f.setting, "reference": r.facts.reference})
            self.session_ids.add(sid)
            self.session_path[sha] = r.rel
            self.sid_of[sha] = sid
        sid = self.sid_of[sha]
        self.rows["embeddings"].append({"session_id": sid, "source_sha256": sha, "model_id": self.model_id,
                                        "vector": r.vector.astype("float32").tolist(),
                                        "window_vectors": r.windows.astype("float32").tolist(),
                                        "n_windows": int(r.windows.shape[0])})
        self._manifest(r, DONE, None, None)
        self.done.add(sha)
        self.done_path[sha] = r.rel
        self.summary.embedded += 1
        return DONE

    def maybe_flush(self, force: bool = False) -> None:
        """Commit when a part is full, the last commit is old, or ``force``."""
        n = len(self.rows["manifest"])
        if n and (force or n >= self.cfg.part_size or time.monotonic() - self.last_flush >= self.cfg.flush_seconds):
            part = self.w.commit(self.rows["manifest"], self.rows["sessions"], self.rows["embeddings"],
                                 models=self.models if self.rows["embeddings"] else None)
            if part:
                self.summary.parts.append(part)
            for v in self.rows.values():
                v.clear()
            self.last_flush = time.monotonic()


class EmbedError(RuntimeError):
    """The batch run could not go on (the store stays consistent: re-run to resume)."""


#: Start method of the local pool. Spawned workers start clean: a forked child of a
#: process that ran torch can hang on a thread-pool lock held at the fork, and a fresh
#: process holds nothing of the driver's (CUDA included).
START_METHOD = "spawn"


def _run_local(items: list[ArchiveFile], checkpoint: str, cfg: EmbedConfig,
               known: frozenset[str]) -> Iterator[FileResult | None]:
    """Local engine: a pool of ``cfg.workers`` spawned processes, one file in hand each.

    Yields results as they complete, and ``None`` now and then so that the driver can
    commit. Each process loads the checkpoint once and exits with the driver
    (:func:`services.worker.init_worker`). Handing out one file per process at a time
    means the files in flight when a process dies (killed for memory, a crash in a
    native library) are known: they are recorded as ``worker_died`` failures, which
    ``--retry-failed`` tries again, and a fresh pool carries on with the rest, so one
    file that kills its worker cannot end this run or a later one.
    """
    todo = deque(items)
    initargs = (checkpoint, cfg.device, cfg.batch_size, str(cfg.cache_dir) if cfg.cache_dir else None, known,
                load_channel_map(cfg))
    deaths = 0
    while todo:
        pool = ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context(START_METHOD), initializer=init_worker,
                                   initargs=initargs)
        running: dict[Future[FileResult], ArchiveFile] = {}
        try:
            while todo or running:
                while todo and len(running) < cfg.workers:
                    running[pool.submit(run_in_worker, todo[0])] = todo[0]
                    todo.popleft()
                finished, _ = wait(running, timeout=min(cfg.flush_seconds, 5.0), return_when=FIRST_COMPLETED)
                if not finished:
                    yield None
                for fut in finished:
                    result = fut.result()  # BrokenProcessPool when a worker died
                    del running[fut]
                    yield result
        except BrokenProcessPool:
            deaths += 1
            log.error("a worker process died; %d file(s) in flight recorded as failed (worker_died)", len(running))
            for it in running.values():
                yield FileResult(rel=it.rel, size=it.size, mtime_ns=it.mtime_ns, status=FAILED,
                                 error_kind="worker_died", error=f"{it.rel}: a worker process died while this file "
                                 "was in flight (out of memory?); retry with --retry-failed")
            if deaths > max(3, len(items) // 10):
                raise EmbedError(f"worker processes died {deaths} times; stopping (the store is consistent: "
                                 "re-run to resume)") from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _model_of(checkpoint: str | Path) -> tuple[str, int]:
    """Model id and embedding width of a checkpoint, checked (weights, tokenizer) before
    any worker starts, so that a bad checkpoint fails once, in the driver."""
    from clef.embedding import Embedder

    if not Path(checkpoint).is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint}: expected a checkpoint folder, found "
                                + ("a file" if Path(checkpoint).exists() else "nothing"))
    model = Embedder(checkpoint)
    _ = model.tokenizer  # a checkpoint without its tokenizer fails here
    return model.model_id, int(model.cfg.model.dim)


def embed_archive(archive: str | Path, checkpoint: str | Path, store: str | Path, config: EmbedConfig | None = None, *,
                  progress: bool = True, on_file: Callable[[str, str], None] | None = None) -> EmbedSummary:
    """Embed every EDF/BDF file under ``archive`` into the store (resumable, idempotent).

    Parameters
    ----------
    archive : path
        Archive root, searched recursively.
    checkpoint : path
        Session-transformer checkpoint (with its tokenizer).
    store : path
        Store folder (created when absent).
    config : EmbedConfig, optional
        Engine, workers, retries, part size ...
    progress : bool
        Show a progress bar with an ETA on stderr.
    on_file : callable, optional
        ``on_file(relative path, status)`` after each processed file.

    Returns
    -------
    EmbedSummary

    Raises
    ------
    FileNotFoundError
        The archive is not a directory, or the checkpoint is missing.
    services.store.StoreError
        The store is of another schema, or another run is writing it.
    """
    cfg = config or EmbedConfig()
    t0 = time.perf_counter()
    load_channel_map(cfg)  # a malformed map fails before any file is read
    archive = Path(archive)
    files = discover(archive, site_level=cfg.site_level, anonymous_ids=cfg.anonymous_ids)
    summary = EmbedSummary(files=len(files), engine=cfg.engine, workers=cfg.workers)
    summary.model_id, dim = _model_of(checkpoint)
    with StoreWriter(store, archive, anonymous_ids=cfg.anonymous_ids) as writer:
        reader = EmbeddingStore(store)
        by_rel = {f.rel: f for f in files}
        rec = _Recorder(writer, reader, summary.model_id, dim, str(Path(checkpoint).resolve()), by_rel, cfg, summary)
        items = _plan(files, reader.manifest(model_id=summary.model_id), cfg, summary)
        log.info("%d files: %d to process (%.1f GB), %d unchanged, %d failed before (not retried)", len(files),
                 len(items), sum(it.size for it in items) / 1e9, summary.unchanged, summary.failed_skipped)
        known = rec.known_hashes()
        if cfg.engine == "ray":
            from services.ray_engine import run_ray

            results: Iterator[FileResult | None] = run_ray(items, str(checkpoint), cfg, known)
        else:
            results = _run_local(items, str(checkpoint), cfg, known)
        try:
            _drain(results, rec, items, progress, on_file)
        finally:
            rec.maybe_flush(force=True)
    summary.seconds = time.perf_counter() - t0
    log.info("embedded %d, already there %d, unchanged %d, failed %d (+%d not retried) in %.1f s",
             summary.embedded, summary.known, summary.unchanged, summary.failed, summary.failed_skipped, summary.seconds)
    return summary


def _plan(files: list[ArchiveFile], manifest: pl.DataFrame, cfg: EmbedConfig, summary: EmbedSummary) -> list[ArchiveFile]:
    """Files to process: not unchanged-and-done, not unchanged-and-failed unless retried."""
    state = {p: (s, z, m) for p, s, z, m in zip(manifest["path"], manifest["status"], manifest["size"],
                                                 manifest["mtime_ns"])}
    items = []
    for f in files:
        st = state.get(f.rel)
        if st is not None and st[1] == f.size and st[2] == f.mtime_ns:
            if st[0] == DONE:
                summary.unchanged += 1
                continue
            if st[0] == FAILED and not cfg.retry_failed:
                summary.failed_skipped += 1
                continue
        items.append(f)
    return items


def _drain(results: Iterator[FileResult | None], rec: _Recorder, items: list[ArchiveFile], progress: bool,
           on_file: Callable[[str, str], None] | None) -> None:
    """Record the results as they come, committing parts on the way, behind a progress bar.

    The bar advances by the files' bytes: the work is proportional to the recorded
    time, not to the number of files, so the ETA holds for archives that mix 20-minute
    routines with 24-hour recordings.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    s = rec.summary
    size = {it.rel: it.size for it in items}
    columns = (TextColumn("embed"), BarColumn(), TextColumn("{task.fields[files]}/" + str(len(items)) + " files"),
               DownloadColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
               TextColumn("{task.fields[stats]}"))
    with Progress(*columns, console=Console(stderr=True), disable=not progress or not items) as bar:
        task = bar.add_task("embed", total=max(sum(size.values()), 1), files=0, stats="")
        done = 0
        for r in results:
            if r is not None:
                status = rec.record(r)
                done += 1
                if on_file is not None:
                    on_file(r.rel, status)
                bar.update(task, advance=size.get(r.rel, 0), files=done,
                           stats=f"{s.embedded} new, {s.known} known, {s.failed} failed")
            rec.maybe_flush()


__all__ = ["EmbedConfig", "EmbedError", "EmbedSummary", "StoreError", "embed_archive"]

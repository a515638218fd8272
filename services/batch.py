"""Batch embedding of an EDF/BDF archive into an embedding store (resumable, idempotent).

The driver lists the archive, reads the store's manifest and plans the work: a file whose
path, size and modification time match a ``done`` row is skipped without reading it; one
whose last attempt ``failed`` is skipped unless ``retry_failed``. Everything else is hashed
by the workers; content already in the store (a renamed or copied file) is recorded
without being embedded again. Workers read the header (de-identified facts), the signal,
the spectrogram and the tokens, then run the session model; the driver alone writes the
store, in parts committed atomically (:mod:`services.store_writer`) every ``part_size``
files or ``flush_seconds``. A killed run loses at most the uncommitted files, which the
next run does again; nothing is written twice.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import polars as pl

from services.assist import DriverAssist, InHand, SharedQueue, process_in_hand
from services.config import EmbedConfig, load_channel_map
from services.discovery import ArchiveFile, discover
from tokenizer.errors import IngestError
from tokenizer.header_facts import HeaderFacts, read_header_facts
from services.schemas import DONE, FAILED
from services.store import EmbeddingStore, StoreError
from services.store_writer import StoreWriter, utc_now
from services.worker import (
    CHECKPOINT_ENV,
    KNOWN,
    FileEmbedder,
    FileResult,
    WorkItem,
    init_worker,
    one_line,
    preload_key,
    run_in_worker,
)

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
    in_driver: int = 0  # of ``embedded``: files the driver's own lane embedded (local engine)

    @property
    def sessions_per_min(self) -> float:
        """Files embedded per minute of wall time."""
        return 60.0 * self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {"files": self.files, "embedded": self.embedded, "unchanged": self.unchanged, "known": self.known,
                "failed": self.failed, "failed_skipped": self.failed_skipped, "parts": len(self.parts),
                "seconds": round(self.seconds, 3), "sessions_per_min": round(self.sessions_per_min, 2),
                "model_id": self.model_id, "engine": self.engine, "workers": self.workers,
                "in_driver": self.in_driver}


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
        self.summary.in_driver += r.pid == os.getpid()
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


#: What the fork server imports once, so that each pool worker starts with it loaded.
_PRELOAD = ["services.pool_preload"]


def pool_context() -> mp.context.BaseContext:
    """Start method of the local pool: a fork server where the platform has one, else spawn.

    The fork server is a fresh process that imports torch, scipy and the reading and
    model code once, and loads the driver's checkpoint (:mod:`services.pool_preload`,
    which keeps it single-threaded, so forking it is safe, unlike forking the driver);
    each worker is then a fork of it and skips the ~2.5 s of imports and the ~0.8 s
    checkpoint load a spawned worker pays. It is started by :func:`start_pool_early`,
    and serves every later pool of this driver process.
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


def start_pool_early(ctx: mp.context.BaseContext, checkpoint: str | Path | None = None, *, device: str = "cpu",
                     batch_size: int = 8, cache_dir: str | Path | None = None) -> None:
    """Start the fork server now, so that its imports overlap the driver's own start-up
    (checkpoint check, store, header scan) instead of delaying the first worker.

    With a ``checkpoint`` (and a CPU ``device``: CUDA does not survive a fork), the fork
    server loads it too (:mod:`services.pool_preload`), so workers skip the load. Nothing
    changes when the fork server is already running.
    """
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    key = (preload_key(str(checkpoint), batch_size, str(cache_dir) if cache_dir else None)
           if checkpoint is not None and device == "cpu" and Path(checkpoint).is_dir() else None)
    before = os.environ.get(CHECKPOINT_ENV)
    if key:
        os.environ[CHECKPOINT_ENV] = key  # read by the fork server when it starts (it inherits the environment)
    try:
        forkserver.ensure_running()
    finally:
        if before is None:
            os.environ.pop(CHECKPOINT_ENV, None)
        else:
            os.environ[CHECKPOINT_ENV] = before


def _run_local(items: list[WorkItem], checkpoint: str, cfg: EmbedConfig, known: frozenset[str],
               embedder: FileEmbedder | None, in_hand: InHand | None = None) -> Iterator[FileResult | None]:
    """Local engine: ``workers`` lanes, the driver's own ``embedder`` being one of them.

    Yields results as they complete, and ``None`` now and then so the driver can commit.
    With one worker every file is embedded in the driver. With ``K > 1`` the driver embeds
    files in a thread (:mod:`services.assist`) next to a pool of ``K - 1`` processes fed
    from the same queue: the driver's checkpoint is loaded already, so its lane works
    while the pool starts, and ``K`` lanes run on ``K`` cores (not ``K + 1``: the driver's
    bookkeeping is a fraction of a percent of a core). Without a driver ``embedder`` the
    pool has ``K`` processes. A pool worker that dies (out of memory on a huge file, a
    crash in a native library) takes the files it and its siblings were working on down
    as ``worker_died`` failures, which ``--retry-failed`` tries again; a fresh pool carries
    on with the rest. ``in_hand`` records the file the driver's lane is embedding
    (:class:`services.assist.InHand`).
    """
    if cfg.workers == 1 and embedder is not None:
        for it in items:
            yield process_in_hand(embedder, it, known, in_hand)
        return
    ctx = pool_context()  # never a fork of the driver, which holds torch threads
    cache = str(cfg.cache_dir) if cfg.cache_dir else None
    queue = SharedQueue(items)
    assist = DriverAssist(embedder, queue, known, in_hand) if embedder is not None else None
    n_pool = cfg.workers - 1 if assist is not None else cfg.workers
    model_id = embedder.model_id if embedder is not None else None
    channel_map = embedder.channel_map if embedder is not None else load_channel_map(cfg)
    # files handed to the pool ahead of time: none beyond one per process while the driver
    # embeds too (a file queued in the pool cannot go to the driver when it runs out of work)
    window = n_pool if assist is not None else 2 * n_pool
    deaths = 0
    try:
        while True:
            running: dict[Future, WorkItem] = {}
            pool = ProcessPoolExecutor(n_pool, mp_context=ctx, initializer=init_worker,
                                       initargs=(checkpoint, cfg.device, cfg.batch_size, cache, known, os.getpid(),
                                                 model_id, channel_map))
            it: WorkItem | None = None
            try:
                while True:
                    while len(running) < window:
                        it = queue.next()
                        if it is None:
                            break
                        running[pool.submit(run_in_worker, it)] = it
                    helping = assist is not None and assist.busy
                    if helping:
                        yield from assist.collect()
                    if not running:
                        if not helping:
                            return
                        got = assist.collect(timeout=0.2)
                        yield from (got or [None])
                        continue
                    # poll often while the driver embeds, so its results are recorded promptly
                    finished, _ = wait(running, timeout=0.2 if helping else min(cfg.flush_seconds, 5.0),
                                       return_when=FIRST_COMPLETED)
                    for fut in finished:
                        it = running.pop(fut)
                        yield fut.result()
                    if not finished and not helping:
                        yield None
            except BrokenProcessPool:
                deaths += 1
                lost_items = ([it] if it is not None and it not in running.values() else []) + list(running.values())
                log.error("a worker process died; %d file(s) in flight recorded as failed (worker_died)",
                          len(lost_items))
                for lost in lost_items:
                    yield FileResult(rel=lost.rel, size=lost.size, mtime_ns=lost.mtime_ns, status=FAILED,
                                     error_kind="worker_died",
                                     error=f"{lost.rel}: a worker process died while this file was in flight (out "
                                           "of memory?); retry with --retry-failed")
                if deaths > max(3, len(items) // 10):
                    raise EmbedError(f"worker processes died {deaths} times; stopping (the store is consistent: "
                                     "re-run to resume, --workers 1 to see the error)") from None
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
    finally:
        if assist is not None:
            assist.close()  # its results were all collected unless the run is being abandoned


def embed_archive(
    archive: str | Path,
    checkpoint: str | Path,
    store: str | Path,
    config: EmbedConfig | None = None,
    *,
    progress: bool = True,
    on_file: Callable[[str, str], None] | None = None,
) -> EmbedSummary:
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
    channel_map = load_channel_map(cfg)  # a malformed map fails before any file is read
    archive = Path(archive)
    files = discover(archive, site_level=cfg.site_level, anonymous_ids=cfg.anonymous_ids)
    if cfg.engine == "local" and cfg.workers > 1 and files:
        start_pool_early(pool_context(), checkpoint, device=cfg.device, batch_size=cfg.batch_size,
                         cache_dir=cfg.cache_dir)
    summary = EmbedSummary(files=len(files), engine=cfg.engine, workers=cfg.workers)
    if not Path(checkpoint).is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint}: expected a checkpoint folder, found "
                                + ("a file" if Path(checkpoint).exists() else "nothing"))
    driver = FileEmbedder(checkpoint, device=cfg.device if cfg.engine == "local" else "cpu",
                          batch_size=cfg.batch_size, cache_dir=cfg.cache_dir, channel_map=channel_map)
    _ = driver.embedder.tokenizer  # a checkpoint without its tokenizer fails here, once
    summary.model_id = driver.model_id
    dim = int(driver.embedder.cfg.model.dim)
    try:
        with StoreWriter(store, archive, anonymous_ids=cfg.anonymous_ids) as writer:
            reader = EmbeddingStore(store)
            by_rel = {f.rel: f for f in files}
            rec = _Recorder(writer, reader, driver.model_id, dim, str(Path(checkpoint).resolve()), by_rel, cfg,
                            summary)
            items = _plan(files, reader.manifest(model_id=driver.model_id), cfg, summary)
            log.info("%d files: %d to process, %d unchanged, %d failed before (not retried)", len(files), len(items),
                     summary.unchanged, summary.failed_skipped)
            in_hand = InHand(store)
            try:
                items = _after_a_death(items, in_hand, rec, on_file)
                items, durations = _index_headers(items, rec, on_file)
                known = rec.known_hashes()
                if cfg.engine == "ray":
                    from services.ray_engine import run_ray

                    results: Iterator[FileResult | None] = run_ray(items, str(checkpoint), cfg, known)
                else:
                    results = _run_local(items, str(checkpoint), cfg, known, driver, in_hand)
                _drain(results, rec, len(items), durations, progress, on_file)
            finally:
                rec.maybe_flush(force=True)
                in_hand.clear()  # reached unless the process dies (kill -9, killed for memory)
    finally:
        driver.restore_threads()
    summary.seconds = time.perf_counter() - t0
    log.info("embedded %d, already there %d, unchanged %d, failed %d (+%d not retried) in %.1f s",
             summary.embedded, summary.known, summary.unchanged, summary.failed, summary.failed_skipped, summary.seconds)
    return summary


def _plan(files: list[ArchiveFile], manifest: pl.DataFrame, cfg: EmbedConfig, summary: EmbedSummary) -> list[WorkItem]:
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
        items.append(WorkItem(path=str(f.path), rel=f.rel, size=f.size, mtime_ns=f.mtime_ns))
    return items


def _after_a_death(items: list[WorkItem], in_hand: InHand, rec: _Recorder,
                   on_file: Callable[[str, str], None] | None) -> list[WorkItem]:
    """The file the driver had in hand when the last run died: tried again once, then failed.

    One death may come from outside (``kill -9``, a reboot); a second one with the same
    file in hand is taken as the file's doing (killed for memory, a crash in a native
    library), so it is recorded as ``process_died`` instead of ending every later run.
    """
    left = in_hand.left_behind()
    in_hand.clear()
    if left is None:
        return items
    key, deaths = left
    if not any(InHand.key(it) == key for it in items):
        return items  # committed before the death, changed, or not to be retried
    if deaths < InHand.LIMIT:
        log.warning("%s was being embedded in the driver when the last run died; trying it again", key[0])
        in_hand.suspects[key] = deaths
        return items
    log.error("%s was being embedded when the last %d runs died: recorded as failed (process_died)", key[0], deaths)
    rec.record(FileResult(rel=key[0], size=key[1], mtime_ns=key[2], status=FAILED, error_kind="process_died",
                          error=f"{key[0]}: the embedding process died {deaths} times while this file was in hand "
                                "(out of memory?); retry with --retry-failed"))
    if on_file is not None:
        on_file(key[0], FAILED)
    return [it for it in items if InHand.key(it) != key]


def _header_or_error(item: WorkItem) -> HeaderFacts | IngestError:
    try:
        return read_header_facts(item.path)
    except IngestError as exc:
        return exc


def _index_headers(items: list[WorkItem], rec: _Recorder,
                   on_file: Callable[[str, str], None] | None) -> tuple[list[WorkItem], dict[str, float]]:
    """Read the header of every file to process, without loading any signal.

    Files whose header is unreadable are recorded as failed now (no worker needed); the
    others' durations weight the progress bar, so the ETA holds for archives that mix
    20-minute routines with 24-hour EMU recordings.
    """
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:  # I/O bound: 256 bytes + the signal headers per file
        facts = list(pool.map(_header_or_error, items))
    keep, durations = [], {}
    for it, f in zip(items, facts):
        if isinstance(f, IngestError):
            message = one_line(f, it.path, it.rel)
            rec.record(FileResult(rel=it.rel, size=it.size, mtime_ns=it.mtime_ns, status=FAILED, error_kind=f.kind,
                                  error=message, seconds=0.0))
            if on_file is not None:
                on_file(it.rel, FAILED)
            continue
        keep.append(it)
        durations[it.rel] = f.duration_s
    if items:
        log.info("headers of %d files read in %.1f s: %.1f h of recording to embed, %d unreadable", len(items),
                 time.perf_counter() - t0, sum(durations.values()) / 3600, len(items) - len(keep))
    return keep, durations


def _drain(results: Iterator[FileResult | None], rec: _Recorder, n_files: int, durations: dict[str, float],
           progress: bool, on_file: Callable[[str, str], None] | None) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    s = rec.summary
    hours = sum(durations.values()) / 3600
    columns = (TextColumn("embed"), BarColumn(), TextColumn("{task.fields[files]}/" + str(n_files) + " files"),
               TextColumn("{task.completed:.1f}/" + f"{hours:.1f} h"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn(), TextColumn("{task.fields[stats]}"))
    with Progress(*columns, console=Console(stderr=True), disable=not progress or n_files == 0) as bar:
        # progress in hours of recording: the work is proportional to them, not to files
        task = bar.add_task("embed", total=max(hours, 1e-9), files=0, stats="")
        done = 0
        for r in results:
            if r is not None:
                status = rec.record(r)
                done += 1
                if on_file is not None:
                    on_file(r.rel, status)
                bar.update(task, advance=durations.get(r.rel, 0.0) / 3600, files=done,
                           stats=f"{s.embedded} new, {s.known} known, {s.failed} failed")
            rec.maybe_flush()


__all__ = ["EmbedConfig", "EmbedError", "EmbedSummary", "StoreError", "embed_archive"]

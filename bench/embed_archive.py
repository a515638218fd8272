"""Archive embedding throughput (sessions/min): local engine and Ray engine, 1 and 2 workers.

Usage::

    python bench/embed_archive.py [--sessions 32] [--minutes 20] [--engines local,ray] [--workers 1,2]
                                  [--repeats 1] [--pin-cores ray] [--archive DIR] [--checkpoint CKPT]

The same archive and checkpoint for every run, a fresh store per run, one process:
``services.batch.embed_archive`` (what ``clef embed`` runs) with ``EmbedConfig(engine,
workers)``. Python imports (torch, clef, ray) are done before the first timed run, so
every run pays the same: the driver's checkpoint check, the pool / Ray
start-up, the work, and the store commits.

- Archive: ``--archive``, an archive with a ``sessions.csv`` (its first ``--sessions``
  sessions, hard-linked into a sub-archive when it holds more), else a synthetic hospital
  of ``--minutes``-minute sessions built into ``bench/out/embed_archive/`` (reused when
  present).
- Checkpoint: ``--checkpoint``, else ``bench/out/align/aligned_tiny_300`` when present,
  else a randomly initialised ``--model-size`` checkpoint (cost does not depend on
  training).

Ray: a local instance is started before each run's timer and shut down after it (users
of ``--engine ray`` have a running cluster; its start is printed, not timed). A Ray
"worker" on a CPU-only machine is a CPU actor (read, spectrogram, tokens) plus a model
actor, two processes: ``--pin-cores ray`` confines each K-worker run (this process and
everything it starts) to K cores, so that 1 and 2 workers compare 1 and 2 cores.

Printed: per-stage cost of one session in this process (one thread); one pool worker's
start-up (spawn, imports, checkpoint) and its thread settings; then per run the wall
time, sessions/min, speed-up against 1 worker of the same engine, the time to the first
result (start-up), the steady rate after every worker delivered its first file, and the
workers' utilisation (sum of the manifest's per-file seconds / (workers × wall)). The
issue's target: 2 workers ≥ 1.8× one worker.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "embed_archive"
ALIGNED = ROOT / "bench" / "out" / "align" / "aligned_tiny_300"
TARGET = 1.8


# -- inputs -------------------------------------------------------------------------------
def synthetic_archive(n_sessions: int, minutes: float, seed: int = 0) -> Path:
    """A synthetic hospital with at least ``n_sessions`` sessions of ``minutes`` minutes (reused if present)."""
    from clef.synthetic.hospital import HospitalConfig, synthesize_hospital

    patients = max(2, math.ceil(n_sessions / 1.5))  # 1-4 sessions per patient, about 1.8 on average
    while True:
        hosp = OUT / f"hospital_{minutes:g}min_p{patients}_s{seed}"
        if not (hosp / "sessions.csv").is_file():
            shutil.rmtree(hosp, ignore_errors=True)
            t0 = time.perf_counter()
            s = synthesize_hospital(hosp, patients, seed=seed, config=HospitalConfig(minutes_range=(minutes, minutes)),
                                    workers=min(2, os.cpu_count() or 1))
            print(f"built {hosp.relative_to(ROOT)}: {s.n_sessions} sessions in {time.perf_counter() - t0:.0f} s")
        with open(hosp / "sessions.csv", newline="") as f:
            if sum(1 for _ in csv.DictReader(f)) >= n_sessions:
                return hosp
        patients = math.ceil(patients * 1.5)


def session_paths(archive: Path) -> list[str]:
    """The recordings an archive's ``sessions.csv`` lists, sorted (none without one)."""
    if not (archive / "sessions.csv").is_file():
        return []
    with open(archive / "sessions.csv", newline="") as fh:
        return sorted(r["path"] for r in csv.DictReader(fh))


def sub_archive(source: Path, n: int | None) -> Path:
    """``source`` itself, or its first ``n`` sessions hard-linked into a new folder
    (:func:`clef.synthetic.hospital.subset_hospital`; reused when it holds the same ones)."""
    from clef.synthetic.hospital import subset_hospital

    paths = session_paths(source)
    if n is None or n >= len(paths):
        return source
    dst = OUT / f"archive_{source.name}_{n}"
    if session_paths(dst) != paths[:n]:
        shutil.rmtree(dst, ignore_errors=True)
        subset_hospital(source, dst, n, link=True)
    return dst


def default_checkpoint(size: str) -> Path:
    """The trained tiny checkpoint when present, else a random-weight one of ``size`` (built once)."""
    if ALIGNED.is_dir() and size == "tiny":
        return ALIGNED
    ck = OUT / "ckpt" / f"st_{size}"
    if not (ck / "meta.json").is_file():
        from clef.factory import save_random_checkpoint

        shutil.rmtree(OUT / "ckpt", ignore_errors=True)
        ck = save_random_checkpoint(size, ck)
    return ck


# -- where the time of one session goes -----------------------------------------------------
def stage_costs(files: list[Path], checkpoint: Path) -> dict[str, float]:
    """Mean seconds per session of each stage, in this process with one thread (after a warm-up file)."""
    import torch

    from clef.embedding import Embedder
    from services.worker import limit_threads
    from tokenizer import read_recording
    from tokenizer.spectrogram_cache import compute_spectrogram

    limiter, threads = limit_threads(1), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        emb = Embedder(checkpoint)
        tok = emb.tokenizer
        sums: dict[str, float] = {}
        for i, f in enumerate([files[0], *files]):
            t = [time.perf_counter()]
            rec = read_recording(f, emb.contract, threads=1)
            t.append(time.perf_counter())
            spec = compute_spectrogram(rec, emb.contract)
            t.append(time.perf_counter())
            tokens = tok.tokenize_spectrogram(spec)
            t.append(time.perf_counter())
            emb.embed_tokens([tokens])
            t.append(time.perf_counter())
            if i == 0:
                continue  # warm-up (first-call allocations, cached tapers)
            for name, a, b in zip(("read + preprocess", "spectrogram", "VQGAN tokens",
                                   "session model"), t, t[1:]):
                sums[name] = sums.get(name, 0.0) + b - a
        return {k: v / len(files) for k, v in sums.items()}
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        torch.set_num_threads(threads)


# -- one pool worker: start-up cost and thread settings -------------------------------------
_PROBE: dict[str, object] = {}


def _probe_init(checkpoint: str, submitted: float) -> None:
    """Pool initializer timing what ``services.worker.init_worker`` does in a fresh process
    (its checkpoint load, here with the tokenizer a worker loads at its first file)."""
    _PROBE["entered"] = time.time() - submitted
    t0 = time.perf_counter()
    import clef.embedding  # noqa: F401 - what FileEmbedder imports (torch included)
    import services.worker as w

    _PROBE["import_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _ = w.FileEmbedder(checkpoint).embedder.tokenizer
    _PROBE["load_s"] = time.perf_counter() - t0


def _probe_task() -> dict[str, object]:
    import torch
    from threadpoolctl import threadpool_info

    out = dict(_PROBE)
    out["torch_threads"] = torch.get_num_threads()
    out["torch_interop"] = torch.get_num_interop_threads()
    out["pools"] = sorted({f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info()})
    out["lightning_loaded"] = "lightning" in sys.modules
    return out


def probe_worker(checkpoint: Path) -> dict[str, object]:
    """Start one pool worker as the local engine does (its start method); its start-up
    timings and threads."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from services.batch import START_METHOD

    submitted = time.time()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(1, mp_context=mp.get_context(START_METHOD), initializer=_probe_init,
                             initargs=(str(checkpoint), submitted)) as pool:
        out = pool.submit(_probe_task).result()
        out["ready_s"] = time.perf_counter() - t0
    out["method"] = START_METHOD
    return out


# -- the runs ---------------------------------------------------------------------------------
@dataclass
class Run:
    engine: str
    workers: int
    sessions: int
    failed: int
    wall: float
    first: float
    steady: float  # sessions/min after every worker delivered its first file (nan when too few)
    busy: float  # sum of per-file seconds from the manifest
    driver_cpu: float = 0.0  # CPU seconds of this (driver) process during the run
    done_at: list[float] = field(default_factory=list, repr=False)

    @property
    def per_min(self) -> float:
        return 60.0 * self.sessions / self.wall if self.wall > 0 else 0.0

    @property
    def utilisation(self) -> float:
        return self.busy / (self.workers * self.wall) if self.wall > 0 else 0.0


def _set_cores(cores: list[int]) -> None:
    """Confine every thread of this process (and so every process it starts) to ``cores``."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:  # a thread that ended meanwhile
            pass


def one_run(archive: Path, checkpoint: Path, engine: str, workers: int, pin: bool = False) -> Run:
    """``embed_archive`` into a fresh store; wall time and per-file completion times.

    ``pin``: the run (this process and all it starts: pool, Ray) is confined
    to the first ``workers`` cores. Ray: a local instance is started before the timer
    (the running cluster a ``--ray-address`` user has) and shut down after it.
    """
    from services.batch import embed_archive
    from services.config import EmbedConfig
    from services.schemas import DONE
    from services.store import EmbeddingStore

    OUT.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix=f"store_{engine}{workers}_", dir=OUT))
    all_cores = sorted(os.sched_getaffinity(0))
    cfg = EmbedConfig(engine=engine, workers=workers)  # type: ignore[arg-type]
    ray_started = False
    try:
        shutil.rmtree(store)
        if pin:
            _set_cores(all_cores[:workers])
        if engine == "ray":
            from services.ray_engine import init_ray

            t0 = time.perf_counter()
            ray_started = init_ray(cfg)
            print(f"  ray x{workers}: local instance started in {time.perf_counter() - t0:.1f} s (not timed)",
                  flush=True)
        stamps: list[float] = []
        t0, c0 = time.perf_counter(), time.process_time()
        s = embed_archive(archive, checkpoint, store, cfg, progress=False,
                          on_file=lambda rel, status: stamps.append(time.perf_counter()))
        wall, driver_cpu = time.perf_counter() - t0, time.process_time() - c0
        man = EmbeddingStore(store).manifest()
        busy = float(man.filter(man["status"] == DONE)["seconds"].sum())
    finally:
        if ray_started:
            import ray

            ray.shutdown()
        if pin:
            _set_cores(all_cores)
        shutil.rmtree(store, ignore_errors=True)
    done = [t - t0 for t in sorted(stamps)]
    return Run(engine, workers, s.embedded, s.failed, wall, done[0] if done else float("nan"),
               steady_rate(done, workers), busy, driver_cpu, done)


def steady_rate(done: list[float], workers: int, burst: float = 0.05, min_span: float = 1.0) -> float:
    """Sessions/min after every worker delivered its first file (start-up excluded).

    Counted from the ``workers``-th completion, or the end of the first burst of
    completions when later (Ray hands results over a batch at a time); NaN when what is
    left spans less than ``min_span`` seconds.
    """
    if len(done) <= workers:
        return float("nan")
    m = workers - 1
    while m + 1 < len(done) and done[m + 1] - done[m] < burst:
        m += 1
    span = done[-1] - done[m]
    return 60.0 * (len(done) - 1 - m) / span if span >= min_span else float("nan")
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", type=Path, default=None, help="Archive root with a sessions.csv (default: a synthetic hospital).")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="Checkpoint (default: bench/out/align/aligned_tiny_300 if present, else random weights).")
    ap.add_argument("--model-size", default="tiny", help="Config of the random checkpoint (tiny, base).")
    ap.add_argument("--sessions", type=int, default=32, help="Sessions embedded per run.")
    ap.add_argument("--minutes", type=float, default=20.0, help="Session length of the synthetic archive.")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=1, help="Runs per configuration (interleaved; best wall time kept).")
    ap.add_argument("--stage-files", type=int, default=3, help="Files timed stage by stage (0: skip).")
    ap.add_argument("--no-probe", action="store_true", help="Skip the pool-worker start-up probe.")
    ap.add_argument("--pin-cores", default="", help="Engines whose K-worker runs are confined to K cores "
                    "(e.g. 'ray': Ray's 1 worker is a CPU actor and a model actor, two processes).")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    workers = [int(w) for w in args.workers.split(",")]
    pinned = {e.strip() for e in args.pin_cores.split(",") if e.strip()}
    if max(workers) > len(os.sched_getaffinity(0)) and pinned:
        ap.error(f"--pin-cores: {max(workers)} workers need as many cores, this machine has "
                 f"{len(os.sched_getaffinity(0))}")
    if bad := set(engines) - {"local", "ray"}:
        ap.error(f"--engines: local and/or ray expected, found {sorted(bad)}")

    source = args.archive or synthetic_archive(args.sessions, args.minutes)
    archive = sub_archive(source, args.sessions)
    checkpoint = args.checkpoint or default_checkpoint(args.model_size)

    # imports every run would otherwise pay once, in the first one
    import torch  # noqa: F401

    import clef.embedding  # noqa: F401
    import services.batch  # noqa: F401
    from services.discovery import discover

    if "ray" in engines:
        import ray
        import ray.data  # noqa: F401

    files = discover(archive)
    from tokenizer.header_facts import read_header_facts

    hours = sum(read_header_facts(f.path).duration_s for f in files) / 3600
    mb = sum(f.size for f in files) / 2**20
    print(f"archive {archive} : {len(files)} sessions, {hours:.2f} h of EEG "
          f"({60 * hours / max(len(files), 1):.1f} min/session), {mb:.0f} MB")
    print(f"checkpoint {checkpoint}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    if args.stage_files:
        costs = stage_costs([f.path for f in files[:args.stage_files]], checkpoint)
        total = sum(costs.values())
        print(f"\n== one session, in-process, 1 thread (mean of {min(args.stage_files, len(files))} files)")
        for k, v in costs.items():
            print(f"{k:20s} {1000 * v:9.1f} ms  {100 * v / total:5.1f} %")
        print(f"{'total':20s} {1000 * total:9.1f} ms  → ideal {60 / total:.1f} sessions/min per worker")

    if not args.no_probe and "local" in engines and max(workers) > 1:
        p = probe_worker(checkpoint)
        print(f"\n== one local pool worker ({p['method']}): ready after {p['ready_s']:.2f} s = process start "
              f"{p['entered']:.2f} s + imports {p['import_s']:.2f} s + checkpoint & tokenizer {p['load_s']:.2f} s")
        print(f"threads in the worker: torch intra-op {p['torch_threads']}, inter-op {p['torch_interop']}, "
              f"native pools {', '.join(p['pools']) or 'none'}; lightning imported: {p['lightning_loaded']}")

    runs: list[Run] = []
    for engine in engines:
        # repeats interleaved (1, 2, 1, 2 ...) so that drifts of the machine hit both alike
        tries: dict[int, list[Run]] = {w: [] for w in workers}
        for _ in range(max(1, args.repeats)):
            for w in workers:
                tries[w].append(one_run(archive, checkpoint, engine, w, pin=engine in pinned))
        for w in workers:
            best = min(tries[w], key=lambda r: r.wall)
            if len(tries[w]) > 1:
                print(f"{engine} x{w}: walls {', '.join(f'{r.wall:.1f}' for r in tries[w])} s "
                      f"(median {statistics.median(r.wall for r in tries[w]):.1f}); best kept", flush=True)
            runs.append(best)
        if len(tries.get(1, [])) > 1 and len(tries.get(2, [])) > 1:
            pairs = [a.wall / b.wall for a, b in zip(tries[1], tries[2])]
            print(f"{engine}: 2 vs 1 worker, pair by pair (same round): "
                  f"{', '.join(f'{x:.2f}x' for x in pairs)}; median {statistics.median(pairs):.2f}x", flush=True)

    print(f"\n== embed_archive, {len(files)} sessions, fresh store per run, best of {max(1, args.repeats)}")
    print("| engine | workers | sessions | wall s | sessions/min | speed-up vs 1 worker | first result s "
          "| steady sessions/min | steady speed-up | utilisation | s per file | driver CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ref = {r.engine: r for r in runs if r.workers == 1}
    for r in runs:
        one = ref.get(r.engine)
        up = f"{r.per_min / one.per_min:.2f}×" if one else "-"
        sup = f"{r.steady / one.steady:.2f}×" if one and math.isfinite(r.steady) and math.isfinite(one.steady) else "-"
        print(f"| {r.engine}{' (on K cores)' if r.engine in pinned else ''} | {r.workers} | {r.sessions}{f' ({r.failed} failed)' if r.failed else ''} | "
              f"{r.wall:.1f} | {r.per_min:.1f} | {up} | {r.first:.1f} | "
              f"{r.steady:.1f} | {sup} | {100 * r.utilisation:.0f} % | {r.busy / max(r.sessions, 1):.2f} | "
              f"{r.driver_cpu:.1f} |".replace("| nan |", "| - |"))
    for engine, one in ref.items():
        two = next((r for r in runs if r.engine == engine and r.workers == 2), None)
        if two is None:
            continue
        ratio = two.per_min / one.per_min
        verdict = "meets" if ratio >= TARGET else "misses"
        extra = (f"; steady state {two.steady / one.steady:.2f}×"
                 if math.isfinite(two.steady) and math.isfinite(one.steady) else "")
        # wall(2) - wall(1)/2 is what 2 workers lost to fixed costs against a perfect split
        lost = two.wall - one.wall / 2
        print(f"{engine}: 2 workers vs 1 = {ratio:.2f}× ({verdict} the target ≥ {TARGET}×){extra}; "
              f"2-worker run {lost:+.1f} s against half the 1-worker wall")


if __name__ == "__main__":
    main()

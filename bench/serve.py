"""HTTP service latency and throughput: the real ``clef serve`` on loopback, 1 / 4 / 8 concurrent clients.

Usage::

    python bench/serve.py [--clients 1,4,8] [--requests 400] [--embed-requests 16]
                          [--store STORE --checkpoint CKPT [--probes RESULTS]] [--edf FILE]
                          [--sessions 8] [--minutes 20] [--extra-sessions 10000] [--out DIR] [--build-only]
                          [--explorer [--no-warm-explorer] [--cohort-only]]

The server is started as a separate process (``python -m clef serve``, uvicorn, one
process), exactly as a user starts it, with a fresh API key in ``CLEF_API_KEYS``. The
clients are threads of this process, each with its own ``httpx.Client`` (keep-alive),
in a closed loop: each sends its next request when the previous answer arrived. Per
endpoint and number of clients: p50 / p95 / p99 latency, throughput (requests / wall
time), errors (non-2xx), and the server's CPU time per request (from its process).
Endpoints::

    GET  /health                                liveness (no key)
    GET  /sessions/{id}/similar?k=10            cohort search from a stored session
    GET  /sessions/{id}/probabilities           task probabilities of a stored session
    POST /embed                                 embed an uploaded EDF (one at a time, by design)

With ``--explorer`` the load levels are replaced by the cohort explorer's calls: the
cohort table's first page sorted by age (``GET /sessions?limit=50``, the first such request
since the server started: the whole store sorted), the same again, the next page, a
filtered first page and a CSV export of one site (``--cohort-only`` stops there), then, for
each real session (its recording in the archive), a session view as the page makes it, the
first time and again: ``GET /sessions/{id}``, ``/similar?k=10``, ``/spectrogram.png``,
``/eeg`` (the first 10 s), ``/probabilities``, ``/findings``, sent concurrently as the page
sends them (one client each), the view's time being the slowest.
The real sessions' drawn spectrograms are deleted first. The server starts as ``clef serve``
does by default (``--warm-explorer``: its start-up hook, then its background pass drawing
the stored sessions' spectrograms), and the views begin once that pass has drawn the real
sessions' (the time it took is printed); with ``--no-warm-explorer`` a first view draws its
session's spectrogram. The first view reads the recording either way (for the EEG page).
``--out`` puts the default store elsewhere (e.g. a 1M-session one beside the 10k one), and
``--build-only`` stops once it is built (then ``--store`` reuses it).

Stored-session queries pick random sessions of the store. Default store (rebuilt each
run, under ``bench/out/serve/``): ``--sessions`` sessions of a synthetic hospital of
``--minutes``-minute recordings embedded with the checkpoint (``--checkpoint``, else
``bench/out/align/aligned_tiny_300``, else random weights), plus ``--extra-sessions``
random clustered embeddings of the same model (so the search runs over a realistic
number of sessions), and three random probes. The upload is ``--edf``, else the first
session of that archive. Client and server share the machine: on few cores the client
threads take CPU from the server, so the throughput figures are lower bounds.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import stop

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "serve"


# -- the store the server serves ------------------------------------------------------------
def pad_store(store: Path, n: int, seed: int = 0, part: int = 5000) -> int:
    """Add ``n`` random clustered embeddings of the store's model (metadata included); returns the new total."""
    from services.store import EmbeddingStore
    from services.store_writer import StoreWriter, utc_now

    st = EmbeddingStore(store)
    model = st.resolve_model(None)
    ids, x = st.matrix(model)
    rng = np.random.default_rng(seed)
    dim = x.shape[1]
    centres = x[rng.integers(0, len(x), 50)] + rng.normal(0, x.std() + 1e-6, (50, dim)).astype(np.float32)
    sites, settings = ["S01", "S02", "S03", "S04", "S05"], ["routine", "emu", "icu"]
    with StoreWriter(store, st.info().get("archive", store)) as w:
        for a in range(0, n, part):
            man, ses, emb = [], [], []
            for i in range(a, min(n, a + part)):
                v = (centres[i % 50] + rng.normal(0, 0.5 * (x.std() + 1e-6), dim)).astype(np.float32)
                sha, sid = f"{i:064x}", f"pad{i:07d}"
                man.append({"path": f"pad/{sid}.edf", "sha256": sha, "size": 1, "status": "done", "error_kind": None,
                            "error": None, "seconds": 0.0, "updated": utc_now(), "model_id": model, "mtime_ns": 0})
                ses.append({"session_id": sid, "source_sha256": sha, "path": f"pad/{sid}.edf", "format": "EDF+C",
                            "duration_s": 1200.0, "n_windows": 1, "sex": "FM"[i % 2],
                            "age_years": float(rng.uniform(0, 95)), "patient_hash": f"p{i // 3:07d}",
                            "site": sites[i % 5], "setting": settings[i % 3]})
                emb.append({"session_id": sid, "source_sha256": sha, "model_id": model, "vector": v.tolist(),
                            "window_vectors": [v.tolist()], "n_windows": 1})
            w.commit(man, ses, emb, models={model: {"dim": dim, "checkpoint": "bench padding"}})
    return len(ids) + n


def build_store(args: argparse.Namespace) -> tuple[Path, Path, Path, Path]:
    """Store, checkpoint, probes folder and upload file (built under bench/out/serve/ unless given)."""
    from embed_archive import default_checkpoint, sub_archive, synthetic_archive
    from services.batch import embed_archive
    from services.config import EmbedConfig, IndexConfig
    from services.discovery import discover
    from services.index import ensure_index
    from benchmark_tasks.probes import LogisticProbe, TaskProbe, save_probe
    from services.store import EmbeddingStore

    checkpoint = args.checkpoint or default_checkpoint("tiny")
    if args.store is not None:
        if args.edf is None:
            raise SystemExit("--store needs --edf (a recording to upload)")
        store = args.store
    else:
        archive = sub_archive(synthetic_archive(args.sessions, args.minutes), args.sessions)
        store = OUT / "store"
        shutil.rmtree(store, ignore_errors=True)
        t0 = time.perf_counter()
        s = embed_archive(archive, checkpoint, store, EmbedConfig(workers=1), progress=False)
        total = pad_store(store, args.extra_sessions) if args.extra_sessions else s.embedded
        print(f"store {store.relative_to(ROOT)}: {s.embedded} embedded + {args.extra_sessions} random sessions "
              f"= {total} ({time.perf_counter() - t0:.1f} s)")
        args.edf = args.edf or discover(archive)[0].path
    t0 = time.perf_counter()
    ci, action = ensure_index(store, None, None, IndexConfig())
    print(f"index {action}: {ci.kind}, {ci.n} sessions, dim {ci.dim} ({time.perf_counter() - t0:.1f} s)")
    probes = args.probes
    if probes is None:
        probes = OUT / "results"
        shutil.rmtree(probes, ignore_errors=True)
        st = EmbeddingStore(store)
        rng = np.random.default_rng(0)
        for task in ("dx_epilepsy", "rx_benzodiazepines", "eeg_focal_slowing"):
            save_probe(probes, TaskProbe(task, LogisticProbe(rng.normal(size=ci.dim), 0.1, np.zeros(ci.dim), np.ones(ci.dim)),
                                         st.resolve_model(None), {"category": "bench"}))
    return store, checkpoint, probes, Path(args.edf)


# -- the server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, checkpoint: Path, probes: Path, key: str, log: Path,
                 extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str, float]:
    """``python -m clef serve`` (with the options ``extra`` too) on a free loopback port; returns
    (process, base URL, seconds to ready)."""
    import httpx

    port = free_port()
    env = {**os.environ, "CLEF_API_KEYS": key}
    cmd = [sys.executable, "-m", "clef", "serve", str(store), "--checkpoint", str(checkpoint), "--probes", str(probes),
           "--port", str(port), "--max-upload-mb", "1024", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"clef serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"clef serve not ready after 300 s:\n{log.read_text()[-3000:]}")


# -- load generation --------------------------------------------------------------------------
@dataclass
class Result:
    endpoint: str
    clients: int
    latencies: np.ndarray  # seconds
    errors: int
    wall: float
    server_cpu: float  # seconds of the server process's CPU during the level

    def row(self) -> str:
        n = len(self.latencies)
        p50, p95, p99 = np.percentile(self.latencies * 1e3, [50, 95, 99]) if n else (float("nan"),) * 3
        return (f"| {self.endpoint} | {self.clients} | {n} | {self.errors} | {p50:.1f} | {p95:.1f} | {p99:.1f} | "
                f"{n / self.wall:.1f} | {1e3 * self.server_cpu / max(n, 1):.1f} |")


Request = Callable[["object", np.random.Generator], "object"]


def load(url: str, key: str, name: str, send: Request, clients: int, total: int, server: object) -> Result:
    """``total`` requests from ``clients`` closed-loop client threads."""
    import httpx

    per = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        rng = np.random.default_rng(1000 + i)
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600) as c:
            send(c, rng)  # connect + warm
            start.wait()
            for _ in range(per[i]):
                t0 = time.perf_counter()
                r = send(c, rng)
                lat[i].append(time.perf_counter() - t0)
                if not 200 <= r.status_code < 300:  # type: ignore[attr-defined]
                    errors[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    cpu0 = sum(server.cpu_times()[:2])  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = sum(server.cpu_times()[:2]) - cpu0  # type: ignore[attr-defined]
    return Result(name, clients, np.array([x for xs in lat for x in xs]), sum(errors), wall, cpu)


def _signals_of(store: Path) -> tuple[object, object]:
    """The store and a SessionSignals of its model's contract (for the drawn PNGs' paths)."""
    from services.explorer.signals import SessionSignals
    from services.store import EmbeddingStore
    from tokenizer.contract import SignalContract

    st = EmbeddingStore(store)
    ckpt = Path(st.info()["models"][st.resolve_model(None)]["checkpoint"])
    return st, SessionSignals(None, SignalContract.model_validate_json((ckpt / "contract.json").read_text()))


def forget_spectrograms(store: Path) -> None:
    """Delete the drawn spectrograms of the store's sessions, so their first view is cold."""
    st, sig = _signals_of(store)
    n = 0
    for sha in st.sessions()["source_sha256"].drop_nulls():
        p = sig.png_path(sha)
        if p.is_file():
            p.unlink()
            n += 1
    print(f"{n} drawn spectrogram(s) of the store's sessions deleted (first views are cold)")


def wait_predrawn(store: Path, real: list[str], proc: subprocess.Popen, timeout: float = 1800.0) -> None:
    """Wait until the server's background pass has drawn the real sessions' spectrograms (their PNGs on disk)."""
    st, sig = _signals_of(store)
    shas = st.sessions().filter(pl_col_in("session_id", real))["source_sha256"].to_list()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"clef serve exited with {proc.returncode}")
        if all(sig.png_path(sha).is_file() for sha in shas):
            print(f"the server's background pass drew the {len(shas)} real sessions' spectrograms "
                  f"{time.monotonic() - t0:.1f} s after it was ready")
            return
        time.sleep(0.2)
    raise SystemExit("the server's background pass did not draw the spectrograms")


def pl_col_in(column: str, values: list[str]) -> object:
    import polars as pl

    return pl.col(column).is_in(values)


def explorer_views(url: str, key: str, real: list[str], n: int, cohort_only: bool = False) -> None:
    """The cohort explorer's calls: the cohort table, then (unless ``cohort_only``) each real session's view,
    the first time and again."""
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    clients = [httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600) for _ in range(6)]
    try:
        for c in clients:
            c.get("/health")
        # the cohort table: its first page sorted by a column (the first such request since the
        # server started), the same again, the next page, a filtered first page, a CSV export
        for what, path, params in (
                ("first", "/sessions", {"limit": 50, "sort": "age_years", "order": "desc"}),
                ("again", "/sessions", {"limit": 50, "sort": "age_years", "order": "desc"}),
                ("next page", "/sessions", {"limit": 50, "offset": 50, "sort": "age_years", "order": "desc"}),
                ("filtered", "/sessions", {"limit": 50, "sort": "age_years", "order": "desc", "filter": "site=S01"}),
                ("export", "/cohort.csv", {"filter": "site=S01"})):
            t0 = time.perf_counter()
            r = clients[0].get(path, params=params)
            ms = 1e3 * (time.perf_counter() - t0)
            size = f", {len(r.content) / 1024:.0f} KiB" if path.endswith(".csv") else ""
            print(f"GET {path}?{'&'.join(f'{k}={v}' for k, v in params.items())} over {n} sessions ({what}): "
                  f"{r.status_code}{size}, {ms:.1f} ms", flush=True)
        if cohort_only:
            return
        calls = (("meta", ""), ("similar", "/similar?k=10"), ("spectrogram", "/spectrogram.png"),
                 ("eeg", "/eeg?start=0&seconds=10"), ("probabilities", "/probabilities"), ("findings", "/findings"))
        print(f"2 CPUs, load average {os.getloadavg()[0]:.2f} before the views")
        print("| session | view | " + " | ".join(f"{name} ms" for name, _ in calls) + " | view ms (slowest) |")
        print("|---|---|" + "---|" * (len(calls) + 1))
        views: dict[str, list[float]] = {"first": [], "again": []}

        def timed(c: httpx.Client, path: str) -> float:
            t = time.perf_counter()
            resp = c.get(path)
            if resp.status_code != 200:
                raise SystemExit(f"{path}: {resp.status_code} {resp.text[:300]}")
            return time.perf_counter() - t

        with ThreadPoolExecutor(len(calls)) as pool:
            for sid in real:
                for view in ("first", "again"):
                    t0 = time.perf_counter()
                    secs = list(pool.map(timed, clients, [f"/sessions/{sid}{p}" for _, p in calls]))
                    wall = time.perf_counter() - t0
                    views[view].append(wall)
                    print(f"| {sid} | {view} | " + " | ".join(f"{1e3 * s:.0f}" for s in secs)
                          + f" | {1e3 * wall:.0f} |", flush=True)
        for view, xs in views.items():
            print(f"{view} session view: median {1e3 * np.median(xs):.0f} ms, max {1e3 * max(xs):.0f} ms "
                  f"over {len(xs)} sessions")
    finally:
        for c in clients:
            c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=None, help="Existing store (default: build one).")
    ap.add_argument("--checkpoint", type=Path, default=None, help="Checkpoint whose model the store holds.")
    ap.add_argument("--probes", type=Path, default=None, help="Results folder with probes/<task>.json.")
    ap.add_argument("--edf", type=Path, default=None, help="Recording uploaded to POST /embed.")
    ap.add_argument("--sessions", type=int, default=8, help="Real sessions embedded into the default store.")
    ap.add_argument("--minutes", type=float, default=20.0, help="Their length (and the upload's).")
    ap.add_argument("--extra-sessions", type=int, default=10_000, help="Random sessions added to the default store.")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--requests", type=int, default=400, help="Requests per level for the GET endpoints.")
    ap.add_argument("--embed-requests", type=int, default=16, help="Requests per level for POST /embed.")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--explorer", action="store_true", help="Time the cohort explorer's views instead.")
    ap.add_argument("--no-warm-explorer", action="store_true",
                    help="Start the server with --no-warm-explorer (spectrograms drawn at a session's first view); "
                         "by default the views start once its background pass has drawn them.")
    ap.add_argument("--cohort-only", action="store_true",
                    help="With --explorer: time the cohort table's calls only, not the session views.")
    ap.add_argument("--out", type=Path, default=OUT, help="Folder of the default store, probes and server log.")
    ap.add_argument("--build-only", action="store_true", help="Build the store and its index, then stop.")
    args = ap.parse_args()
    globals()["OUT"] = args.out.resolve()
    # the server runs from the repository root: paths given relative to here must still find their files
    for name in ("store", "checkpoint", "probes", "edf"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    import psutil

    OUT.mkdir(parents=True, exist_ok=True)
    store, checkpoint, probes, edf = build_store(args)
    if args.build_only:
        print(f"built: --store {store} --checkpoint {checkpoint} --probes {probes} --edf {edf}")
        return
    from services.index import load_index

    ids = load_index(store).session_ids
    upload = edf.read_bytes()
    from tokenizer.header_facts import read_header_facts

    facts = read_header_facts(edf)
    key = secrets.token_urlsafe(24)
    if args.explorer and not args.cohort_only:
        forget_spectrograms(store)
    extra = ("--no-warm-explorer",) if args.explorer and args.no_warm_explorer else ()
    proc, url, ready = start_server(store, checkpoint, probes, key, OUT / "server.log", extra)
    server = psutil.Process(proc.pid)
    print(f"clef serve ready in {ready:.1f} s (pid {proc.pid}); {len(ids)} sessions indexed; "
          f"upload {edf.name}: {len(upload) / 2**20:.1f} MB, {facts.duration_s / 60:.1f} min; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    def health(c, rng):
        return c.get("/health")

    def similar(c, rng):
        return c.get(f"/sessions/{ids[rng.integers(len(ids))]}/similar", params={"k": args.k})

    def probabilities(c, rng):
        return c.get(f"/sessions/{ids[rng.integers(len(ids))]}/probabilities")

    def embed(c, rng):
        return c.post("/embed", files={"file": ("upload.edf", upload)})

    plan = [("GET /health", health, args.requests), (f"GET /sessions/{{id}}/similar?k={args.k}", similar, args.requests),
            ("GET /sessions/{id}/probabilities", probabilities, args.requests),
            ("POST /embed", embed, args.embed_requests)]
    results = []
    if args.explorer:
        try:
            if not args.no_warm_explorer and not args.cohort_only:
                wait_predrawn(store, [i for i in ids if not i.startswith("pad")], proc)
            explorer_views(url, key, [i for i in ids if not i.startswith("pad")], len(ids), args.cohort_only)
        finally:
            stop(proc)
        return
    try:
        for name, send, total in plan:
            for clients in [int(c) for c in args.clients.split(",")]:
                r = load(url, key, name, send, clients, max(total, clients), server)
                results.append(r)
                print(f"  {r.row()}", flush=True)
    finally:
        stop(proc)
    print(f"\n== clef serve, {len(ids)} sessions, closed-loop clients on the same machine")
    print("| endpoint | clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s | server CPU ms/req |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(r.row())


if __name__ == "__main__":
    main()

"""FAISS cohort-search benchmark: 1M synthetic session embeddings, latency and recall@10 against exact search.

Usage::

    python bench/search.py [--n 1000000] [--dim 256] [--queries 1000] [--nprobe 16,32,64,128] [--hnsw-n 0]

Data (stated, since it decides recall): *clustered*, like real embeddings, not uniform
noise, and not trivially separable either: 500 overlapping Gaussian clusters in a 32-d
latent space (centres N(0, I), points centre + N(0, I)), mapped to ``dim`` dimensions by a
fixed random linear map, plus isotropic N(0, 0.5²) noise, then L2-normalised (a low
intrinsic dimension with overlapping cohorts, as session embeddings have). The queries
are fresh draws from the same distribution, not stored points. Ground truth: exact
inner-product top-10 (``IndexFlatIP``) over all n.

Measured through ``services.index`` (the code ``clef index`` runs, default ``auto``
parameters: IVF-Flat with 4√n lists, nprobe = nlist/32): train + add time, index size on
disk and in memory (RSS growth), then p50 / p99 latency of single queries (one query
per call, as the service and ``clef search`` issue them) and recall@10, for a sweep of
nprobe; the same with a 1-in-5 site filter (FAISS ``IDSelectorBitmap``), and exact flat
search for reference. ``--hnsw-n N`` also builds HNSW (M = 32) on the first N vectors.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray, mapping: np.ndarray, noise: float = 0.5,
              chunk: int = 100_000) -> np.ndarray:
    """``n`` L2-normalised points: latent cluster draws mapped to ``dim`` plus noise (float32), in chunks."""
    lat, dim = mapping.shape
    out = np.empty((n, dim), np.float32)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        z = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, lat), dtype=np.float32)
        x = z @ mapping + noise * rng.standard_normal((m, dim), dtype=np.float32)
        out[a:a + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rss_mb() -> float:
    """Resident memory of this process (MB)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def latencies(index, q: np.ndarray, k: int, params) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Single-query search of every row of ``q``; returns (ids (nq, k), seconds per query)."""
    ids = np.empty((len(q), k), np.int64)
    secs = np.empty(len(q))
    index.search(q[:1], k, params=params)  # warm-up
    for i in range(len(q)):
        t0 = time.perf_counter()
        _, I = index.search(q[i:i + 1], k, params=params)
        secs[i] = time.perf_counter() - t0
        ids[i] = I[0]
    return ids, secs


def recall_at(ids: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the true top-k found in the returned top-k."""
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(ids, truth)]))


def row(name: str, secs: np.ndarray, rec: float | None) -> str:
    p50, p99 = np.percentile(secs * 1e3, [50, 99])
    return f"| {name} | {p50:.2f} | {p99:.2f} | {'' if rec is None else f'{rec:.3f}'} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nprobe", default="32,64,128,256")
    ap.add_argument("--hnsw-n", type=int, default=0, help="Also build HNSW on the first N vectors (0: skip).")
    ap.add_argument("--flat-queries", type=int, default=100, help="Queries timed on exact flat search.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import faiss

    from services.config import IndexConfig
    from services.index import CohortIndex, new_index

    print(f"faiss {faiss.__version__}, {os.cpu_count()} CPUs, {faiss.omp_get_max_threads()} OpenMP threads")
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((500, 32), dtype=np.float32)
    mapping = rng.standard_normal((32, args.dim), dtype=np.float32) / np.sqrt(32)
    t0 = time.perf_counter()
    x = clustered(args.n, rng, centres, mapping)
    q = clustered(args.queries, rng, centres, mapping)
    sites = rng.integers(0, 5, args.n)
    print(f"data: {args.n:,} × {args.dim} clustered (500 overlapping clusters in 32-d latent + noise), "
          f"{args.queries} fresh queries; "
          f"generated in {time.perf_counter() - t0:.1f} s")

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    t0 = time.perf_counter()
    _, truth = flat.search(q, args.k)
    allowed = sites == 0
    sel = faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
    _, truth_f = flat.search(q, args.k, params=faiss.SearchParameters(sel=sel))
    print(f"exact ground truth (batched, {args.queries} queries × 2): {time.perf_counter() - t0:.1f} s")
    _, flat_secs = latencies(flat, q[:args.flat_queries], args.k, None)

    cfg = IndexConfig()
    before = rss_mb()
    t0 = time.perf_counter()
    ivf, params = new_index("ivf", x, cfg)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    ivf.add(x)
    t_add = time.perf_counter() - t0
    mem = rss_mb() - before
    with tempfile.NamedTemporaryFile(suffix=".faiss") as f:
        faiss.write_index(ivf, f.name)
        disk = os.path.getsize(f.name) / 2**20
    print(f"\nIVF-Flat, nlist {params['nlist']} (default nprobe {params['nprobe']}): train {t_train:.1f} s "
          f"(on {min(args.n, cfg.ivf_train_max):,} vectors), add {t_add:.1f} s, build {t_train + t_add:.1f} s; "
          f"index {disk:.0f} MB on disk, +{mem:.0f} MB RSS (vectors alone: {x.nbytes / 2**20:.0f} MB)")

    print(f"\n| search (k={args.k}, one query per call) | p50 ms | p99 ms | recall@{args.k} |\n|---|---|---|---|")
    print(row(f"exact flat (IndexFlatIP, {args.flat_queries} queries)", flat_secs, 1.0))
    for nprobe in [int(v) for v in args.nprobe.split(",")]:
        ids, secs = latencies(ivf, q, args.k, faiss.SearchParametersIVF(nprobe=nprobe))
        mark = " (default)" if nprobe == params["nprobe"] else ""
        print(row(f"IVF nprobe {nprobe}{mark}", secs, recall_at(ids, truth, args.k)))
    # the filtered search as services.search issues it (more lists probed for a selective filter)
    ci = CohortIndex(ivf, "ivf", "auto", "bench", [], [], "", params)
    fparams = ci.search_params(args.k, sel, float(allowed.mean()))
    ids, secs = latencies(ivf, q, args.k, fparams)
    print(row(f"IVF + site filter (1 in 5, IDSelectorBitmap, nprobe {fparams.nprobe})", secs,
              recall_at(ids, truth_f, args.k)))

    if args.hnsw_n:
        n_h = min(args.hnsw_n, args.n)
        sub = faiss.IndexFlatIP(args.dim)
        sub.add(x[:n_h])
        _, truth_h = sub.search(q, args.k)
        before = rss_mb()
        t0 = time.perf_counter()
        hnsw, hp = new_index("hnsw", x[:n_h], cfg)
        hnsw.add(x[:n_h])
        t_h = time.perf_counter() - t0
        print(f"\nHNSW M {hp['m']}, efConstruction {hp['ef_construction']} on {n_h:,}: build {t_h:.1f} s, "
              f"+{rss_mb() - before:.0f} MB RSS")
        for ef in (32, 64, 96, 128):
            ids, secs = latencies(hnsw, q, args.k, faiss.SearchParametersHNSW(efSearch=ef))
            print(row(f"HNSW efSearch {ef} ({n_h:,} vectors)", secs, recall_at(ids, truth_h, args.k)))


if __name__ == "__main__":
    main()

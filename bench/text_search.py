"""Text → session search quality and latency on a synthetic hospital (issue 20).

For each planted finding of the hospital's ground truth (``truth.parquet``, the simulator's
findings, not the reports' wording) one plain-language query (``QUERIES``) is searched
with the aligned checkpoint's report tower (:class:`services.text_search.TextSearcher`):

* precision@20 of the text search against the finding's base rate (lift = p@20 / rate);
* zero-shot AUROC of the concept score (cosine of each session's EEG projection with the
  query) for the finding;

over every session of the store, and over the sessions of the patients the alignment held
out (its patient split: their reports were never a training target), where the top 20 is
the top 20 of the concept score among those sessions (with fewer than 20 positives there,
p@20 is at most positives / 20: the table shows that ceiling). Then each session's own
report summary as the query (is the session in the first 10?), the latency of one text search
(query embedding + FAISS) at the store's size, and the one-off cost of projecting the store.

Usage::

    python bench/text_search.py --store STORE --checkpoint ALIGNED --hospital HOSPITAL \\
        [--embeddings CACHED.parquet] [--tokens TOKENS] [--scale 10000,1000000] [--threads 1] \\
        [--out results.json]

A missing ``--store`` is built first: from ``--embeddings`` (a benchmark embedding cache
of the same checkpoint, ``session_id`` + ``vector``: the vectors ``clef embed`` stores,
without reading the EDF files again), else by ``clef embed`` of the hospital.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl

from common import best_of

#: planted finding (``name`` or ``name:side`` of truth's ``findings``) → plain-language query
QUERIES: dict[str, str] = {
    "focal_slowing:L": "left temporal slowing",
    "focal_slowing:R": "right temporal slowing",
    "generalized_slowing": "diffuse generalized slowing of the background",
    "mild_slowing": "mild diffuse slowing",
    "pdr_slowing": "slow posterior dominant rhythm",
    "asymmetry": "asymmetric background attenuated over one hemisphere",
    "ied_focal": "focal epileptiform discharges, temporal sharp waves",
    "ied_generalized": "generalized spike and wave",
    "burst_suppression": "burst suppression",
    "seizure": "electrographic seizure",
    "gpd": "generalized periodic discharges",
    "low_voltage": "low voltage suppressed background",
    "excess_beta": "excess beta activity",
}
TOP = 20

log = logging.getLogger("bench.text_search")


def _labels(truth: pl.DataFrame, key: str) -> np.ndarray:
    name, _, side = key.partition(":")
    out = []
    for fs in truth["findings"].to_list():
        out.append(any(f["name"] == name and (not side or f["side"] == side) for f in (fs or [])))
    return np.array(out, dtype=bool)


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def build_store(store: Path, checkpoint: Path, hospital: Path, embeddings: Path | None) -> str:
    """Write the store (from cached embeddings, or by ``clef embed``); returns how.

    From cached embeddings, the metadata comes from ``truth.parquet``, the content hash is
    a stand-in (the files are not read), and ``window_vectors`` holds the session vector
    alone (the cache keeps no per-window vectors; text search does not use them).
    """
    if embeddings is None:
        from services.batch import embed_archive
        from services.config import EmbedConfig

        embed_archive(hospital, checkpoint, store, EmbedConfig(), progress=True)
        return "clef embed of the hospital"
    import hashlib

    from clef.embedding import Embedder
    from services.store_writer import StoreWriter, utc_now
    from tokenizer.deid import patient_hash

    model_id = Embedder(checkpoint).model_id
    vec = pl.read_parquet(embeddings)
    truth = pl.read_parquet(hospital / "truth.parquet").select("session_id", "patient_id", "site", "setting", "sex",
                                                              "age_years", "duration_s", "path")
    df = truth.join(vec, on="session_id", how="inner")
    if df.height != vec.height:
        raise ValueError(f"{vec.height - df.height} cached sessions are not in {hospital}/truth.parquet")
    man, ses, emb = [], [], []
    for r in df.iter_rows(named=True):
        # a stand-in content hash (the files are not read again): one per session, stable
        sha = hashlib.sha256(f"text-search-bench:{r['session_id']}".encode()).hexdigest()
        man.append({"path": r["path"], "sha256": sha, "size": 0, "status": "done", "error_kind": None, "error": None,
                    "seconds": 0.0, "updated": utc_now(), "model_id": model_id, "mtime_ns": 0})
        ses.append({"session_id": r["session_id"], "source_sha256": sha, "path": r["path"], "format": "EDF+C",
                    "duration_s": r["duration_s"], "n_windows": max(1, math.ceil(r["duration_s"] / 1280)),
                    "sex": {"male": "M", "female": "F"}.get(str(r["sex"]).lower(), r["sex"]),
                    "age_years": r["age_years"],
                    "patient_hash": patient_hash(r["patient_id"]), "site": r["site"], "setting": r["setting"]})
        emb.append({"session_id": r["session_id"], "source_sha256": sha, "model_id": model_id,
                    "vector": list(r["vector"]), "window_vectors": [list(r["vector"])], "n_windows": 1})
    with StoreWriter(store, hospital) as w:
        w.commit(man, ses, emb, models={model_id: {"dim": len(emb[0]["vector"]), "checkpoint": str(checkpoint)}})
    return f"written from the cached embeddings {embeddings}"


def check_stored_vectors(store: Path, checkpoint: Path, tokens: Path, n: int = 5) -> float:
    """Largest difference between a stored session vector and the EEG embedding stage 2 trains on.

    Text search applies ``eeg_to_report`` to the stored vectors; this checks, on ``n``
    sessions of the tokens table, that they are ``AlignModule.eeg_embedding`` of the
    session's windows (the vector the projection was trained on).
    """
    import torch

    from clef.align.train import load_align_module
    from clef.pretrain import load_token_table
    from services.store import EmbeddingStore

    module, _ = load_align_module(checkpoint)
    module.eval()
    table = load_token_table(tokens)
    st = EmbeddingStore(store)
    model_id = st.resolve_model(None)
    ids, x = st.matrix(model_id)
    stems = [Path(str(p)).stem for p in table.path]
    worst = 0.0
    for sid, v in list(zip(ids, x))[:: max(1, len(ids) // n)][:n]:
        rows = np.array(sorted((i for i, s in enumerate(stems) if s == sid), key=lambda r: int(table.window[r])))
        if not len(rows):
            raise ValueError(f"session {sid} not in the tokens table {tokens}")
        with torch.no_grad():
            e = module.eeg_embedding(torch.from_numpy(table.codes[rows].astype(np.int64)),
                                     torch.from_numpy(table.valid[rows]), torch.zeros(len(rows), dtype=torch.long),
                                     1)[0].numpy()
        worst = max(worst, float(np.abs(e - v).max()))
    return worst


def own_report_retrieval(ts, hospital: Path, ids: list[str], held: np.ndarray, k: int = 10) -> dict:
    """Each session's own report summary as the query: is the session among the first ``k``?

    The summary is the one stage 2 trained on (the archive's report, PHI-scrubbed and
    summarised by the checkpoint's summariser); sessions are ranked among all sessions and
    among the held-out patients' sessions. Chance is ``k / n``.
    """
    from clef.align.archive import index_archive
    from clef.align.train import load_align_module
    from reports import SummariserConfig, make_summariser, process_report, read_report

    r = load_align_module(ts.tower.path)[0].cfg.report
    summariser = make_summariser(SummariserConfig(backend=r.summariser, model_dir=r.summariser_model))
    index = index_archive(hospital)
    x = ts.space.index.vectors(np.array([ts.space.row_of(s) for s in ids]))
    out: dict = {}
    for name, sel in (("all", np.ones(len(ids), bool)), ("held_out", held)):
        rows = np.flatnonzero(sel)
        hits, n = 0, 0
        for i in rows:
            s = index.sessions.get(ids[i])
            if s is None or s.report is None:
                continue
            summary = process_report(read_report(s.report), summariser).summary.strip()
            if not summary:
                continue
            scores = x[rows] @ ts.tower.embed_text(summary)
            own = scores[np.searchsorted(rows, i)]
            hits += int((scores > own).sum() < k)
            n += 1
        out[name] = {"n": n, f"top{k}": hits / max(n, 1), f"chance{k}": min(k, len(rows)) / len(rows)}
    return out


def run(store: Path, checkpoint: Path, hospital: Path, repeats: int) -> dict:
    from clef.align.train import load_align_module
    from services.search import CohortSearcher
    from services.text_search import ReportTower, TextSearcher

    t0 = time.perf_counter()
    tower = ReportTower(checkpoint)
    t_tower = time.perf_counter() - t0
    sessions = CohortSearcher(store, tower.model_id)
    t0 = time.perf_counter()
    ts = TextSearcher(store, tower, searcher=sessions)
    t_project = time.perf_counter() - t0
    truth = pl.read_parquet(hospital / "truth.parquet")
    ids = ts.concept_scores("x")["session_id"].to_list()  # store order
    truth = pl.DataFrame({"session_id": ids}).join(truth, on="session_id", how="left", maintain_order="left")
    if truth["patient_id"].null_count():
        raise ValueError("sessions of the store missing from truth.parquet")
    split = load_align_module(checkpoint)[0].cfg.split
    held = np.array([split.of(p) != "train" for p in truth["patient_id"].to_list()])
    rows = []
    for key, query in QUERIES.items():
        y = _labels(truth, key)
        if y.sum() == 0:
            continue
        score = ts.concept_scores(query)["score"].to_numpy()
        top = [n.session_id for n in ts.search(query, TOP)]
        pos = set(np.array(ids)[y])
        row = {"finding": key, "query": query, "n": len(y), "positives": int(y.sum()),
               "base_rate": float(y.mean()), "p_at_20": sum(s in pos for s in top) / TOP,
               "auroc": _auroc(y, score)}
        yh, sh = y[held], score[held]
        order = np.argsort(-sh, kind="stable")[:TOP]
        row.update({"held_n": int(held.sum()), "held_positives": int(yh.sum()),
                    "held_base_rate": float(yh.mean()) if held.any() else float("nan"),
                    "held_p_at_20": float(yh[order].mean()) if held.any() else float("nan"),
                    "held_auroc": _auroc(yh, sh)})
        rows.append(row)
    own = own_report_retrieval(ts, hospital, ids, held)
    queries = list(QUERIES.values())
    lat = []
    for q in queries:
        lat.append(best_of(lambda q=q: ts.search(q, TOP), repeats))
    embed_only = [best_of(lambda q=q: tower.embed_text(q), repeats) for q in queries]
    return {"sessions": len(ids), "held_out_sessions": int(held.sum()), "model_id": tower.model_id,
            "load_tower_s": t_tower, "project_store_s": t_project, "search_ms_median": 1e3 * statistics.median(lat),
            "search_ms_max": 1e3 * max(lat), "embed_text_ms_median": 1e3 * statistics.median(embed_only),
            "findings": rows, "own_report": own}


def scale_latency(store: Path, checkpoint: Path, sizes: list[int], workdir: Path, repeats: int) -> list[dict]:
    """Text-search latency on stores of ``sizes`` sessions, made by resampling this store's vectors.

    Each synthetic store holds the real store's session vectors drawn with replacement plus
    Gaussian noise (a tenth of each coordinate's spread), 5 sites, 3 sessions per patient;
    the session-space index is kept flat (text search does not use it).
    """
    from services.config import IndexConfig
    from services.search import CohortSearcher, parse_filters
    from services.store import EmbeddingStore
    from services.store_writer import StoreWriter, utc_now
    from services.text_search import ReportTower, TextSearcher

    tower = ReportTower(checkpoint)
    _, x = EmbeddingStore(store).matrix(tower.model_id)
    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        path = workdir / f"scale_{n}"
        if not (path / "store.json").is_file():
            part = 100_000
            with StoreWriter(path, workdir) as w:
                for a in range(0, n, part):
                    m = min(part, n - a)
                    v = x[rng.integers(0, len(x), m)] + 0.1 * x.std(0) * rng.normal(size=(m, x.shape[1]))
                    v = v.astype(np.float32)
                    sid = [f"syn{a + i:08d}" for i in range(m)]
                    sha = [f"{a + i:064x}" for i in range(m)]
                    man = pl.DataFrame({"path": sid, "sha256": sha, "size": 0, "status": "done", "error_kind": None,
                                        "error": None, "seconds": 0.0, "updated": utc_now(),
                                        "model_id": tower.model_id, "mtime_ns": 0})
                    ses = pl.DataFrame({"session_id": sid, "source_sha256": sha, "path": sid, "format": "EDF+C",
                                        "duration_s": 1200.0, "n_windows": 1, "sex": ["FM"[i % 2] for i in range(m)],
                                        "age_years": rng.uniform(0, 90, m).round(1),
                                        "patient_hash": [f"p{(a + i) // 3:08d}" for i in range(m)],
                                        "site": [f"S0{1 + i % 5}" for i in range(m)], "setting": "routine"})
                    vl = v.tolist()
                    emb = pl.DataFrame({"session_id": sid, "source_sha256": sha, "model_id": tower.model_id,
                                        "vector": vl, "window_vectors": [[r] for r in vl], "n_windows": 1})
                    w.commit(man.to_dicts(), ses.to_dicts(), emb.to_dicts(),
                             models={tower.model_id: {"dim": x.shape[1], "checkpoint": "synthetic"}})
        t0 = time.perf_counter()
        sessions = CohortSearcher(path, tower.model_id, IndexConfig(flat_max=10**8))
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        ts = TextSearcher(path, tower, searcher=sessions)
        t_project = time.perf_counter() - t0
        site = parse_filters(["site=S02"])
        q = "burst suppression"
        row = {"sessions": n, "load_store_and_index_s": t_load, "project_s": t_project,
               "search_ms": 1e3 * best_of(lambda: ts.search(q, TOP), repeats),
               "search_site_filter_ms": 1e3 * best_of(lambda: ts.search(q, TOP, site), repeats),
               "search_per_patient_ms": 1e3 * best_of(lambda: ts.search(q, TOP, per_patient=True), repeats),
               "concept_scores_all_ms": 1e3 * best_of(lambda: ts.concept_scores(q), repeats)}
        log.info("%s", row)
        out.append(row)
    return out


def table(res: dict) -> str:
    lines = ["| finding | query | positives (base rate) | p@20 | lift | AUROC | held-out: positives / n | p@20 (max) "
             "| lift | AUROC |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["findings"]:
        lift = r["p_at_20"] / r["base_rate"]
        hl = r["held_p_at_20"] / r["held_base_rate"] if r["held_base_rate"] else float("nan")
        lines.append(f"| {r['finding']} | {r['query']} | {r['positives']} ({r['base_rate']:.3f}) | {r['p_at_20']:.2f} "
                     f"| {lift:.2f} | {r['auroc']:.3f} | {r['held_positives']} / {r['held_n']} | "
                     f"{r['held_p_at_20']:.2f} ({min(r['held_positives'], TOP) / TOP:.2f}) | {hl:.2f} | "
                     f"{r['held_auroc']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True, help="Embedding store of the aligned checkpoint (built "
                                                                  "when missing).")
    ap.add_argument("--checkpoint", type=Path, required=True, help="Aligned checkpoint (clef align).")
    ap.add_argument("--hospital", type=Path, required=True, help="Synthetic hospital (truth.parquet).")
    ap.add_argument("--embeddings", type=Path, default=None, help="Cached session embeddings of the checkpoint "
                                                                   "(session_id, vector) to build a missing store.")
    ap.add_argument("--tokens", type=Path, default=None, help="Tokens table of the hospital: check that the stored "
                                                               "vectors are the EEG embeddings stage 2 projects.")
    ap.add_argument("--threads", type=int, default=1, help="Torch threads.")
    ap.add_argument("--repeats", type=int, default=5, help="Timing repeats per query (best of).")
    ap.add_argument("--scale", default="", help="Also time text search on synthetic stores of these sizes "
                                                 "(comma-separated, e.g. 10000,1000000), resampled from --store.")
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/text_search_scale"),
                    help="Where the --scale stores are written (kept for reruns).")
    ap.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    how = "existing store"
    if not (args.store / "store.json").is_file():
        how = build_store(args.store, args.checkpoint, args.hospital, args.embeddings)
    res = run(args.store, args.checkpoint, args.hospital, args.repeats)
    res["store"] = how
    for name, o in res["own_report"].items():
        print(f"own report summary as the query, {name} ({o['n']} sessions): own session in the first 10: "
              f"{o['top10']:.3f} (chance {o['chance10']:.3f})")
    if args.tokens is not None:
        res["stored_vs_stage2_max_abs_diff"] = check_stored_vectors(args.store, args.checkpoint, args.tokens)
        print(f"stored vectors vs AlignModule.eeg_embedding of their tokens (5 sessions): max |diff| "
              f"{res['stored_vs_stage2_max_abs_diff']:.2e}")
    print(table(res))
    print(f"\n{res['sessions']} sessions ({res['held_out_sessions']} of held-out patients); text search (embed + "
          f"FAISS, k={TOP}): median {res['search_ms_median']:.1f} ms, max {res['search_ms_max']:.1f} ms; text "
          f"embedding alone {res['embed_text_ms_median']:.1f} ms; loading the tower {res['load_tower_s']:.1f} s, "
          f"projecting the store {1e3 * res['project_store_s']:.0f} ms (once per store state)")
    if args.scale:
        res["scale"] = scale_latency(args.store, args.checkpoint, [int(v) for v in args.scale.split(",")],
                                     args.workdir, args.repeats)
        print("\n| sessions | load store + index (s) | project (s) | search (ms) | + site filter (ms) | "
              "per patient (ms) | concept scores, all (ms) |\n|---|---|---|---|---|---|---|")
        for r in res["scale"]:
            print(f"| {r['sessions']} | {r['load_store_and_index_s']:.1f} | {r['project_s']:.2f} | "
                  f"{r['search_ms']:.1f} | {r['search_site_filter_ms']:.1f} | {r['search_per_patient_ms']:.1f} | "
                  f"{r['concept_scores_all_ms']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

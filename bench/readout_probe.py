"""Where does stage 1 lose the planted signal: in the transformer, or in the pooling of its tokens?

Usage::

    python bench/readout_probe.py --study bench/out/study_200_legacy [--checkpoint CKPT] [--threads 1]

The validity ladder (``bench/validity_study.py``) found stage 1 below the bag of its own
codes and no better than a randomly initialised encoder. A session embedding today is the
mean of every token's features over the whole grid (frequency rows × time), which mixes
the rows that hold the hemispheres and bands a neurologist reads. This script re-reads the
study's stage-1 checkpoint with two readouts of the same token features:

``mean``
    the shipped pooling (mean over valid tokens, then over windows): must reproduce the
    study's ``stage1`` rung;
``rows``
    the mean over time of each grid row, rows concatenated (``grid_f × dim``), then over
    windows with the same weights;
``time``
    the token features averaged over the grid rows into one vector per time column, then
    their mean, standard deviation and maximum over the window's columns, concatenated
    (``3 × dim``), then over windows with the same weights. Episodic findings (discharges,
    seizures, bursts) occupy a minority of a session's minutes, which a mean dilutes; a
    spread and a peak over time keep them;

and the same two readouts of a randomly initialised encoder of the same architecture
(torch seed 0, the study's ``random_encoder``), so that a gain of ``rows`` is credited to
learning only where it exceeds the random encoder's gain. Every set is probed on the
study's suite with the study's protocol (mlp probe, 3 seeds, bootstrap over tasks and test
patients), next to the study's cached ``codes``, ``code_rows`` and ``bandpower`` rungs. The
table goes to ``STUDY/readout/readout.md``; figures go in ``bench/RESULTS.md`` with this
command line. A diagnostic: the readout the platform ships is decided in the code, with
its reason, not by this table alone.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

READOUTS = ("mean", "rows", "time")


def time_statistics(feats, w):
    """Mean, standard deviation and maximum over time columns of row-pooled token features.

    ``feats`` is ``(W, grid_f, grid_t, dim)``, ``w`` its validity ``(W, grid_f, grid_t, 1)``;
    a column without a valid token takes no part. Returns ``(W, 3 × dim)``.
    """
    import torch

    col_w = w.sum(1)  # (W, grid_t, 1): valid rows per column
    cols = (feats * w).sum(1) / col_w.clamp(min=1.0)  # (W, grid_t, dim)
    present = (col_w > 0).to(feats.dtype)
    n = present.sum(1).clamp(min=1.0)  # (W, 1)
    mean = (cols * present).sum(1) / n
    std = (((cols - mean[:, None]) ** 2 * present).sum(1) / n).sqrt()
    peak = torch.where(present > 0, cols, torch.full_like(cols, -torch.inf)).amax(1)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    return torch.cat([mean, std, peak], dim=1)


def study_tokens(tokens_dir: Path, tokenizer_weights: str) -> dict:
    """The study's token table as ``Tokens`` per archive path (the tokens every encoder reads).

    Saves recomputing each session's spectrogram; refused if the table holds another
    tokenizer's codes than the checkpoint's.
    """
    import json

    from tokenizer.tokens import Tokens, read_tokens

    manifest = json.loads((tokens_dir / "manifest.json").read_text())
    if manifest["weights_sha256"] != tokenizer_weights:
        raise SystemExit(f"{tokens_dir} holds another tokenizer's codes than the checkpoint's")
    gf, gt = manifest["grid"]
    out = {}
    for (path,), part in read_tokens(tokens_dir).sort("window").group_by(["path"]):
        n = part.height
        out[path] = Tokens(codes=np.stack(part["codes"].to_numpy()).reshape(n, gf, gt).astype(np.int16),
                           token_mask=np.stack(part["token_mask"].to_numpy()).reshape(n, gf, gt).astype(bool),
                           n_valid_frames=part["n_valid_frames"].to_numpy(), source_sha256=part["source_sha256"][0],
                           source_path=path, window_s=float(manifest["window_s"]))
    return out


def readout_sets(checkpoint: Path, sessions, archive: Path, cache: Path, random_init: bool,
                 tokens: dict):
    """Embedding sets of one encoder under each readout (``EmbeddingSet`` per readout).

    ``tokens`` maps archive paths to their tokens (the study's table, or memoised here:
    the same tokenizer for both encoders).
    """
    import torch

    from benchmark_tasks.embeddings import EmbeddingSet
    from clef.embedding import Embedder
    from clef.model import aggregate_windows
    from benchmark_tasks.progress import track

    emb = Embedder(checkpoint, cache_dir=cache)
    prefix = "stage1"
    if random_init:
        torch.manual_seed(0)
        emb.encoder.load_state_dict(type(emb.encoder)(emb.cfg.model).state_dict())
        emb.encoder.eval()
        prefix = "random"
    gf, gt = emb.cfg.model.grid
    vectors: dict[str, dict[str, np.ndarray]] = {r: {} for r in READOUTS}
    for row in track(list(sessions.iter_rows(named=True)), f"{prefix} readouts"):
        t = tokens.get(row["path"])
        if t is None:
            t = tokens[row["path"]] = emb.tokens_of(archive / row["path"])
        codes = torch.from_numpy(t.codes.reshape(t.n_windows, -1).astype(np.int64))
        valid = torch.from_numpy(t.token_mask.reshape(t.n_windows, -1))
        with torch.no_grad():
            out = emb.encoder(codes, valid)
        n_tok = valid.sum(1)
        vectors["mean"][row["session_id"]] = aggregate_windows(out.window_embedding, n_tok).numpy()
        feats = out.token_features.reshape(t.n_windows, gf, gt, -1)
        w = valid.reshape(t.n_windows, gf, gt, 1).to(feats.dtype)
        rows = ((feats * w).sum(2) / w.sum(2).clamp(min=1.0)).reshape(t.n_windows, -1)
        vectors["rows"][row["session_id"]] = aggregate_windows(rows, n_tok).numpy()
        vectors["time"][row["session_id"]] = aggregate_windows(time_statistics(feats, w), n_tok).numpy()
    sets = []
    for r in READOUTS:
        ids = sorted(vectors[r])
        sets.append(EmbeddingSet(f"{prefix}_{r}", ids, np.stack([vectors[r][s] for s in ids]).astype(np.float32),
                                 kind="random" if random_init else "checkpoint", baseline=random_init))
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, required=True, help="a bench/validity_study.py --out folder with results")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="stage-1 checkpoint (default STUDY/stage1); another study's on the same hospital compares "
                         "on this study's suite")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    study = args.study
    if not (study / "results" / "summary.parquet").is_file():
        ap.error(f"{study} has no benchmark results: finish bench/validity_study.py first")
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import polars as pl
    import torch

    from benchmark_tasks.baselines.tokenizer_rungs import RUNGS
    from benchmark_tasks.config import ProbeConfig
    from benchmark_tasks.models import ModelSources, collect_models, suite_sessions
    from benchmark_tasks.run import run_benchmark
    from benchmark_tasks.suite import load_suite
    from benchmark_tasks.truth import task_classes
    from validity_study import auroc_cell, paired_line  # this folder: the ladder's formatting

    torch.set_num_threads(args.threads)
    suite = load_suite(study / "suite" / "suite.yaml")
    hospital, cache = study / "hospital", study / "cache"
    sessions = suite_sessions(suite).filter(pl.col("path").is_not_null()).sort("session_id")
    ck = args.checkpoint or study / "stage1"
    name = "stage1" if args.checkpoint is None else "checkpoint"
    tokens: dict = {}
    if (study / "tokens" / "manifest.json").is_file():
        from tokenizer.checkpoint_io import load_checkpoint
        tokens = study_tokens(study / "tokens", str(load_checkpoint(ck / "tokenizer").meta["weights_sha256"]))
    models = [*readout_sets(ck, sessions, hospital, cache, random_init=False, tokens=tokens),
              *readout_sets(ck, sessions, hospital, cache, random_init=True, tokens=tokens)]
    sources = ModelSources(checkpoints=[(name, ck)], bandpower=True, random_encoder=False,
                           tokenizer_rungs=[(RUNGS, study / "tokenizer")])
    models += collect_models(suite, sources, archive=hospital, cache_dir=study / "bench_cache",
                             spectrogram_cache=cache, workers=args.threads, progress=True)
    out = study / "readout" / ("stage1" if args.checkpoint is None else ck.parent.name + "_" + ck.name)
    res = run_benchmark(suite, models, out / "results", config=ProbeConfig(n_bootstrap=args.bootstrap),
                        task_classes=task_classes(suite.tasks), progress=True, plots=False)
    s = res.summary.filter((pl.col("probe") == "mlp") & (pl.col("category") == "planted"))
    c = res.comparisons.filter((pl.col("probe") == "mlp") & (pl.col("category") == "planted"))
    lines = [f"# Readouts of {ck}", "", "Planted tasks, mlp probe; intervals over tasks · over test patients.", "",
             "| model | dim | planted mean AUROC [95% CI] · patients |", "|---|---|---|"]
    dims = {m.name: m.vectors.shape[1] for m in models}
    for x in s.iter_rows(named=True):
        lines.append(f"| {x['model']} | {dims.get(x['model'], '')} | {auroc_cell(x)} |")
    lines += ["", "Paired differences (A − B, planted):", ""]
    pairs = (("stage1_mean", name), ("stage1_rows", "stage1_mean"), ("random_rows", "random_mean"),
             ("stage1_rows", "random_rows"), ("stage1_rows", "codes"), ("stage1_rows", "bandpower"),
             ("stage1_time", "stage1_mean"), ("random_time", "random_mean"), ("stage1_time", "random_time"),
             ("stage1_time", "bandpower"), ("stage1_mean", "bandpower"))
    lines += [line for a, b in pairs if (line := paired_line(c, a, b))]
    (out / "readout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

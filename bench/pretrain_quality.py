"""Honest learning signal of stage-1 pretraining on the synthetic hospital.

Usage::

    python bench/pretrain_quality.py [--tokenizer CKPT] [--steps 300] [--config tiny]

Uses the hospital and tokenizer of ``bench/tokenizer_quality.py`` (run it first; by
default its 600-step tokenizer). Tokenizes the hospital, pretrains the session
transformer, and reports:

- held-out masked-token accuracy against the frequency of the most common code;
- per planted finding (sessions with ≥ 8 positives), the AUROC of a logistic probe on
  session embeddings of the pretrained encoder and of the same architecture randomly
  initialised, with 5-fold cross-validation grouped by patient (out-of-fold predictions).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "tokenizer_quality"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", type=Path, default=OUT / "vqgan_tiny_600")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--config", default="tiny")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    os.environ.setdefault("CLEF_HOME", str(OUT / "home"))
    import torch

    from benchmark_tasks.probes import cross_validated_auroc as probe_auroc
    from clef.config import SessionConfig
    from clef.embedding import Embedder
    from clef.pretrain import MaskedTokenModule, load_token_table, pretrain, save_session_checkpoint
    from clef.synthetic.hospital import load_truth
    from tokenizer.presets import load_preset
    from tokenizer.tokens import tokenize_archive

    torch.set_num_threads(1)
    hosp = OUT / "hospital"
    tokens = OUT / f"tokens_{args.tokenizer.name}"
    tokenize_archive(hosp / "edf", args.tokenizer, tokens, cache_dir=OUT / "cache")
    ck = OUT / f"pretrain_{args.config}_{args.steps}_{args.tokenizer.name}"
    cfg = load_preset(SessionConfig, args.config)
    r = pretrain(tokens, cfg, ck, max_steps=args.steps, resume=(ck / "meta.json").exists(),
                 trainer_kwargs={"enable_progress_bar": False})
    if r.val_masked_acc is None:  # resumed a finished run: measure again
        from clef.pretrain import load_session_module

        m = load_session_module(ck)
        r_acc = m.evaluate(load_token_table(tokens).split_by_session(0.1)[1])["val/masked_acc"]
    else:
        r_acc = r.val_masked_acc
    table = load_token_table(tokens)
    random_ck = OUT / f"random_{args.config}_{args.tokenizer.name}"
    torch.manual_seed(0)
    rnd = MaskedTokenModule(cfg.with_data(table.vocab_size, table.grid), Embedder(ck).contract)
    save_session_checkpoint(rnd, random_ck, tokenizer_dir=args.tokenizer)

    truth = load_truth(hosp)
    paths = [hosp / p for p in truth["path"]]
    x_pre = np.stack([e.vector for e in Embedder(ck, cache_dir=OUT / "cache").embed(paths)])
    x_rnd = np.stack([e.vector for e in Embedder(random_ck, cache_dir=OUT / "cache").embed(paths)])
    groups = truth["patient_id"].to_numpy()
    print(f"== stage-1 pretraining '{args.config}' ({r.parameters / 1e6:.2f}M) for {r.steps} steps on "
          f"{len(table)} windows of {truth.height} sessions, tokenizer {args.tokenizer.name}")
    print(f"held-out masked-token accuracy {r_acc:.3f}; most common code {r.baseline_acc:.3f} "
          f"({r_acc / r.baseline_acc:.1f}x)")
    print(f"{'planted finding':22s} {'n+':>4s} {'pretrained':>11s} {'random init':>12s}")
    names = sorted({n for ns in truth["finding_names"] for n in ns})
    diffs = []
    for name in names:
        y = np.array([name in ns for ns in truth["finding_names"]], dtype=int)
        if y.sum() < 8 or (1 - y).sum() < 8:
            continue
        a, b = probe_auroc(x_pre, y, groups), probe_auroc(x_rnd, y, groups)
        diffs.append(a - b)
        print(f"{name:22s} {y.sum():4d} {a:11.3f} {b:12.3f}")
    print(f"mean AUROC difference (pretrained - random) over {len(diffs)} findings: {np.mean(diffs):+.3f}")


if __name__ == "__main__":
    main()

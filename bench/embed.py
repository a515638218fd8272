"""EDF → session embedding cost: CLEF (tiny, base) against a LaBraM-sized sliding-window path.

Usage::

    python bench/embed.py [--minutes 20] [--repeats 3] [--threads 2]

Random weights (cost does not depend on training). In one process, on the same
generated 20-minute 19-channel 256 Hz EDF:

- CLEF ``tiny`` and ``base``: ``clef.embedding.Embedder.embed(path)``, i.e. read +
  preprocess → multitaper spectrogram → VQGAN tokens → session transformer, end to end;
  also the transformer part alone.
- LaBraM-base-sized model (1 s / 200-sample patches per channel, 12 layers of width 200,
  10 heads): read + preprocess → 30 s sliding windows → model → mean, as the CLEF paper
  did for its baselines; also the transformer part alone. Run once with the fused-attention
  inference CLEF's model uses (like for like) and once through PyTorch's default encoder
  path (what a plain ``nn.TransformerEncoder`` model gets).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from common import best_of, make_file
    from benchmark_tasks.baselines.windowed import LabramShaped, WindowedEmbedder
    from clef.embedding import Embedder
    from clef.factory import save_random_checkpoint
    from clef.model import count_parameters
    from tokenizer import read_recording

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    edf = make_file(out / f"eeg_{args.minutes}min_256Hz.edf", args.minutes * 60, 256)
    rec = read_recording(edf)
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        for name in ("tiny", "base"):
            ck = save_random_checkpoint(name, Path(tmpd) / f"st_{name}")
            emb = Embedder(ck, batch_size=2)
            emb.embed(edf)  # warm up
            t_all = best_of(lambda: emb.embed(edf), args.repeats)
            toks = emb.tokens_of(rec)
            t_tr = best_of(lambda: emb.embed_tokens([toks]), args.repeats)
            n_tok = int(np.prod(toks.codes.shape))
            rows.append((f"CLEF {name} ({count_parameters(emb.encoder) / 1e6:.1f}M, {toks.n_windows} window x "
                         f"{n_tok // toks.n_windows} tokens)", t_all, t_tr))
        lab = LabramShaped()
        we = WindowedEmbedder(lab, window_s=30.0, batch_size=8)
        we.embed(rec.data, rec.sfreq)
        t_lab_tr = best_of(lambda: we.embed(rec.data, rec.sfreq), args.repeats)
        t_lab_all = best_of(lambda: we.embed(read_recording(edf).data, 200.0), args.repeats)
        n_win = args.minutes * 60 // 30
        rows.append((f"LaBraM-sized ({count_parameters(lab) / 1e6:.1f}M), {n_win} x 30 s windows x 570 tokens, mean",
                     t_lab_all, t_lab_tr))
        lab.fused_attention = False  # the same model through PyTorch's default encoder path
        we.embed(rec.data, rec.sfreq)
        t_def_tr = best_of(lambda: we.embed(rec.data, rec.sfreq), args.repeats)
        t_def_all = best_of(lambda: we.embed(read_recording(edf).data, 200.0), args.repeats)
        rows.append(("  same, PyTorch's default encoder path (attention scores materialised)", t_def_all, t_def_tr))
    print(f"== EDF → session embedding, {args.minutes}-minute 19-channel 256 Hz session, {args.threads} threads, "
          f"best of {args.repeats}")
    print(f"{'path':78s} {'end to end':>11s} {'transformer':>12s}")
    for name, a, b in rows:
        print(f"{name:78s} {a:10.2f}s {b:11.2f}s")
    base_all, base_tr = rows[1][1], rows[1][2]
    print(f"LaBraM-sized / CLEF base: {t_lab_all / base_all:.1f}x end to end, {t_lab_tr / base_tr:.1f}x transformer only "
          "(both with the same fused-attention inference)")
    print(f"LaBraM-sized on PyTorch's default path / CLEF base: {t_def_all / base_all:.1f}x end to end, "
          f"{t_def_tr / base_tr:.1f}x transformer only")


if __name__ == "__main__":
    main()

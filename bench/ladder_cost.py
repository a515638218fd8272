"""Cost of each rung of the information-loss ladder (issue 16) on one 20-minute session.

Usage::

    python bench/ladder_cost.py [--minutes 20] [--repeats 3] [--threads 1] [--configs tiny,base]

Random weights (cost does not depend on training), on the generated 20-minute
19-channel 256 Hz EDF of ``bench/embed.py``. Per tokenizer/transformer size, best wall
time of ``--repeats`` calls after a warm-up, of the pieces each rung is made of:

- ``spectrogram``: read + preprocess + the contract's multitaper spectrogram (every
  rung but the signal band-power baseline starts here);
- ``features``: the 129 band-power features of one session-mean spectrum;
- ``encode``: VQGAN encoder + quantiser over the session's windows;
- ``encode+decode``: the same and the decoder (``reconstruct_session``);
- ``histograms``: plain and per-row code histograms;
- ``stage 1 full`` / ``stage 1 short``: the session transformer over the tokens, full
  context (1280 s) and 80 s context (crops pooled like windows).

Then each rung end to end from the EDF (sum of its pieces), next to the signal
band-power baseline (``bandpower_features``: read + 4 s-step multitaper + features).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(name: str, tmp: Path, context_s: float) -> tuple[Path, Path]:
    """Random-weight checkpoints of config ``name``: full context and ``context_s`` (same tokenizer)."""
    from clef.factory import save_random_checkpoint, session_config
    from clef.pretrain import MaskedTokenModule, save_session_checkpoint
    from tokenizer import SignalContract

    full = save_random_checkpoint(name, tmp / f"st_{name}")
    meta = json.loads((full / "meta.json").read_text())
    cfg = session_config(name, vocab_size=meta["vocab_size"], grid=tuple(meta["grid"]),
                         overrides={"model": {"context_s": context_s}})
    short = save_session_checkpoint(MaskedTokenModule(cfg, SignalContract()), tmp / f"st_{name}_short",
                                    tokenizer_dir=tmp / f"st_{name}.tokenizer")  # written beside ``full``
    return full, short


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context-s", type=float, default=80.0)
    ap.add_argument("--configs", default="tiny,base")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    import torch

    torch.set_num_threads(args.threads)
    from common import best_of, make_file
    from benchmark_tasks.baselines.bandpower import bandpower_features
    from benchmark_tasks.baselines.tokenizer_rungs import code_histograms, rung_features
    from clef.embedding import Embedder
    from clef.reconstruction import Reconstructor
    from tokenizer.vqgan.evaluate import reconstruct_session

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    edf = make_file(out / f"eeg_{args.minutes}min_256Hz.edf", args.minutes * 60, 256)
    t_bp = best_of(lambda: bandpower_features(edf), args.repeats)
    print(f"== ladder rung cost, {args.minutes}-minute 19-channel 256 Hz session, {args.threads} thread(s), "
          f"best of {args.repeats} (seconds)")
    print(f"signal band-power baseline (read + 4 s-step multitaper + features): {t_bp:.2f}")
    with tempfile.TemporaryDirectory() as tmpd:
        for name in args.configs.split(","):
            full, short = build(name, Path(tmpd), args.context_s)
            rec = Reconstructor(full)
            spec = rec.spectrogram(edf)
            model = rec.tokenizer.model
            r = rec.reconstruct(edf)
            ef, es = Embedder(full), Embedder(short)
            toks = ef.tokens_of(edf)
            idx = rung_features(r)
            p = {
                "spectrogram": best_of(lambda: rec.spectrogram(edf), args.repeats),
                "features": best_of(lambda: rung_features(r), args.repeats),
                "encode": best_of(lambda: rec.tokenizer.tokenize_spectrogram(spec), args.repeats),
                "encode+decode": best_of(lambda: reconstruct_session(model, spec, batch_size=rec.batch_size),
                                         args.repeats),
                "histograms": best_of(lambda: [code_histograms([idx.code_index], [idx.code_count], rec.n_codes,
                                                               rec.grid[0], per_row=pr) for pr in (False, True)],
                                      args.repeats),
                "stage 1 full": best_of(lambda: ef.embed_tokens([toks]), args.repeats),
                "stage 1 short": best_of(lambda: es.embed_tokens([toks]), args.repeats),
            }
            # rung_features computes both band-power vectors; one vector is half of it
            feat = p["features"] / 2
            rungs = {
                "input band power": p["spectrogram"] + feat,
                "decoded band power": p["spectrogram"] + p["encode+decode"] + feat,
                "bag of codes (both histograms)": p["spectrogram"] + p["encode"] + p["histograms"],
                f"stage 1, {args.context_s:g} s context": p["spectrogram"] + p["encode"] + p["stage 1 short"],
                "stage 1, full 1280 s context": p["spectrogram"] + p["encode"] + p["stage 1 full"],
            }
            print(f"-- {name}: grid {rec.grid}, {rec.n_codes} codes, {toks.n_windows} window(s), "
                  f"short context = {es.context_columns} columns")
            print("   pieces: " + ", ".join(f"{k} {v:.3f}" for k, v in p.items()))
            for k, v in rungs.items():
                print(f"   {k:34s} {v:7.2f}")


if __name__ == "__main__":
    main()

"""Tokenizer quality on the synthetic hospital: train ``tiny``, then measure what the tokens keep.

Usage::

    python bench/tokenizer_quality.py [--patients 60] [--steps 0 (= config)] [--config tiny]

Reports codebook usage (% of codes used) and perplexity, reconstruction error per band
(dB), and whether planted effects survive reconstruction: relative 13–30 Hz power of
sessions with planted ``excess_beta`` against sessions without, and the occipital
4–13 Hz peak of encephalopathy sessions against adult sessions without findings, each
measured on the original and on the decoded spectrograms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "tokenizer_quality"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--fresh", action="store_true", help="regenerate the hospital and retrain")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    os.environ.setdefault("CLEF_HOME", str(OUT / "home"))
    import torch

    from clef.synthetic.hospital import load_truth, synthesize_hospital
    from tokenizer import SignalContract
    from tokenizer.spectrogram_cache import SpectrogramCache
    from tokenizer.vqgan.config import load_config
    from tokenizer.vqgan.evaluate import evaluate_reconstruction, peak_frequency, relative_band_power
    from tokenizer.vqgan.model import VQGAN
    from tokenizer.vqgan.training import train_tokenizer

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.fresh:
        shutil.rmtree(OUT, ignore_errors=True)
    hosp, ckpt = OUT / "hospital", OUT / f"vqgan_{args.config}_{args.steps or 'default'}"
    if not (hosp / "truth.parquet").exists():
        synthesize_hospital(hosp, args.patients, seed=3, overwrite=True)
    contract = SignalContract()
    t0 = time.perf_counter()
    cfg = load_config(args.config)
    if not (ckpt / "meta.json").exists():
        train_tokenizer(hosp / "edf", cfg, ckpt, contract=contract, cache_dir=OUT / "cache",
                        max_steps=args.steps or None, enable_progress_bar=False)
    t_train = time.perf_counter() - t0
    model = VQGAN.from_checkpoint(str(ckpt))
    truth = load_truth(hosp)
    cache = SpectrogramCache(OUT / "cache", contract)
    specs = [cache.load_or_compute(hosp / p)[0] for p in truth["path"]]
    rep, recons = evaluate_reconstruction(model, specs)
    freqs = np.asarray(model.ctx.freqs)
    print(f"== tokenizer '{args.config}' trained on {truth.height} sessions ({args.patients} patients) in {t_train:.0f} s "
          f"({model.ctx.grid[0]}x{model.ctx.grid[1]} = {model.ctx.n_tokens} tokens per 1280 s window)")
    print(f"codebook usage {100 * rep.codebook_usage:.1f}% of {model.config.quantizer.n_codes} codes, perplexity {rep.perplexity:.1f}, "
          f"{rep.n_windows} windows, {rep.n_tokens} valid tokens")
    print("reconstruction error (mean |dB|): " + ", ".join(f"{b} {v:.2f}" for b, v in rep.band_error_db.items()))

    rows = list(truth.iter_rows(named=True))

    def stat(kind: str, which: str) -> list[float]:
        vals = []
        for r, s, rec in zip(rows, specs, recons):
            x = s.values if which == "original" else rec
            if kind == "beta":
                vals.append(relative_band_power(x, freqs, s.channel_mask, s.frame_mask, (13.0, 30.0)))
            elif kind == "peak":
                vals.append(peak_frequency(x, freqs, [17, 18], s.frame_mask))
            else:  # occipital alpha (8-13 Hz) over theta (4-8 Hz) power: falls when the PDR slows
                occ = np.zeros_like(s.channel_mask)
                occ[[17, 18]] = s.channel_mask[[17, 18]]
                a = relative_band_power(x, freqs, occ, s.frame_mask, (8.0, 13.0), (4.0, 13.0))
                vals.append(a / (1 - a))
        return vals

    beta_pos = np.array(["excess_beta" in r["finding_names"] for r in rows])
    enc = np.array([any(c.startswith(("G93.4", "F05")) for c in r["condition_codes"]) for r in rows])
    ctrl = np.array([not r["finding_names"] and 18 <= r["age_years"] < 70 for r in rows])
    print("planted effects, original vs decoded spectrograms:")
    for which in ("original", "decoded"):
        b = np.array(stat("beta", which))
        pk = np.array(stat("peak", which))
        at = np.array(stat("alpha_theta", which))
        print(f"  {which:8s}: rel. 13-30 Hz power excess_beta {np.median(b[beta_pos]):.3f} vs others {np.median(b[~beta_pos]):.3f} "
              f"(n={beta_pos.sum()}/{(~beta_pos).sum()}); encephalopathy vs adult no-finding (n={enc.sum()}/{ctrl.sum()}): "
              f"O1/O2 4-13 Hz peak {np.median(pk[enc]):.2f} vs {np.median(pk[ctrl]):.2f} Hz, "
              f"O1/O2 alpha/theta power {np.median(at[enc]):.2f} vs {np.median(at[ctrl]):.2f}")


if __name__ == "__main__":
    main()

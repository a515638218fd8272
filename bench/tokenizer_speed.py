"""Tokenizer benchmark: EDF → tokens per 20-minute session on CPU, for the tiny and base VQGANs.

Usage::

    python bench/tokenizer_speed.py [--minutes 20] [--repeats 3] [--threads 2] [--device cpu]

On a generated 20-minute 19-channel 256 Hz EDF (one 1280 s window), timed separately,
best of ``--repeats`` after one warm-up:

- read: ``tokenizer.read_recording`` (decode, units, resample to 200 Hz, band-pass, notch);
- spectrogram: multitaper 4 s / 1 s, 0–32 Hz, clipped, float16 (``compute_spectrogram``);
- cache hit: loading that spectrogram back from the on-disk cache instead;
- encode: window cut + scaling + VQGAN encoder + codebook lookup
  (``Tokenizer.tokenize_spectrogram``), randomly initialised weights (timing only).

EDF → tokens = read + spectrogram + encode (a cold cache); with a warm cache it is
cache hit + encode. The last two columns time the path every command takes,
``Tokenizer.tokenize_file`` (the file streamed once), with an empty cache and with the
file's spectrogram in the cache (read and preprocessed for what reading decides, the
multitaper skipped), and their ratio.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

from common import best_of, make_file

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", nargs="+", default=["tiny", "base"])
    args = parser.parse_args()

    import torch

    from clef.factory import create_tokenizer
    from tokenizer import SignalContract, read_recording
    from tokenizer.spectrogram_cache import SpectrogramCache, compute_spectrogram
    from tokenizer.tokens import Tokenizer
    from tokenizer.vqgan import PatchDiscriminator, count_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = make_file(OUT / f"eeg_{args.minutes}min_256Hz.edf", args.minutes * 60)
    contract = SignalContract()
    rec = read_recording(path, contract)
    spec = compute_spectrogram(rec, contract)
    cache = SpectrogramCache(Path(tempfile.mkdtemp(prefix="clef-bench-")), contract)
    cache.put(spec)

    t_read = best_of(lambda: read_recording(path, contract), args.repeats)
    t_spec = best_of(lambda: compute_spectrogram(rec, contract), args.repeats)
    t_hit = best_of(lambda: cache.get(rec.source_sha256), args.repeats)
    rows = []
    for name in args.configs:
        model = create_tokenizer(name, contract)
        ctx = model.ctx
        tok = Tokenizer(model, device=args.device, batch_size=4)
        t_enc = best_of(lambda: tok.tokenize_spectrogram(spec), args.repeats)
        tokens = tok.tokenize_spectrogram(spec)
        t_cold = best_of(lambda: tok.tokenize_file(path, SpectrogramCache(Path(tempfile.mkdtemp(prefix="clef-bench-")),
                                                                          contract)), args.repeats)
        t_warm = best_of(lambda: tok.tokenize_file(path, cache), args.repeats)
        rows.append((name, ctx, count_parameters(model), count_parameters(PatchDiscriminator(ctx)), t_enc, tokens,
                     t_cold, t_warm))

    print(f"# EDF → tokens, {args.minutes}-minute 19-channel 256 Hz EDF ({spec.n_frames} frames, "
          f"{rows[0][5].n_windows} window(s) of {contract.window_s:g} s)")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), device {args.device}, best of {args.repeats}")
    print()
    print("| config | tokens/window (grid) | codebook | G params | D params | read s | spectrogram s | "
          "encode s | EDF→tokens s | cache hit + encode s | file, empty cache s | file, cached s (ratio) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, ctx, g, d, t_enc, _, t_cold, t_warm in rows:
        q = ctx.config.quantizer
        print(f"| {name} | {ctx.n_tokens} ({ctx.grid[0]}×{ctx.grid[1]}) | {q.n_codes}×{q.dim} | {g / 1e6:.2f} M | "
              f"{d / 1e6:.2f} M | {t_read:.3f} | {t_spec:.3f} | {t_enc:.3f} | {t_read + t_spec + t_enc:.3f} | "
              f"{t_hit + t_enc:.3f} | {t_cold:.3f} | {t_warm:.3f} ({t_cold / t_warm:.1f}×) |")
    print()
    print(f"cache hit (load float16 spectrogram): {t_hit:.3f} s")


if __name__ == "__main__":
    main()

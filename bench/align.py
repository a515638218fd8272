"""Stage-2 alignment on the synthetic hospital: held-out EEG→report and EEG→EHR retrieval.

Usage::

    python bench/align.py [--hospital DIR] [--tokenizer CKPT] [--pretrain-steps 300]
                          [--align-steps 300] [--prepare-only] [--held-out icd:G40,atc:N03]

Defaults: the 200-patient hospital of ``bench/synth.py`` (``bench/out/hospital_200``,
generated when missing) and the 600-step tiny tokenizer of ``bench/tokenizer_quality.py``.
Tokenizes the hospital (resumable), pretrains the tiny session transformer (stage 1),
aligns it (stage 2, ``tiny`` alignment preset) and reports, on patients held out from
alignment (20 % by a salted hash), top-1 and top-10 retrieval accuracy with chance. As a
control, the same evaluation is run on the stage-1 encoder with freshly initialised towers
trained for 0 steps (what the figures would be with no alignment at all).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "align"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hospital", type=Path, default=ROOT / "bench" / "out" / "hospital_200")
    ap.add_argument("--tokenizer", type=Path, default=ROOT / "bench" / "out" / "tokenizer_quality" / "vqgan_tiny_600")
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--align-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prepare-only", action="store_true", help="Tokenize and pretrain, then stop.")
    ap.add_argument("--held-out", default="", help="Comma-separated concepts removed from alignment (e.g. "
                    "icd:G40,icd:G41,atc:N03): the held-out-concept experiment; the checkpoint goes to "
                    "aligned_tiny_<steps>_heldout_<concepts>.")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    os.environ.setdefault("CLEF_HOME", str(OUT / "home"))
    import torch

    from clef.config import SessionConfig
    from clef.pretrain import load_token_table, pretrain
    from tokenizer.checkpoint_io import load_checkpoint
    from tokenizer.presets import load_preset
    from tokenizer.tokens import tokenize_archive

    torch.set_num_threads(args.threads)
    if not (args.hospital / "truth.parquet").is_file():
        from clef.synthetic.hospital import HospitalConfig, synthesize_hospital

        synthesize_hospital(args.hospital, HospitalConfig(n_patients=200, seed=0))
    OUT.mkdir(parents=True, exist_ok=True)
    tokens = OUT / "tokens"
    t0 = time.perf_counter()
    s = tokenize_archive(args.hospital / "edf", args.tokenizer, tokens, cache_dir=OUT / "cache")
    print(f"tokenized {s.tokenized} new / {s.skipped} done sessions in {time.perf_counter() - t0:.0f} s", flush=True)
    stage1 = OUT / f"pretrain_tiny_{args.pretrain_steps}"
    t0 = time.perf_counter()
    r1 = pretrain(tokens, load_preset(SessionConfig, "tiny"), stage1, max_steps=args.pretrain_steps,
                  resume=(stage1 / "meta.json").exists(), trainer_kwargs={"enable_progress_bar": False})
    print(f"stage 1: {r1.steps} steps in {time.perf_counter() - t0:.0f} s, held-out masked-token accuracy "
          f"{r1.val_masked_acc} (most common code {r1.baseline_acc:.3f})", flush=True)
    if args.prepare_only:
        return
    from reports.text_encoder import FrozenTextEncoder, TextEncoderConfig

    from clef.align import AlignConfig, index_archive
    from clef.align.data import prepare_align_data
    from clef.align.module import AlignModule
    from clef.align.train import align, evaluate_retrieval, init_from_stage1
    from reports import SummariserConfig, make_summariser

    held = [c.strip() for c in args.held_out.split(",") if c.strip()]
    cfg = load_preset(AlignConfig, "tiny", {"ehr": {"held_out": held}} if held else None)
    index = index_archive(args.hospital)
    t0 = time.perf_counter()
    suffix = ("_heldout_" + "_".join(c.replace(":", "").lower() for c in held)) if held else ""
    aligned = OUT / f"aligned_tiny_{args.align_steps}{suffix}"
    r2 = align(stage1, index, cfg, aligned, tokens=tokens, max_steps=args.align_steps,
               resume=(aligned / "align" / "meta.json").exists(), trainer_kwargs={"enable_progress_bar": False})
    t_align = time.perf_counter() - t0

    # control: stage-1 encoder with untrained towers, same data and split
    table = load_token_table(tokens)
    data = prepare_align_data(table, index, cfg, summariser=make_summariser(SummariserConfig()),
                              text_encoder=FrozenTextEncoder(TextEncoderConfig(max_length=cfg.report.max_length)))
    ck = load_checkpoint(stage1)
    control = AlignModule(SessionConfig.model_validate(ck.config), cfg, ck.contract, text_dim=data.text_dim,
                          vocab_size=len(data.vocab), first_code_id=data.vocab.first_code_id)
    init_from_stage1(control, stage1)
    r0 = evaluate_retrieval(control, data, val=True)

    st = r2.stats
    print(f"\n== stage-2 alignment 'tiny', {args.align_steps} steps in {t_align:.0f} s, from a {args.pretrain_steps}-step "
          f"stage-1 checkpoint; {st['sessions']} sessions of {st['patients']} patients ({st['train_sessions']} train, "
          f"{st['val_sessions']} held-out), {st['with_report']} with a report, {st['with_ehr']} with an EHR, "
          f"EHR vocabulary {st['vocab_size']}")
    print(f"{'held-out retrieval':24s} {'n':>4s} {'chance@10':>10s} {'top-10':>8s} {'top-1':>8s} "
          f"{'untrained top-10':>17s}")
    for name in ("report", "ehr"):
        ret = r2.retrieval
        print(f"{'EEG → ' + name:24s} {int(ret[name + '_n']):4d} {ret[name + '_chance10']:10.3f} "
              f"{ret[name + '_top10']:8.3f} {ret[name + '_top1']:8.3f} {r0.get(name + '_top10', float('nan')):17.3f}")


if __name__ == "__main__":
    main()

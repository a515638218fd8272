"""Smoke run of the information-loss ladder's path on a test-size hospital: it runs, it is not a measurement.

Usage::

    python bench/ladder_smoke.py [--out bench/out/ladder_smoke]

The hospital of the test suite (80 patients, sessions of 2-4 minutes, seed 7), the test
pipeline's tiny tokenizer (30 steps) and stage 1 (150 steps, full 1280 s context), a
second stage 1 with an 80 s context (``model: {context_s: 80}``, 150 steps, same tokens),
a suite with the quick demo's task sizes (:data:`benchmark_tasks.demo.QUICK_SUITE_CONFIG`),
then ``clef benchmark run`` with both checkpoints, the signal band-power baseline and the
four tokenizer rungs (``--baseline tokenizer-rungs=...``), logistic probe. Resumable: what
``OUT`` holds is reused. Tasks of a handful of positives: the AUROCs show that the ladder
runs end to end, not where signal is lost (that is the study run's job, issue 16 item 7).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SMALL = {"model": {"dim": 64, "depth": 2, "heads": 4}, "train": {"batch_size": 8},
         "optim": {"lr": 2e-3, "warmup_steps": 10}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ladder_smoke")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    import torch

    torch.set_num_threads(1)
    from benchmark_tasks.cohort import build_cohort
    from benchmark_tasks.demo import QUICK_SUITE_CONFIG
    from benchmark_tasks.suite import generate_suite
    from clef.config import SessionConfig
    from clef.pretrain import pretrain
    from clef.synthetic.hospital import HospitalConfig, synthesize_hospital
    from clef.workflow import train_all
    from tokenizer.presets import load_preset

    out = args.out
    t0 = time.perf_counter()
    hosp = out / "hospital"
    if not (hosp / "truth.parquet").is_file():
        synthesize_hospital(hosp, 80, seed=7, config=HospitalConfig(minutes_range=(2.0, 4.0)), workers=1,
                            overwrite=True)
    r = train_all(hosp / "edf", out / "pipe", tokenizer_steps=30, session_config=load_preset(SessionConfig, "tiny", SMALL),
                  pretrain_steps=150, cache_dir=out / "cache")
    short = load_preset(SessionConfig, "tiny", {**SMALL, "model": {**SMALL["model"], "context_s": 80}})
    rs = pretrain(r.tokens, short, out / "short", max_steps=150, resume=(out / "short" / "meta.json").is_file(),
                  trainer_kwargs={"enable_progress_bar": False})
    if r.pretrain.val_masked_acc is not None and rs.val_masked_acc is not None:  # None when resumed, not trained
        print(f"stage 1 full: held-out masked accuracy {r.pretrain.val_masked_acc:.3f} (most common code "
              f"{r.pretrain.baseline_acc:.3f}); 80 s: {rs.val_masked_acc:.3f} (on 80 s crops)")
    generate_suite(hosp, out / "suite.yaml", config=QUICK_SUITE_CONFIG, cohort=build_cohort(hosp))
    print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)
    cmd = [sys.executable, "-m", "clef", "benchmark", "run", "--suite", str(out / "suite.yaml"), "--out",
           str(out / "res"), "--checkpoint", f"stage1={out / 'pipe' / 'pretrain'}", "--checkpoint",
           f"stage1_80s={out / 'short'}", "--no-random-encoder", "--bandpower", "--baseline",
           f"tokenizer-rungs={out / 'pipe' / 'pretrain'}", "--spectrogram-cache", str(out / "cache"), "--probe",
           "logistic", "--primary-probe", "logistic", "--seeds", "1", "--bootstrap", "200", "--no-plots"]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()

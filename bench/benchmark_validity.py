"""Validity of the phenotype probe benchmark on the synthetic hospital, against its hidden truth.

Usage::

    python bench/benchmark_validity.py [--hospital DIR] [--checkpoint NAME=PATH ...] [--out DIR]
                                       [--min-positives 15] [--seeds 3] [--workers 2] [--no-oracle]

Generates a suite from the hospital (EHR + reports only, as any archive), runs the
benchmark with the band-power baseline and, when checkpoints are given, their embeddings
(plus a randomly initialised encoder built like the first one) and the oracle (the hidden
truth as an embedding, :mod:`benchmark_tasks.baselines.oracle`: each task's ceiling), and
classes every task from the hospital's truth (:mod:`benchmark_tasks.truth`, the library's
one implementation, also behind ``clef benchmark run --oracle``):

* **planted**: every code the task matches belongs to a condition (or drug class) that
  the simulator gives an EEG signature, or the task is an EEG finding the simulator plants;
* **negative control**: every matching condition is one of the population's negative
  controls (hypertension, hyperlipidemia, type 2 diabetes, hypothyroidism, depression:
  no EEG signature), or every matching drug is prescribed only for them;
* **other**: the rest (signature-less conditions that are not controls, mixed groups).

Expected: planted tasks reach high AUROC, negative controls stay near 0.5 (mean and
spread reported, with how many 95% intervals contain 0.5); every model's headroom captured,
``(AUROC - 0.5) / (oracle - 0.5)``, is averaged over the tasks where the oracle clears
chance by more than 0.05 (undefined elsewhere, see ``benchmark_tasks.metrics.headroom``).
The truth's planted-finding rate in positives minus controls (``Δsig``) is printed per
task: a negative control with a large Δsig is confounded by comorbidity in the
population, not leaking.

It also checks that a deliberately leaked split (one session of a patient moved to the
other split) is refused. Output: a table on stdout, ``OUT/validity.md``, ``OUT/results/``
(the benchmark's own report and plots). Default checkpoints: none (band power only); the
lead's runs pass ``--checkpoint stage1=bench/out/align/pretrain_tiny_300 --checkpoint
aligned=bench/out/align/aligned_tiny_300``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def signature_delta(suite, truth) -> dict[str, float]:
    """Per task: share of positives with any planted EEG finding minus that share in controls (from the truth)."""
    import polars as pl

    planted = truth.select("session_id", (pl.col("finding_names").list.len() > 0).alias("sig"))
    j = suite.labels.join(planted, on="session_id", how="left")
    out = {}
    for (task,), g in j.group_by("task"):
        pos = g.filter(pl.col("label") == 1)["sig"].mean()
        neg = g.filter(pl.col("label") == 0)["sig"].mean()
        out[task] = float((pos or 0.0) - (neg or 0.0))
    return out


def leak_check(suite_path: Path, out: Path) -> str:
    """Copy the suite, move one session of a multi-session patient to the other split, and try to run."""
    import numpy as np
    import polars as pl

    from benchmark_tasks.embeddings import EmbeddingSet
    from benchmark_tasks.run import run_benchmark
    from benchmark_tasks.splits import SplitLeakError
    from benchmark_tasks.suite import load_suite

    d = out / "leaked"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    shutil.copy(suite_path, d / suite_path.name)
    shutil.copytree(suite_path.parent / suite_path.stem, d / suite_path.stem)
    s = load_suite(d / suite_path.name)
    lab = s.labels
    pid = lab.group_by("patient_id").agg(pl.col("session_id").n_unique().alias("n")).filter(pl.col("n") > 1)[
        "patient_id"][0]
    sid = lab.filter(pl.col("patient_id") == pid)["session_id"][0]
    other = "test" if lab.filter(pl.col("session_id") == sid)["split"][0] == "train" else "train"
    lab.with_columns(pl.when(pl.col("session_id") == sid).then(pl.lit(other)).otherwise("split").alias("split")
                     ).write_parquet(s.file("labels"))
    ids = s.cohort["session_id"].to_list()
    try:
        run_benchmark(d / suite_path.name, [EmbeddingSet("x", ids, np.zeros((len(ids), 2)))], d / "results")
    except SplitLeakError as exc:
        return f"refused: {exc}"
    return "NOT REFUSED (bug)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hospital", type=Path, default=ROOT / "bench" / "out" / "hospital_200")
    ap.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH (repeatable).")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "benchmark_validity")
    ap.add_argument("--min-positives", type=int, default=15)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--spectrogram-cache", type=Path, default=ROOT / "bench" / "out" / "align" / "cache")
    ap.add_argument("--no-random-encoder", action="store_true")
    ap.add_argument("--no-oracle", action="store_true", help="Leave the oracle (hidden-truth ceiling) out.")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import polars as pl

    from benchmark_tasks.config import GeneratorConfig, ProbeConfig, SuiteConfig
    from benchmark_tasks.models import ModelSources, collect_models
    from benchmark_tasks.run import run_benchmark
    from benchmark_tasks.suite import generate_suite, load_suite
    from benchmark_tasks.baselines.oracle import oracle_embeddings
    from benchmark_tasks.truth import hospital_truth, task_classes

    if not (args.hospital / "truth.parquet").is_file():
        sys.exit(f"{args.hospital}: no synthetic hospital (truth.parquet); run bench/synth.py or 'clef synth'")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    suite_path = args.out / "suite.yaml"
    cfg = SuiteConfig(generator=GeneratorConfig(min_positives=args.min_positives))
    generate_suite(args.hospital, suite_path, name="validity", config=cfg, progress=True)
    suite = load_suite(suite_path)
    t_gen = time.perf_counter() - t0
    leak = leak_check(suite_path, args.out)
    print(f"leaked split: {leak}")

    checkpoints = []
    for spec in args.checkpoint:
        name, sep, path = spec.partition("=")
        if not sep:
            sys.exit(f"--checkpoint {spec!r}: expected NAME=PATH")
        if not Path(path).is_dir():
            sys.exit(f"--checkpoint {spec!r}: {path} does not exist")
        checkpoints.append((name, Path(path)))
    sources = ModelSources(checkpoints=checkpoints, bandpower=True,
                           random_encoder=bool(checkpoints) and not args.no_random_encoder)
    t1 = time.perf_counter()
    models = collect_models(suite, sources, archive=args.hospital, cache_dir=args.out / "cache",
                            spectrogram_cache=args.spectrogram_cache if args.spectrogram_cache.is_dir() else None,
                            device=args.device, workers=args.workers, progress=True)
    if not args.no_oracle:
        models.append(oracle_embeddings(args.hospital, suite.labels["session_id"].unique().to_list()))
    t_embed = time.perf_counter() - t1
    probe_cfg = ProbeConfig(seeds=args.seeds, n_bootstrap=args.bootstrap)
    classes = task_classes(suite.tasks)
    t2 = time.perf_counter()
    res = run_benchmark(suite, models, args.out / "results", config=probe_cfg, progress=True, task_classes=classes)
    t_probe = time.perf_counter() - t2

    truth = hospital_truth(args.hospital)
    delta = signature_delta(suite, truth)
    names = [m.name for m in models]
    lines = [f"# Benchmark validity on {args.hospital.name} ({suite.spec.source.n_sessions} sessions, "
             f"{suite.spec.source.n_patients} patients)", "",
             f"Suite: {len(suite.tasks)} tasks (min {args.min_positives} matched positives, 1:2 PS matching, "
             f"patient split 70/30); probes: {probe_cfg.primary} (primary) and logistic, {args.seeds} seeds, "
             f"{args.bootstrap} patient-bootstrap resamples. Models: {', '.join(names)}.", "",
             f"Deliberately leaked split: {leak}", ""]
    for probe in (probe_cfg.primary, "logistic"):
        r = res.results.filter(pl.col("probe") == probe)
        lines += [f"## Summary ({probe} probe)", "",
                  "| model | class | tasks | mean AUROC | sd | min | max | 95% CIs containing 0.5 | mean headroom "
                  "(tasks with a ceiling) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m in names:
            for cls in ("planted", "negative", "other"):
                sub = r.filter((pl.col("model") == m) & pl.col("task").is_in([k for k, v in classes.items()
                                                                               if v == cls]))
                if sub.height == 0:
                    continue
                a = sub["auroc"].to_numpy()
                cover = int(((sub["ci_low"] <= 0.5) & (sub["ci_high"] >= 0.5)).sum())
                sd = a.std(ddof=1) if len(a) > 1 else 0.0
                hr = sub["headroom"].drop_nulls()
                hr_text = f"{hr.mean():.3f} ({hr.len()})" if hr.len() else "– (0)"
                lines.append(f"| {m} | {cls} | {sub.height} | {a.mean():.3f} | {sd:.3f} "
                             f"| {a.min():.3f} | {a.max():.3f} | {cover}/{sub.height} | {hr_text} |")
        lines.append("")
    r = res.results.filter(pl.col("probe") == probe_cfg.primary)
    wide = {(x["task"], x["model"]): x for x in r.iter_rows(named=True)}
    lines += [f"## Tasks ({probe_cfg.primary} probe; AUROC [95% CI])", "",
              "| task | class | pos/ctl | Δsig | " + " | ".join(names) + " |",
              "|---|---|---|---|" + "---|" * len(names)]
    order = {"planted": 0, "negative": 1, "other": 2}
    for t in sorted(suite.tasks, key=lambda t: (order[classes[t.name]], t.category, t.name)):
        cells = []
        for m in names:
            x = wide.get((t.name, m))
            cells.append(f"{x['auroc']:.2f} [{x['ci_low']:.2f}, {x['ci_high']:.2f}]" if x else "–")
        lines.append(f"| {t.name} | {classes[t.name]} | {t.stats.n_positive}/{t.stats.n_control} | "
                     f"{delta.get(t.name, float('nan')):+.2f} | " + " | ".join(cells) + " |")
    comp = res.comparisons.filter(pl.col("probe") == probe_cfg.primary)
    if comp.height:
        lines += ["", f"## Paired differences ({probe_cfg.primary}; A − B, bootstrap over tasks)", "",
                  "| A | B | category | tasks | mean diff [95% CI] | A better / B better |",
                  "|---|---|---|---|---|---|"]
        for x in comp.iter_rows(named=True):
            lines.append(f"| {x['model_a']} | {x['model_b']} | {x['category']} | {x['n_tasks']} | "
                         f"{x['mean_diff']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}] | "
                         f"{x['wins_a']} / {x['wins_b']} |")
    held = res.heldout
    if held.height:
        lines += ["", f"## Held-out concepts ({probe_cfg.primary}; code tasks by their status for the model whose "
                  "alignment did not see them)", "",
                  "| held-out model | held out of it | task status | tasks | model | mean AUROC [95% CI] |",
                  "|---|---|---|---|---|---|"]
        concepts = {m.name: ", ".join(m.held_out) for m in models if m.held_out}
        for x in held.iter_rows(named=True):
            lines.append(f"| {x['heldout_model']} | {concepts.get(x['heldout_model'], '')} | {x['status']} | "
                         f"{x['n_tasks']} | {x['model']} | {x['mean_auroc']:.3f} [{x['ci_low']:.3f}, "
                         f"{x['ci_high']:.3f}] |")
        status = r.filter(pl.col("concept_status") == "held_out")["task"].unique().sort().to_list()
        if status:
            lines += ["", "Held-out tasks: " + ", ".join(status) + "."]
    lines += ["", f"Time: suite {t_gen:.0f} s, embeddings/features {t_embed:.0f} s, probes {t_probe:.0f} s "
              f"({os.cpu_count()} cores). Full report: {args.out / 'results' / 'report.md'}.", ""]
    text = "\n".join(lines)
    (args.out / "validity.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

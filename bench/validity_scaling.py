"""Would more data or more compute help? Planted-task AUROC against alignment patients and steps.

Usage::

    python bench/validity_scaling.py --study bench/out/study_200_legacy
        [--fractions 0.25,0.5,1.0] [--steps 100,300,900] [--threads 2]

Runs on a finished :mod:`bench.validity_study` folder (``--study``) and reuses its
hospital, stage-1 checkpoint, tokens, spectrogram cache and suite, so every point is
probed on the same test patients with the same protocol as the study's ladder.

Points
    patients  stage 2 (the study's align config) on nested subsets of the platform
              split's training patients (``--fractions``, at the largest ``--steps``
              that is at most the study's ``--align-steps``): a patient enters the
              subsets in the order of ``sha256("clef-scaling|" + patient_id)``, so the
              25 % subset lies inside the 50 % one. Sessions of the other patients stay
              in the archive index as the held-out retrieval set, as in the study.
    steps     stage 2 on all training patients for each of ``--steps``.
The study's own ``aligned`` checkpoint is reused for (1.0, its steps). Each point
trains into ``STUDY/scaling/f<fraction>_s<steps>`` and resumes; the probe results go to
``STUDY/scaling/results`` and the table to ``STUDY/scaling/scaling.md`` (planted mean
AUROC with its task and patient-resample intervals, headroom, and band power on the same
suite for reference).

Figures go in ``bench/RESULTS.md`` with this command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SALT = "clef-scaling"


def _rank(patient_id: str) -> str:
    return hashlib.sha256(f"{SALT}|{patient_id}".encode()).hexdigest()


def subset_index(hospital: Path, fraction: float) -> tuple[Any, int]:
    """The hospital's archive index with only ``fraction`` of the split's training patients kept."""
    from dataclasses import replace

    from clef.align.archive import index_archive
    from clef.patients import PatientSplit

    split = PatientSplit()
    index = index_archive(hospital)
    train = sorted({s.patient_id for s in index.sessions.values() if s.patient_id and split.of(s.patient_id) == "train"},
                   key=_rank)
    keep = set(train[: max(1, round(fraction * len(train)))])
    sessions = {k: s for k, s in index.sessions.items()
                if s.patient_id and (split.of(s.patient_id) != "train" or s.patient_id in keep)}
    return replace(index, sessions=sessions), len(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, required=True, help="a finished bench/validity_study.py --out folder")
    ap.add_argument("--fractions", default="0.25,0.5,1.0")
    ap.add_argument("--steps", default="100,300,900")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    fractions = sorted({float(f) for f in args.fractions.split(",")})
    steps = sorted({int(s) for s in args.steps.split(",")})
    if not all(0 < f <= 1 for f in fractions) or not all(s > 0 for s in steps):
        ap.error("--fractions must be in (0, 1] and --steps positive")
    study = args.study
    state = json.loads((study / "study.json").read_text())
    if not state["stages"].get("suite", {}).get("done"):
        ap.error(f"{study} has no finished suite stage: run bench/validity_study.py first")
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    os.environ.setdefault("CLEF_HOME", str(study / "home"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("lightning", "lightning.pytorch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import polars as pl
    import torch

    from validity_study import auroc_cell  # this folder: the ladder's formatting
    from benchmark_tasks.baselines.oracle import oracle_embeddings
    from benchmark_tasks.config import ProbeConfig
    from benchmark_tasks.leakage import audit_checkpoints
    from benchmark_tasks.models import ModelSources, collect_models
    from benchmark_tasks.run import run_benchmark
    from benchmark_tasks.suite import load_suite
    from benchmark_tasks.truth import task_classes
    from clef.align import AlignConfig
    from clef.align.train import align
    from tokenizer.presets import load_preset

    torch.set_num_threads(args.threads)
    a = state["args"]
    hospital, out = study / "hospital", study / "scaling"
    out.mkdir(exist_ok=True)
    log_file = out / "points.json"
    points: dict[str, Any] = json.loads(log_file.read_text()) if log_file.is_file() else {}
    top = max([s for s in steps if s <= a["align_steps"]] or steps[:1])
    grid = [(f, top) for f in fractions] + [(1.0, s) for s in steps if s != top]
    checkpoints = []
    for frac, n_steps in grid:
        name = f"f{frac:g}_s{n_steps}"
        if frac == 1.0 and n_steps == a["align_steps"]:
            ck = study / "aligned"
        else:
            ck = out / name
            if not points.get(name, {}).get("done"):
                index, n_pat = subset_index(hospital, frac)
                t0 = time.perf_counter()
                r = align(study / "stage1", index, load_preset(AlignConfig, a["align_config"]), ck,
                          tokens=study / "tokens", max_steps=n_steps, resume=(ck / "align" / "meta.json").is_file(),
                          cache_dir=study / "cache", trainer_kwargs={"enable_progress_bar": False})
                points[name] = {"done": True, "fraction": frac, "steps": r.steps, "train_patients": n_pat,
                                "wall_s": round(time.perf_counter() - t0, 1), "retrieval": r.retrieval}
                log_file.write_text(json.dumps(points, indent=1))
        if name not in points:
            points[name] = {"done": True, "fraction": frac, "steps": n_steps,
                            "train_patients": subset_index(hospital, frac)[1], "reused": "the study's aligned"}
        checkpoints.append((name, ck))
    log_file.write_text(json.dumps(points, indent=1))

    suite = load_suite(study / "suite" / "suite.yaml")
    suite.verify()
    audit = audit_checkpoints(suite, checkpoints, archive=hospital)  # no point may have seen a test patient
    models = collect_models(suite, ModelSources(checkpoints=checkpoints, bandpower=True, random_encoder=False),
                            archive=hospital, cache_dir=study / "bench_cache", spectrogram_cache=study / "cache",
                            workers=args.threads, progress=True)
    models = [*models, oracle_embeddings(hospital, suite.labels["session_id"].unique().to_list())]
    res = run_benchmark(suite, models, out / "results", config=ProbeConfig(n_bootstrap=a["bootstrap"]),
                        task_classes=task_classes(suite.tasks), stage_audit=audit, progress=True, plots=False)
    s = res.summary
    probe = "mlp" if "mlp" in s["probe"].to_list() else s["probe"][0]
    s = s.filter((pl.col("probe") == probe) & (pl.col("category") == "planted"))
    lines = [f"# Scaling: {study}", "", f"Probe: {probe}; planted tasks; stage 1 fixed (the study's).", "",
             "| point | training patients | align steps | planted mean AUROC [95% CI] · patients | headroom (mean) |",
             "|---|---|---|---|---|"]
    for name, _ in [*checkpoints, ("bandpower", None), ("oracle", None)]:
        row = s.filter(pl.col("model") == name)
        if not row.height:
            continue
        x = row.row(0, named=True)
        p = points.get(name, {})
        hr = "n/a" if x.get("mean_headroom") is None else f"{x['mean_headroom']:.2f}"
        lines.append(f"| {name} | {p.get('train_patients', '—')} | {p.get('steps', '—')} | {auroc_cell(x)} | {hr} |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

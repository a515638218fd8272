"""The validity study (issue 16), one resumable command: hospital → tokenizer → stage 1 → stage 2 → suite → ladder → card.

Usage::

    python bench/validity_study.py --out bench/out/study_200 --patients 200 [--seed 0]
        [--tokenizer-config tiny --tokenizer-steps 600] [--pretrain-steps 300] [--align-steps 300]
        [--short-context-s 80] [--held-out icd:G40,icd:G41,atc:N03] [--transductive] [--leaky-control]
        [--threads 2] [--stop-after STAGE] [--redo STAGE] [--hospital DIR] [--tokenizer CKPT]

Every stage writes into ``--out`` and is skipped when its output is complete; an
interrupted stage resumes (tokenization by file, training from its last checkpoint), so
the command can be run again after a crash, a reboot or the end of a working session, and
picks up where it stopped. ``OUT/study.json`` records each stage's wall and CPU time; the
benchmark report (``OUT/results/report.md``, with the validity card) and the ladder
(``OUT/ladder.md``) are written at the end.

Stages and what they train on
    hospital    ``clef synth`` of ``--patients`` patients (``--seed``), or ``--hospital``: another
                study's hospital, linked (same suite and test patients, so rungs compare).
    tokenizer   VQGAN (``--tokenizer-config``, ``--tokenizer-steps``) on the train/val
                patients' sessions only (a folder of links), unless ``--transductive``.
                ``--tokenizer CKPT``: a checkpoint trained elsewhere, used as is; the
                stage records how many of this hospital's (test) sessions it saw, by file content.
    tokens      every session tokenized (inference only).
    stage1      masked-token pretraining (``--pretrain-steps``) without the test patients'
                sessions unless ``--transductive``.
    aligned     stage 2 with the platform's patient split (train patients only).
    aligned_heldout   the same without the ``--held-out`` concepts.
    aligned_leaky     ``--leaky-control`` only: stage 2 under the old, independent
                20 % hold-out (salt ``clef-align-val``), to measure what the leak was
                worth. It is probed next to the others with its overlap in the audit (the
                CLI would refuse it) and never counted as a result.
    stage1_short  stage 1 with a ``--short-context-s`` context (the paper's context
                ablation); run after stage 2 so that a study cut short has the headline rungs.
    suite       ``clef tasks generate`` defaults on the hospital.
    benchmark   every rung of the ladder, probed by the same protocol, with the oracle
                ceiling, truth classes, the stage-overlap audit and the validity card.

Figures from a run go in ``bench/RESULTS.md`` with this command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

STAGES = ("hospital", "tokenizer", "tokens", "stage1", "aligned", "aligned_heldout", "aligned_leaky",
          "stage1_short", "suite", "benchmark")
LEAKY_SPLIT = {"salt": "clef-align-val", "train": 0.8, "val": 0.0, "test": 0.2}


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Study:
    """Stage bookkeeping in ``OUT/study.json`` (done flags, wall and CPU seconds, facts)."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out = out
        self.file = out / "study.json"
        self.state: dict[str, Any] = json.loads(self.file.read_text()) if self.file.is_file() else {}
        self.state.setdefault("stages", {})
        self.state["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        self._save()

    def _save(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.replace(self.file)

    def done(self, stage: str) -> bool:
        return bool(self.state["stages"].get(stage, {}).get("done"))

    def run(self, stage: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        if self.done(stage):
            print(f"[{stage}] done before ({self.state['stages'][stage].get('wall_s', 0):.0f} s)", flush=True)
            return
        print(f"[{stage}] ...", flush=True)
        t0, c0 = time.perf_counter(), _cpu_s()
        prev = self.state["stages"].setdefault(stage, {})
        try:
            facts = fn() or {}
        except BaseException:
            # an interrupted try (crash, Ctrl-C, SIGTERM) keeps its time for the resumed stage;
            # a SIGKILL cannot be caught: that try's time is lost and the stage's figure is low
            prev["partial_wall_s"] = prev.get("partial_wall_s", 0) + time.perf_counter() - t0
            prev["partial_cpu_s"] = prev.get("partial_cpu_s", 0) + _cpu_s() - c0
            prev["interrupted_tries"] = prev.get("interrupted_tries", 0) + 1
            self._save()
            raise
        # a resumed stage adds its time to what the interrupted tries had recorded
        rec = {"done": True, "wall_s": prev.get("partial_wall_s", 0) + time.perf_counter() - t0,
               "cpu_s": prev.get("partial_cpu_s", 0) + _cpu_s() - c0,
               "interrupted_tries": prev.get("interrupted_tries", 0), **facts}
        self.state["stages"][stage] = rec
        self._save()
        print(f"[{stage}] {rec['wall_s']:.0f} s wall, {rec['cpu_s']:.0f} s CPU {facts or ''}", flush=True)


def _patients(hospital: Path) -> dict[str, str | None]:
    """Archive path (relative to the hospital root) → patient id."""
    from clef.align.archive import index_archive

    return {s.path: s.patient_id for s in index_archive(hospital).sessions.values() if s.path}


def _link_archive(hospital: Path, dest: Path, keep: Callable[[str | None], bool]) -> int:
    """A folder of links to the sessions whose patient ``keep`` accepts (the tokenizer's training archive)."""
    n = 0
    for rel, pid in sorted(_patients(hospital).items()):
        if not keep(pid):
            continue
        link = dest / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((hospital / rel).resolve())
        n += 1
    return n


def _link_reused(given: Path, dest: Path, marker: str, option: str, what: str) -> Path:
    """Link ``dest`` to the folder another run wrote (``given``), checked by a file it must hold."""
    source = given.resolve()
    if not (source / marker).is_file():
        raise SystemExit(f"{option} {given}: no {marker} (not {what})")
    if dest.is_symlink():
        dest.unlink()
    dest.symlink_to(source, target_is_directory=True)
    return source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "validity_study")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-config", default="tiny")
    ap.add_argument("--tokenizer-steps", type=int, default=600)
    ap.add_argument("--session-config", default="tiny")
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--align-config", default="tiny")
    ap.add_argument("--align-steps", type=int, default=300)
    ap.add_argument("--short-context-s", type=float, default=80.0, help="0: no short-context rung")
    ap.add_argument("--held-out", default="icd:G40,icd:G41,atc:N03", help="'' for no held-out-concept rung")
    ap.add_argument("--transductive", action="store_true", help="Tokenizer and stage 1 also train on the test "
                    "patients' sessions (self-supervised; reported as transductive).")
    ap.add_argument("--leaky-control", action="store_true", help="Also align under the old independent hold-out "
                    "(the leak this study measures).")
    ap.add_argument("--min-positives", type=int, default=20, help="Suite generation (the CLI's default)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stop-after", choices=STAGES, default=None)
    ap.add_argument("--redo", choices=STAGES, action="append", default=[],
                    help="Run this stage again although it is done (repeatable): e.g. the benchmark once a "
                         "rung it lacked (stage1_short) has trained; embeddings already probed are reused")
    ap.add_argument("--hospital", type=Path, default=None, help="Reuse a hospital another study wrote (linked, "
                    "not copied) instead of synthesizing one: two studies on one hospital share its suite and "
                    "test patients, so their rungs can be compared.")
    ap.add_argument("--tokenizer", type=Path, default=None, help="A tokenizer checkpoint trained elsewhere (for "
                    "example on a separate synthetic hospital), used as is instead of training one; recorded in "
                    "study.json. Inductive only if it never saw this hospital's sessions.")
    args = ap.parse_args()
    # a session's end or `kill` sends SIGTERM: leave through the stage's bookkeeping
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    os.environ.setdefault("CLEF_HOME", str(args.out / "home"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("lightning", "lightning.pytorch", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    study = Study(out, args)
    for stage in args.redo:
        study.state["stages"].pop(stage, None)
    hospital, cache = out / "hospital", out / "cache"
    tok_ck, tokens = out / "tokenizer", out / "tokens"
    held = [c.strip() for c in args.held_out.split(",") if c.strip()]
    trainer = {"enable_progress_bar": False}

    def stop(stage: str) -> None:
        if args.stop_after == stage:
            print(f"stopping after {stage} (--stop-after)")
            sys.exit(0)

    def hospital_stage() -> dict[str, Any]:
        from clef.synthetic.hospital import synthesize_hospital

        if args.hospital is not None:
            source = _link_reused(args.hospital, hospital, "sessions.csv", "--hospital", "a synthetic hospital")
            sessions = (source / "sessions.csv").read_text().count("\n") - 1
            return {"reused": str(source), "sessions": sessions}
        s = synthesize_hospital(hospital, args.patients, seed=args.seed, workers=args.threads, overwrite=True)
        return {"patients": args.patients, "sessions": s.n_sessions, "hours": round(s.hours_of_eeg, 1)}

    study.run("hospital", hospital_stage)
    stop("hospital")

    from clef.patients import PatientSplit

    split = PatientSplit()

    def tokenizer_stage() -> dict[str, Any]:
        from tokenizer.presets import load_preset
        from tokenizer.vqgan.config import VQGANConfig
        from tokenizer.vqgan.training import train_tokenizer

        if args.tokenizer is not None:
            source = _link_reused(args.tokenizer, tok_ck, "meta.json", "--tokenizer", "a tokenizer checkpoint")
            from tokenizer.hashing import file_sha256

            meta = json.loads((source / "meta.json").read_text())
            seen = set(meta.get("trained_on", {}).get("sessions", {}).get("keys", []))
            if not seen:
                raise SystemExit(f"--tokenizer {args.tokenizer}: meta.json does not record the sessions it trained on")
            # by content, not by id: another synthetic hospital reuses the ids P000001...
            patients = _patients(hospital)
            ours = {rel: file_sha256(hospital / rel)[:16] for rel in patients}
            test = {rel for rel, pid in patients.items() if pid is not None and split.of(pid) == "test"}
            overlap = sorted(rel for rel, key in ours.items() if key in seen)
            keep = ("config_name", "step", "grid", "n_tokens", "training_data_digest")
            return {"reused": str(source), **{k: meta.get(k) for k in keep}, "train_sessions": len(seen),
                    "sessions_of_this_hospital_seen": len(overlap),
                    "test_sessions_seen": len(set(overlap) & test), "inductive": not (set(overlap) & test)}
        src = hospital / "edf"
        n = None
        if not args.transductive:
            src = out / "tokenizer_archive"
            n = _link_archive(hospital, src, lambda pid: pid is not None and split.of(pid) != "test")
        train_tokenizer(src, load_preset(VQGANConfig, args.tokenizer_config), tok_ck, cache_dir=cache,
                        max_steps=args.tokenizer_steps, resume=(tok_ck / "meta.json").is_file(), **trainer)
        return {"config": args.tokenizer_config, "steps": args.tokenizer_steps, "train_sessions": n,
                "inductive": not args.transductive}

    study.run("tokenizer", tokenizer_stage)
    stop("tokenizer")

    def tokens_stage() -> dict[str, Any]:
        from tokenizer.tokens import tokenize_archive

        s = tokenize_archive(hospital / "edf", tok_ck, tokens, cache_dir=cache)
        return {"tokenized": s.tokenized, "skipped": s.skipped}

    study.run("tokens", tokens_stage)
    stop("tokens")

    def stage1(name: str, overrides: dict[str, Any] | None) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            from clef.config import SessionConfig
            from clef.pretrain import pretrain
            from tokenizer.presets import load_preset

            ck = out / name
            cfg = load_preset(SessionConfig, args.session_config, overrides)
            r = pretrain(tokens, cfg, ck, max_steps=args.pretrain_steps, resume=(ck / "meta.json").is_file(), archive=hospital,
                         exclude_test_patients=not args.transductive, trainer_kwargs=trainer)
            return {"steps": r.steps, "val_masked_acc": r.val_masked_acc, "most_common_code": r.baseline_acc,
                    "parameters": r.parameters}
        return run

    study.run("stage1", stage1("stage1", None))
    stop("stage1")

    def stage2(name: str, overrides: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            from clef.align import AlignConfig
            from clef.align.train import align
            from tokenizer.presets import load_preset

            ck = out / name
            r = align(out / "stage1", hospital, load_preset(AlignConfig, args.align_config, overrides), ck, tokens=tokens,
                      max_steps=args.align_steps, resume=(ck / "align" / "meta.json").is_file(),
                      cache_dir=cache, trainer_kwargs=trainer)
            return {"steps": r.steps, "retrieval": r.retrieval, "data": r.stats}
        return run

    study.run("aligned", stage2("aligned", {}))
    if held:
        study.run("aligned_heldout", stage2("aligned_heldout", {"ehr": {"held_out": held}}))
    if args.leaky_control:
        study.run("aligned_leaky", stage2("aligned_leaky", {"split": LEAKY_SPLIT}))
    stop("aligned")
    # the context ablation runs after the headline rungs: a study cut short still has stage 2
    if args.short_context_s:
        study.run("stage1_short", stage1("stage1_short", {"model": {"context_s": args.short_context_s}}))
    stop("stage1_short")

    suite_yaml = out / "suite" / "suite.yaml"

    def suite_stage() -> dict[str, Any]:
        from benchmark_tasks.config import GeneratorConfig, SuiteConfig
        from benchmark_tasks.suite import generate_suite

        cfg = SuiteConfig(generator=GeneratorConfig(min_positives=args.min_positives))
        s = generate_suite(hospital, suite_yaml, name=f"validity_{args.patients}", config=cfg, progress=False)
        return {"tasks": len(s.tasks), "sessions": s.spec.source.n_sessions, "patients": s.spec.source.n_patients}

    study.run("suite", suite_stage)
    stop("suite")
    study.run("benchmark", lambda: benchmark(args, out, hospital, suite_yaml, cache, held))
    write_ladder(out, study.state)


def benchmark(args: argparse.Namespace, out: Path, hospital: Path, suite_yaml: Path, cache: Path,
              held: list[str]) -> dict[str, Any]:
    """Probe every rung with the same protocol; the audit rows go into the validity card."""
    from benchmark_tasks.baselines.oracle import oracle_embeddings
    from benchmark_tasks.baselines.tokenizer_rungs import RUNGS
    from benchmark_tasks.config import ProbeConfig
    from benchmark_tasks.leakage import StageLeakError, audit_checkpoint, audit_checkpoints
    from benchmark_tasks.models import ModelSources, collect_models
    from benchmark_tasks.run import run_benchmark
    from benchmark_tasks.suite import load_suite
    from benchmark_tasks.truth import task_classes

    suite = load_suite(suite_yaml)
    suite.verify()
    fair = [("stage1", out / "stage1")]
    if args.short_context_s:
        fair.append(("stage1_short", out / "stage1_short"))
    fair.append(("aligned", out / "aligned"))
    if held:
        fair.append(("aligned_heldout", out / "aligned_heldout"))
    audit = audit_checkpoints(suite, fair, archive=hospital)  # refuses a leak, as the CLI does
    checkpoints = list(fair)
    if args.leaky_control:
        try:
            row = audit_checkpoint("aligned_leaky", out / "aligned_leaky", suite, archive=hospital)
            row["note"] = "LEAKY control: the old hold-out happened to spare every test patient"
        except StageLeakError as exc:
            row = {"model": "aligned_leaky", "stage": 2, "note": f"LEAKY control (not a result): {exc}"}
        audit.append(row)
        checkpoints.append(("aligned_leaky", out / "aligned_leaky"))
    sources = ModelSources(checkpoints=checkpoints, bandpower=True, random_encoder=True,
                           tokenizer_rungs=[(RUNGS, out / "tokenizer")])
    models = collect_models(suite, sources, archive=hospital, cache_dir=out / "bench_cache", spectrogram_cache=cache,
                            workers=args.threads, progress=True)
    models = [*models, oracle_embeddings(hospital, suite.labels["session_id"].unique().to_list())]
    res = run_benchmark(suite, models, out / "results", config=ProbeConfig(n_bootstrap=args.bootstrap),
                        task_classes=task_classes(suite.tasks), stage_audit=audit, progress=True)
    return {"models": [m.name for m in models], "tasks": res.results["task"].n_unique()}


LADDER = ("input_bandpower", "decoded_bandpower", "codes", "code_rows", "stage1_short", "stage1", "aligned",
          "aligned_heldout", "oracle", "bandpower", "random_encoder", "aligned_leaky")


def auroc_cell(x: dict[str, Any]) -> str:
    """``mean [CI over tasks] · patients [CI over test patients]`` of a summary row."""
    pat = "" if x.get("patient_ci_low") is None else f" · patients [{x['patient_ci_low']:.3f}, {x['patient_ci_high']:.3f}]"
    return f"{x['mean_auroc']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]{pat}"


def paired_line(comparisons: Any, a: str, b: str) -> str | None:
    """``- a − b: diff [CI] · patients [CI] over n tasks`` from a comparisons table, either order; None if absent."""
    import polars as pl

    row = comparisons.filter(((pl.col("model_a") == a) & (pl.col("model_b") == b)) |
                             ((pl.col("model_a") == b) & (pl.col("model_b") == a)))
    if not row.height:
        return None
    x = row.row(0, named=True)
    sign = 1 if x["model_a"] == a else -1
    lo, hi = sorted((sign * x["ci_low"], sign * x["ci_high"]))
    pat = ""
    if x.get("patient_ci_low") is not None:
        plo, phi = sorted((sign * x["patient_ci_low"], sign * x["patient_ci_high"]))
        pat = f" · patients [{plo:+.3f}, {phi:+.3f}]"
    return f"- {a} − {b}: {sign * x['mean_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]{pat} over {x['n_tasks']} tasks"


def write_ladder(out: Path, state: dict[str, Any]) -> None:
    """``OUT/ladder.md``: the ladder on planted and negative-control tasks, the key contrasts, and the cost."""
    import polars as pl

    res = out / "results"
    summary = pl.read_parquet(res / "summary.parquet")
    comp = pl.read_parquet(res / "comparisons.parquet")
    results = pl.read_parquet(res / "results.parquet")
    probe = "mlp" if "mlp" in summary["probe"].to_list() else summary["probe"][0]
    s = summary.filter(pl.col("probe") == probe)
    names = s["model"].unique(maintain_order=True).to_list()
    order = [m for m in LADDER if m in names] + [m for m in names if m not in LADDER]
    lines = [f"# Validity study: {out}", "", f"Probe: {probe}. Stages (wall / CPU seconds):", ""]
    for k, v in state["stages"].items():
        lines.append(f"- {k}: {v.get('wall_s', 0):.0f} s / {v.get('cpu_s', 0):.0f} s "
                     f"{ {a: b for a, b in v.items() if a not in ('done', 'wall_s', 'cpu_s')} }")
    lines += ["", "Intervals: over tasks, then (· patients) over resamples of the test patients shared by every "
              "task and model (paired for differences).", "",
              "| rung | planted mean AUROC [95% CI] | tasks | headroom captured (mean / pooled) | "
              "negative controls mean AUROC | controls' CIs containing 0.5 |", "|---|---|---|---|---|---|"]
    r = results.filter(pl.col("probe") == probe)
    for m in order:
        p = s.filter((pl.col("model") == m) & (pl.col("category") == "planted"))
        n = s.filter((pl.col("model") == m) & (pl.col("category") == "negative"))
        neg = r.filter((pl.col("model") == m) & (pl.col("task_class") == "negative"))
        cover = (f"{int(((neg['ci_low'] <= 0.5) & (neg['ci_high'] >= 0.5)).sum())}/{neg.height}" if neg.height
                 else "n/a")

        hr = "n/a"
        if p.height and p["mean_headroom"][0] is not None:
            hr = f"{p['mean_headroom'][0]:.2f} / {p['pooled_headroom'][0]:.2f}"
        cells = [auroc_cell(r.row(0, named=True)) if r.height else "n/a" for r in (p, n)]
        lines.append(f"| {m} | {cells[0]} | {p['n_tasks'][0] if p.height else 0} | {hr} | {cells[1]} | {cover} |")
    lines += ["", "Paired differences on planted tasks (mean over tasks [95% CI], wins):", ""]
    c = comp.filter((pl.col("probe") == probe) & (pl.col("category") == "planted"))
    pairs = (("aligned", "bandpower"), ("aligned", "input_bandpower"), ("stage1", "bandpower"),
             ("stage1", "stage1_short"), ("aligned", "stage1"), ("aligned_heldout", "aligned"),
             ("decoded_bandpower", "input_bandpower"), ("codes", "decoded_bandpower"),
             ("stage1", "codes"), ("aligned_leaky", "aligned"), ("aligned_leaky", "stage1"))
    lines += [line for a, b in pairs if (line := paired_line(c, a, b))]
    (out / "ladder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

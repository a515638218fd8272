"""The benchmark part of ``clef demo``: generate the demo hospital's suite, probe, write the report.

Reached through the ``benchmark`` entry point of ``clef.demo_steps`` (``clef`` may not
import ``benchmark_tasks``: ARCHITECTURE.md, "Packages and layers"), called with the hospital folder, the aligned
checkpoint, the demo's output folder and its rich console. Writes::

    OUT/benchmark/suite.yaml (+ suite/)   the suite of the demo hospital
    OUT/benchmark/results/                results.parquet, report.md, plots/*.png, probes/

A 40-patient hospital supports few tasks, so the demo lowers the minimum task size
(8 matched positives of 4 patients) and uses 200 bootstrap resamples; the figures are
a smoke test of the protocol, not a measurement (``bench/benchmark_validity.py`` runs
the 200-patient version). ``clef demo --quick`` (a 16-patient hospital) lowers them again
(:data:`QUICK_SUITE_CONFIG`); where no task reaches even that size, the step says so and
writes no results instead of failing the demo.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from benchmark_tasks.baselines.oracle import oracle_embeddings
from benchmark_tasks.config import GeneratorConfig, ProbeConfig, SuiteConfig
from benchmark_tasks.leakage import audit_checkpoints
from benchmark_tasks.models import ModelSources, collect_models
from benchmark_tasks.run import BenchmarkResult, run_benchmark
from benchmark_tasks.suite import NoTasksError, generate_suite
from benchmark_tasks.truth import task_classes

__all__ = ["DEMO_SUITE_CONFIG", "QUICK_SUITE_CONFIG", "demo_step"]

log = logging.getLogger(__name__)

#: Task sizes a 40-patient hospital can support.
DEMO_SUITE_CONFIG = SuiteConfig(generator=GeneratorConfig(min_positives=8, min_positive_patients=4,
                                                          min_test_positives=2))
#: Task sizes of ``clef demo --quick`` (16 patients): the protocol runs, the numbers mean nothing.
QUICK_SUITE_CONFIG = SuiteConfig(generator=GeneratorConfig(min_positives=3, min_positive_patients=2,
                                                           min_test_positives=1))


def _stage1_of(checkpoint: Path, out: Path) -> Path | None:
    """The demo's stage-1 checkpoint (``OUT/runs/pretrain``) when it is the one ``checkpoint`` was aligned from."""
    import json

    stage1 = out / "runs" / "pretrain"
    try:
        init = json.loads((checkpoint / "meta.json").read_text()).get("init_weights_sha256")
        mine = json.loads((stage1 / "meta.json").read_text()).get("weights_sha256")
    except (OSError, ValueError):
        return None
    return stage1 if init and init == mine else None


def demo_step(hospital: Path, checkpoint: Path, out: Path, console: Any = None, *,
              quick: bool = False) -> BenchmarkResult | None:
    """Generate the hospital's suite and run the benchmark: aligned, recon-only, random encoder, band power, oracle.

    The checkpoints are audited against the suite's test patients first (the validity
    card's stage-overlap audit; a leak raises :class:`benchmark_tasks.leakage.StageLeakError`).

    Parameters
    ----------
    hospital : path
        Synthetic hospital (an archive: ``sessions.csv``, ``edf/``, ``fhir/``, ``reports/``).
    checkpoint : path
        Aligned (stage-2) checkpoint.
    out : path
        Demo output folder (everything goes to ``out/benchmark``).
    console : rich.console.Console, optional
    quick : bool
        ``clef demo --quick``: smaller tasks (:data:`QUICK_SUITE_CONFIG`) and fewer
        bootstrap resamples.

    Returns
    -------
    BenchmarkResult or None
        None when the hospital supports no task of the minimum size (said on ``console``).
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    hospital, checkpoint, bench = Path(hospital), Path(checkpoint), Path(out) / "benchmark"
    try:
        suite = generate_suite(hospital, bench / "suite.yaml", name="demo_hospital",
                               config=QUICK_SUITE_CONFIG if quick else DEMO_SUITE_CONFIG,
                               description="clef demo: the synthetic hospital's tasks", progress=True)
    except NoTasksError as exc:  # too small a hospital for any task: say so, let the demo go on
        console.print(f"[yellow]no benchmark[/]: {exc}")
        return None
    counts = ", ".join(f"{sum(t.category == c for t in suite.tasks)} {c}" for c in ("phenotype", "medication",
                                                                                 "finding"))
    console.print(f"suite: {len(suite.tasks)} tasks ({counts}) with propensity-matched controls and patient "
                  f"splits → {bench / 'suite.yaml'}")
    checkpoints: list[tuple[str | None, Path]] = [("aligned", checkpoint)]
    stage1 = _stage1_of(checkpoint, Path(out))
    if stage1 is not None:
        checkpoints.append(("recon_only", stage1))
    audit = audit_checkpoints(suite, checkpoints, archive=hospital)  # the demo aligns on the suite's split
    models = collect_models(suite, ModelSources(checkpoints=checkpoints, bandpower=True, random_encoder=True),
                            archive=hospital, cache_dir=bench / "cache", progress=True)
    # the synthetic hospital's hidden truth gives every task a ceiling (validation only)
    models.append(oracle_embeddings(hospital, suite.labels["session_id"].unique().to_list()))
    cfg = ProbeConfig(n_bootstrap=50 if quick else 200)
    res = run_benchmark(suite, models, bench / "results", config=cfg, progress=True,
                        task_classes=task_classes(suite.tasks), stage_audit=audit)
    s = res.summary.filter(res.summary["probe"] == cfg.primary) if res.summary.height else res.summary
    t = Table(title=f"mean AUROC per category ({cfg.primary} probe; overall with its 95% CI over tasks)",
              title_justify="left")
    t.add_column("model")
    cats = [c for c in ("phenotype", "medication", "finding", "overall") if s.height and c in s["category"].to_list()]
    for c in cats:
        t.add_column(c, justify="right", no_wrap=True)
    for m in [m.name for m in models]:
        cells = []
        for c in cats:
            row = s.filter((s["model"] == m) & (s["category"] == c))
            ci = f" [{row['ci_low'][0]:.2f}, {row['ci_high'][0]:.2f}]" if c == "overall" and row.height else ""
            cells.append("" if row.height == 0 else f"{row['mean_auroc'][0]:.2f}{ci}")
        t.add_row(m, *cells)
    console.print(t)
    console.print(f"report {bench / 'results' / 'report.md'}, plots {bench / 'results' / 'plots'}; "
                  "a small hospital: the intervals are wide, this is the protocol at work, not a result")
    return res

"""The phenotype probe benchmark: cohorts, tasks, matching, splits, probes, baselines, results.

May import ``ehr``, ``reports`` and ``clef`` (embedding API and archive index only)
(DESIGN.md §3). Stage of the flow: cohort table → task generator → matched labels +
patient splits → frozen probes → results + plots.

Modules
-------
config      pydantic configs (generation, matching, splits, probes)
cohort      :func:`build_cohort`: one row per session (demographics, codes, groups, findings)
tasks       :class:`TaskDefinition`, inclusion rules, candidate tasks, held-out status
matching    propensity-score matching and standardised mean differences
splits      salted patient splits and the leak check (:class:`SplitLeakError`)
suite       :func:`generate_suite`, :func:`load_suite`, shipped suites (``suites/*.yaml``)
embeddings  :class:`EmbeddingSet` from stores and checkpoints
models      :func:`collect_models`: stores, checkpoints and baselines of a run
probes      logistic and MLP probes, JSON probe files for serving
metrics     AUROC, patient-bootstrap intervals, normalised score, headroom, ECE and Brier score
power       patient-level interval of a mean AUROC over tasks; sizes a study (Hanley-McNeil)
run         :func:`run_benchmark`: results, report, plots, probes
card        the report's validity card: calibration and subgroup tables, stage-overlap audit
truth       validation only: truth classes of a synthetic hospital's tasks (planted / negative / other)
baselines   band power, windowed short-window models, braindecode adapter, the oracle (hidden truth)
cli         ``clef tasks generate`` / ``clef benchmark run`` (a ``clef.cli_plugins`` entry point)

Names are imported on first use, so ``import benchmark_tasks`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_cohort": "benchmark_tasks.cohort",
    "TaskDefinition": "benchmark_tasks.tasks",
    "match_controls": "benchmark_tasks.matching",
    "SplitLeakError": "benchmark_tasks.splits",
    "check_no_leak": "benchmark_tasks.splits",
    "assign_splits": "benchmark_tasks.splits",
    "Suite": "benchmark_tasks.suite",
    "generate_suite": "benchmark_tasks.suite",
    "load_suite": "benchmark_tasks.suite",
    "shipped_suites": "benchmark_tasks.suite",
    "EmbeddingSet": "benchmark_tasks.embeddings",
    "load_embeddings": "benchmark_tasks.embeddings",
    "ModelSources": "benchmark_tasks.models",
    "collect_models": "benchmark_tasks.models",
    "LogisticProbe": "benchmark_tasks.probes",
    "load_probe": "benchmark_tasks.probes",
    "run_benchmark": "benchmark_tasks.run",
    "SuiteConfig": "benchmark_tasks.config",
    "ProbeConfig": "benchmark_tasks.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'benchmark_tasks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

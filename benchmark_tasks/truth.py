"""Validation only: what the synthetic hospital's hidden truth says about a suite's tasks.

The pipeline never reads ``truth.parquet`` (``clef.synthetic.hospital``); this module and
:mod:`benchmark_tasks.baselines.oracle` do, to judge the benchmark against what the
simulator planted. Every task is classed from the simulator's catalogues
(``clef.synthetic.catalogue``: conditions, drugs, negative controls;
``clef.synthetic.spec.FINDINGS``):

* ``planted``: every code the task matches belongs to a condition (or drug class) that
  the simulator gives an EEG signature, or the task is an EEG finding the simulator plants;
* ``negative``: a negative control: every matching condition is one of the population's
  negative controls (no EEG signature), or every matching drug is prescribed only for them;
* ``other``: the rest (signature-less conditions that are not controls, mixed groups,
  report findings the simulator does not plant, codes outside the catalogue).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

if TYPE_CHECKING:
    from benchmark_tasks.tasks import TaskDefinition

__all__ = ["TASK_CLASSES", "TaskClass", "hospital_truth", "task_class", "task_classes"]

TaskClass = Literal["planted", "negative", "other"]

#: Truth classes of tasks, in report order.
TASK_CLASSES: tuple[str, ...] = ("planted", "negative", "other")


def hospital_truth(hospital: str | os.PathLike[str]) -> pl.DataFrame:
    """The hidden truth of a synthetic hospital folder (``truth.parquet``, one row per session).

    Raises
    ------
    FileNotFoundError
        ``hospital`` is not a synthetic hospital (no ``truth.parquet``).
    """
    from clef.synthetic.hospital import load_truth

    root = Path(hospital)
    if not (root / "truth.parquet").is_file():
        raise FileNotFoundError(f"{root}: not a synthetic hospital (no truth.parquet); the oracle and the task "
                                "classes need the hidden truth ('clef synth' writes it)")
    return load_truth(root)


def task_class(task: TaskDefinition, *, conditions: Mapping[str, Any] | None = None,
               drugs: Mapping[str, Any] | None = None, negative_keys: Iterable[str] | None = None,
               findings: Iterable[str] | None = None) -> TaskClass:
    """``planted`` / ``negative`` / ``other`` for one task (see the module docstring).

    Parameters
    ----------
    task : TaskDefinition
    conditions, drugs, negative_keys, findings : optional
        The simulator's catalogues (default: ``clef.synthetic``'s ``CONDITIONS``,
        ``DRUGS``, ``NEGATIVE_CONTROL_KEYS`` and ``FINDINGS``); given only by tests.
    """
    from clef.synthetic import catalogue, spec

    conditions = catalogue.CONDITIONS if conditions is None else conditions
    drugs = catalogue.DRUGS if drugs is None else drugs
    negative = set(catalogue.NEGATIVE_CONTROL_KEYS if negative_keys is None else negative_keys)
    planted_findings = set(spec.FINDINGS if findings is None else findings)
    if task.kind == "finding":
        return "planted" if task.finding in planted_findings else "other"
    pre, exc = task.prefixes, task.exclude_prefixes

    def hit(code: str) -> bool:
        return code.startswith(pre) and not (exc and code.startswith(exc))

    if task.category == "phenotype":
        keys = {c.key for c in conditions.values() for v in c.variants if hit(v.code)}
        if not keys:
            return "other"
        if keys <= negative:
            return "negative"
        if all(conditions[k].signature for k in keys):
            return "planted"
        return "other"
    matched = [d for d in drugs.values() if hit(d.atc)]
    if not matched:
        return "other"
    if all(d.signature_group for d in matched):
        return "planted"
    if all(not d.signature_group and set(d.indications) <= negative for d in matched):
        return "negative"
    return "other"


def task_classes(tasks: Iterable[TaskDefinition]) -> dict[str, TaskClass]:
    """Task name → its truth class (:func:`task_class`), for every task."""
    return {t.name: task_class(t) for t in tasks}

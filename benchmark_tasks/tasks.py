"""Task definitions: which sessions are positives, which may be controls.

Three categories (CLEF's): **phenotype** (ICD-10-CM codes active at the session),
**medication** (ATC codes taken at the session) and **finding** (EEG findings the
report asserts). A task is a :class:`TaskDefinition`, written as one entry of a suite's
YAML; its membership can always be recomputed from the cohort table.

Inclusion rules
---------------
Code tasks (phenotype, medication)
    *Eligible*: sessions with an EHR (a patient record and a start date).
    *Positive*: an active code at the session starts with one of ``codes`` (and with
    none of ``exclude``).
    *Control candidate*: eligible, not positive, and (``control_exclusion="ever"``,
    default) the patient's record never carries a matching code, at any date; with
    ``"session"`` only the session's own codes are checked.
Finding tasks
    *Eligible*: sessions with a readable report.
    *Positive*: the report asserts the finding (present).
    *Control candidate*: eligible, the finding neither present nor called possible.

Codes are written with their vocabulary, as the alignment's held-out concepts are
(``icd:G40``, ``atc:N03A``), so a task's overlap with the concepts held out of an
aligned checkpoint is read off directly (:func:`held_out_status`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, field_validator

from benchmark_tasks.config import GeneratorConfig
from ehr import (MEDICATION_GROUPS, PHENOTYPE_GROUPS, MedicationGroup, PhenotypeGroup, atc_level, atc_name,
                 icd10_description, parse_held_out)

__all__ = [
    "TaskDefinition",
    "TaskKind",
    "TaskStats",
    "candidate_tasks",
    "held_out_status",
    "membership",
]

log = logging.getLogger(__name__)

TaskKind = Literal["icd_group", "icd_category", "atc_group", "atc_class", "finding"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_KIND_CATEGORY = {"icd_group": "phenotype", "icd_category": "phenotype", "atc_group": "medication",
                  "atc_class": "medication", "finding": "finding"}


class TaskStats(BaseModel):
    """Sizes and balance of a generated task (filled in by the generator).

    Attributes
    ----------
    n_positive, n_control : int
        Matched sessions.
    n_positive_patients : int
    n_unmatched : int
        Positives dropped for want of a control within the caliper.
    n_candidates : int
        Control candidates before matching.
    n_train_positive, n_test_positive : int
        Positives per split.
    max_abs_smd_before, max_abs_smd_after : float
        Largest absolute standardised mean difference over the covariates, positives
        against all candidates (before) and against the matched controls (after).
    """

    model_config = ConfigDict(extra="forbid")

    n_positive: int
    n_control: int
    n_positive_patients: int
    n_unmatched: int
    n_candidates: int
    n_train_positive: int
    n_test_positive: int
    max_abs_smd_before: float
    max_abs_smd_after: float


class TaskDefinition(BaseModel):
    """One benchmark task.

    Attributes
    ----------
    name : str
        Unique, file-name safe (``dx_epilepsy``, ``rx_antiseizure``, ``eeg_ied_focal``).
    category : {"phenotype", "medication", "finding"}
    kind : str
        ``icd_group`` / ``icd_category`` / ``atc_group`` / ``atc_class`` / ``finding``.
    codes : tuple of str
        Code prefixes with their vocabulary (``icd:G40``, ``atc:N03A``); empty for findings.
    exclude : tuple of str
        Prefixes removed from ``codes`` again.
    finding : str or None
        The report finding (finding tasks).
    description : str
    inclusion : str
        The inclusion rule in words.
    stats : TaskStats or None
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    category: Literal["phenotype", "medication", "finding"]
    kind: TaskKind
    codes: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    finding: str | None = None
    description: str = ""
    inclusion: str = ""
    stats: TaskStats | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"task name must be lower-case letters, digits, '_', '.', '-', found {v!r}")
        return v

    @field_validator("codes", "exclude")
    @classmethod
    def _codes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if not re.match(r"^(icd|atc):[0-9A-Z.]+$", c)]
        if bad:
            raise ValueError(f"codes must look like 'icd:G40' or 'atc:N03A', found {bad}")
        return v

    def model_post_init(self, __context: object) -> None:
        if _KIND_CATEGORY[self.kind] != self.category:
            raise ValueError(f"task {self.name}: kind {self.kind!r} belongs to category "
                             f"{_KIND_CATEGORY[self.kind]!r}, not {self.category!r}")
        if self.kind == "finding" and not self.finding:
            raise ValueError(f"task {self.name}: a finding task needs 'finding'")
        if self.kind != "finding" and not self.codes:
            raise ValueError(f"task {self.name}: a code task needs 'codes'")
        vocab = "icd" if self.category == "phenotype" else "atc"
        wrong = [c for c in (*self.codes, *self.exclude) if not c.startswith(vocab + ":")]
        if wrong:
            raise ValueError(f"task {self.name}: {self.category} codes must be '{vocab}:' codes, found {wrong}")

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Code prefixes without the vocabulary."""
        return tuple(c.split(":", 1)[1] for c in self.codes)

    @property
    def exclude_prefixes(self) -> tuple[str, ...]:
        """Excluded prefixes without the vocabulary."""
        return tuple(c.split(":", 1)[1] for c in self.exclude)


# ------------------------------------------------------------------------ membership


class _ListIndex:
    """Inverted index of a list column: value → row numbers holding it."""

    def __init__(self, column: pl.Series) -> None:
        exploded = pl.DataFrame({"row": np.arange(len(column)), "v": column}).explode("v").drop_nulls("v")
        self.rows = {str(value): g["row"].to_numpy() for (value,), g in exploded.group_by("v")}
        self.n = len(column)

    def mask(self, match: Iterable[str]) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for v in match:
            out[self.rows[v]] = True
        return out

    def values(self) -> list[str]:
        return sorted(self.rows)


@dataclass
class CohortIndex:
    """Inverted indexes of a cohort's list columns, built once for all tasks."""

    cohort: pl.DataFrame
    icd10: _ListIndex
    atc: _ListIndex
    icd10_ever: _ListIndex
    atc_ever: _ListIndex
    findings: _ListIndex
    findings_possible: _ListIndex
    has_ehr: np.ndarray
    has_report: np.ndarray

    @classmethod
    def build(cls, cohort: pl.DataFrame) -> CohortIndex:
        return cls(cohort, *(_ListIndex(cohort[c]) for c in ("icd10", "atc", "icd10_ever", "atc_ever", "findings",
                                                               "findings_possible")),
                   cohort["has_ehr"].to_numpy().astype(bool), cohort["has_report"].to_numpy().astype(bool))


def _matching(values: Sequence[str], prefixes: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    return [v for v in values if v.startswith(prefixes) and not (exclude and v.startswith(exclude))]


def membership(index: CohortIndex | pl.DataFrame, task: TaskDefinition,
               control_exclusion: Literal["ever", "session"] = "ever") -> tuple[np.ndarray, np.ndarray]:
    """Positive sessions and control candidates of a task (rules in the module docstring).

    Parameters
    ----------
    index : CohortIndex or polars.DataFrame
        The cohort (an index is built when a table is given).
    task : TaskDefinition
    control_exclusion : {"ever", "session"}

    Returns
    -------
    positive, candidate : ndarray of bool, (n_sessions,)
        Disjoint masks over the cohort's rows.
    """
    ix = index if isinstance(index, CohortIndex) else CohortIndex.build(index)
    if task.kind == "finding":
        pos = ix.has_report & ix.findings.mask([task.finding] if task.finding in ix.findings.rows else [])
        possible = ix.findings_possible.mask([task.finding] if task.finding in ix.findings_possible.rows else [])
        return pos, ix.has_report & ~pos & ~possible
    now, ever = (ix.icd10, ix.icd10_ever) if task.category == "phenotype" else (ix.atc, ix.atc_ever)
    pos = ix.has_ehr & now.mask(_matching(now.values(), task.prefixes, task.exclude_prefixes))
    cand = ix.has_ehr & ~pos
    if control_exclusion == "ever":
        cand &= ~ever.mask(_matching(ever.values(), task.prefixes, task.exclude_prefixes))
    return pos, cand


# ---------------------------------------------------------------------- candidates


def _icd_title(code: str) -> str:
    try:
        return icd10_description(code)
    except ValueError:
        return code


def _inclusion(category: str, what: str) -> str:
    if category == "finding":
        return (f"positive: the report asserts {what}; control: a session with a report neither asserting "
                "it nor calling it possible")
    return (f"positive: {what} active at the session; control: a session of a patient whose record never "
            "carries such a code")


def _group_tasks(groups: Mapping[str, PhenotypeGroup | MedicationGroup], prefix: str, category: str,
                 kind: TaskKind, vocabulary: str, system: str) -> list[TaskDefinition]:
    """One task per curated code group: positive on a code starting with one of its prefixes."""
    return [TaskDefinition(
        name=f"{prefix}_{g.name}", category=category, kind=kind, description=g.description,
        codes=tuple(f"{vocabulary}:{p}" for p in g.prefixes), exclude=tuple(f"{vocabulary}:{p}" for p in g.exclude),
        inclusion=_inclusion(category, f"an {system} code starting with {' or '.join(g.prefixes)}"))
        for g in groups.values()]


def candidate_tasks(index: CohortIndex | pl.DataFrame, config: GeneratorConfig | None = None) -> list[TaskDefinition]:
    """All tasks the cohort could support, before size filters and matching.

    Order: curated phenotype groups, ICD-10-CM categories, curated medication groups,
    ATC classes, report findings (so deduplication keeps the curated definition).

    Parameters
    ----------
    index : CohortIndex or polars.DataFrame
    config : GeneratorConfig, optional

    Returns
    -------
    list of TaskDefinition
        Without stats.
    """
    from reports import REPORT_FINDINGS

    cfg = config or GeneratorConfig()
    ix = index if isinstance(index, CohortIndex) else CohortIndex.build(index)
    out: list[TaskDefinition] = []
    if "phenotype" in cfg.categories:
        out += _group_tasks(PHENOTYPE_GROUPS, "dx", "phenotype", "icd_group", "icd", "ICD-10-CM")
        if cfg.icd_categories:
            for cat in sorted({c[:3] for c in ix.icd10.values()}):
                out.append(TaskDefinition(
                    name=f"dx_icd_{cat.lower()}", category="phenotype", kind="icd_category", codes=(f"icd:{cat}",),
                    description=f"ICD-10-CM category {cat}: {_icd_title(cat)}",
                    inclusion=_inclusion("phenotype", f"an ICD-10-CM code in category {cat}")))
    if "medication" in cfg.categories:
        out += _group_tasks(MEDICATION_GROUPS, "rx", "medication", "atc_group", "atc", "ATC")
        if cfg.atc_level is not None:
            classes = set()
            for code in ix.atc.values():
                try:
                    classes.add(atc_level(code, cfg.atc_level))
                except ValueError:
                    continue
            for cls_ in sorted(classes):
                out.append(TaskDefinition(
                    name=f"rx_atc_{cls_.lower()}", category="medication", kind="atc_class", codes=(f"atc:{cls_}",),
                    description=f"ATC class {cls_}: {atc_name(cls_) or cls_}",
                    inclusion=_inclusion("medication", f"an ATC code in class {cls_}")))
    if "finding" in cfg.categories:
        unknown = sorted(set(cfg.findings or ()) - set(REPORT_FINDINGS))
        if unknown:
            raise ValueError(f"unknown report findings {unknown}; expected some of {list(REPORT_FINDINGS)}")
        for f in cfg.findings or REPORT_FINDINGS:
            words = f.replace("_", " ")
            out.append(TaskDefinition(name=f"eeg_{f}", category="finding", kind="finding", finding=f,
                                      description=f"EEG finding read from the report: {words}",
                                      inclusion=_inclusion("finding", words)))
    return out


# ---------------------------------------------------------------------- held out


def held_out_status(task: TaskDefinition, concepts: Iterable[str]) -> Literal["held_out", "partial", "seen"]:
    """How a task relates to the concepts held out of an aligned checkpoint.

    Parameters
    ----------
    task : TaskDefinition
    concepts : iterable of str
        ``held_out_concepts`` of the checkpoint's ``meta.json`` (``icd:G40``, ``atc:N03A``).

    Returns
    -------
    {"held_out", "partial", "seen"}
        ``held_out`` when every code prefix of the task lies inside a held-out prefix
        (the model never saw the task's concept in alignment), ``partial`` when some
        does or a held-out prefix lies inside the task's, ``seen`` otherwise (finding
        tasks are always ``seen``: held-out concepts are EHR codes).
    """
    held = parse_held_out(list(concepts))
    if task.kind == "finding" or not held:
        return "seen"
    covered = [c.startswith(held) for c in task.codes]
    if all(covered):
        return "held_out"
    if any(covered) or any(h.startswith(task.codes) for h in held):
        return "partial"
    return "seen"

"""Versioned task suites: generate one from an archive, write it, load and verify it.

A suite is a small YAML file (name, version, how it was made, one entry per task with
its definition and sizes) and, in a folder named after it, its tables::

    SUITE.yaml
    SUITE/labels.parquet    task, session_id, patient_id, label, split, matched_to
    SUITE/splits.parquet    patient_id, split          (one split per patient, all tasks)
    SUITE/balance.parquet   task, covariate, smd_before, smd_after
    SUITE/cohort.parquet    the cohort table (benchmark_tasks.cohort.COHORT_SCHEMA)

The YAML records the SHA-256 of each table; :meth:`Suite.verify` runs the leak check
(:func:`benchmark_tasks.splits.check_no_leak`) and then compares the digests, so a
suite whose tables were edited after generation is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from benchmark_tasks.cohort import build_cohort
from benchmark_tasks.config import SuiteConfig
from benchmark_tasks.matching import covariate_matrix, match_controls
from benchmark_tasks.progress import track
from benchmark_tasks.splits import SplitLeakError, assign_splits, check_no_leak
from benchmark_tasks.tasks import CohortIndex, TaskDefinition, TaskStats, candidate_tasks, membership
from tokenizer.atomic import write_parquet_atomic, write_text_atomic
from tokenizer.hashing import file_sha256

__all__ = [
    "FORMAT_VERSION",
    "SUITES_DIR",
    "NoTasksError",
    "Suite",
    "SuiteDigestError",
    "SuiteSpec",
    "generate_suite",
    "load_suite",
    "shipped_suites",
]

log = logging.getLogger(__name__)

#: Version of the suite file format (not of a suite's content: that is ``version``).
FORMAT_VERSION = 1

#: Folder of the suites shipped with the package.
SUITES_DIR = Path(__file__).resolve().parent / "suites"

LABELS_SCHEMA: dict[str, Any] = {"task": pl.String, "session_id": pl.String, "patient_id": pl.String,
                                 "label": pl.Int8, "split": pl.String, "matched_to": pl.String}
BALANCE_SCHEMA: dict[str, Any] = {"task": pl.String, "covariate": pl.String, "smd_before": pl.Float64,
                                  "smd_after": pl.Float64}
_TABLES = ("labels", "splits", "balance", "cohort")


class SuiteDigestError(ValueError):
    """A suite table does not match the digest its YAML records."""


class NoTasksError(ValueError):
    """No candidate task reached the generator's minimum size (too small an archive)."""


class SuiteFiles(BaseModel):
    """Tables of a suite, relative to the YAML's folder, and their SHA-256."""

    model_config = ConfigDict(extra="forbid")

    labels: str
    splits: str
    balance: str
    cohort: str
    sha256: dict[str, str] = Field(default_factory=dict)


class SuiteSource(BaseModel):
    """The archive a suite was generated from."""

    model_config = ConfigDict(extra="forbid")

    archive: str | None = None
    n_sessions: int = 0
    n_patients: int = 0
    n_with_ehr: int = 0
    n_with_report: int = 0


class SuiteSpec(BaseModel):
    """The YAML of a suite.

    Attributes
    ----------
    name : str
    version : str
        Version of the suite's content (bump when regenerating with other rules).
    format_version : int
        :data:`FORMAT_VERSION`.
    description : str
    created : str
        ISO 8601 UTC time of generation.
    generator : str
        ``benchmark_tasks`` and the CLEF version that wrote it.
    source : SuiteSource
    config : SuiteConfig
        Generation, matching and split settings.
    files : SuiteFiles
    tasks : list of TaskDefinition
    skipped : dict of str to str
        Tasks with enough raw positives that were dropped, and why.
    n_below_min_positives : int
        Candidate tasks with fewer raw positives than ``min_positives``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = "1.0"
    format_version: int = FORMAT_VERSION
    description: str = ""
    created: str = ""
    generator: str = ""
    source: SuiteSource = Field(default_factory=SuiteSource)
    config: SuiteConfig = Field(default_factory=SuiteConfig)
    files: SuiteFiles
    tasks: list[TaskDefinition]
    skipped: dict[str, str] = Field(default_factory=dict)
    n_below_min_positives: int = 0

    @field_validator("format_version")
    @classmethod
    def _format(cls, v: int) -> int:
        if v != FORMAT_VERSION:
            raise ValueError(f"suite format_version {FORMAT_VERSION} expected, found {v}")
        return v

    @field_validator("tasks")
    @classmethod
    def _unique(cls, v: list[TaskDefinition]) -> list[TaskDefinition]:
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"task names must be unique, found duplicates {dup}")
        return v


@dataclass
class Suite:
    """A loaded suite: its YAML and (on first use) its tables.

    Attributes
    ----------
    spec : SuiteSpec
    path : Path
        The YAML file.
    """

    spec: SuiteSpec
    path: Path
    _tables: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tasks(self) -> list[TaskDefinition]:
        return self.spec.tasks

    def task(self, name: str) -> TaskDefinition:
        """The task of this name."""
        for t in self.spec.tasks:
            if t.name == name:
                return t
        raise KeyError(f"suite {self.name} has no task {name!r}")

    def subset(self, names: list[str]) -> Suite:
        """This suite restricted to the tasks ``names``, in memory.

        The tables are read once and shared; the labels of the other tasks are dropped. The
        files on disk are untouched (``path`` still names the whole suite).

        Parameters
        ----------
        names : list of str
            Task names of this suite.

        Returns
        -------
        Suite

        Raises
        ------
        KeyError
            For a name that is not one of this suite's tasks.
        """
        keep = set(names)
        if unknown := keep - {t.name for t in self.spec.tasks}:
            raise KeyError(f"suite {self.name} has no tasks {sorted(unknown)}")
        tables = {t: self.table(t) for t in ("splits", "balance", "cohort")}
        tables["labels"] = self.labels.filter(pl.col("task").is_in(sorted(keep)))
        spec = self.spec.model_copy(update={"tasks": [t for t in self.spec.tasks if t.name in keep]})
        return Suite(spec, self.path, tables)

    def file(self, table: str) -> Path:
        """Path of one of the suite's tables."""
        return self.path.parent / getattr(self.spec.files, table)

    def table(self, table: str) -> pl.DataFrame:
        """A table of the suite (``labels``, ``splits``, ``balance``, ``cohort``), read once."""
        if table not in _TABLES:
            raise KeyError(f"unknown suite table {table!r}; expected one of {_TABLES}")
        if table not in self._tables:
            p = self.file(table)
            if not p.is_file():
                raise FileNotFoundError(f"suite {self.path}: its {table} table {p} is missing")
            self._tables[table] = pl.read_parquet(p)
        return self._tables[table]

    labels = property(lambda self: self.table("labels"), doc="The labels table (:meth:`table`).")
    splits = property(lambda self: self.table("splits"), doc="The splits table (:meth:`table`).")
    balance = property(lambda self: self.table("balance"), doc="The balance table (:meth:`table`).")
    cohort = property(lambda self: self.table("cohort"), doc="The cohort table (:meth:`table`).")

    def archive(self) -> Path | None:
        """The archive folder recorded in the suite (relative paths are relative to the YAML)."""
        a = self.spec.source.archive
        if not a:
            return None
        p = Path(a)
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def verify(self) -> None:
        """Refuse a suite that leaks patients across splits or whose tables were edited.

        Raises
        ------
        SplitLeakError
            A patient in two splits (checked first).
        SuiteDigestError
            A table differs from the digest recorded in the YAML.
        ValueError
            Labels naming tasks the YAML does not define.
        """
        check_no_leak(self.labels, self.splits)
        for t in _TABLES:
            want = self.spec.files.sha256.get(t)
            if want and file_sha256(self.file(t)) != want:
                raise SuiteDigestError(f"suite {self.path}: {self.file(t).name} does not match the SHA-256 recorded "
                                       "in the YAML (edited after generation?); regenerate the suite")
        unknown = sorted(set(self.labels["task"].unique().to_list()) - {t.name for t in self.tasks})
        if unknown:
            raise ValueError(f"suite {self.path}: labels name tasks the YAML does not define: {unknown[:5]}")


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and validate a suite YAML (its tables are read on first use).

    Raises
    ------
    FileNotFoundError
    ValueError
        Not YAML, or not a valid suite (the message names the field).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such suite file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a suite mapping (name, version, tasks ...), found {type(raw).__name__}")
    try:
        spec = SuiteSpec.model_validate(raw)
    except Exception as exc:  # pydantic.ValidationError: keep its field-by-field message
        raise ValueError(f"{p}: not a valid suite: {exc}") from None
    return Suite(spec, p.resolve())


def shipped_suites() -> list[Path]:
    """The suite YAML files shipped in ``benchmark_tasks/suites/``."""
    return sorted(SUITES_DIR.glob("*.yaml"))


def _generator_version() -> str:
    try:
        from importlib.metadata import version

        return f"benchmark_tasks (clef-eeg {version('clef-eeg')})"
    except Exception:  # pragma: no cover - not installed
        return "benchmark_tasks"


def generate_suite(archive: str | os.PathLike[str] | None, out: str | os.PathLike[str], *, name: str | None = None,
                   version: str = "1.0", description: str = "", config: SuiteConfig | None = None,
                   cohort: pl.DataFrame | None = None, progress: bool = False) -> Suite:
    """Generate a suite from an archive and write it (YAML + tables beside it).

    Parameters
    ----------
    archive : path or None
        Archive root (see :mod:`clef.align.archive`); may be None when ``cohort`` is given.
    out : path
        The suite YAML to write; its tables go to a folder of the same stem.
    name : str, optional
        Suite name (default: the YAML's stem).
    version : str
        Content version written into the suite.
    description : str
    config : SuiteConfig, optional
    cohort : polars.DataFrame, optional
        A cohort table already built (:func:`benchmark_tasks.cohort.build_cohort`).
    progress : bool
        Progress bars.

    Returns
    -------
    Suite

    Raises
    ------
    NoTasksError
        No task reaches the minimum size (a ``ValueError``).
    ValueError
        The archive has no sessions with a patient, or ``out`` is not a YAML name.
    """
    cfg = config or SuiteConfig()
    out = Path(out)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"--out {out}: expected a .yaml file name")
    if cohort is None:
        if archive is None:
            raise ValueError("generate_suite needs an archive or a cohort table")
        cohort = build_cohort(archive, progress=progress)
    n_all = cohort.height
    cohort = cohort.filter(pl.col("patient_id").is_not_null() & (pl.col("patient_id") != "")).sort("session_id")
    if cohort.height < n_all:
        log.warning("%d sessions without a patient id left out (they cannot be split by patient)",
                    n_all - cohort.height)
    if cohort.height == 0:
        raise ValueError("no session with a patient id: link sessions to FHIR patients (sessions.csv patient_id or "
                         "FHIR Procedures with the session id)")
    splits = assign_splits(cohort["patient_id"].to_list(), cfg.splits)
    split_of = dict(zip(splits["patient_id"].to_list(), splits["split"].to_list()))
    session_split = np.array([split_of[p] for p in cohort["patient_id"].to_list()])
    patients = cohort["patient_id"].to_numpy()
    sessions = cohort["session_id"].to_numpy()
    index = CohortIndex.build(cohort)
    cov = covariate_matrix(cohort, cfg.matching.covariates)
    gen = cfg.generator
    tasks: list[TaskDefinition] = []
    skipped: dict[str, str] = {}
    below = 0
    seen: dict[bytes, str] = {}
    label_parts: list[pl.DataFrame] = []
    balance_parts: list[pl.DataFrame] = []
    candidates = candidate_tasks(index, gen)
    for task in track(candidates, "tasks", enabled=progress):
        pos, cand = membership(index, task, cfg.matching.control_exclusion)
        n_pos = int(pos.sum())
        if n_pos < gen.min_positives:
            below += 1
            continue
        if len(np.unique(patients[pos])) < gen.min_positive_patients:
            skipped[task.name] = f"{len(np.unique(patients[pos]))} positive patients < {gen.min_positive_patients}"
            continue
        key = np.flatnonzero(pos).tobytes()
        if gen.dedupe and key in seen:
            skipped[task.name] = f"same positive sessions as {seen[key]}"
            continue
        seen.setdefault(key, task.name)
        m = match_controls(cohort, pos, cand, cfg.matching, cov, strata=session_split)
        if len(m.positives) < gen.min_positives:
            skipped[task.name] = (f"{len(m.positives)} matched positives < {gen.min_positives} "
                                  f"({n_pos} positives, {int(cand.sum())} control candidates)")
            continue
        rows = np.concatenate([m.positives, m.controls])
        lab = np.concatenate([np.ones(len(m.positives), np.int8), np.zeros(len(m.controls), np.int8)])
        spl = session_split[rows]
        n_tr, n_te = int(((spl == "train") & (lab == 1)).sum()), int(((spl == "test") & (lab == 1)).sum())
        c_tr, c_te = int(((spl == "train") & (lab == 0)).sum()), int(((spl == "test") & (lab == 0)).sum())
        if min(n_tr, n_te) < gen.min_test_positives or min(c_tr, c_te) < 1:
            skipped[task.name] = (f"too few per split: train {n_tr} positives / {c_tr} controls, test {n_te} / "
                                  f"{c_te} (need {gen.min_test_positives} positives and 1 control in each)")
            continue
        stats = TaskStats(n_positive=len(m.positives), n_control=len(m.controls),
                          n_positive_patients=len(np.unique(patients[m.positives])), n_unmatched=m.n_unmatched,
                          n_candidates=int(cand.sum()), n_train_positive=n_tr, n_test_positive=n_te,
                          max_abs_smd_before=round(m.max_abs_smd_before, 4),
                          max_abs_smd_after=round(m.max_abs_smd_after, 4))
        tasks.append(task.model_copy(update={"stats": stats}))
        label_parts.append(pl.DataFrame({
            "task": [task.name] * len(rows), "session_id": sessions[rows].tolist(),
            "patient_id": patients[rows].tolist(), "label": lab, "split": spl.tolist(),
            "matched_to": np.concatenate([sessions[m.positives], sessions[m.matched_to]]).tolist()},
            schema=LABELS_SCHEMA))
        balance_parts.append(m.balance.with_columns(pl.lit(task.name).alias("task")).select(list(BALANCE_SCHEMA)))
    if not tasks:
        raise NoTasksError(f"no task reached {gen.min_positives} matched positives among {len(candidates)} candidates "
                         f"({cohort.height} sessions); lower --min-positives or use a larger archive")
    labels = pl.concat(label_parts)
    check_no_leak(labels, splits)
    balance = pl.concat(balance_parts).cast(BALANCE_SCHEMA)  # type: ignore[arg-type]

    stem = out.stem
    data_dir = out.parent / stem
    files = {t: f"{stem}/{t}.parquet" for t in _TABLES}
    for f, df in zip(files.values(), (labels, splits, balance, cohort), strict=True):
        write_parquet_atomic(df, out.parent / f)
    digests = {t: file_sha256(out.parent / f) for t, f in files.items()}
    archive_text = None
    if archive is not None:
        a = Path(archive).resolve()
        try:
            archive_text = os.path.relpath(a, out.parent.resolve())
        except ValueError:  # another drive (Windows)
            archive_text = str(a)
    spec = SuiteSpec(
        name=name or stem, version=version, description=description,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        generator=_generator_version(),
        source=SuiteSource(archive=archive_text, n_sessions=cohort.height, n_patients=cohort["patient_id"].n_unique(),
                           n_with_ehr=int(cohort["has_ehr"].sum()), n_with_report=int(cohort["has_report"].sum())),
        config=cfg, files=SuiteFiles(**files, sha256=digests), tasks=tasks, skipped=skipped,
        n_below_min_positives=below)
    write_text_atomic(_dump_yaml(spec), out)
    log.info("suite %s: %d tasks (%s) from %d candidates; written to %s and %s/", spec.name, len(tasks),
             ", ".join(f"{c} {sum(t.category == c for t in tasks)}" for c in ("phenotype", "medication", "finding")),
             len(candidates), out, data_dir)
    return Suite(spec, out.resolve())


def _dump_yaml(spec: SuiteSpec) -> str:
    data = spec.model_dump(mode="json", exclude_none=True)
    header = ("# CLEF benchmark suite, written by 'clef tasks generate'. Tables (labels, splits, balance, cohort)\n"
              "# live in the folder named after this file; their SHA-256 are checked before every run.\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


__all__ += ["SplitLeakError"]

"""The cohort table: one row per EEG session of an archive, with what the tasks are made of.

Built from the archive index (:func:`clef.align.archive.index_archive`: sessions, their
patients' FHIR records, their reports) and the report finding extractor
(:func:`reports.process_report`). Columns (:data:`COHORT_SCHEMA`):

=====================  ==================  ===================================================
column                 type                meaning
=====================  ==================  ===================================================
session_id             str                 the archive's session id (EDF file stem)
patient_id             str or null         FHIR ``Patient.id`` (pseudonymous key of the export)
path                   str or null         EDF/BDF path relative to the archive root
site                   str                 ``Encounter.serviceProvider``; ``unknown`` if none
setting                str                 EEG care setting (routine/emu/icu); ``unknown``
age_years              f64 or null         age at the session
sex                    str or null         ``F`` / ``M``
race                   str or null         CLEF race class
has_ehr                bool                a record and a start date: codes are known
has_report             bool                a readable report
icd10                  list[str]           ICD-10-CM codes active at the session
atc                    list[str]           ATC codes taken at the session
icd10_ever             list[str]           every ICD-10-CM code of the patient's record
atc_ever               list[str]           every ATC code of the patient's record
phenotypes             list[str]           ``ehr.PHENOTYPE_GROUPS`` of ``icd10``
medication_groups      list[str]           ``ehr.MEDICATION_GROUPS`` of ``atc``
findings               list[str]           report findings asserted present
findings_possible      list[str]           report findings called possible (not present)
=====================  ==================  ===================================================

No name, MRN, date of birth, session date or report text enters the table: the session
start only dates the codes (``icd10``, ``atc``) and the age, and is not kept (dates of
service are identifiers under HIPAA Safe Harbor, and a suite's tables are meant to be
shared).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from benchmark_tasks.progress import track
from ehr import medication_groups_of, phenotypes_of

if TYPE_CHECKING:
    from clef.align.archive import ArchiveIndex

__all__ = ["COHORT_SCHEMA", "UNKNOWN", "build_cohort", "read_report_findings"]

log = logging.getLogger(__name__)

#: Value of ``site`` / ``setting`` when the archive does not say.
UNKNOWN = "unknown"

COHORT_SCHEMA: dict[str, Any] = {
    "session_id": pl.String,
    "patient_id": pl.String,
    "path": pl.String,
    "site": pl.String,
    "setting": pl.String,
    "age_years": pl.Float64,
    "sex": pl.String,
    "race": pl.String,
    "has_ehr": pl.Boolean,
    "has_report": pl.Boolean,
    "icd10": pl.List(pl.String),
    "atc": pl.List(pl.String),
    "icd10_ever": pl.List(pl.String),
    "atc_ever": pl.List(pl.String),
    "phenotypes": pl.List(pl.String),
    "medication_groups": pl.List(pl.String),
    "findings": pl.List(pl.String),
    "findings_possible": pl.List(pl.String),
}


def read_report_findings(path: str | os.PathLike[str]) -> tuple[list[str], list[str]] | None:
    """Findings of one report file: (present, possible), or None when it cannot be read.

    Uses :func:`reports.read_report` and :func:`reports.process_report` (PHI is scrubbed
    before extraction); the labels are those of :data:`reports.REPORT_FINDINGS`.
    """
    from reports import ReportError, process_report, read_report

    try:
        processed = process_report(read_report(path))
    except ReportError as exc:
        log.warning("report %s skipped: %s", path, exc)
        return None
    present = sorted(k for k, v in processed.labels.items() if v)
    possible = sorted({m.name for m in processed.findings if m.status == "possible"} - set(present))
    return present, possible


def _csv_extras(root: Path) -> dict[str, dict[str, str]]:
    """``site`` / ``setting`` columns of ``sessions.csv`` when present (a fallback for FHIR)."""
    path = root / "sessions.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"site", "setting"} & set(reader.fieldnames or ()):
            return {}
        return {(r.get("session_id") or "").strip(): {k: (r.get(k) or "").strip() for k in ("site", "setting")}
                for r in reader}


def _sorted_unique(items: Iterable[str | None]) -> list[str]:
    return sorted({i for i in items if i})


def build_cohort(archive: str | os.PathLike[str] | ArchiveIndex, *, with_reports: bool = True,
                 progress: bool = False) -> pl.DataFrame:
    """One row per session of an archive: demographics, codes, groups and report findings.

    Parameters
    ----------
    archive : path or ArchiveIndex
        An archive folder (indexed with :func:`clef.align.archive.index_archive`) or an
        index already built.
    with_reports : bool
        Read the reports' findings (False: ``findings`` stay empty, ``has_report``
        False; for code-only suites).
    progress : bool
        Progress bars while reading FHIR and reports.

    Returns
    -------
    polars.DataFrame
        Columns of :data:`COHORT_SCHEMA`, sorted by ``session_id``.

    Raises
    ------
    FileNotFoundError
        The archive folder does not exist.
    ValueError
        The archive holds no session.
    """
    if isinstance(archive, (str, os.PathLike)):
        from clef.align.archive import index_archive  # lazy: clef.align imports the training stack

        index = index_archive(archive, progress=progress)
    else:
        index = archive
    if not index.sessions:
        raise ValueError(f"{index.root}: expected EEG sessions (EDF/BDF files or sessions.csv rows), found none")
    extras = _csv_extras(Path(index.root))
    rows: list[dict[str, Any]] = []
    sessions = sorted(index.sessions.values(), key=lambda s: s.session_id)
    for s in track(sessions, "cohort", enabled=progress):
        rec = index.record_of(s)
        entry = rec.session(s.session_id) if rec is not None else None
        enc = rec.encounter(entry.encounter_id) if rec is not None and entry and entry.encounter_id else None
        extra = extras.get(s.session_id, {})
        row: dict[str, Any] = {
            "session_id": s.session_id,
            "patient_id": s.patient_id,
            "path": s.path,
            "site": (enc.site if enc and enc.site else None) or extra.get("site") or UNKNOWN,
            "setting": (enc.setting if enc and enc.setting else None) or extra.get("setting") or UNKNOWN,
            "age_years": None, "sex": None, "race": None, "has_ehr": False, "has_report": False,
            "icd10": [], "atc": [], "icd10_ever": [], "atc_ever": [], "phenotypes": [], "medication_groups": [],
            "findings": [], "findings_possible": [],
        }
        if rec is not None:
            row.update(sex=rec.sex, race=rec.race_class,
                       icd10_ever=_sorted_unique(c.code for c in rec.conditions),
                       atc_ever=_sorted_unique(m.atc for m in rec.medications))
            if s.start is not None:
                codes = rec.codes_at(s.start)
                row.update(age_years=codes.age, has_ehr=True, icd10=sorted(codes.icd10), atc=sorted(codes.atc),
                           phenotypes=sorted(phenotypes_of(codes.icd10)),
                           medication_groups=sorted(medication_groups_of(codes.atc)))
        rows.append(row)
    if with_reports:
        todo = [(i, s.report) for i, s in enumerate(sessions) if s.report is not None]
        for i, report in track(todo, "reports", enabled=progress):
            found = read_report_findings(report)
            if found is not None:
                rows[i].update(has_report=True, findings=found[0], findings_possible=found[1])
    df = pl.DataFrame(rows, schema=COHORT_SCHEMA)
    log.info("cohort of %s: %d sessions, %d patients, %d with EHR, %d with a report", index.root, df.height,
             df["patient_id"].n_unique(), int(df["has_ehr"].sum()), int(df["has_report"].sum()))
    return df

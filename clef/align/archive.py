"""Which report and which EHR belong to which EEG session: the archive index of stage 2.

An archive is a folder laid out as a hospital export (the synthetic hospital writes the
same layout)::

    ARCHIVE/
      sessions.csv         optional: session_id, path [, patient_id, start, report]
      edf/ ...             EDF/BDF files (any depth; any folder name)
      reports/<session_id>.txt
      fhir/ ...            FHIR R4 Bundles (*.json) or bulk-export NDJSON (*.ndjson)

Linking rules, in order:

1. ``sessions.csv`` when present: one row per session, ``path`` relative to the archive
   root; optional ``patient_id`` (the FHIR ``Patient.id``), ``start`` (ISO 8601) and
   ``report`` (path of the report file, relative to the archive root).
2. Without it, every EDF/BDF file under the archive is a session whose id is its file
   stem.
3. Patient and date of a session, when ``sessions.csv`` does not give them, come from
   the FHIR ``Procedure`` whose identifier is the session id.
4. The report is ``report`` when given, else ``reports/<session_id>.txt`` when it exists.

Sessions without a report or an EHR are kept: stage 2 leaves them out of that term only.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ehr import PatientRecord, load_fhir

log = logging.getLogger(__name__)

EDF_SUFFIXES = (".edf", ".bdf")


@dataclass(frozen=True)
class ArchiveSession:
    """One EEG session of an archive and where its report and EHR are.

    Attributes
    ----------
    session_id : str
    path : str or None
        EDF/BDF path relative to the archive root.
    patient_id : str or None
        FHIR ``Patient.id`` (None when unknown: no EHR term for this session).
    start : datetime or None
        Start of the recording (the date at which conditions and medications count).
    report : Path or None
        The report file, when there is one.
    """

    session_id: str
    path: str | None
    patient_id: str | None
    start: dt.datetime | None
    report: Path | None


@dataclass
class ArchiveIndex:
    """Sessions of an archive with their patient records.

    Attributes
    ----------
    root : Path
    sessions : dict of str to ArchiveSession
    records : dict of str to PatientRecord
        By FHIR ``Patient.id``.
    problems : list of str
        What could not be used (invalid FHIR resources, bad rows), one line each.
    """

    root: Path
    sessions: dict[str, ArchiveSession]
    records: dict[str, PatientRecord]
    problems: list[str] = field(default_factory=list)
    _stems: dict[str, list[ArchiveSession]] | None = field(default=None, init=False, repr=False)

    def record_of(self, session: ArchiveSession) -> PatientRecord | None:
        """The patient record of a session, or None."""
        return self.records.get(session.patient_id) if session.patient_id else None

    def match(self, path: str) -> ArchiveSession | None:
        """The session of an EDF path as a tokens table records it (relative to any root).

        Matches on the file stem, and on the path suffix when two sessions share a stem.
        """
        stem = Path(path).stem
        hits = self._by_stem().get(stem, [])
        if len(hits) == 1:
            return hits[0]
        norm = Path(path).as_posix()
        for s in hits:
            if s.path and (s.path.endswith(norm) or norm.endswith(s.path)):
                return s
        return None

    def _by_stem(self) -> dict[str, list[ArchiveSession]]:
        if self._stems is None:
            stems: dict[str, list[ArchiveSession]] = {}
            for s in self.sessions.values():
                stems.setdefault(Path(s.path).stem if s.path else s.session_id, []).append(s)
            self._stems = stems
        return self._stems


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def _read_sessions_csv(path: Path, problems: list[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"session_id", "path"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: expected columns session_id and path, missing {sorted(missing)}")
        rows = []
        for n, row in enumerate(reader, 2):
            if not (row.get("session_id") or "").strip():
                problems.append(f"{path}:{n}: row without session_id skipped")
                continue
            rows.append({k: (v or "").strip() for k, v in row.items() if k})
        return rows


def index_archive(archive: str | Path, *, fhir: str | Path | None = None, reports: str | Path | None = None,
                  progress: bool = False) -> ArchiveIndex:
    """Index an archive's sessions, reports and FHIR records (see the module docstring).

    Parameters
    ----------
    archive : path
        Archive root.
    fhir : path, optional
        FHIR file or folder (default ``ARCHIVE/fhir`` when it exists).
    reports : path, optional
        Reports folder (default ``ARCHIVE/reports``).
    progress : bool
        Progress bar while reading FHIR.

    Raises
    ------
    FileNotFoundError
        The archive folder does not exist.
    ValueError
        ``sessions.csv`` lacks its required columns.
    """
    root = Path(archive)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: expected an archive folder, found " + ("a file" if root.exists() else "nothing"))
    problems: list[str] = []
    fhir_path = Path(fhir) if fhir is not None else root / "fhir"
    records: dict[str, PatientRecord] = {}
    if fhir_path.exists():
        loaded = load_fhir(fhir_path, progress=progress)
        records = dict(loaded.records)
        problems += [f"{p.source}: {p.resource_type or '?'}/{p.resource_id or '?'}: {p.reason}" for p in loaded.problems]
    else:
        log.warning("%s: no FHIR folder; sessions have no EHR term", fhir_path)
    procedures: dict[str, tuple[str, dt.datetime | None]] = {}
    for pid, rec in records.items():
        for s in rec.sessions:
            procedures[s.session_id] = (pid, s.start)
    rep_dir = Path(reports) if reports is not None else root / "reports"

    sessions: dict[str, ArchiveSession] = {}
    csv_path = root / "sessions.csv"
    if csv_path.is_file():
        rows = _read_sessions_csv(csv_path, problems)
    else:
        rows = [{"session_id": p.stem, "path": p.relative_to(root).as_posix()}
                for p in sorted(root.rglob("*")) if p.suffix.lower() in EDF_SUFFIXES and p.is_file()]
    for row in rows:
        sid = row["session_id"]
        if sid in sessions:
            problems.append(f"session {sid} listed twice; the first row is kept")
            continue
        proc_pid, proc_start = procedures.get(sid, (None, None))
        report = (root / row["report"]) if row.get("report") else rep_dir / f"{sid}.txt"
        sessions[sid] = ArchiveSession(
            session_id=sid,
            path=row.get("path") or None,
            patient_id=row.get("patient_id") or proc_pid,
            start=_parse_time(row.get("start")) or proc_start,
            report=report if report.is_file() else None,
        )
    n_rep = sum(s.report is not None for s in sessions.values())
    n_ehr = sum(s.patient_id in records and s.start is not None for s in sessions.values())
    log.info("archive %s: %d sessions, %d with a report, %d with an EHR at the session date, %d problems",
             root, len(sessions), n_rep, n_ehr, len(problems))
    return ArchiveIndex(root=root, sessions=sessions, records=records, problems=problems)

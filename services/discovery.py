"""Archive discovery: EDF/BDF files found recursively, their session ids and sites.

The session id is the archive's own: the ``session_id`` that ``sessions.csv`` (in the
archive root, or its parent when the EDF folder itself is given) gives the file's path
when there is such a table, else the file stem. When two files
share a stem (``p1/s1.edf`` and ``p2/s1.edf``), both get their relative path without the
suffix instead, so ids stay unique. The site comes from ``sessions.csv``'s ``site`` column,
else from a directory level of the path when asked (``site_level=0``: the first folder),
else it is unknown.

The patient of a session is the archive's when it names one: ``sessions.csv``'s
``patient_id``, else the patient of the FHIR ``Procedure`` whose identifier is the session
id (``fhir/`` beside ``sessions.csv`` or in the root, read only when some file still lacks
a patient). Only its salted hash is kept (:func:`tokenizer.deid.known_patient_hash`: blank
and placeholder ids give none); files without one fall back on the header's patient ID.
Encounter ids and dates in ``sessions.csv`` are never used.

With ``anonymous_ids`` the session id and the relative path of every file are replaced by
salted hashes (:func:`tokenizer.deid.anonymous_id`, kinds ``session`` and ``path``, with the
installation's de-identification salt) before anything downstream sees them, so file and
folder names (MRNs, dates, patient numbers) reach no table, message or response.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path, PurePosixPath

from tokenizer.deid import anonymous_id, known_patient_hash
from tokenizer.spectrogram_cache import RECORDING_SUFFIXES, require_archive_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveFile:
    """One recording of an archive.

    Attributes
    ----------
    path : Path
        Absolute path.
    rel : str
        Path relative to the archive root (posix separators).
    size : int
        Bytes.
    mtime_ns : int
        Modification time.
    session_id : str
    site, setting : str or None
    patient_hash : str or None
        Salted hash of the archive's patient id (``sessions.csv`` or FHIR); None when the
        archive names none (the header's patient ID is used then).
    """

    path: Path
    rel: str
    size: int
    mtime_ns: int
    session_id: str
    site: str | None = None
    setting: str | None = None
    patient_hash: str | None = None


def _read_sessions_csv(path: Path) -> dict[str, dict[str, str | None]]:
    """``{path relative to the table's folder: {session_id, site, setting, patient_hash}}`` from a ``sessions.csv``."""
    out: dict[str, dict[str, str | None]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or ())
        if not {"session_id", "path"} <= cols:
            log.warning("%s: columns session_id and path expected, found %s; not used", path, sorted(cols))
            return {}
        for row in reader:
            rel = str(PurePosixPath(row["path"].replace("\\", "/")))
            out[rel] = {"session_id": row["session_id"].strip() or None,
                        "site": (row.get("site") or "").strip() or None,
                        "setting": (row.get("setting") or "").strip() or None,
                        "patient_hash": known_patient_hash((row.get("patient_id") or "").strip())}
    return out


def _fhir_patient_hashes(base: Path, files: list[ArchiveFile]) -> dict[str, str | None]:
    """``{relative path: patient hash}`` from the FHIR ``Procedure`` of each file's session id."""
    from clef.align.archive import index_archive  # FHIR parsing: only when it is needed

    try:
        index = index_archive(base)
    except ValueError as exc:  # a sessions.csv without its columns: already reported by discover
        log.warning("%s: FHIR patients not used (%s)", base, exc)
        return {}
    out: dict[str, str | None] = {}
    for f in files:
        s = index.sessions.get(f.session_id) or index.match(f.rel)
        out[f.rel] = known_patient_hash(s.patient_id) if s is not None else None
    log.info("%s: %d of %d files without a patient in sessions.csv linked to a FHIR patient", base,
             sum(v is not None for v in out.values()), len(files))
    return out


def discover(root: str | Path, *, site_level: int | None = None, anonymous_ids: bool = False) -> list[ArchiveFile]:
    """Every EDF/BDF file under ``root`` (recursive, suffix in any case), sorted by path.

    Parameters
    ----------
    root : path
        Archive root.
    site_level : int, optional
        Take the site from this directory level of the relative path (0 = first folder)
        when ``sessions.csv`` does not give one.
    anonymous_ids : bool
        Replace session ids and relative paths by salted hashes (module docstring).

    Raises
    ------
    FileNotFoundError
        ``root`` is not a directory.
    """
    root = require_archive_dir(root)
    if site_level is not None and site_level < 0:
        raise ValueError(f"site_level must be >= 0, found {site_level}")
    # sessions.csv sits at the archive root, or one level up when the EDF folder is given
    # (the synthetic hospital: hospital/sessions.csv with paths edf/<site>/...).
    csv_dir = next((d for d in (root, root.parent) if (d / "sessions.csv").is_file()), None)
    table = _read_sessions_csv(csv_dir / "sessions.csv") if csv_dir is not None else {}
    prefix = root.resolve().relative_to(csv_dir.resolve()).as_posix() if csv_dir is not None else "."
    found: list[tuple[Path, str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(RECORDING_SUFFIXES):
                continue
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError as exc:  # a dangling or looping link: recorded as failed later, not hidden
                log.warning("%s: cannot stat (%s)", p, exc)
                try:
                    st = p.lstat()
                except OSError:
                    continue
            found.append((p, p.relative_to(root).as_posix(), st))
    found.sort(key=lambda t: t[1])
    stems = Counter(PurePosixPath(rel).stem for _, rel, _ in found)
    files = []
    for p, rel, st in found:
        info = table.get(rel if prefix == "." else f"{prefix}/{rel}", {})
        stem = PurePosixPath(rel).stem
        sid = info.get("session_id") or (stem if stems[stem] == 1 else str(PurePosixPath(rel).with_suffix("")))
        site = info.get("site")
        parts = PurePosixPath(rel).parts[:-1]
        if site is None and site_level is not None and site_level < len(parts):
            site = parts[site_level]
        try:
            path = p.resolve()
        except (OSError, RuntimeError):  # a symlink loop: kept as is, the header pass records it
            path = p.absolute()
        files.append(ArchiveFile(path=path, rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns,
                                 session_id=sid, site=site, setting=info.get("setting"),
                                 patient_hash=info.get("patient_hash")))
    base = csv_dir if csv_dir is not None else root
    unlinked = [f for f in files if f.patient_hash is None]
    if unlinked and (base / "fhir").is_dir():
        linked = _fhir_patient_hashes(base, unlinked)
        files = [replace(f, patient_hash=linked.get(f.rel)) if f.patient_hash is None else f for f in files]
    if anonymous_ids:
        files = [replace(f, rel=anonymous_id(f.rel, "path"), session_id=anonymous_id(f.session_id, "session"))
                 for f in files]
    return files

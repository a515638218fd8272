"""Archive discovery: EDF/BDF files found recursively, their session ids and sites.

The session id is the archive's own: the ``session_id`` that ``sessions.csv`` (in the
archive root, or its parent when the EDF folder itself is given) gives the file's path
when there is such a table, else the file stem. When two files
share a stem (``p1/s1.edf`` and ``p2/s1.edf``), both get their relative path without the
suffix instead, so ids stay unique. The site comes from ``sessions.csv``'s ``site`` column,
else from a directory level of the path when asked (``site_level=0``: the first folder),
else it is unknown. Only ``session_id``, ``path``, ``site`` and ``setting`` are read from
``sessions.csv``: patient ids, encounter ids and dates there are never used.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

#: File suffixes of recordings (any case).
RECORDING_SUFFIXES = (".edf", ".bdf")


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
    """

    path: Path
    rel: str
    size: int
    mtime_ns: int
    session_id: str
    site: str | None = None
    setting: str | None = None


def _read_sessions_csv(path: Path) -> dict[str, dict[str, str | None]]:
    """``{path relative to the table's folder: {session_id, site, setting}}`` from a ``sessions.csv``."""
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
                        "setting": (row.get("setting") or "").strip() or None}
    return out


def discover(root: str | Path, *, site_level: int | None = None) -> list[ArchiveFile]:
    """Every EDF/BDF file under ``root`` (recursive, suffix in any case), sorted by path.

    Parameters
    ----------
    root : path
        Archive root.
    site_level : int, optional
        Take the site from this directory level of the relative path (0 = first folder)
        when ``sessions.csv`` does not give one.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"archive {root}: expected a directory of EDF/BDF files, found "
                                + ("a file" if root.exists() else "nothing"))
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
                                 session_id=sid, site=site, setting=info.get("setting")))
    return files

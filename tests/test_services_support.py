"""Fixtures and helpers shared by the services tests (imported by the other test_services_* modules).

The model comes from the session-scoped ``pipeline`` fixture of conftest.py; while
developing, ``CLEF_TEST_CHECKPOINT`` and ``CLEF_TEST_HOSPITAL`` can point at a checkpoint and
a synthetic hospital built once elsewhere, to skip that (minutes-long) fixture.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.store_writer import StoreWriter, utc_now


@pytest.fixture(scope="session")
def svc_hospital(request: pytest.FixtureRequest) -> Path:
    """A synthetic hospital (conftest's, or ``CLEF_TEST_HOSPITAL``)."""
    env = os.environ.get("CLEF_TEST_HOSPITAL")
    return Path(env) if env else request.getfixturevalue("hospital")


@pytest.fixture(scope="session")
def svc_checkpoint(request: pytest.FixtureRequest) -> Path:
    """A trained session-transformer checkpoint (conftest's pipeline, or ``CLEF_TEST_CHECKPOINT``)."""
    env = os.environ.get("CLEF_TEST_CHECKPOINT")
    return Path(env) if env else request.getfixturevalue("pipeline").checkpoint


def make_archive(hospital: Path, out: Path, n: int, *, bad: bool = True, duplicate: bool = True) -> Path:
    """Copy ``n`` sessions of the hospital (layout and sessions.csv kept), plus broken files.

    Broken files: ``edf/S09/P999/notes.edf`` (text, not EDF) and ``edf/S09/P999/cut.edf``
    (a header cut short). ``zz/again.EDF`` holds the bytes of the first session (found after it: paths are sorted).
    """
    with open(hospital / "sessions.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["path"])[:n]
    for r in rows:
        dst = out / r["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(hospital / r["path"], dst)
    with open(out / "sessions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if bad:
        (out / "edf/S09/P999").mkdir(parents=True)
        (out / "edf/S09/P999/notes.edf").write_text("this is a text file, not a recording\n")
        (out / "edf/S09/P999/cut.edf").write_bytes((hospital / rows[0]["path"]).read_bytes()[:300])
    if duplicate:
        (out / "zz").mkdir()
        shutil.copy2(hospital / rows[0]["path"], out / "zz/again.EDF")
    return out


def synthetic_store(path: Path, n: int = 3000, dim: int = 32, *, seed: int = 0, model_id: str = "m" * 16,
                    n_sites: int = 5, n_patients: int | None = None, part: int = 1000) -> dict[str, np.ndarray]:
    """A store of clustered random embeddings with metadata (no model needed).

    Returns the arrays written: ``vectors``, ``sites``, ``ages`` (NaN = unknown), ``patients``, ``ids``.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = (centres[rng.integers(0, 20, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)
    sites = np.array([f"S{i:02d}" for i in rng.integers(1, n_sites + 1, n)])
    ages = np.round(rng.uniform(0, 95, n), 2)
    ages[rng.random(n) < 0.05] = np.nan
    patients = rng.integers(0, n_patients or max(1, n // 3), n)
    ids = np.array([f"sess{i:05d}" for i in range(n)])
    with StoreWriter(path, path / "archive") as w:
        for a in range(0, n, part):
            man, ses, emb = [], [], []
            for i in range(a, min(n, a + part)):
                sha = f"{i:064x}"
                man.append({"path": f"x/{ids[i]}.edf", "sha256": sha, "size": 1, "status": "done", "error_kind": None,
                            "error": None, "seconds": 0.1, "updated": utc_now(), "model_id": model_id, "mtime_ns": 0})
                ses.append({"session_id": ids[i], "source_sha256": sha, "path": f"x/{ids[i]}.edf", "format": "EDF+C",
                            "duration_s": 600.0, "n_windows": 1, "sex": "FM"[i % 2],
                            "age_years": None if np.isnan(ages[i]) else float(ages[i]),
                            "patient_hash": f"p{patients[i]:06d}", "site": str(sites[i]), "setting": "routine"})
                emb.append({"session_id": ids[i], "source_sha256": sha, "model_id": model_id,
                            "vector": x[i].tolist(), "window_vectors": [x[i].tolist()], "n_windows": 1})
            w.commit(man, ses, emb, models={model_id: {"dim": dim, "checkpoint": "synthetic"}})
    return {"vectors": x, "sites": sites, "ages": ages, "patients": patients, "ids": ids}


def test_make_archive_layout(tmp_path: Path) -> None:
    """The helper itself: a fake hospital of three files becomes an archive with broken files."""
    hosp = tmp_path / "h"
    (hosp / "edf/S01/P1").mkdir(parents=True)
    for s in ("P1-S01", "P1-S02", "P1-S03"):
        (hosp / f"edf/S01/P1/{s}.edf").write_bytes(b"0       " + s.encode() * 50)
    with open(hosp / "sessions.csv", "w") as f:
        f.write("session_id,patient_id,path,site\n")
        for s in ("P1-S01", "P1-S02", "P1-S03"):
            f.write(f"{s},P1,edf/S01/P1/{s}.edf,S01\n")
    out = make_archive(hosp, tmp_path / "a", 2)
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert found == ["edf/S01/P1/P1-S01.edf", "edf/S01/P1/P1-S02.edf", "edf/S09/P999/cut.edf",
                     "edf/S09/P999/notes.edf", "sessions.csv", "zz/again.EDF"]

"""The shared builders of ``tests/factories.py`` build what their docstrings promise."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.factories import make_archive, wait_until


def test_make_archive_layout(tmp_path: Path) -> None:
    """A fake hospital of three files becomes an archive with broken files."""
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


def test_fake_archive_is_indexable(fhir_archive: Path) -> None:
    from clef.align.archive import index_archive

    idx = index_archive(fhir_archive)
    truth = pl.read_parquet(fhir_archive / "truth.parquet")
    assert len(idx.sessions) == truth.height
    assert all(s.report is not None and s.patient_id for s in idx.sessions.values())
    assert not idx.problems


def test_wait_until_returns_once_true_and_fails_on_its_deadline() -> None:
    calls = iter([False, False, True])
    wait_until(lambda: next(calls), timeout=5)
    try:
        wait_until(lambda: False, timeout=0.05, message="never")
    except AssertionError as e:
        assert "never not reached within 0.05 s" in str(e)
    else:
        raise AssertionError("wait_until did not fail on its deadline")

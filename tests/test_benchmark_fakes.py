"""Fakes for the benchmark tests: a FHIR-and-reports-only synthetic archive and embedding stores.

The archive is the synthetic hospital's population written without EEG: FHIR bundles,
``sessions.csv`` and reports (written from the planted findings, as the hospital's report
writer does from the simulator's summary), plus ``truth.parquet``. Building it takes about
a second, so the cohort, generator, matching and CLI tests need no EDF file.

Other test modules import :func:`fhir_archive` and :func:`write_store`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

N_PATIENTS = 90
SEED = 11


def build_fhir_archive(out: Path, n_patients: int = N_PATIENTS, seed: int = SEED) -> Path:
    """Write the archive into ``out`` (once: a marker file makes later calls free)."""
    marker = out / ".complete"
    if marker.is_file():
        return out
    from clef.synthetic.fhir import population_bundles
    from clef.synthetic.hospital import session_relpath
    from clef.synthetic.population import generate_population
    from clef.synthetic.reports import write_report
    from clef.synthetic.spec import EEGSummary, StateSpan

    pop = generate_population(n_patients, seed)
    (out / "fhir").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(exist_ok=True)
    for bundle in population_bundles(pop):
        pid = bundle["id"].removesuffix("-bundle")
        (out / "fhir" / f"{pid}.json").write_text(json.dumps(bundle), encoding="utf-8")
    patients = {p.patient_id: p for p in pop.patients}
    rows = []
    for s in pop.sessions:
        p = patients[s.patient_id]
        summary = EEGSummary(pdr_hz=9.5, states=(StateSpan(0.0, s.duration_s, "awake"),), events=(),
                             findings=s.findings)
        report = write_report(s, p, summary, np.random.default_rng(s.seed), pop.config)
        (out / "reports" / f"{s.session_id}.txt").write_text(report.text, encoding="utf-8")
        rows.append({"session_id": s.session_id, "patient_id": s.patient_id, "encounter_id": s.encounter_id,
                     "path": session_relpath(s), "site": s.site, "setting": s.setting, "start": s.start.isoformat(),
                     "age_years": float(s.age_years), "sex": p.sex, "condition_codes": list(s.condition_codes),
                     "atc_codes": list(s.atc_codes), "finding_names": sorted({f.name for f in s.findings}),
                     "report_asserted": list(report.asserted),
                     # the hospital's truth columns the oracle reads (benchmark_tasks.baselines.oracle)
                     "findings": [{"name": f.name, "severity": float(f.severity), "side": f.side, "cause": f.cause}
                                  for f in s.findings],
                     "pdr_hz": summary.pdr_hz,
                     "states": [{"start_s": st.start_s, "stop_s": st.stop_s, "state": st.state}
                                for st in summary.states],
                     "n_ieds": 0, "n_seizures": 0})
    with open(out / "sessions.csv", "w", newline="") as f:
        w = csv.writer(f)
        cols = ("session_id", "patient_id", "encounter_id", "path", "site", "setting", "start")
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])
    pl.DataFrame(rows).write_parquet(out / "truth.parquet")
    marker.write_text("ok")
    return out


@pytest.fixture(scope="session")
def fhir_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FHIR-only archive (built once per test session, whichever module asks first)."""
    return build_fhir_archive(tmp_path_factory.getbasetemp() / "bench_fhir_archive")


def write_store(root: Path, session_ids: list[str], vectors: np.ndarray, model_id: str = "m0", part: int = 0) -> Path:
    """Write ``STORE/embeddings/part-NNNNN.parquet`` as the services' batch embedder does."""
    d = root / "embeddings"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"part-{part:05d}.parquet"
    pl.DataFrame({"session_id": session_ids, "source_sha256": ["0" * 64] * len(session_ids),
                  "model_id": [model_id] * len(session_ids),
                  "vector": [np.asarray(v, np.float32) for v in vectors],
                  "n_windows": [1] * len(session_ids)},
                 schema={"session_id": pl.String, "source_sha256": pl.String, "model_id": pl.String,
                         "vector": pl.List(pl.Float32), "n_windows": pl.Int64}).write_parquet(path)
    return path


def planted_vectors(cohort: pl.DataFrame, signal: dict[str, float], dim: int = 16, seed: int = 0,
                    column: str = "findings") -> np.ndarray:
    """Noise vectors with a shift along one axis per listed finding / group present in ``column``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(cohort.height, dim))
    for k, (name, strength) in enumerate(signal.items()):
        has = np.array([name in (v or []) for v in cohort[column].to_list()])
        x[has, k % dim] += strength
    return x


def test_fake_archive_is_indexable(fhir_archive: Path) -> None:
    from clef.align.archive import index_archive

    idx = index_archive(fhir_archive)
    truth = pl.read_parquet(fhir_archive / "truth.parquet")
    assert len(idx.sessions) == truth.height
    assert all(s.report is not None and s.patient_id for s in idx.sessions.values())
    assert not idx.problems


_COHORTS: dict[Path, pl.DataFrame] = {}


def cohort_of(archive: Path) -> pl.DataFrame:
    """The cohort table of an archive, built once per test process."""
    if archive not in _COHORTS:
        from benchmark_tasks.cohort import build_cohort

        _COHORTS[archive] = build_cohort(archive)
    return _COHORTS[archive]


@pytest.fixture(scope="session")
def fhir_cohort(fhir_archive: Path) -> pl.DataFrame:
    """Cohort table of the FHIR-only archive."""
    return cohort_of(fhir_archive)


_SUITES: dict[tuple[Path, int], Path] = {}


def small_suite(archive: Path, out_dir: Path, min_positives: int = 10) -> Path:
    """A suite of the FHIR-only archive: curated groups and findings only (generated once per test process)."""
    key = (archive, min_positives)
    if key not in _SUITES:
        from benchmark_tasks.config import GeneratorConfig, SuiteConfig
        from benchmark_tasks.suite import generate_suite

        cfg = SuiteConfig(generator=GeneratorConfig(min_positives=min_positives, min_positive_patients=4,
                                                    icd_categories=False, atc_level=None))
        generate_suite(archive, out_dir / "small.yaml", config=cfg, cohort=cohort_of(archive))
        _SUITES[key] = out_dir / "small.yaml"
    return _SUITES[key]


@pytest.fixture(scope="session")
def fhir_suite(fhir_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a generated suite YAML of the FHIR-only archive (its tables beside it)."""
    return small_suite(fhir_archive, tmp_path_factory.getbasetemp() / "bench_suite")

"""Shared fixtures: isolated CLEF home and salt, real-data folder, hospital and pipeline,
services and benchmark data. Builders live in ``tests/factories.py``."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from tests.factories import REAL_DIR, build_fhir_archive, cohort_of, small_suite


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.getbasetemp() / "clef_home"
    monkeypatch.setenv("CLEF_HOME", str(home))
    monkeypatch.setenv("CLEF_DEID_SALT", "test-salt")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread per test: the models here are small, and on a 2-core machine a
    second intra-op thread spins against other work and runs slower, not faster."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The folder of real EDF/BDF files shipped with the tests (tests/data/real)."""
    return REAL_DIR


#: Fixtures that build for minutes (the hospital, the trained pipeline, the demo; some
#: through ``request.getfixturevalue``, which the fixture closure does not show). The test
#: that asks for one first pays its setup, so a test using any of them gets
#: ``LONG_SETUP_TIMEOUT`` seconds instead of the default ``timeout`` of pyproject.toml.
LONG_SETUP_FIXTURES = frozenset({"hospital", "pipeline", "svc_hospital", "svc_checkpoint",
                                 "anon", "trained", "source", "demo_run"})
LONG_SETUP_TIMEOUT = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if uses & LONG_SETUP_FIXTURES and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LONG_SETUP_TIMEOUT))


def pytest_report_header(config: pytest.Config) -> str:
    extra = os.environ.get("CLEF_TEST_REAL_EXTRA") or "unset (tests of files that cannot be shipped skip)"
    return (f"real EDF data: {len(list(REAL_DIR.rglob('*.*df')))} files in {REAL_DIR}; CLEF_TEST_REAL_EXTRA: {extra}; "
            f"cpus={os.cpu_count()}")


@pytest.fixture(scope="session")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic hospital, built once per test session (80 patients, ~140 sessions of 2-4 min)."""
    from clef.synthetic.hospital import HospitalConfig, synthesize_hospital

    out = tmp_path_factory.mktemp("hospital")
    synthesize_hospital(out, 80, seed=7, config=HospitalConfig(minutes_range=(2.0, 4.0)), workers=2, overwrite=True)
    return out


@pytest.fixture(scope="session")
def pipeline(hospital: Path, tmp_path_factory: pytest.TempPathFactory):
    """Tiny tokenizer + tokens + tiny session transformer trained briefly on the hospital."""
    import torch

    from clef.config import SessionConfig
    from clef.workflow import train_all
    from tokenizer.presets import load_preset

    torch.set_num_threads(1)  # small models: threads only add overhead (and contention)
    out = tmp_path_factory.mktemp("pipeline")
    small = load_preset(SessionConfig, "tiny", {"model": {"dim": 64, "depth": 2, "heads": 4}, "train": {"batch_size": 8},
                                           "optim": {"lr": 2e-3, "warmup_steps": 10}})
    r = train_all(hospital / "edf", out, tokenizer_steps=30, session_config=small, pretrain_steps=150,
                  cache_dir=out / "cache")
    if r.pretrain.baseline_acc > 0.9:
        # A 30-step tiny tokenizer can map nearly every window to one code (it did while its
        # initial weights were not seeded; training is now reproducible), which every test
        # built on this fixture would then fail for a reason none of them tests. Should a
        # change of data or code bring it back, retrain longer instead.
        out = tmp_path_factory.mktemp("pipeline_retry")
        r = train_all(hospital / "edf", out, tokenizer_steps=60, session_config=small, pretrain_steps=150,
                      cache_dir=out / "cache")
        assert r.pretrain.baseline_acc <= 0.9, f"the tiny tokenizer collapsed twice: {r.pretrain}"
    return r


# -- services: a hospital and a checkpoint, overridable while developing ----------------------
#
# While developing, ``CLEF_TEST_CHECKPOINT`` and ``CLEF_TEST_HOSPITAL`` can point at a
# checkpoint and a synthetic hospital built once elsewhere, to skip the (minutes-long)
# ``pipeline`` fixture.

@pytest.fixture(scope="session")
def svc_hospital(request: pytest.FixtureRequest) -> Path:
    """A synthetic hospital (the ``hospital`` fixture's, or ``CLEF_TEST_HOSPITAL``)."""
    env = os.environ.get("CLEF_TEST_HOSPITAL")
    return Path(env) if env else request.getfixturevalue("hospital")


@pytest.fixture(scope="session")
def svc_checkpoint(request: pytest.FixtureRequest) -> Path:
    """A trained session-transformer checkpoint (the ``pipeline`` fixture's, or ``CLEF_TEST_CHECKPOINT``)."""
    env = os.environ.get("CLEF_TEST_CHECKPOINT")
    return Path(env) if env else request.getfixturevalue("pipeline").checkpoint


# -- benchmark: the FHIR-only archive, its cohort and a small suite ---------------------------

@pytest.fixture(scope="session")
def fhir_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FHIR-only archive of :func:`tests.factories.build_fhir_archive` (built once per test session)."""
    return build_fhir_archive(tmp_path_factory.getbasetemp() / "bench_fhir_archive")


@pytest.fixture(scope="session")
def fhir_cohort(fhir_archive: Path) -> pl.DataFrame:
    """Cohort table of the FHIR-only archive."""
    return cohort_of(fhir_archive)


@pytest.fixture(scope="session")
def fhir_suite(fhir_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a generated suite YAML of the FHIR-only archive (its tables beside it)."""
    return small_suite(fhir_archive, tmp_path_factory.getbasetemp() / "bench_suite")

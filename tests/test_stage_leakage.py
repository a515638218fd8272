"""One patient split through every stage: the benchmark refuses a checkpoint aligned on a test patient.

The leak is built both ways: a checkpoint aligned under another split than the suite's,
and a suite made after training under another split than the checkpoint's. Stage 1 on
test sessions is allowed and reported as transductive; ``exclude_test_patients`` makes it
inductive.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark_tasks.config import GeneratorConfig, SuiteConfig
from benchmark_tasks.leakage import StageLeakError, audit_checkpoint
from benchmark_tasks.suite import generate_suite, load_suite
from clef.align.archive import index_archive
from clef.align.config import AlignConfig
from clef.align.train import align
from clef.patients import PatientSplit, overlap, patient_record
from tokenizer.deid import patient_hash
from tokenizer.presets import load_preset

SMALL = {"report": {"dim": 32, "depth": 1, "heads": 4}, "ehr": {"dim": 32, "depth": 1, "heads": 4},
         "loss": {"embed_dim": 32}, "train": {"batch_size": 16, "checkpoint_every": 100}}


@pytest.fixture(scope="module", autouse=True)
def _module_salt():
    # module fixtures run before conftest's per-test salt: give them the same one
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLEF_DEID_SALT", "test-salt")
        yield


@pytest.fixture(scope="module")
def index(hospital: Path):
    return index_archive(hospital)


def _suite(hospital: Path, out: Path, salt: str | None = None):
    cfg = SuiteConfig(generator=GeneratorConfig(min_positives=4, min_positive_patients=2, min_test_positives=1,
                                                icd_categories=False, atc_level=None),
                      splits=PatientSplit(salt=salt) if salt else PatientSplit())
    return generate_suite(hospital, out / "suite.yaml", config=cfg)


@pytest.fixture(scope="module")
def suite(hospital: Path, tmp_path_factory: pytest.TempPathFactory):
    return _suite(hospital, tmp_path_factory.mktemp("suite"))


def _align(pipeline, index, out: Path, salt: str | None = None) -> Path:
    over = dict(SMALL, split={"salt": salt}) if salt else SMALL
    cfg = load_preset(AlignConfig, "tiny", over)
    align(pipeline.checkpoint, index, cfg, out, tokens=pipeline.tokens, max_steps=2,
          trainer_kwargs={"enable_progress_bar": False})
    return out


@pytest.fixture(scope="module")
def aligned(pipeline, index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _align(pipeline, index, tmp_path_factory.mktemp("aligned") / "aligned")


def test_alignment_and_benchmark_share_one_patient_split() -> None:
    assert AlignConfig().split == SuiteConfig().splits == PatientSplit()
    split = PatientSplit()
    ids = [f"P{i:05d}" for i in range(400)]
    share = sum(split.of(p) == "test" for p in ids) / len(ids)
    assert 0.22 < share < 0.38  # about the documented 30 %
    assert PatientSplit(salt="other").of("P00001") in ("train", "test")


def test_patient_record_keeps_salted_hashes_never_ids() -> None:
    rec = patient_record(["P1", "P2", "P2", ""])
    assert rec["n"] == 2 and "P1" not in json.dumps(rec)
    assert rec["keys"] == sorted([patient_hash("P1"), patient_hash("P2")])
    assert overlap(rec, patient_ids=["P2", "P3"]) == (1, patient_hash("P2"))


def test_aligned_checkpoint_records_its_training_patients(aligned: Path, suite) -> None:
    meta = json.loads((aligned / "meta.json").read_text())
    rec = meta["trained_on"]
    assert rec["split"] == PatientSplit().model_dump()
    sup = rec["supervised_patients"]
    assert sup["n"] > 10 and sup["n"] == len(sup["keys"])
    train_patients = suite.splits.filter(suite.splits["split"] == "train")["patient_id"].to_list()
    assert overlap(sup, patient_ids=train_patients)[0] == sup["n"]  # every aligned patient is a train patient
    assert rec["stage1"]["sessions"]["n"] > 0  # stage 1's own record travels with it


def test_same_split_passes_and_stage1_on_test_sessions_is_reported_transductive(aligned: Path, suite) -> None:
    row = audit_checkpoint("aligned", aligned, suite)
    assert row["supervised_test_patients"] == 0
    assert row["n_test_patients"] > 0
    # the test fixture's stage 1 was pretrained on every session of the hospital but the ~10 %
    # it holds out to measure masked-token accuracy
    assert 0.7 * row["n_test_sessions"] < row["stage1_test_sessions"] <= row["n_test_sessions"]
    assert row["tokenizer_test_sessions"] == row["n_test_sessions"]  # its tokenizer too: every session
    assert row["transductive"] is True
    assert "transductive: stage 1" in row["note"] and "transductive: the tokenizer" in row["note"]


def test_checkpoint_aligned_under_another_split_is_refused(pipeline, index, suite, tmp_path: Path) -> None:
    leaky = _align(pipeline, index, tmp_path / "leaky", salt="another-split")
    with pytest.raises(StageLeakError, match=r"aligned on the reports/EHR of \d+ of the suite's \d+ test patients "
                                             r"\(e\.g\. patient hash [0-9a-f]{16}\)"):
        audit_checkpoint("leaky", leaky, suite)


def test_suite_made_after_training_under_another_split_is_refused(aligned: Path, hospital: Path,
                                                                 tmp_path: Path) -> None:
    later = _suite(hospital, tmp_path, salt="a-later-split")
    with pytest.raises(StageLeakError, match="test patients"):
        audit_checkpoint("aligned", aligned, later)


def test_benchmark_run_refuses_the_leak_in_one_line(aligned: Path, hospital: Path, tmp_path: Path) -> None:
    from benchmark_tasks.cli import register
    from clef.cli import app

    if not any(g.name == "benchmark" for g in app.registered_groups):
        register(app)  # what 'clef' does at start-up from the clef.cli_plugins entry point
    later = _suite(hospital, tmp_path, salt="a-later-split")
    res = CliRunner().invoke(app, ["benchmark", "run", "--suite", str(later.path), "--out", str(tmp_path / "res"),
                                   "--checkpoint", f"aligned={aligned}", "--no-bandpower", "--no-plots"])
    assert res.exit_code == 2, res.output  # clef.cli.fail: one error line, exit 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "refusing to run" in lines[0] and "patient hash" in lines[0]
    assert not (tmp_path / "res" / "results.parquet").exists()


def test_aligned_checkpoint_without_a_record_needs_explicit_consent(aligned: Path, suite, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(aligned, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["trained_on"]
    (old / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StageLeakError, match="records no training patients"):
        audit_checkpoint("old", old, suite)
    row = audit_checkpoint("old", old, suite, allow_unaudited=True)
    assert row["supervised_test_patients"] is None and "NOT audited" in row["note"]


def test_stage1_can_exclude_test_patients(pipeline, hospital: Path, suite, tmp_path: Path) -> None:
    from clef.config import SessionConfig
    from clef.pretrain import pretrain

    cfg = load_preset(SessionConfig, "tiny", {"model": {"dim": 32, "depth": 1, "heads": 4}, "train": {"batch_size": 4}})
    out = pretrain(pipeline.tokens, cfg, tmp_path / "inductive", max_steps=2, archive=hospital,
                   exclude_test_patients=True, trainer_kwargs={"enable_progress_bar": False}).checkpoint
    meta = json.loads((out / "meta.json").read_text())
    assert meta["trained_on"]["excluded"] == "test patients"
    row = audit_checkpoint("inductive", out, suite)
    assert row["stage"] == 1 and row["stage1_test_patients"] == 0 and row["stage1_test_sessions"] == 0
    assert "stage 1" not in row["note"]  # stage 1 is inductive; its tokenizer (the fixture's) is not
    assert row["transductive"] is True and "the tokenizer" in row["note"]
    with pytest.raises(ValueError, match="needs the archive"):
        pretrain(pipeline.tokens, cfg, tmp_path / "x", max_steps=1, exclude_test_patients=True)

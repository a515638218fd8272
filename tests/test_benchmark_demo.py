"""The benchmark step of ``clef demo``: suite, models, report and plots from the demo hospital."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from benchmark_tasks.demo import _stage1_of, demo_step
from benchmark_tasks.suite import load_suite

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_stage1_is_found_only_when_it_is_the_aligned_model_s_init(tmp_path: Path) -> None:
    aligned, stage1 = tmp_path / "aligned", tmp_path / "runs" / "pretrain"
    aligned.mkdir()
    stage1.mkdir(parents=True)
    (aligned / "meta.json").write_text(json.dumps({"init_weights_sha256": "abc"}))
    (stage1 / "meta.json").write_text(json.dumps({"weights_sha256": "abc"}))
    assert _stage1_of(aligned, tmp_path) == stage1
    (stage1 / "meta.json").write_text(json.dumps({"weights_sha256": "other"}))
    assert _stage1_of(aligned, tmp_path) is None
    (stage1 / "meta.json").unlink()
    assert _stage1_of(aligned, tmp_path) is None


def test_demo_step_writes_a_suite_and_a_report_with_plots(hospital: Path, pipeline, tmp_path: Path) -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    res = demo_step(hospital, pipeline.checkpoint, tmp_path, console)
    suite = load_suite(tmp_path / "benchmark" / "suite.yaml")
    suite.verify()
    assert len(suite.tasks) >= 2
    out = tmp_path / "benchmark" / "results"
    results = pl.read_parquet(out / "results.parquet")
    assert set(results["model"]) == {"aligned", "random_encoder", "bandpower"}
    assert set(results["task"]) <= {t.name for t in suite.tasks}
    assert results["auroc"].is_between(0, 1).all()
    report = (out / "report.md").read_text()
    assert "aligned" in report and "bandpower" in report
    pngs = list((out / "plots").glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)
    assert (out / "probes").is_dir() and any((out / "probes").glob("*.json"))
    text = console.export_text()
    assert "mean AUROC" in text and "overall" in text
    assert res.primary == "aligned"

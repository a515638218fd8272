"""The benchmark step of ``clef demo``: suite, models, report and plots from the demo hospital."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_tasks.demo import _stage1_of

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


# The step itself runs in tests/test_phi_audit.py (the quick demo), whose
# test_demo_wrote_every_kind_of_output checks its suite, models, report, plots and probes.

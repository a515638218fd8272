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


def test_the_trend_step_traces_the_best_finding_probes() -> None:
    from types import SimpleNamespace

    from benchmark_tasks.demo_trend import traced_probes

    def probe(category: str, auroc: float | None) -> SimpleNamespace:
        return SimpleNamespace(info={"category": category, **({} if auroc is None else {"auroc": auroc})})

    probes = {"dx_epilepsy": probe("phenotype", 0.99), "eeg_normal": probe("finding", 0.6),
              "eeg_slowing": probe("finding", 0.9), "eeg_beta": probe("finding", 0.8), "eeg_new": probe("finding", None)}
    assert list(traced_probes(probes, 2)) == ["eeg_beta", "eeg_slowing"]  # findings only, best AUROC, by name
    assert list(traced_probes(probes)) == ["eeg_beta", "eeg_new", "eeg_normal", "eeg_slowing"]
    assert list(traced_probes({"dx_epilepsy": probes["dx_epilepsy"]})) == ["dx_epilepsy"]  # no finding: any probe
    assert traced_probes({}) == {}
    with pytest.raises(ValueError, match="n must be"):
        traced_probes(probes, -1)

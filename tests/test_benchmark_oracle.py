"""The oracle ceiling: features from the hidden truth, truth classes of tasks, headroom captured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark_tasks.baselines.oracle import ORACLE_FEATURES, oracle_embeddings, oracle_features
from benchmark_tasks.config import MLPConfig, ProbeConfig
from benchmark_tasks.embeddings import EmbeddingSet
from benchmark_tasks.metrics import HEADROOM_MIN_GAIN, headroom
from benchmark_tasks.run import run_benchmark
from benchmark_tasks.suite import load_suite
from benchmark_tasks.tasks import TaskDefinition
from benchmark_tasks.truth import task_class, task_classes

QUICK = ProbeConfig(seeds=2, n_bootstrap=200, mlp=MLPConfig(min_steps=60, hidden=32, lr=3e-3))


def _truth() -> pl.DataFrame:
    """Three sessions with known findings, PDR, states and counts."""
    return pl.DataFrame({
        "session_id": ["a", "b", "c"],
        "findings": [
            [{"name": "focal_slowing", "severity": 0.6, "side": "L", "cause": "I63.9"},
             {"name": "generalized_slowing", "severity": 0.4, "side": None, "cause": "G93.40"}],
            [{"name": "ied_focal", "severity": 0.3, "side": "L", "cause": "G40.209"},
             {"name": "ied_focal", "severity": 0.5, "side": "R", "cause": "G40.209"}],
            [],
        ],
        "pdr_hz": [None, 9.5, 10.0],
        "states": [[{"start_s": 0.0, "stop_s": 60.0, "state": "awake"}, {"start_s": 60.0, "stop_s": 120.0,
                                                                        "state": "n2"}],
                   [{"start_s": 0.0, "stop_s": 30.0, "state": "drowsy"}],
                   []],
        "n_ieds": [0, 3, 0],
        "n_seizures": [1, 0, 0],
        "age_years": [70.0, 30.0, 8.0],
    }, schema_overrides={"findings": pl.List(pl.Struct({"name": pl.String, "severity": pl.Float64,
                                                        "side": pl.String, "cause": pl.String}))})


def test_oracle_features_from_a_known_truth_table() -> None:
    ids, x = oracle_features(_truth())
    f = {name: x[:, i] for i, name in enumerate(ORACLE_FEATURES)}
    assert ids == ["a", "b", "c"] and x.shape == (3, len(ORACLE_FEATURES)) and x.dtype == np.float32
    np.testing.assert_allclose(f["focal_slowing_severity"], [0.6, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(f["focal_slowing_left"], [1, 0, 0])
    np.testing.assert_array_equal(f["focal_slowing_right"], [0, 0, 0])
    # a finding without a side is bilateral; one drawn on both sides too, at its largest severity
    np.testing.assert_array_equal(f["generalized_slowing_bilateral"], [1, 0, 0])
    np.testing.assert_allclose(f["ied_focal_severity"], [0, 0.5, 0], atol=1e-6)
    np.testing.assert_array_equal(f["ied_focal_bilateral"], [0, 1, 0])
    np.testing.assert_array_equal(f["ied_focal_left"], [0, 0, 0])
    np.testing.assert_array_equal(f["pdr_present"], [0, 1, 1])
    np.testing.assert_allclose(f["pdr_hz"], [0, 9.5, 10.0])
    np.testing.assert_allclose(f["state_awake"], [0.5, 0, 0])
    np.testing.assert_allclose(f["state_n2"], [0.5, 0, 0])
    np.testing.assert_allclose(f["state_drowsy"], [0, 1, 0])
    np.testing.assert_allclose(f["log1p_ieds"], [0, np.log1p(3), 0], rtol=1e-6)
    np.testing.assert_allclose(f["log1p_seizures"], [np.log1p(1), 0, 0], rtol=1e-6)
    np.testing.assert_allclose(f["age_years"], [70, 30, 8])
    # absent findings are zeros in every column
    assert not x[2, : ORACLE_FEATURES.index("pdr_present")].any()


def test_oracle_features_reject_malformed_truth() -> None:
    with pytest.raises(ValueError, match="missing"):
        oracle_features(_truth().drop("states"))
    bad = _truth().with_columns(pl.Series("findings", [[{"name": "alien_rhythm", "severity": 1.0, "side": None,
                                                           "cause": ""}], [], []]))
    with pytest.raises(ValueError, match="alien_rhythm"):
        oracle_features(bad)
    with pytest.raises(ValueError, match="unique"):
        oracle_features(pl.concat([_truth(), _truth().head(1)]))


def test_oracle_embeddings_of_a_hospital(fhir_archive: Path, tmp_path: Path) -> None:
    truth = pl.read_parquet(fhir_archive / "truth.parquet")
    ids = truth["session_id"].to_list()[:5]
    e = oracle_embeddings(fhir_archive, [*ids, "not-a-session"])
    assert e.kind == "oracle" and e.baseline and e.model_id.startswith("truth-")
    assert e.session_ids == ids and e.dim == len(ORACLE_FEATURES)
    with pytest.raises(FileNotFoundError, match="truth.parquet"):
        oracle_embeddings(tmp_path)
    with pytest.raises(ValueError, match="none of"):
        oracle_embeddings(fhir_archive, ["x", "y"])


def _task(**kw) -> TaskDefinition:
    return TaskDefinition(**kw)


def test_task_classes_from_the_simulators_catalogue() -> None:
    assert task_class(_task(name="dx_htn", category="phenotype", kind="icd_group", codes=("icd:I10",))) == "negative"
    assert task_class(_task(name="dx_epi", category="phenotype", kind="icd_group", codes=("icd:G40",))) == "planted"
    # a condition without a signature that is not a negative control
    assert task_class(_task(name="dx_af", category="phenotype", kind="icd_group", codes=("icd:I48",))) == "other"
    # a signature condition mixed with a negative control
    mixed = _task(name="dx_mix", category="phenotype", kind="icd_group", codes=("icd:G40", "icd:I10"))
    assert task_class(mixed) == "other"
    assert task_class(_task(name="eeg_ied", category="finding", kind="finding", finding="ied_focal")) == "planted"
    assert task_class(_task(name="eeg_sleep", category="finding", kind="finding", finding="sleep")) == "other"
    assert task_class(_task(name="dx_none", category="phenotype", kind="icd_group", codes=("icd:Z99",))) == "other"


def test_headroom_formula_and_its_undefined_case() -> None:
    assert headroom(0.75, 0.9) == pytest.approx(0.625)
    assert headroom(0.9, 0.9) == pytest.approx(1.0)
    assert headroom(0.4, 0.9) == pytest.approx(-0.25)  # worse than chance: not clipped
    assert np.isnan(headroom(0.7, 0.5 + HEADROOM_MIN_GAIN))  # oracle within the margin of chance: undefined
    assert np.isnan(headroom(0.7, 0.45))
    assert np.isnan(headroom(0.7, float("nan")))
    out = headroom(np.array([0.6, 0.8, 0.7]), np.array([0.7, 1.0, 0.52]))
    np.testing.assert_allclose(out, [0.5, 0.6, np.nan])
    # a ceiling whose interval reaches chance is no ceiling; without an interval (NaN) the rule does not apply
    out = headroom(np.array([0.6, 0.6, 0.6]), np.array([0.7, 0.7, 0.7]), oracle_ci_low=np.array([0.55, 0.5, np.nan]))
    np.testing.assert_allclose(out, [0.5, np.nan, 0.5])
    with pytest.raises(ValueError, match="min_gain"):
        headroom(0.7, 0.9, min_gain=-0.1)


@pytest.fixture(scope="module")
def oracle_run(fhir_archive: Path, fhir_suite: Path, tmp_path_factory: pytest.TempPathFactory):
    suite = load_suite(fhir_suite)
    ids = suite.cohort["session_id"].to_list()
    oracle = oracle_embeddings(fhir_archive, ids)
    rng = np.random.default_rng(3)
    noise = EmbeddingSet("random", ids, rng.normal(size=(len(ids), 16)), kind="bandpower", baseline=True)
    out = tmp_path_factory.mktemp("oracle_run")
    return suite, run_benchmark(suite, [noise, oracle], out, config=QUICK, plots=False,
                                task_classes=task_classes(suite.tasks))


def test_oracle_beats_a_random_set_on_planted_tasks(oracle_run) -> None:
    suite, res = oracle_run
    r = res.results.filter((pl.col("probe") == "logistic") & (pl.col("task_class") == "planted"))
    wide = r.pivot(on="model", index="task", values="auroc")
    assert wide.height >= 3
    assert (wide["oracle"] - wide["random"]).mean() > 0.2
    assert (wide["oracle"] > wide["random"]).mean() >= 0.75
    assert res.oracle == "oracle" and res.task_classes == task_classes(suite.tasks)


def test_headroom_in_results_summary_and_report(oracle_run) -> None:
    _, res = oracle_run
    r = res.results
    orc = r.filter(pl.col("model") == "oracle")
    defined = orc.filter(pl.col("headroom").is_not_null())
    assert defined.height and np.allclose(defined["headroom"].to_numpy(), 1.0)
    # undefined exactly where the oracle is within the margin of chance or its interval reaches 0.5
    undefined = (pl.col("auroc") <= 0.5 + HEADROOM_MIN_GAIN) | (pl.col("ci_low") <= 0.5)
    assert orc.filter(pl.col("headroom").is_null()).equals(orc.filter(undefined))
    rnd = r.filter(pl.col("model") == "random").join(orc.select("task", "probe", pl.col("auroc").alias("o")),
                                                     on=["task", "probe"])
    expect = headroom(rnd["auroc"].to_numpy(), rnd["o"].to_numpy(),
                      oracle_ci_low=rnd.join(orc.select("task", "probe", "ci_low").rename({"ci_low": "olo"}),
                                             on=["task", "probe"], maintain_order="left")["olo"].to_numpy())
    np.testing.assert_allclose(rnd["headroom"].fill_null(np.nan).to_numpy(), expect)
    np.testing.assert_allclose(rnd["oracle_auroc"].to_numpy(), rnd["o"].to_numpy())
    s = res.summary.filter((pl.col("grouping") == "truth_class") & (pl.col("category") == "planted")
                           & (pl.col("probe") == "mlp"))
    assert s.height == 2
    row = s.filter(pl.col("model") == "random").row(0, named=True)
    hr = r.filter((pl.col("model") == "random") & (pl.col("probe") == "mlp") & (pl.col("task_class") == "planted")
                  )["headroom"].drop_nulls()
    assert row["n_headroom"] == hr.len() and row["mean_headroom"] == pytest.approx(hr.mean())
    sub = r.filter((pl.col("model") == "random") & (pl.col("probe") == "mlp") & (pl.col("task_class") == "planted")
                   & pl.col("headroom").is_not_null())
    pooled = (sub["auroc"] - 0.5).sum() / (sub["oracle_auroc"] - 0.5).sum()
    assert row["pooled_headroom"] == pytest.approx(pooled)
    assert s.filter(pl.col("model") == "oracle")["pooled_headroom"][0] == pytest.approx(1.0)
    comp = res.comparisons.filter((pl.col("category") == "planted") & (pl.col("probe") == "mlp"))
    assert comp.height == 1 and comp["grouping"][0] == "truth_class"
    report = (res.out / "report.md").read_text()
    assert "## Ceiling and headroom (mlp probe)" in report and "planted headroom" in report
    meta = json.loads((res.out / "run.json").read_text())
    assert meta["oracle"] == "oracle" and meta["task_classes"] == res.task_classes


def test_without_an_oracle_headroom_is_null(oracle_run, tmp_path: Path) -> None:
    suite, _ = oracle_run
    ids = suite.cohort["session_id"].to_list()
    x = EmbeddingSet("x", ids, np.random.default_rng(0).normal(size=(len(ids), 4)))
    res = run_benchmark(suite, [x], tmp_path, config=ProbeConfig(probes=("logistic",), primary="logistic",
                                                                  n_bootstrap=0), plots=False)
    assert res.results["headroom"].is_null().all() and res.results["task_class"].is_null().all()
    assert set(res.summary["grouping"]) == {"category"}
    assert "## Ceiling and headroom" not in (tmp_path / "report.md").read_text()


def test_two_oracles_or_unknown_classes_are_refused(oracle_run, tmp_path: Path) -> None:
    suite, res = oracle_run
    ids = suite.cohort["session_id"].to_list()
    a = EmbeddingSet("o1", ids, np.zeros((len(ids), 2)), kind="oracle")
    b = EmbeddingSet("o2", ids, np.zeros((len(ids), 2)), kind="oracle")
    with pytest.raises(ValueError, match="one oracle"):
        run_benchmark(suite, [a, b], tmp_path)
    with pytest.raises(ValueError, match="task_classes"):
        run_benchmark(suite, [a], tmp_path, task_classes={suite.tasks[0].name: "sometimes"})


def test_cli_oracle_option(fhir_archive: Path, fhir_suite: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from benchmark_tasks.cli import register
    from clef.cli import app

    if not any(g.name == "tasks" for g in app.registered_groups):
        register(app)
    suite = load_suite(fhir_suite)
    ids = suite.cohort["session_id"].to_list()
    part = tmp_path / "noise.parquet"
    pl.DataFrame({"session_id": ids, "vector": list(np.random.default_rng(0).normal(size=(len(ids), 4)))},
                 schema={"session_id": pl.String, "vector": pl.List(pl.Float32)}).write_parquet(part)
    out = tmp_path / "results"
    args = ["benchmark", "run", "--suite", str(fhir_suite), "--embeddings", f"noise={part}", "--out", str(out),
            "--probe", "logistic", "--primary-probe", "logistic", "--bootstrap", "0", "--no-plots"]
    r = CliRunner().invoke(app, [*args, "--oracle", str(fhir_archive)])
    assert r.exit_code == 0, r.output
    assert "planted tasks mean AUROC" in r.output and "headroom captured" in r.output
    results = pl.read_parquet(out / "results.parquet")
    assert set(results["model"]) == {"noise", "oracle"}
    assert set(results["task_class"].drop_nulls()) <= {"planted", "negative", "other"}
    assert results.filter(pl.col("model") == "oracle")["model_kind"].to_list()[0] == "oracle"
    r = CliRunner().invoke(app, [*args, "--oracle", str(tmp_path)])
    assert r.exit_code == 2 and "truth.parquet" in r.output and "Traceback" not in r.output

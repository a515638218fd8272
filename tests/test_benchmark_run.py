"""Benchmark runs end to end: results, report, plots, probes; the CLI on a tiny store; held-out concepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from benchmark_tasks.config import MLPConfig, ProbeConfig
from benchmark_tasks.embeddings import EmbeddingSet, load_embeddings
from benchmark_tasks.run import RESULTS_SCHEMA, run_benchmark
from benchmark_tasks.splits import SplitLeakError
from benchmark_tasks.suite import load_suite
from tests.factories import copy_suite, planted_vectors, write_store

QUICK = ProbeConfig(seeds=2, n_bootstrap=200, mlp=MLPConfig(min_steps=60, hidden=32, lr=3e-3))
FINDINGS = ("normal", "generalized_slowing", "mild_slowing", "focal_slowing", "pdr_slowing", "ied_focal",
            "ied_generalized", "seizure", "lpd", "gpd", "burst_suppression", "low_voltage", "excess_beta", "asymmetry",
            "sleep", "artifact_limited")


@pytest.fixture(scope="module")
def run_out(fhir_suite: Path, tmp_path_factory: pytest.TempPathFactory):
    suite = load_suite(fhir_suite)
    cohort = suite.cohort
    ids = cohort["session_id"].to_list()
    good = EmbeddingSet("planted", ids, planted_vectors(cohort, {f: 4.0 for f in FINDINGS}, dim=16))
    rng = np.random.default_rng(5)
    noise = EmbeddingSet("noise", ids, rng.normal(size=(len(ids), 8)), kind="bandpower", baseline=True)
    held = EmbeddingSet("held", ids, planted_vectors(cohort, {f: 4.0 for f in FINDINGS}, dim=16, seed=3),
                        kind="checkpoint", held_out=("icd:I1", "atc:C10AA"))
    out = tmp_path_factory.mktemp("bench_run")
    return suite, run_benchmark(suite, [good, held, noise], out, config=QUICK)


def test_results_files_report_and_plots(run_out) -> None:
    suite, res = run_out
    out = res.out
    for name in ("results.parquet", "summary.parquet", "comparisons.parquet", "heldout.parquet", "predictions.parquet",
                 "report.md", "run.json"):
        assert (out / name).is_file(), name
    results = pl.read_parquet(out / "results.parquet")
    assert results.schema == pl.Schema(RESULTS_SCHEMA)
    assert set(results["probe"]) == {"logistic", "mlp"} and set(results["model"]) == {"planted", "held", "noise"}
    assert results.height == 3 * 2 * len(suite.tasks)
    assert ((results["ci_low"] <= results["auroc"]) & (results["auroc"] <= results["ci_high"])).all()
    assert np.allclose(results["score"].to_numpy(), 2 * (results["auroc"].to_numpy() - 0.5))
    for png in ("auroc_by_category.png", "scatter_planted_vs_noise.png", "scatter_held_vs_noise.png", "balance.png"):
        assert (out / "plots" / png).stat().st_size > 1000, png
    report = (out / "report.md").read_text()
    assert "## Summary (mlp probe)" in report and "## Held-out concepts" in report and "plots/balance.png" in report
    summary = pl.read_parquet(out / "summary.parquet")
    assert {"overall", "finding"} <= set(summary["category"])
    meta = json.loads((out / "run.json").read_text())
    assert meta["primary"] == "planted" and meta["reference"] == "noise"


def test_planted_findings_are_found_and_noise_is_chance(run_out) -> None:
    _, res = run_out
    r = res.results.filter(pl.col("probe") == "logistic")
    planted = r.filter((pl.col("model") == "planted") & (pl.col("category") == "finding"))
    assert planted.height >= 2
    assert planted["auroc"].mean() > 0.9
    noise = r.filter(pl.col("model") == "noise")
    assert abs(noise["auroc"].mean() - 0.5) < 0.1
    comp = res.comparisons.filter((pl.col("model_a") == "planted") & (pl.col("model_b") == "noise")
                                  & (pl.col("category") == "finding") & (pl.col("probe") == "mlp"))
    assert comp["mean_diff"][0] > 0.2


def test_means_have_an_interval_over_test_patients(run_out) -> None:
    from benchmark_tasks.power import patient_bootstrap_mean_auroc, patient_bootstrap_mean_difference

    suite, res = run_out
    s = res.summary.filter((pl.col("model") == "planted") & (pl.col("probe") == "logistic")
                           & (pl.col("category") == "finding")).row(0, named=True)
    preds = res.predictions.filter((pl.col("model") == "planted") & (pl.col("probe") == "logistic"))
    tasks = res.results.filter((pl.col("model") == "planted") & (pl.col("probe") == "logistic")
                               & (pl.col("category") == "finding"))["task"].to_list()
    # the run draws its resamples from every test patient of the suite (shared by all tasks and
    # models), the direct call from this category's patients only: two draws of one interval
    _, lo, hi = patient_bootstrap_mean_auroc(preds, suite.labels, tasks, n_boot=QUICK.n_bootstrap, seed=0)
    assert (s["patient_ci_low"], s["patient_ci_high"]) == pytest.approx((lo, hi), abs=0.03)
    assert s["patient_ci_low"] <= s["mean_auroc"] <= s["patient_ci_high"]
    c = res.comparisons.filter((pl.col("model_a") == "planted") & (pl.col("model_b") == "noise")
                               & (pl.col("probe") == "logistic") & (pl.col("category") == "finding")).row(0, named=True)
    noise = res.predictions.filter((pl.col("model") == "noise") & (pl.col("probe") == "logistic"))
    _, dlo, dhi = patient_bootstrap_mean_difference(preds, noise, suite.labels, tasks, n_boot=QUICK.n_bootstrap)
    assert (c["patient_ci_low"], c["patient_ci_high"]) == pytest.approx((dlo, dhi), abs=0.05)
    assert c["patient_ci_low"] > 0  # the planted model beats noise on these patients
    assert "· patients [" in (res.out / "report.md").read_text()


def test_served_probes(run_out) -> None:
    suite, res = run_out
    task = suite.tasks[0].name
    top = json.loads((res.out / "probes" / f"{task}.json").read_text())
    assert {"coef", "intercept", "mean", "scale"} <= set(top) and top["model"] == "planted"
    assert len(top["coef"]) == len(top["mean"]) == len(top["scale"]) == 16
    assert (res.out / "probes" / "noise" / f"{task}.json").is_file()
    assert (res.out / "probes" / "held" / f"{task}.json").is_file()


def test_held_out_concepts_reported_apart(run_out) -> None:
    suite, res = run_out
    held = res.results.filter(pl.col("model") == "held")
    status = dict(zip(held["task"], held["concept_status"]))
    for t in suite.tasks:
        if t.name in ("dx_hypertension", "dx_icd_i10"):
            assert status[t.name] == "held_out"
        if t.category == "finding":
            assert status[t.name] == "seen"
    assert set(res.results.filter(pl.col("model") == "planted")["concept_status"]) == {"n/a"}
    if "held_out" in status.values():
        assert "held_out" in set(res.heldout["status"])


def test_run_refuses_a_leaked_split(fhir_suite: Path, tmp_path: Path) -> None:
    path = copy_suite(fhir_suite, tmp_path / "suite")
    suite = load_suite(path)
    labels = suite.labels
    pid = (labels.group_by("patient_id").agg(pl.col("session_id").n_unique().alias("n"))
           .filter(pl.col("n") > 1)["patient_id"][0])
    first = labels.filter(pl.col("patient_id") == pid)["session_id"][0]
    other = "test" if labels.filter(pl.col("session_id") == first)["split"][0] == "train" else "train"
    labels.with_columns(pl.when(pl.col("session_id") == first).then(pl.lit(other)).otherwise("split").alias("split")
                        ).write_parquet(suite.file("labels"))
    ids = suite.cohort["session_id"].to_list()
    with pytest.raises(SplitLeakError):
        run_benchmark(path, [EmbeddingSet("m", ids, np.zeros((len(ids), 2)))], tmp_path / "out", config=QUICK)
    assert not (tmp_path / "out" / "results.parquet").exists()


def test_load_embeddings_store(tmp_path: Path) -> None:
    ids = ["a", "b", "c"]
    write_store(tmp_path / "store", ids, np.eye(3), model_id="m1")
    write_store(tmp_path / "store", ids[:2], np.ones((2, 4)), model_id="m2", part=1)
    sets = load_embeddings(tmp_path / "store")
    assert [s.name for s in sets] == ["m1", "m2"] and sets[1].dim == 4
    assert load_embeddings(tmp_path / "store", models=["m2"])[0].session_ids == ["a", "b"]
    named = load_embeddings(tmp_path / "store" / "embeddings" / "part-00000.parquet", name="clef")
    assert named[0].name == "clef" and np.allclose(named[0].take(["c"]), [[0, 0, 1]])
    pl.DataFrame({"session_id": ids, "vector": [[1.0, 2.0]] * 3}).write_parquet(tmp_path / "plain.parquet")
    assert load_embeddings(tmp_path / "plain.parquet")[0].name == "plain"
    with pytest.raises(ValueError, match="no model among"):
        load_embeddings(tmp_path / "store", models=["zzz"])
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path / "missing")


def _cli():
    from benchmark_tasks.cli import register
    from clef.cli import app

    if not any(g.name == "tasks" for g in app.registered_groups):
        register(app)
    return app


def test_cli_end_to_end(fhir_archive: Path, fhir_cohort: pl.DataFrame, tmp_path: Path) -> None:
    app = _cli()
    runner = CliRunner()
    suite_path = tmp_path / "suites" / "tiny.yaml"
    r = runner.invoke(app, ["tasks", "generate", "--archive", str(fhir_archive), "--out", str(suite_path),
                            "--min-positives", "10", "--min-patients", "4", "--categories", "phenotype,finding",
                            "--no-icd-categories"])
    assert r.exit_code == 0, r.output
    assert suite_path.is_file() and (tmp_path / "suites" / "tiny" / "labels.parquet").is_file()
    suite = load_suite(suite_path)
    assert {t.category for t in suite.tasks} <= {"phenotype", "finding"}
    cohort = suite.cohort
    store = tmp_path / "store"
    write_store(store, cohort["session_id"].to_list(), planted_vectors(cohort, {f: 4.0 for f in FINDINGS}, dim=16),
                model_id="clef-tiny")
    out = tmp_path / "results"
    r = runner.invoke(app, ["benchmark", "run", "--suite", str(suite_path), "--embeddings", f"clef={store}",
                            "--out", str(out), "--probe", "logistic", "--primary-probe", "logistic", "--seeds", "1",
                            "--bootstrap", "100", "--no-plots"])
    assert r.exit_code == 0, r.output
    results = pl.read_parquet(out / "results.parquet")
    assert set(results["model"]) == {"clef"} and set(results["probe"]) == {"logistic"}
    assert (out / "report.md").is_file() and (out / "probes" / f"{suite.tasks[0].name}.json").is_file()
    # bad input: one line on stderr, exit 2, no traceback
    r = runner.invoke(app, ["benchmark", "run", "--suite", str(tmp_path / "nope.yaml"), "--out", str(out)])
    assert r.exit_code == 2 and "no such suite file" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["benchmark", "run", "--suite", str(suite_path), "--out", str(out), "--no-bandpower"])
    assert r.exit_code == 2 and "nothing to probe" in r.output
    r = runner.invoke(app, ["tasks", "generate", "--archive", str(fhir_archive), "--out", str(tmp_path / "x.yaml"),
                            "--train", "0.9", "--test", "0.3"])
    assert r.exit_code == 2 and "sum to 1" in r.output
    # a leaked split stops the run with a clear message
    labels = suite.labels
    pid = (labels.group_by("patient_id").agg(pl.col("session_id").n_unique().alias("n"))
           .filter(pl.col("n") > 1)["patient_id"][0])
    sid = labels.filter(pl.col("patient_id") == pid)["session_id"][0]
    other = "test" if labels.filter(pl.col("session_id") == sid)["split"][0] == "train" else "train"
    labels.with_columns(pl.when(pl.col("session_id") == sid).then(pl.lit(other)).otherwise("split").alias("split")
                        ).write_parquet(suite.file("labels"))
    r = runner.invoke(app, ["benchmark", "run", "--suite", str(suite_path), "--embeddings", str(store), "--out",
                            str(tmp_path / "r2")])
    assert r.exit_code == 2 and "refusing to run" in r.output and "patient leakage" in r.output

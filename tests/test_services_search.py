"""FAISS cohort search on synthetic stores: exactness, filters inside the search, per-patient, updates, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from services.config import IndexConfig
from services.index import build_index, ensure_index, load_index
from services.search import CohortSearcher, FilterError, parse_filter, parse_filters
from services.store import EmbeddingStore
from services.store_writer import StoreWriter, utc_now
from tests.factories import synthetic_store

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("syn") / "store"
    return path, synthetic_store(path, n=3000, dim=32, seed=1)


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact(data: dict[str, np.ndarray], q: int, k: int, allowed: np.ndarray, per_patient: bool = False) -> list[str]:
    x = _normalised(data["vectors"])
    scores = x @ x[q]
    allowed = allowed.copy()
    allowed[q] = False
    if per_patient:
        allowed &= data["patients"] != data["patients"][q]
    order = [i for i in np.argsort(-scores, kind="stable") if allowed[i]]
    out, seen = [], set()
    for i in order:
        if per_patient and data["patients"][i] in seen:
            continue
        seen.add(data["patients"][i])
        out.append(str(data["ids"][i]))
        if len(out) == k:
            break
    return out


def test_parse_filters() -> None:
    assert parse_filter("site=S01,s02").values == ("s01", "s02")
    f = parse_filter("age=40-60")
    assert (f.low, f.high, f.high_inclusive) == (40, 60, True)
    assert parse_filter("age=40-").high == float("inf") and parse_filter("age=-18").low == float("-inf")
    one = parse_filter("age=45")
    assert (one.low, one.high, one.high_inclusive) == (45, 46, False)
    for bad, msg in (("colour=red", "must be one of site, sex, setting, age"), ("site=", "KEY=VALUE expected"),
                     ("age=sixty", "range in years expected"), ("age=60-40", "low <= high")):
        with pytest.raises(FilterError, match=msg):
            parse_filter(bad)
    with pytest.raises(FilterError, match="given more than once"):
        parse_filters(["site=S01", "site=S02"])


def test_flat_index_is_exact_with_filters_and_per_patient(syn) -> None:
    path, data = syn
    s = CohortSearcher(path)
    assert s.index_action == "built" and s.index.kind == "flat" and s.index.n == 3000
    q = 17
    every = np.ones(3000, bool)
    assert [n.session_id for n in s.search_session("sess00017", 10)] == _exact(data, q, 10, every)
    fs = parse_filters(["site=S02,S03", "age=40-60"])
    allowed = np.isin(data["sites"], ["S02", "S03"]) & (data["ages"] >= 40) & (data["ages"] <= 60)
    got = s.search_session("sess00017", 25, fs)
    assert [n.session_id for n in got] == _exact(data, q, 25, allowed)
    assert all(n.site in ("S02", "S03") and 40 <= n.age_years <= 60 for n in got)
    pp = s.search_session("sess00017", 25, fs, per_patient=True)
    assert [n.session_id for n in pp] == _exact(data, q, 25, allowed, per_patient=True)
    assert len({n.patient_hash for n in pp}) == 25 and f"p{data['patients'][q]:06d}" not in {n.patient_hash for n in pp}
    assert [n.rank for n in pp] == list(range(1, 26)) and all(a.score >= b.score for a, b in zip(pp, pp[1:]))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_return_k_filtered_results(syn, tmp_path: Path, kind: str) -> None:
    path, data = syn
    cfg = IndexConfig(exact_below=0, ivf_nlist=64, ivf_nprobe=4)  # force the approximate path
    s = CohortSearcher(path, config=cfg, kind=kind)
    assert s.index.kind == kind
    # a selective filter: 1 site of 5 and a 10-year band leave ~60 sessions
    fs = parse_filters(["site=S04", "age=20-30"])
    allowed = (data["sites"] == "S04") & (data["ages"] >= 20) & (data["ages"] <= 30)
    for q in (3, 400, 2500):
        want = _exact(data, q, 20, allowed)
        got = s.search_session(str(data["ids"][q]), 20, fs)
        assert len(got) == 20 and all(n.site == "S04" and 20 <= n.age_years <= 30 for n in got)
        assert len(set(want) & {n.session_id for n in got}) >= 18  # recall
        pp = s.search_session(str(data["ids"][q]), 20, fs, per_patient=True)
        assert len(pp) == 20 and len({n.patient_hash for n in pp}) == 20
    # fewer qualifying sessions than k: all of them, exactly
    few = parse_filters(["site=S04", "age=20"])
    n_few = int(((data["sites"] == "S04") & (data["ages"] >= 20) & (data["ages"] < 21)).sum())
    assert len(s.search_session("sess00003", 50, few)) == n_few - (data["sites"][3] == "S04" and 20 <= data["ages"][3] < 21)
    # an impossible filter: nothing
    assert s.search_session("sess00003", 5, parse_filters(["site=S99"])) == []
    # the raw embedding comes back from the index and its norms, as the store holds it
    np.testing.assert_allclose(s.raw_vector("sess00400"), data["vectors"][400], rtol=1e-5, atol=1e-6)


def test_index_without_norms_still_loads(tmp_path: Path) -> None:
    """An index saved before norms were kept loads; raw vectors then come from the store."""
    import polars as pl

    from services.index import file_sha256, index_dir

    path = tmp_path / "store"
    synthetic_store(path, n=50, dim=8, seed=3)
    build_index(path)
    d = index_dir(EmbeddingStore(path), "m" * 16)
    meta = json.loads((d / "index.json").read_text())
    ids = d / meta["ids_file"]
    pl.read_parquet(ids).drop("norm").write_parquet(ids)
    meta["ids_sha256"] = file_sha256(ids)
    (d / "index.json").write_text(json.dumps(meta))
    s = CohortSearcher(path)
    assert s.index.norms is None and s.raw_vector("sess00001") is None
    assert s.search_session("sess00001", 3)[0].session_id != "sess00001"  # searching is unaffected


def test_index_is_updated_when_the_store_grows(tmp_path: Path) -> None:
    path = tmp_path / "store"
    base = synthetic_store(path, n=200, dim=8, seed=2)
    ci, action = ensure_index(path)
    assert action == "built" and ci.n == 200
    assert ensure_index(path)[1] == "loaded"
    # the store grows: 100 more sessions (another writer run)
    more = synthetic_store(tmp_path / "more", n=300, dim=8, seed=2)

    with StoreWriter(path, tmp_path) as w:
        rows = []
        for i in range(200, 300):
            sha = f"{10**6 + i:064x}"
            rows.append(({"path": f"y/{i}.edf", "sha256": sha, "size": 1, "status": "done", "error_kind": None,
                          "error": None, "seconds": 0.0, "updated": utc_now(), "model_id": "m" * 16, "mtime_ns": 0},
                         {"session_id": f"new{i}", "source_sha256": sha, "path": f"y/{i}.edf", "format": "EDF",
                          "duration_s": 1.0, "n_windows": 1, "sex": None, "age_years": None, "patient_hash": None,
                          "site": None, "setting": None},
                         {"session_id": f"new{i}", "source_sha256": sha, "model_id": "m" * 16,
                          "vector": more["vectors"][i].tolist(), "window_vectors": [more["vectors"][i].tolist()],
                          "n_windows": 1}))
        w.commit([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    ci, action = ensure_index(path)
    assert action == "updated" and ci.n == 300 and ci.session_ids[-1] == "new299"
    assert ci.digest == EmbeddingStore(path).digest("m" * 16)
    loaded = load_index(path)
    assert loaded.n == 300 and loaded.session_ids == ci.session_ids
    # the stored vector of a new session finds itself first
    s = CohortSearcher(path)
    assert s.search(more["vectors"][250], 1)[0].session_id == "new250"
    # raw vectors from memory (the norms kept with the id map), old and added sessions alike
    np.testing.assert_allclose(s.raw_vector("sess00007"), base["vectors"][7], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.raw_vector("new250"), more["vectors"][250], rtol=1e-5, atol=1e-6)
    # only the current index files remain; another kind rebuilds
    files = sorted(p.name for p in (path / "index" / ("m" * 16)).iterdir())
    assert len(files) == 3 and "index.json" in files
    assert ensure_index(path, kind="hnsw")[1] == "rebuilt" and load_index(path).kind == "hnsw"
    with pytest.raises(ValueError, match="needs at least 4096 vectors"):
        build_index(path, kind="ivf", config=IndexConfig(ivf_nlist=4096))


def test_auto_kind_switches_to_ivf_past_flat_max(tmp_path: Path) -> None:
    path = tmp_path / "store"
    synthetic_store(path, n=3000, dim=8, seed=3)
    ci = build_index(path, config=IndexConfig(flat_max=2000))
    assert ci.kind == "ivf" and ci.requested == "auto" and ci.params["nlist"] == 64 and ci.params["nprobe"] == 32
    assert build_index(path).kind == "flat"


def test_cli_index_and_search(syn) -> None:
    from services.cli import register

    path, _ = syn
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    r = runner.invoke(app, ["index", str(path), "--kind", "flat", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["kind"] == "flat"
    r = runner.invoke(app, ["search", str(path), "--session", "sess00017", "-k", "5", "--filter", "site=S02",
                            "--per-patient", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["neighbours"]) == 5 and all(n["site"] == "S02" for n in out["neighbours"])
    assert "path" not in out["neighbours"][0]
    r = runner.invoke(app, ["search", str(path), "--session", "sess00017", "-k", "3"])
    assert r.exit_code == 0 and "sess" in r.stdout
    for args, msg in ((["search", str(path), "--session", "nope"], "not in the index"),
                      (["search", str(path), "--session", "sess00001", "--filter", "age=x"], "range in years"),
                      (["search", str(path)], "exactly one query"),
                      (["search", str(path), "--edf", "x.edf"], "--edf needs --checkpoint"),
                      (["index", str(path), "--kind", "tree"], "--kind must be one of"),
                      (["index", str(path.parent / "missing")], "found nothing")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in " ".join(r.output.split()) and "Traceback" not in r.output, r.output


def test_the_explain_step_picks_a_short_test_positive_of_a_finding_with_the_top_score() -> None:
    import polars as pl

    from services.demo_explain import MAX_MINUTES, choose_session

    labels = pl.DataFrame({"task": ["eeg_normal", "eeg_slowing", "eeg_slowing", "eeg_slowing", "eeg_slowing",
                                    "eeg_slowing", "eeg_beta"],
                           "session_id": ["N1", "A", "B", "C", "D", "E", "F"],
                           "label": [1, 1, 1, 1, 1, 0, 1],
                           "split": ["test", "train", "test", "test", "test", "test", "test"]})
    ids = ["N1", "A", "B", "C", "D", "E", "F"]
    vectors = np.array([[9.0], [8.0], [0.3], [0.5], [0.7], [0.9], [0.95]])
    probes = {"eeg_normal": lambda x: float(x[0]), "eeg_slowing": lambda x: float(x[0])}  # eeg_beta: no probe
    long = {"D": MAX_MINUTES * 60 + 1}
    c = choose_session(labels, probes, ids, vectors, long)
    # not the normal EEG, not the train session, not the long one, not the negative, not the unprobed task
    assert (c.task, c.session_id, c.split, c.score) == ("eeg_slowing", "C", "test", 0.5)
    assert choose_session(labels, probes, ids, vectors).session_id == "D"  # durations unknown: all short
    assert choose_session(labels, probes, ["N1"], vectors[:1]).task == "eeg_normal"  # the only stored positive
    assert choose_session(labels, {}, ids, vectors) is None


def test_neighbour_agreement_against_the_base_rate(tmp_path: Path) -> None:
    from services.demo import neighbour_agreement

    info = synthetic_store(tmp_path / "store", n=400, dim=16, seed=3)
    x, ids = info["vectors"], info["ids"]
    rng = np.random.default_rng(0)
    # "local": held by the sessions of a region of embedding space; "random": unrelated to it
    local = x[:, 0] > np.quantile(x[:, 0], 0.8)
    rand = rng.random(len(ids)) < 0.2
    findings = {sid: [n for n, on in (("local", a), ("random", b)) if on] for sid, a, b in zip(ids, local, rand)}
    agree = {a.finding: a for a in neighbour_agreement(CohortSearcher(tmp_path / "store"), findings, k=10)}
    assert set(agree) == {"local", "random"}
    assert agree["local"].queries == int(local.sum())
    assert agree["local"].base_rate == pytest.approx(0.2, abs=0.02)
    assert agree["local"].lift > 2.5
    assert 0.5 < agree["random"].lift < 1.6
    with pytest.raises(ValueError, match="k must be"):
        neighbour_agreement(CohortSearcher(tmp_path / "store"), findings, k=0)

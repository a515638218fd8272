"""Text → session search (services.text_search): the query path, ranking, filters, refusals, CLI and API.

The aligned checkpoint is built by hand (untrained towers, saved as ``clef align`` saves
them), and the store's session embeddings are chosen so that their EEG projections into
the report space are known vectors: the expected order is computed here with numpy, from
the projections alone, so the search is checked end to end without training a model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.store_writer import StoreWriter, utc_now

pytest.importorskip("faiss")

QUERY = "left temporal slowing"
PLANTED = ("generalized spike and wave discharges", "burst suppression pattern", "right frontal sharp waves",
           "normal awake background with posterior dominant rhythm")
N = 60
KEY = "text-search-key-0123456789abcdef"


def _aligned_checkpoint(out: Path, *, report_weight: float = 1.0) -> Path:
    from clef.align import AlignConfig
    from clef.align.module import AlignModule
    from clef.align.train import save_aligned_checkpoint
    from clef.config import SessionConfig
    from ehr import CodeVocab
    from tokenizer.contract import SignalContract
    from tokenizer.presets import load_preset

    torch.manual_seed(0)
    scfg = load_preset(SessionConfig, "tiny", {"model": {"dim": 32, "depth": 1, "heads": 4, "vocab_size": 64,
                                                         "grid": [8, 64]}})
    small = {"dim": 32, "depth": 1, "heads": 4}
    acfg = load_preset(AlignConfig, "tiny", {"report": {**small, "max_length": 64}, "ehr": small,
                                             "loss": {"embed_dim": 16, "report_weight": report_weight}})
    vocab = CodeVocab.build([["icd:G40"]])
    module = AlignModule(scfg, acfg, SignalContract(), text_dim=384, vocab_size=len(vocab),
                         first_code_id=vocab.first_code_id)
    return save_aligned_checkpoint(module, out, vocab=vocab, tokenizer_dir=None)


def _write_store(path: Path, raw: np.ndarray, model_id: str) -> dict[str, np.ndarray]:
    n = len(raw)
    ids = np.array([f"s{i:03d}" for i in range(n)])
    sites = np.array(["S01", "S02"])[np.arange(n) % 2]
    ages = 20.0 + np.arange(n)
    patients = np.arange(n) // 3
    with StoreWriter(path, path / "archive") as w:
        man, ses, emb = [], [], []
        for i in range(n):
            sha = f"{i:064x}"
            man.append({"path": f"x/{ids[i]}.edf", "sha256": sha, "size": 1, "status": "done", "error_kind": None,
                        "error": None, "seconds": 0.1, "updated": utc_now(), "model_id": model_id, "mtime_ns": 0})
            ses.append({"session_id": ids[i], "source_sha256": sha, "path": f"x/{ids[i]}.edf", "format": "EDF+C",
                        "duration_s": 600.0, "n_windows": 1, "sex": "FM"[i % 2], "age_years": float(ages[i]),
                        "patient_hash": f"p{patients[i]:06d}", "site": str(sites[i]), "setting": "routine"})
            emb.append({"session_id": ids[i], "source_sha256": sha, "model_id": model_id, "vector": raw[i].tolist(),
                        "window_vectors": [raw[i].tolist()], "n_windows": 1})
        w.commit(man, ses, emb, models={model_id: {"dim": raw.shape[1], "checkpoint": "hand-built"}})
    return {"ids": ids, "sites": sites, "ages": ages, "patients": patients}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An aligned checkpoint, its stage-1 twin, and a store whose EEG projections are known."""
    from services.text_search import ReportTower

    root = tmp_path_factory.mktemp("text_search")
    ck = _aligned_checkpoint(root / "aligned")
    stage1 = root / "stage1"
    shutil.copytree(ck, stage1, ignore=shutil.ignore_patterns("align"))
    tower = ReportTower(ck)
    q = tower.embed_text(QUERY).astype(np.float64)
    planted = tower.embed_text(list(PLANTED)).astype(np.float64)
    rng = np.random.default_rng(3)
    a = rng.uniform(-0.9, 0.95, N)
    u = rng.normal(size=(N, len(q)))
    u -= (u @ q)[:, None] * q
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    y = a[:, None] * q + np.sqrt(1 - a[:, None] ** 2) * u  # unit vectors of cosine a with the query
    y[-len(PLANTED):] = planted  # the last sessions' EEG sits exactly on a planted text
    lin = tower.eeg_to_report
    w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
    raw = ((y - b) @ np.linalg.pinv(w).T).astype(np.float32)  # eeg_to_report(raw) == y (w has full row rank)
    model_id = tower.model_id
    info = _write_store(root / "store", raw, model_id)
    return {"root": root, "ck": ck, "stage1": stage1, "tower": tower, "store": root / "store", "y": y, "q": q,
            **info}


def _expected(built: dict[str, Any], q: np.ndarray, k: int, allowed: np.ndarray | None = None,
              per_patient: bool = False) -> list[str]:
    y = built["y"] / np.linalg.norm(built["y"], axis=1, keepdims=True)
    scores = y @ (q / np.linalg.norm(q))
    out, seen = [], set()
    for i in np.argsort(-scores, kind="stable"):
        if allowed is not None and not allowed[i] or per_patient and built["patients"][i] in seen:
            continue
        seen.add(built["patients"][i])
        out.append(str(built["ids"][i]))
        if len(out) == k:
            break
    return out


def test_query_embedding_is_deterministic_normalised_and_checked(built) -> None:
    from services.text_search import MAX_QUERY_CHARS, ReportTower

    tower = built["tower"]
    q1 = tower.embed_text(QUERY)
    assert q1.shape == (tower.dim,) and q1.dtype == np.float32
    assert np.linalg.norm(q1) == pytest.approx(1.0, abs=1e-5)
    again = ReportTower(built["ck"]).embed_text(f"  {QUERY}\n")  # a fresh load; surrounding blanks ignored
    assert np.array_equal(q1, again)
    batch = tower.embed_text([QUERY, *PLANTED])
    assert np.allclose(batch[0], q1, atol=1e-6) and np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    assert float(batch[0] @ batch[1]) < 0.9999  # different words, different vectors
    for bad, msg in (("", "empty"), ("   ", "empty"), ("x" * (MAX_QUERY_CHARS + 1), "at most")):
        with pytest.raises(ValueError, match=msg):
            tower.embed_text(bad)


def test_the_stored_vector_is_the_eeg_embedding_the_projection_was_trained_on(built) -> None:
    """What ``clef embed`` stores (Embedder) is AlignModule.eeg_embedding: projecting it is the training path."""
    from clef.align.train import load_align_module
    from clef.embedding import Embedder
    from tokenizer.tokens import Tokens

    module, _ = load_align_module(built["ck"])
    module.eval()
    gf, gt = module.session_cfg.model.grid
    rng = np.random.default_rng(0)
    mask = np.ones((3, gf, gt), bool)
    mask[2, :, gt // 2:] = False  # a padded last window: the pooling weights count
    tokens = Tokens(codes=rng.integers(0, 64, (3, gf, gt)).astype(np.int16), token_mask=mask,
                    n_valid_frames=np.array([1280, 1280, 640]), source_sha256="", source_path="", window_s=1280.0)
    stored = Embedder(built["ck"]).embed_tokens([tokens])[0].vector
    with torch.no_grad():
        trained = module.eeg_embedding(torch.from_numpy(tokens.codes.reshape(3, -1).astype(np.int64)),
                                       torch.from_numpy(mask.reshape(3, -1)), torch.zeros(3, dtype=torch.long), 1)[0]
    assert np.allclose(stored, trained.numpy(), atol=1e-5)


def test_search_ranks_sessions_by_cosine_of_their_eeg_projection(built) -> None:
    from services.text_search import TextSearcher

    ts = TextSearcher(built["store"], built["ck"])
    assert ts.sessions.space == "session" and ts.space.space == built["tower"].space
    found = ts.search(QUERY, 10)
    assert [n.session_id for n in found] == _expected(built, built["q"], 10)
    y = built["y"] / np.linalg.norm(built["y"], axis=1, keepdims=True)
    for n in found:
        assert n.score == pytest.approx(float(y[int(n.session_id[1:])] @ built["q"]), abs=1e-4)
    # a session's own (planted) report text finds it first
    for j, text in enumerate(PLANTED):
        assert ts.search(text, 3)[0].session_id == built["ids"][N - len(PLANTED) + j], text
    # the projection is computed once per searcher and reused
    assert ts.sessions.projected(built["tower"].project_sessions, built["tower"].space) is ts.space


def test_filters_and_one_session_per_patient_apply(built) -> None:
    from services.search import parse_filters
    from services.text_search import TextSearcher, search_text

    ts = TextSearcher(built["store"], built["ck"])
    allowed = (built["sites"] == "S02") & (built["ages"] >= 30) & (built["ages"] <= 60)
    got = ts.search(QUERY, 5, parse_filters(["site=S02", "age=30-60"]))
    assert [n.session_id for n in got] == _expected(built, built["q"], 5, allowed)
    assert all(n.site == "S02" and 30 <= n.age_years <= 60 for n in got)
    pp = ts.search(QUERY, 8, per_patient=True)
    assert [n.session_id for n in pp] == _expected(built, built["q"], 8, per_patient=True)
    assert len({n.patient_hash for n in pp}) == 8
    one = search_text(built["store"], built["ck"], QUERY, k=4, filters=["sex=F"], per_patient=True)
    assert [n.session_id for n in one] == _expected(built, built["q"], 4, np.arange(N) % 2 == 0, per_patient=True)


def test_concept_scores_are_the_cosines_as_a_table(built) -> None:
    from services.text_search import TextSearcher

    ts = TextSearcher(built["store"], built["ck"])
    table = ts.concept_scores(QUERY)
    assert table.columns == ["session_id", "score", "site", "setting", "sex", "age_years"] and table.height == N
    y = built["y"] / np.linalg.norm(built["y"], axis=1, keepdims=True)
    expected = dict(zip(built["ids"], y @ built["q"]))
    assert all(abs(s - expected[i]) < 1e-4 for i, s in table.select("session_id", "score").iter_rows())
    some = ts.concept_scores(QUERY, ["s007", "s002"])
    assert some["session_id"].to_list() == ["s007", "s002"]
    with pytest.raises(KeyError, match="nope"):
        ts.concept_scores(QUERY, ["nope"])


def test_a_checkpoint_without_report_tower_is_refused(built, tmp_path: Path) -> None:
    from services.store import StoreError
    from services.text_search import NoReportTowerError, TextSearcher

    with pytest.raises(NoReportTowerError, match="stage-1"):
        TextSearcher(built["store"], built["stage1"])
    ehr_only = _aligned_checkpoint(tmp_path / "ehr_only", report_weight=0.0)
    with pytest.raises(NoReportTowerError, match="report_weight 0"):
        TextSearcher(built["store"], ehr_only)
    other = tmp_path / "other"
    _write_store(other, np.ones((3, 32), np.float32), "f" * 16)
    with pytest.raises(StoreError, match="no embeddings of the checkpoint's model"):
        TextSearcher(other, built["tower"])


def test_cli_search_by_text(built) -> None:
    import typer
    from typer.testing import CliRunner

    from services.cli import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    store, ck = str(built["store"]), str(built["ck"])
    r = runner.invoke(app, ["search", store, "--text", QUERY, "--checkpoint", ck, "-k", "5", "--filter", "site=S02",
                            "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    allowed = built["sites"] == "S02"
    assert [n["session_id"] for n in out["neighbours"]] == _expected(built, built["q"], 5, allowed)
    assert out["query"] == QUERY and out["space"] == "report" and "path" not in out["neighbours"][0]
    r = runner.invoke(app, ["search", store, "--text", QUERY, "--checkpoint", ck, "-k", "3"])
    assert r.exit_code == 0 and "report space" in " ".join(r.stdout.split()), r.output
    for args, msg in ((["--text", QUERY, "--session", "s001", "--checkpoint", ck], "exactly one query"),
                      (["--text", QUERY], "--text needs --checkpoint"),
                      (["--text", " ", "--checkpoint", ck], "empty text"),
                      (["--text", QUERY, "--checkpoint", str(built["stage1"])], "no report tower"),
                      (["--text", QUERY, "--checkpoint", ck, "--filter", "age=old"], "range in years")):
        r = runner.invoke(app, ["search", store, *args])
        assert r.exit_code == 2, (args, r.output)
        assert msg in " ".join(r.output.split()) and "Traceback" not in r.output, (args, r.output)


def test_api_search_by_text(built) -> None:
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from services.api import create_app
    from services.config import ServeConfig

    cfg = ServeConfig(store=built["store"], checkpoint=built["ck"], max_k=20, reload_seconds=0)
    c = TestClient(create_app(cfg, [KEY]), headers={"X-API-Key": KEY})
    r = c.post("/search/text", json={"text": QUERY, "k": 6, "filters": ["site=S01"], "per_patient": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [n["session_id"] for n in body["neighbours"]] == _expected(built, built["q"], 6, built["sites"] == "S01",
                                                                     per_patient=True)
    assert body["text"] == QUERY and body["filters"] == ["site=s01"] and "patient_hash" not in body["neighbours"][0]
    assert c.post("/search/text", json={"text": QUERY}).json()["k"] == 10
    anon = TestClient(c.app)
    assert anon.post("/search/text", json={"text": QUERY}).status_code == 401
    assert anon.post("/search/text", json={"text": QUERY}, headers={"X-API-Key": "wrong-0123456789abcdef"}
                     ).status_code == 403
    for payload, loc in (({"text": ""}, ["body", "text"]), ({"text": "   "}, ["body", "text"]),
                         ({"text": "x" * 2001}, ["body", "text"]), ({"text": QUERY, "k": 21}, ["body", "k"]),
                         ({"text": QUERY, "colour": "red"}, ["body", "colour"]),
                         ({"text": QUERY, "filters": ["age=old"]}, ["body", "filters"]), ({}, ["body", "text"])):
        r = c.post("/search/text", json=payload)
        assert r.status_code == 422 and r.json()["kind"] == "invalid_request", (payload, r.text)
        assert loc in [e["loc"] for e in r.json()["errors"]], (payload, r.json())
    # a service of a stage-1 checkpoint answers 409 with the reason, and no server path
    s1 = TestClient(create_app(cfg.model_copy(update={"checkpoint": built["stage1"]}), [KEY]),
                    headers={"X-API-Key": KEY})
    for _ in range(2):  # the refusal is remembered
        r = s1.post("/search/text", json={"text": QUERY})
        assert r.status_code == 409 and r.json()["kind"] == "no_report_tower", r.text
        assert "stage-1" in r.json()["detail"] and str(built["root"]) not in r.text

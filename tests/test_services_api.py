"""The HTTP probing service, started for real on loopback and spoken to over HTTP (httpx)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmark_tasks.probes import LogisticProbe, TaskProbe, load_probes, save_probe
from services.auth import ApiKeyError, ApiKeys, load_api_keys
from services.batch import embed_archive
from services.config import EmbedConfig, ServeConfig
from services.store import EmbeddingStore
from tests.factories import make_archive, serving

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

KEY = "test-key-0123456789abcdef"
MAX_MB = 3.0


@pytest.fixture(scope="module")
def served(svc_hospital: Path, svc_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """A store of 10 sessions, two probes, and the real server on a free loopback port."""
    from services.api import create_app

    root = tmp_path_factory.mktemp("serve")
    archive = make_archive(svc_hospital, root / "archive", 10, duplicate=False)
    store = root / "store"
    embed_archive(archive, svc_checkpoint, store, EmbedConfig(), progress=False)
    st = EmbeddingStore(store)
    model = st.models()[0]
    ids, x = st.matrix(model)
    rng = np.random.default_rng(0)
    results = root / "results"
    probes = {}
    for task in ("epilepsy", "benzodiazepines"):
        p = TaskProbe(task, LogisticProbe(rng.normal(size=x.shape[1]), 0.1, x.mean(0), x.std(0) + 1e-3), model,
                      {"category": "disease", "auroc": 0.7})
        save_probe(results, p)
        probes[task] = p
    (results / "probes" / "broken.json").write_text("{not json")
    save_probe(results, TaskProbe("other_model", LogisticProbe(np.ones(x.shape[1]), 0.0, np.zeros(x.shape[1]),
                                                               np.ones(x.shape[1])), "f" * 16))
    cfg = ServeConfig(store=store, checkpoint=svc_checkpoint, probes=results, max_upload_mb=MAX_MB, max_k=20)
    app = create_app(cfg, [KEY])
    with serving(app) as url, httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as client:
        yield {"client": client, "url": url, "archive": archive, "store": st, "model": model, "probes": probes,
               "ids": ids}


def _edfs(archive: Path) -> list[Path]:
    return sorted(p for p in (archive / "edf").rglob("*.edf") if "S09" not in p.parts)


def test_health_and_docs_need_no_key(served) -> None:
    r = httpx.get(served["url"] + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "model_id": served["model"]}
    spec = httpx.get(served["url"] + "/openapi.json").json()
    assert {"/embed", "/similar", "/probabilities", "/tasks"} <= set(spec["paths"])
    assert httpx.get(served["url"] + "/docs").status_code == 200


def test_api_key_is_required_and_checked(served) -> None:
    url = served["url"] + "/tasks"
    r = httpx.get(url)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "ApiKey"
    assert httpx.get(url, headers={"X-API-Key": KEY + "x"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    r = httpx.post(served["url"] + "/embed", files={"file": ("a.edf", b"0       ")})
    assert r.status_code == 401


def test_api_keys_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEF_API_KEYS", raising=False)
    with pytest.raises(ApiKeyError, match="no API key"):
        load_api_keys(None)
    f = tmp_path / "keys"
    f.write_text("# service keys\nfile-key-0123456789abcdef\n\n")
    monkeypatch.setenv("CLEF_API_KEYS", "env-key-0123456789abcdef, ")
    keys = load_api_keys(f)
    assert keys == ["file-key-0123456789abcdef", "env-key-0123456789abcdef"]
    assert ApiKeys(keys).valid("env-key-0123456789abcdef") and not ApiKeys(keys).valid("env-key")
    monkeypatch.setenv("CLEF_API_KEYS", "short")
    with pytest.raises(ApiKeyError, match="at least 16 characters"):
        load_api_keys(None)
    with pytest.raises(ApiKeyError, match="cannot read"):
        load_api_keys(tmp_path / "missing")


def test_tasks_list_only_usable_probes(served) -> None:
    r = served["client"].get("/tasks")
    assert r.status_code == 200
    assert [t["task"] for t in r.json()["tasks"]] == ["benzodiazepines", "epilepsy"]  # broken / other model skipped
    assert r.json()["tasks"][0] == {"task": "benzodiazepines", "category": "disease", "auroc": 0.7}


def test_load_probes_tolerates_absent_and_empty_folders(tmp_path: Path) -> None:
    assert load_probes(None) == {} and load_probes(tmp_path / "missing") == {}
    (tmp_path / "probes").mkdir()
    assert load_probes(tmp_path) == {}
    (tmp_path / "probes" / "wide.json").write_text(json.dumps({"coef": [1.0, 2.0, 3.0], "intercept": 0.5}))
    assert list(load_probes(tmp_path)) == ["wide"] and load_probes(tmp_path, dim=2) == {}
    p = load_probes(tmp_path)["wide"]
    assert p(np.zeros(3)) == pytest.approx(1 / (1 + np.exp(-0.5)))
    assert p(np.zeros((4, 3))).shape == (4,)


def test_probes_written_by_the_benchmark_are_served_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lp = LogisticProbe(rng.normal(size=6), -0.2, rng.normal(size=6), rng.uniform(0.5, 2, 6))
    lp.save(tmp_path / "probes" / "G40.json", task="G40", category="disease", model_id="a" * 16, auroc_test=0.77)
    probes = load_probes(tmp_path, model_id="a" * 16, dim=6)
    x = np.concatenate([rng.normal(size=(5, 6)), 1e4 * lp.coef[None], -1e4 * lp.coef[None]])  # and far outside
    x[0, 2] = np.nan
    assert list(probes) == ["G40"] and probes["G40"].info == {"category": "disease", "auroc": 0.77}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way to 0 or 1
        served = probes["G40"](x)
        assert np.array_equal(served, lp.predict_proba(x))
        assert [probes["G40"](row) for row in x] == pytest.approx(served.tolist(), abs=0, rel=1e-12)
    assert served[-2] == 1.0 and 0.0 < served[-1] < 1e-25
    assert load_probes(tmp_path, model_id="b" * 16) == {}


def test_stored_session_endpoints(served) -> None:
    c, sid = served["client"], served["ids"][0]
    meta = c.get(f"/sessions/{sid}").json()
    assert meta["session_id"] == sid and set(meta) == {"session_id", "site", "setting", "sex", "age_years",
                                                       "duration_s", "n_windows", "reference"}
    probs = c.get(f"/sessions/{sid}/probabilities").json()
    x = served["store"].vector(sid, served["model"])
    assert probs["probabilities"] == {t: pytest.approx(p(x), abs=1e-6) for t, p in served["probes"].items()}
    one = c.get(f"/sessions/{sid}/probabilities", params={"task": "epilepsy"}).json()["probabilities"]
    assert list(one) == ["epilepsy"]
    assert c.get(f"/sessions/{sid}/probabilities", params={"task": "nope"}).status_code == 404
    sim = c.get(f"/sessions/{sid}/similar", params={"k": 5}).json()
    assert len(sim["neighbours"]) == 5 and sid not in {n["session_id"] for n in sim["neighbours"]}
    assert [n["rank"] for n in sim["neighbours"]] == [1, 2, 3, 4, 5]
    site = meta["site"]
    sim = c.get(f"/sessions/{sid}/similar", params={"k": 20, "filter": [f"site={site}"], "per_patient": True}).json()
    assert sim["neighbours"] and all(n["site"] == site for n in sim["neighbours"])
    assert sim["filters"] == [f"site={site.lower()}"]
    assert c.get(f"/sessions/{sid}/similar", params={"filter": "age=old"}).status_code == 422
    assert c.get(f"/sessions/{sid}/similar", params={"k": 21}).status_code == 422
    assert c.get(f"/sessions/{sid}/similar", params={"k": 0}).status_code == 422


def test_unknown_sessions_and_path_traversal_are_404(served) -> None:
    c = served["client"]
    assert c.get("/sessions/no-such-session").status_code == 404
    assert c.get("/sessions/no-such-session/similar").status_code == 404
    assert c.get("/sessions/no-such-session/probabilities").status_code == 404
    raw = httpx.Client(base_url=served["url"], headers={"X-API-Key": KEY})
    for path in ("/sessions/..%2F..%2F..%2Fetc%2Fpasswd", "/sessions/%2E%2E/%2E%2E/etc/passwd",
                 "/sessions/....//....//etc/passwd/similar", "/sessions/%2Fetc%2Fpasswd/probabilities",
                 "/sessions/..%5C..%5Cwindows%5Cwin.ini"):
        r = raw.send(raw.build_request("GET", httpx.URL(served["url"] + path)))
        assert r.status_code == 404, (path, r.status_code)
        assert "root:" not in r.text
    raw.close()


def test_upload_embedding_matches_the_store(served) -> None:
    c, edf = served["client"], _edfs(served["archive"])[0]
    r = c.post("/embed", files={"file": ("../../../../etc/evil.edf", edf.read_bytes())}, params={"windows": True})
    assert r.status_code == 200, r.text
    out = r.json()
    st = served["store"]
    row = st.embeddings(served["model"]).filter(st.embeddings()["source_sha256"] == out["sha256"])
    assert row.height == 1
    assert np.allclose(out["vector"], row["vector"][0].to_numpy(), atol=1e-5)
    assert len(out["window_vectors"]) == out["n_windows"] == row["n_windows"][0]
    assert not (Path("/etc") / "evil.edf").exists()


def test_upload_probabilities_and_similar(served) -> None:
    c, edf = served["client"], _edfs(served["archive"])[1]
    sid = EmbeddingStore(served["store"].path).sessions().filter(
        EmbeddingStore(served["store"].path).sessions()["path"] == edf.relative_to(served["archive"]).as_posix()
    )["session_id"][0]
    probs = c.post("/probabilities", files={"file": ("x.edf", edf.read_bytes())}).json()["probabilities"]
    x = served["store"].vector(sid, served["model"])
    assert probs == {t: pytest.approx(p(x), abs=1e-5) for t, p in served["probes"].items()}
    sim = c.post("/similar", files={"file": ("x.edf", edf.read_bytes())}, params={"k": 3}).json()
    assert sim["query"] == "upload" and len(sim["neighbours"]) == 3
    assert sid not in {n["session_id"] for n in sim["neighbours"]}  # the same bytes are the query itself
    assert c.post("/probabilities", files={"file": ("x.edf", edf.read_bytes())},
                  params={"task": "nope"}).status_code == 404


def test_bad_uploads_get_clear_4xx(served) -> None:
    c, archive = served["client"], served["archive"]
    big = c.post("/embed", files={"file": ("big.edf", b"0       " + b"\0" * int((MAX_MB + 1) * 2**20))})
    assert big.status_code == 413 and f"at most {MAX_MB:g} MB" in big.json()["detail"]
    text = c.post("/embed", files={"file": ("notes.edf", b"Patient: Jane Doe, DOB 01/02/1950\n")})
    assert text.status_code == 422 and "expected an EDF/BDF file" in text.json()["detail"]
    assert "Jane" not in text.text
    empty = c.post("/embed", files={"file": ("e.edf", b"")})
    assert empty.status_code == 422 and "an empty file" in empty.json()["detail"]
    cut = c.post("/embed", files={"file": ("cut.edf", (archive / "edf/S09/P999/cut.edf").read_bytes())})
    assert cut.status_code == 422 and cut.json()["detail"].split(":")[0] in ("truncated", "corrupt_header")
    assert "/tmp" not in cut.text and "clef-upload" not in cut.text
    assert c.post("/embed").status_code == 422  # no file field
    assert c.post("/embed", content=b"x" * 10, headers={"content-type": "application/octet-stream"}).status_code == 422


def test_no_phi_in_responses(served) -> None:
    from tokenizer import read_header  # the test may read the raw header; the service must not echo it

    c, edf = served["client"], _edfs(served["archive"])[2]
    h = read_header(edf)
    secrets_ = [w for w in h.patient.split() + [h.recording.split()[1]] if len(w) >= 5]
    assert secrets_
    sid = served["ids"][2]
    texts = [c.post("/embed", files={"file": ("x.edf", edf.read_bytes())}).text,
             c.post("/similar", files={"file": ("x.edf", edf.read_bytes())}, params={"k": 9}).text,
             c.get(f"/sessions/{sid}").text, c.get(f"/sessions/{sid}/similar", params={"k": 9}).text]
    for t in texts:
        for s in secrets_:
            assert s not in t
        assert '"path"' not in t and '"patient_hash"' not in t and str(served["archive"]) not in t
    ages = [n["age_years"] for n in json.loads(texts[3])["neighbours"] if n["age_years"] is not None]
    assert all(a <= 90 for a in ages)


def test_cli_serve_refuses_to_start_without_keys(served, svc_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from services.cli import register

    monkeypatch.delenv("CLEF_API_KEYS", raising=False)
    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["serve", str(served["store"].path), "--checkpoint", str(svc_checkpoint)])
    assert r.exit_code == 2 and "no API key" in r.output and "Traceback" not in r.output

"""The HTTP service follows its store: sessions added by ``clef embed`` and a rebuilt index are served without a restart."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.batch import embed_archive
from services.config import EmbedConfig, ServeConfig
from services.index import build_index, ensure_index, index_dir, index_signature
from services.store import EmbeddingStore
from services.store_writer import StoreWriter, utc_now
from tests.factories import make_archive, serving, synthetic_store, wait_until

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

KEY = "reload-key-0123456789abcdef"


def _add_sessions(store: Path, model: str, dim: int, ids: list[str], seed: int = 0) -> None:
    """Commit made-up sessions of ``model`` (as a concurrent ``clef embed`` would)."""
    rng = np.random.default_rng(seed)
    man, ses, emb = [], [], []
    for i, sid in enumerate(ids):
        sha = f"{seed:08x}{i:056x}"
        v = rng.normal(size=dim).astype(np.float32).tolist()
        man.append({"path": f"extra/{sid}.edf", "sha256": sha, "size": 1, "status": "done", "error_kind": None,
                    "error": None, "seconds": 0.1, "updated": utc_now(), "model_id": model, "mtime_ns": 0})
        ses.append({"session_id": sid, "source_sha256": sha, "path": f"extra/{sid}.edf", "format": "EDF+C",
                    "duration_s": 600.0, "n_windows": 1, "sex": "F", "age_years": 40.0, "patient_hash": f"px{i}",
                    "site": "S77", "setting": "routine"})
        emb.append({"session_id": sid, "source_sha256": sha, "model_id": model, "vector": v, "window_vectors": [v],
                    "n_windows": 1})
    with StoreWriter(store, store / "archive") as w:
        w.commit(man, ses, emb, models={model: {"dim": dim, "checkpoint": "test"}})


def test_index_signature_follows_parts_and_the_index_pointer(tmp_path: Path) -> None:
    store = tmp_path / "store"
    synthetic_store(store, n=300, dim=8, part=100)
    st = EmbeddingStore(store)
    model = st.models()[0]
    before = index_signature(st, model)
    assert before[-1] == ()  # no index yet
    assert index_signature(st, model) == before  # nothing changed: same token
    build_index(st, model, "flat")
    built = index_signature(st, model)
    assert built[:2] == before[:2] and built[-1] != ()
    _add_sessions(store, model, 8, ["new-a", "new-b"])
    grown = index_signature(st, model)
    assert grown[:2] != built[:2] and grown[-1] == built[-1]
    build_index(st, model, "flat")  # rebuilt with the same content: a new index.json (a new file)
    assert index_signature(st, model)[-1] != grown[-1]
    assert (index_dir(st, model) / "index.json").is_file()


@pytest.fixture()
def live(svc_hospital: Path, svc_checkpoint: Path, tmp_path: Path):
    """A store of 4 sessions served for real on loopback, checking the store every 0.2 s."""
    from services.api import create_app

    archive = make_archive(svc_hospital, tmp_path / "archive", 4, bad=False, duplicate=False)
    store = tmp_path / "store"
    embed_archive(archive, svc_checkpoint, store, EmbedConfig(), progress=False)
    cfg = ServeConfig(store=store, checkpoint=svc_checkpoint, reload_seconds=0.2)
    app = create_app(cfg, [KEY])
    with serving(app) as url, httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as client:
        yield {"client": client, "state": app.state.clef, "archive": archive, "store": store}


def test_service_serves_sessions_embedded_while_it_runs(live, svc_hospital: Path, svc_checkpoint: Path) -> None:
    c, state, store = live["client"], live["state"], live["store"]
    first = EmbeddingStore(store).sessions()["session_id"].to_list()
    assert len(first) == 4 and state.generation == 0
    assert len(c.get(f"/sessions/{first[0]}/similar", params={"k": 10}).json()["neighbours"]) == 3

    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:  # requests keep being answered (by the old searcher, then the new one) throughout
        with httpx.Client(base_url=c.base_url, headers={"X-API-Key": KEY}, timeout=60) as h:
            while not stop.is_set():
                r = h.get(f"/sessions/{first[1]}/similar", params={"k": 10})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")

    t = threading.Thread(target=hammer, daemon=True)
    t.start()
    try:
        # clef embed adds two sessions to the same store (same archive, two more files)
        make_archive(svc_hospital, live["archive"], 6, bad=False, duplicate=False)
        s = embed_archive(live["archive"], svc_checkpoint, store, EmbedConfig(), progress=False)
        assert s.embedded == 2 and s.unchanged == 4
        new = [x for x in EmbeddingStore(store).sessions()["session_id"].to_list() if x not in first]
        assert len(new) == 2
        wait_until(lambda: all(c.get(f"/sessions/{n}").status_code == 200 for n in new), 60,
                   message="the new sessions served")
        sim = c.get(f"/sessions/{first[0]}/similar", params={"k": 10}).json()["neighbours"]
        assert len(sim) == 5 and set(new) <= {n["session_id"] for n in sim}
        assert c.get(f"/sessions/{new[0]}/similar", params={"k": 2}).json()["neighbours"]
        assert state.searcher.index.n == 6 and state.generation >= 1
        # the reload brought the saved index up to date: it is loaded, not updated, next time
        assert ensure_index(store)[1] == "loaded"

        # the index rebuilt by an operator (another kind) is picked up as well
        gen = state.generation
        ensure_index(store, kind="hnsw", rebuild=True)
        wait_until(lambda: state.generation > gen and state.searcher.index.kind == "hnsw", 60,
                   message="the rebuilt index loaded")
        assert len(c.get(f"/sessions/{first[0]}/similar", params={"k": 10}).json()["neighbours"]) == 5
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors[:3]


def test_a_store_that_cannot_be_read_is_not_swapped_in(live, caplog: pytest.LogCaptureFixture) -> None:
    c, state, store = live["client"], live["state"], live["store"]
    sid = EmbeddingStore(store).sessions()["session_id"][0]
    gen, before = state.generation, state.searcher
    bad = store / "embeddings" / "part-999999.parquet"
    bad.write_bytes(b"PAR1 not a parquet file")  # a damaged part appears

    def ask() -> bool:  # the service checks the store when requests come
        return c.get(f"/sessions/{sid}/similar", params={"k": 2}).status_code == 200

    with caplog.at_level("ERROR", logger="services.api"):
        wait_until(lambda: ask() and "reloading the index" in caplog.text, 30, message="the failed reload logged")
        assert "part-999999.parquet is unreadable" in caplog.text
        for _ in range(10):  # still served by the index loaded before; the failure is not retried on every check
            assert ask()
            assert not state.check()
        assert caplog.text.count("reloading the index") == 1
    assert state.searcher is before and state.generation == gen
    bad.unlink()  # repaired, and the store grows: the next check loads it
    st = EmbeddingStore(store)
    _add_sessions(store, st.models()[0], before.index.dim, ["after-repair"])
    wait_until(lambda: ask() and state.generation > gen, 30, message="the repaired store loaded")
    assert state.searcher.index.n == before.index.n + 1
    assert c.get("/sessions/after-repair").status_code == 200


def test_reloading_can_be_checked_on_demand_or_turned_off(svc_hospital: Path, svc_checkpoint: Path,
                                                          tmp_path: Path) -> None:
    from services.api.state import ServiceState
    from services.auth import ApiKeys

    archive = make_archive(svc_hospital, tmp_path / "archive", 3, bad=False, duplicate=False)
    store = tmp_path / "store"
    embed_archive(archive, svc_checkpoint, store, EmbedConfig(), progress=False)
    st = EmbeddingStore(store)
    model = st.models()[0]
    dim = int(st.matrix(model)[1].shape[1])
    off = ServiceState(ServeConfig(store=store, checkpoint=svc_checkpoint, reload_seconds=0), ApiKeys([KEY]))
    assert not off.check(wait=True)  # nothing changed since start-up (its own index save included)
    _add_sessions(store, model, dim, ["later-1", "later-2", "later-3"])
    assert off.current().index.n == 3  # a request never checks by itself (there is no background checker)
    assert off.check(wait=True) and off.current().index.n == 6 and off.generation == 1
    assert off.current().session_meta("later-2")["site"] == "S77"
    assert not off.check(wait=True)  # its own index update is not a change to load again

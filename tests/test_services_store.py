"""The embedding store: layout, reading with polars, crash-safe commits, the writer lock."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from services.schemas import SCHEMAS
from services.store import EmbeddingStore, StoreError, vectors_of
from services.store_writer import StoreWriter, utc_now
from tests.factories import synthetic_store


def _rows(i: int, model: str = "a" * 16, dim: int = 4) -> tuple[dict, dict, dict]:
    sha = f"{i:064x}"
    man = {"path": f"p/s{i}.edf", "sha256": sha, "size": 10, "status": "done", "error_kind": None, "error": None,
           "seconds": 0.5, "updated": utc_now(), "model_id": model, "mtime_ns": 1}
    ses = {"session_id": f"s{i}", "source_sha256": sha, "path": f"p/s{i}.edf", "format": "EDF+C", "duration_s": 60.0,
           "n_windows": 2, "sex": "F", "age_years": 90.0, "patient_hash": "ab" * 8, "site": "S01", "setting": None}
    v = [float(i)] * dim
    emb = {"session_id": f"s{i}", "source_sha256": sha, "model_id": model, "vector": v, "window_vectors": [v, v],
           "n_windows": 2}
    return man, ses, emb


def test_layout_is_readable_with_polars(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path) as w:
        for a in (0, 3):
            rows = [_rows(i) for i in range(a, a + 3)]
            w.commit([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                     models={"a" * 16: {"dim": 4, "checkpoint": "ck"}})
    for table in ("manifest", "sessions", "embeddings"):
        assert sorted(p.name for p in (store / table).iterdir()) == ["part-000001.parquet", "part-000002.parquet"]
    emb = pl.read_parquet(store / "embeddings" / "*.parquet")
    assert emb.height == 6 and emb.schema["vector"] == pl.List(pl.Float32)
    assert emb.schema["window_vectors"] == pl.List(pl.List(pl.Float32))
    info = json.loads((store / "store.json").read_text())
    assert info["schema"] == "clef.store/1" and list(info["models"]) == ["a" * 16]
    s = EmbeddingStore(store)
    ids, x = s.matrix()
    assert ids == [f"s{i}" for i in range(6)] and x.shape == (6, 4) and x.dtype == np.float32
    assert np.array_equal(x[:, 0], np.arange(6, dtype=np.float32))
    assert s.vector("s4", "a" * 16)[0] == 4.0 and s.vector("nope", "a" * 16) is None
    assert s.sessions().height == 6 and s.manifest().height == 6


def test_reader_deduplicates_and_manifest_keeps_the_latest_attempt(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path) as w:
        m, s, e = _rows(1)
        w.commit([{**m, "status": "failed", "error_kind": "not_edf", "error": "x"}], [], [])
        w.commit([m], [s], [e])
        w.commit([], [s], [e])  # a duplicate the writer would never produce: the reader guards
    st = EmbeddingStore(store)
    assert st.embeddings().height == 1 and st.sessions().height == 1
    assert st.manifest().row(0, named=True)["status"] == "done"
    assert st.manifest(history=True).height == 2


def test_interrupted_commits_are_finished_or_discarded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path) as w:
        m, s, e = _rows(1)
        w.commit([m], [s], [e])
    # A commit killed after its READY mark, between the renames: embeddings already moved.
    ready = store / ".staging" / "part-000002"
    ready.mkdir()
    m2, s2, e2 = _rows(2)
    pl.DataFrame([e2], schema=dict(pl.read_parquet(store / "embeddings/part-000001.parquet").schema)).write_parquet(
        store / "embeddings" / "part-000002.parquet")
    pl.DataFrame([s2], schema=dict(pl.read_parquet(store / "sessions/part-000001.parquet").schema)).write_parquet(
        ready / "sessions.parquet")
    pl.DataFrame([m2], schema=dict(pl.read_parquet(store / "manifest/part-000001.parquet").schema)).write_parquet(
        ready / "manifest.parquet")
    (ready / "READY").write_text("part-000002")
    # A commit killed while writing (no READY): its half-written files are discarded.
    half = store / ".staging" / "part-000003"
    half.mkdir()
    (half / "embeddings.parquet").write_bytes(b"PAR1 half a file")
    with StoreWriter(store, tmp_path) as w:
        assert not list((store / ".staging").iterdir())
        assert w.commit([_rows(3)[0]]) == "part-000003"  # the discarded number is free again
    st = EmbeddingStore(store)
    assert sorted(st.manifest()["path"].to_list()) == ["p/s1.edf", "p/s2.edf", "p/s3.edf"]
    assert st.embeddings().height == 2 and st.sessions().height == 2


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with StoreWriter(tmp_path / "store", tmp_path):
        with pytest.raises(StoreError, match="another 'clef embed' is writing it"):
            StoreWriter(tmp_path / "store", tmp_path).open()
    with StoreWriter(tmp_path / "store", tmp_path):  # released on exit
        pass


def test_store_errors_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="found nothing"):
        EmbeddingStore(tmp_path / "none").require()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="expected store.json"):
        EmbeddingStore(tmp_path / "empty").require()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "store.json").write_text('{"schema": "clef.store/0"}')
    with pytest.raises(StoreError, match="clef.store/1 expected, found clef.store/0"):
        EmbeddingStore(tmp_path / "old").require()
    with pytest.raises(StoreError, match="schema clef.store/1 expected"):
        StoreWriter(tmp_path / "old", tmp_path).open()
    synthetic_store(tmp_path / "two", n=20, model_id="a" * 16)
    synthetic_store(tmp_path / "two2", n=20, model_id="b" * 16)
    for p in (tmp_path / "two2" / "embeddings").iterdir():
        p.rename(tmp_path / "two" / "embeddings" / "part-000009.parquet")
    with pytest.raises(StoreError, match="one model expected, found 2"):
        EmbeddingStore(tmp_path / "two").matrix()
    with pytest.raises(StoreError, match="model c+ not found"):
        EmbeddingStore(tmp_path / "two").matrix("c" * 16)
    with pytest.raises(StoreError, match="one width expected"):
        vectors_of(pl.DataFrame({"vector": [[1.0, 2.0], [1.0]]}))


def test_store_json_records_the_archive_and_models_and_a_store_keeps_one_id_kind(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tokenizer.deid import anonymous_id

    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="expected a folder, found a file"):
        StoreWriter(tmp_path / "file", tmp_path).open()
    store = tmp_path / "store"
    w = StoreWriter(store, tmp_path / "archive" / "..")
    with pytest.raises(StoreError, match="StoreWriter.commit called on a closed writer"):
        w.commit([_rows(1)[0]])
    with w:
        assert w.commit([], [], []) is None
        assert w.commit([_rows(1)[0]], models={"a" * 16: {"dim": 4}}) == "part-000001"
        assert w.commit([_rows(2)[0]], models={"a" * 16: {"dim": 5}, "b" * 16: {"dim": 8}}) == "part-000002"
    text = (store / "store.json").read_text()
    info = json.loads(text)
    assert text.startswith('{\n  "anonymous_ids": false,\n  "archive": ') and list(info) == sorted(info)
    assert info["archive"] == str(tmp_path.resolve()) and info["anonymous_ids"] is False
    assert info["created"] <= info["models"]["b" * 16]["added"] <= info["updated"]
    assert info["models"]["a" * 16]["dim"] == 4 and info["models"]["b" * 16]["dim"] == 8  # the first record stays
    with pytest.raises(StoreError, match="written without --anonymous-ids; embed into it the same way"):
        StoreWriter(store, tmp_path, anonymous_ids=True).open()
    anon = tmp_path / "anon"
    with StoreWriter(anon, tmp_path, anonymous_ids=True):
        pass
    assert json.loads((anon / "store.json").read_text())["archive"] == anonymous_id(str(tmp_path.resolve()), "archive")
    with pytest.raises(StoreError, match="written with --anonymous-ids"):
        StoreWriter(anon, tmp_path).open()
    (store / ".staging" / "stray").write_text("")
    ready = store / ".staging" / "part-000007"
    ready.mkdir()
    (ready / "READY").write_text("part-000007")
    (store / "manifest" / "part-000001.parquet").rename(ready / "manifest.parquet")
    with caplog.at_level("WARNING", logger="services.store_writer"), StoreWriter(store, tmp_path / "archive") as w:
        assert not list((store / ".staging").iterdir())
        assert w.recover() == 0 and w.commit([_rows(3)[0]]) == "part-000008"  # after the rolled-forward part
    assert sorted(EmbeddingStore(store).manifest()["path"]) == ["p/s1.edf", "p/s2.edf", "p/s3.edf"]
    assert f"was built from archive {tmp_path.resolve()}" in caplog.text


def test_the_lock_and_the_store_json_keep_their_names_and_format(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import os
    import re
    from datetime import timezone

    assert utc_now().tzinfo is timezone.utc
    store = tmp_path / "deep" / "er" / "store"
    umask = os.umask(0o022)
    try:
        with StoreWriter(store, tmp_path) as w:
            text = (store / "store.json").read_text()
            assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
            assert (store / ".lock").stat().st_mode & 0o777 == 0o644
            lock = re.escape(str(store / ".lock"))
            with pytest.raises(StoreError, match=rf"^store .*: another 'clef embed' is writing it \(lock {lock} held\); "
                                                 r"wait for it to finish$"):
                StoreWriter(store, tmp_path).open()
            _, s, e = _rows(1)
            assert w.commit([], [], [e]) == "part-000001" and w.commit([], [s]) == "part-000002"
            w.commit([_rows(2)[0]], models={"a" * 16: {"dim": 4}})
    finally:
        os.umask(umask)
    text = (store / "store.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    with pytest.raises(StoreError, match=r"^StoreWriter\.commit called on a closed writer$"):
        w.commit([_rows(3)[0]])
    info = json.loads(text)
    del info["anonymous_ids"]  # a store written before the flag existed holds session ids
    (store / "store.json").write_text(json.dumps(info))
    with pytest.raises(StoreError, match="written without --anonymous-ids"):
        StoreWriter(store, tmp_path, anonymous_ids=True).open()
    (store / "store.json").write_text(json.dumps({**info, "schema": "clef.store/0"}))
    with pytest.raises(StoreError, match=r"schema clef\.store/1 expected, found clef\.store/0$"):
        StoreWriter(store, tmp_path).open()
    (store / "store.json").write_text(json.dumps(info))
    with caplog.at_level("WARNING", logger="services.store_writer"), StoreWriter(store, tmp_path / "x"):
        pass
    assert caplog.messages == [f"store {store} was built from archive {tmp_path.resolve()}; now embedding "
                               f"{(tmp_path / 'x').resolve()} (paths are relative to each root)"]


def test_reader_answers_what_each_method_promises(tmp_path: Path) -> None:
    a, b = "a" * 16, "b" * 16
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path) as w:
        rows = [_rows(i, a) for i in range(3)] + [_rows(i, b, dim=2) for i in (1, 5)]
        w.commit([r[0] for r in rows], [r[1] for r in rows[:3]], [r[2] for r in rows])
        # the same content again under another session id (a copy at another path), re-embedded
        m, s, e = _rows(1, a)
        w.commit([], [{**s, "session_id": "copy", "path": "q/copy.edf"}],
                 [{**e, "session_id": "copy", "vector": [9.0] * 4}])
    st = EmbeddingStore(store)
    assert st.models() == [a, b]
    ids, x = st.matrix(b)
    assert ids == ["s1", "s5"] and x.tolist() == [[1.0, 1.0], [5.0, 5.0]]
    ids, x = st.matrix(a)
    assert ids == ["s0", "s1", "s2"] and x[1].tolist() == [1.0] * 4  # the first row of a content is kept
    assert st.vector("s1", a).tolist() == [1.0] * 4 and st.vector("s1", b).tolist() == [1.0, 1.0]
    assert st.sessions()["session_id"].to_list() == ["s0", "s1", "s2"]
    emb = st.embeddings()
    assert emb.columns == list(SCHEMAS["embeddings"]) and emb.height == 5
    assert st.embeddings(b)["session_id"].to_list() == ["s1", "s5"]
    assert st.embeddings(windows=False).columns == [c for c in SCHEMAS["embeddings"] if c != "window_vectors"]
    assert st.manifest(model_id=b)["path"].to_list() == ["p/s1.edf", "p/s5.edf"]
    assert st.manifest(model_id=b, history=True).height == 2
    with pytest.raises(StoreError, match=rf"^store {store}: model c+ not found; models present: {a}, {b}$"):
        st.resolve_model("c" * 16)
    with pytest.raises(StoreError, match=rf"^store {store}: one model expected, found 2 \({a}, {b}\); choose one "
                                         "with --model$"):
        st.resolve_model(None)
    assert st.resolve_model(b) == b
    with pytest.raises(ValueError, match=r"table must be one of \('manifest', 'sessions', 'embeddings'\), found 'x'"):
        st._read("x")


def test_an_empty_store_and_a_file_in_its_place(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path):
        pass
    st = EmbeddingStore(store)
    st.require()
    assert st.models() == [] and st.embeddings().columns == list(SCHEMAS["embeddings"])
    assert st.embeddings(windows=False).height == 0 and st.vector("s1", "a" * 16) is None
    assert st.embeddings(windows=False).columns == [c for c in SCHEMAS["embeddings"] if c != "window_vectors"]
    x = vectors_of(st.embeddings())
    assert x.shape == (0, 0) and x.dtype == np.float32
    with pytest.raises(StoreError, match=rf"^store {store}: model a+ not found; models present: none$"):
        st.resolve_model("a" * 16)
    with pytest.raises(StoreError, match=rf"^store {store}: no embeddings yet \(run 'clef embed' first\)$"):
        st.matrix()
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match=r"^store .*/file: expected a store folder \(written by 'clef embed'\), "
                                         "found a file$"):
        EmbeddingStore(tmp_path / "file").require()
    assert EmbeddingStore(tmp_path / "none").info() == {} and not EmbeddingStore(tmp_path / "none").exists


def test_parts_written_before_a_column_existed_read_it_as_null(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path) as w:
        _, s, _ = _rows(1)
        w.commit([], [{**s, "reference": "AVG"}])
    old = {k: v for k, v in SCHEMAS["sessions"].items() if k != "reference"}
    _, s2, _ = _rows(2)
    pl.DataFrame([{k: s2[k] for k in old}], schema=old).write_parquet(store / "sessions" / "part-000002.parquet")
    st = EmbeddingStore(store)
    ses = st.sessions()
    assert ses.columns == list(SCHEMAS["sessions"]) and ses.schema["reference"] == SCHEMAS["sessions"]["reference"]
    assert ses["reference"].to_list() == ["AVG", None] and ses["session_id"].to_list() == ["s1", "s2"]
    some = st._read("sessions", columns=["reference", "session_id"])
    assert some.columns == ["reference", "session_id"] and some["reference"].to_list() == ["AVG", None]
    assert st._read("sessions", columns=["session_id"]).columns == ["session_id"]
    (store / "sessions" / "part-000001.parquet").unlink()  # only old parts: the column is still typed
    assert st.sessions().schema["reference"] == SCHEMAS["sessions"]["reference"]


def test_an_unreadable_part_names_itself_and_the_way_out(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path) as w:
        w.commit(*([r] for r in _rows(1)))
    (store / "embeddings" / "part-000001.parquet").write_bytes(b"PAR1 not a parquet file PAR1")
    with pytest.raises(StoreError, match=rf"^store {store}: part embeddings/part-000001\.parquet is unreadable "
                                         r"\(corrupted or tampered with: .+\); restore it from a backup, or delete "
                                         r"part-000001\.parquet from every table folder \(manifest, sessions, "
                                         r"embeddings\) and run 'clef embed' again to redo those sessions$"):
        EmbeddingStore(store).embeddings()
    assert EmbeddingStore(store).sessions().height == 1  # the other tables still read


def test_the_digest_follows_one_models_contents(tmp_path: Path) -> None:
    import hashlib

    from services.store import digest_of

    a, b = "a" * 16, "b" * 16
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path) as w:
        w.commit([], [], [_rows(i, a)[2] for i in (2, 1)] + [_rows(3, b)[2]])
        st = EmbeddingStore(store)
        first = st.digest(a)
        assert first == digest_of([f"{1:064x}", f"{2:064x}"]) == digest_of([f"{2:064x}", f"{1:064x}"])
        assert first == hashlib.sha256(f"{1:064x}\n{2:064x}".encode()).hexdigest()[:16]
        assert st.digest(b) == digest_of([f"{3:064x}"]) != first
        w.commit([], [], [{**_rows(2, a)[2], "session_id": "again"}])  # a duplicate content: same digest
        assert st.digest(a) == first
        w.commit([], [], [_rows(4, a)[2]])
        assert st.digest(a) != first and st.digest(b) == digest_of([f"{3:064x}"])


def test_recover_counts_and_logs_the_commits_it_finishes_and_discards(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "store"
    with StoreWriter(store, tmp_path) as w:
        assert w.recover() == 0
        staging = store / ".staging"
        (staging / "a-stray-file").write_text("")  # sorts before the commits: they are still looked at
        for i in (5, 6, 7):
            d = staging / f"part-00000{i}"
            d.mkdir()
            pl.DataFrame([_rows(i)[0]], schema=SCHEMAS["manifest"]).write_parquet(d / "manifest.parquet")
            if i != 7:
                (d / "READY").write_text(d.name)
        with caplog.at_level("INFO", logger="services.store_writer"):
            assert w.recover() == 2
        assert not list(staging.iterdir())
    assert caplog.messages == [f"store {store}: finished interrupted commit part-000005",
                               f"store {store}: finished interrupted commit part-000006",
                               f"store {store}: discarded unfinished commit part-000007"]
    assert EmbeddingStore(store).manifest()["path"].to_list() == ["p/s5.edf", "p/s6.edf"]

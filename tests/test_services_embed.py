"""Batch embedding: discovery, manifest, idempotence, failures and retries, kill -9 and resume, Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import pytest

from services.batch import embed_archive
from services.config import EmbedConfig
from services.discovery import discover
from services.store import EmbeddingStore
from tests.factories import make_archive, wait_until

N = 12  # sessions copied from the hospital (+ 2 broken files + 1 copy)


@pytest.fixture(scope="module")
def archive(svc_hospital: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_archive(svc_hospital, tmp_path_factory.mktemp("archive"), N)


@pytest.fixture(scope="module")
def first_run(archive: Path, svc_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("store") / "store"
    seen: list[tuple[str, str]] = []
    s = embed_archive(archive, svc_checkpoint, store, EmbedConfig(part_size=4), progress=False,
                      on_file=lambda p, st: seen.append((p, st)))
    return store, s, seen


def _archive_files(archive: Path) -> set[str]:
    return {p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.suffix.lower() in (".edf", ".bdf")}


def _check_store_against_archive(store: Path, archive: Path, n_good: int) -> pl.DataFrame:
    """Every file exactly once in the manifest, done or failed with a reason; no duplicate rows anywhere."""
    st = EmbeddingStore(store)
    man = st.manifest()
    assert sorted(man["path"].to_list()) == sorted(_archive_files(archive))
    assert set(man["status"].to_list()) <= {"done", "failed"}
    failed = man.filter(pl.col("status") == "failed")
    assert failed["error_kind"].null_count() == 0 and failed["error"].null_count() == 0
    raw = pl.read_parquet(store / "embeddings" / "*.parquet")  # as a user reads it: no guard
    assert raw.height == n_good and raw.select("source_sha256", "model_id").n_unique() == n_good
    assert pl.read_parquet(store / "sessions" / "*.parquet").height == n_good
    done_shas = set(man.filter(pl.col("status") == "done")["sha256"].to_list())
    assert done_shas == set(raw["source_sha256"].to_list())
    for table in ("manifest", "sessions", "embeddings"):
        assert all(p.name.startswith("part-") and p.suffix == ".parquet" for p in (store / table).iterdir())
    return man


def test_discovery_ids_sites_and_collisions(tmp_path: Path) -> None:
    (tmp_path / "a/x").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for p in ("a/x/s1.edf", "b/s1.EDF", "b/s2.bdf", "b/notes.txt", ".hidden/s9.edf"):
        (tmp_path / p).write_bytes(b"0")
    files = discover(tmp_path, site_level=0)
    assert [(f.rel, f.session_id, f.site) for f in files] == [
        ("a/x/s1.edf", "a/x/s1", "a"), ("b/s1.EDF", "b/s1", "b"), ("b/s2.bdf", "s2", "b")]
    # sessions.csv (here one level up, as in the synthetic hospital) gives ids and sites
    (tmp_path / "sessions.csv").write_text("session_id,patient_id,path,site,setting\nS-1,P1,b/s2.bdf,North,EMU\n")
    f = {f.rel: f for f in discover(tmp_path / "b")}
    assert f["s2.bdf"].session_id == "S-1" and (f["s2.bdf"].site, f["s2.bdf"].setting) == ("North", "EMU")
    assert f["s1.EDF"].site is None
    with pytest.raises(FileNotFoundError, match="expected a directory"):
        discover(tmp_path / "b" / "s2.bdf")


def test_archive_is_embedded_with_a_manifest(first_run, archive: Path, svc_hospital: Path) -> None:
    store, s, seen = first_run
    assert (s.files, s.embedded, s.known, s.failed) == (N + 3, N, 1, 2)
    assert sorted(p for p, _ in seen) == sorted(_archive_files(archive))
    man = _check_store_against_archive(store, archive, N)
    kinds = dict(zip(man["path"], man["error_kind"]))
    assert kinds["edf/S09/P999/notes.edf"] == "not_edf" and kinds["edf/S09/P999/cut.edf"] in ("truncated", "corrupt_header")
    assert kinds["zz/again.EDF"] == "same_content"
    assert man.filter(pl.col("status") == "done")["seconds"].min() > 0
    st = EmbeddingStore(store)
    ses = st.sessions()
    truth = pl.read_csv(svc_hospital / "sessions.csv")
    want = truth.filter(pl.col("path").is_in(ses["path"].to_list()))
    assert dict(zip(ses["path"], ses["session_id"])) == dict(zip(want["path"], want["session_id"]))
    assert dict(zip(ses["path"], ses["site"])) == dict(zip(want["path"], want["site"]))
    assert ses["age_years"].drop_nulls().max() <= 90 and ses["patient_hash"].null_count() < ses.height
    ids, x = st.matrix()
    assert len(ids) == N and x.shape[0] == N and np.isfinite(x).all()
    emb = st.embeddings()
    assert (emb["n_windows"] == emb["window_vectors"].list.len()).all()


def test_store_holds_no_phi(first_run, archive: Path) -> None:
    from tokenizer import read_header  # the raw header (the test may read PHI; the store may not)

    store, _, _ = first_run
    blob = b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())
    for rel in _archive_files(archive):
        if "S09" in rel:
            continue
        h = read_header(archive / rel)
        for word in (h.patient.split() + h.recording.split()[1:3]):
            if len(word) >= 5 and word.upper() not in ("STARTDATE", "EEG-S01"):
                assert word.encode() not in blob, (rel, word)


def test_rerun_is_idempotent(first_run, archive: Path, svc_checkpoint: Path) -> None:
    store, _, _ = first_run
    parts = sorted(p.name for p in (store / "manifest").iterdir())
    s = embed_archive(archive, svc_checkpoint, store, EmbedConfig(part_size=4), progress=False)
    assert (s.embedded, s.unchanged, s.failed_skipped, s.failed) == (0, N + 1, 2, 0)
    assert sorted(p.name for p in (store / "manifest").iterdir()) == parts  # nothing written
    # a touched (same bytes) and a renamed file are hashed again, recognised, not re-embedded
    one = sorted((archive / "edf").rglob("*.edf"))[0]
    os.utime(one, None)
    s = embed_archive(archive, svc_checkpoint, store, EmbedConfig(part_size=4), progress=False)
    assert (s.embedded, s.known) == (0, 1)
    _check_store_against_archive(store, archive, N)


def test_failed_files_are_retried_only_when_asked(archive: Path, svc_checkpoint: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    flaky = sorted((archive / "edf").rglob("*.edf"))[1]
    st = flaky.stat()
    good = flaky.read_bytes()

    def put(content: bytes) -> None:  # same size and mtime: the file looks unchanged to a rerun
        flaky.write_bytes(content)
        os.utime(flaky, ns=(st.st_atime_ns, st.st_mtime_ns))

    put(b"garbage!" + good[8:])  # a transient failure (e.g. a network file system returning junk)
    try:
        s = embed_archive(archive, svc_checkpoint, store, EmbedConfig(part_size=100), progress=False)
    finally:
        put(good)
    assert (s.embedded, s.failed) == (N - 1, 3)
    s = embed_archive(archive, svc_checkpoint, store, EmbedConfig(part_size=100), progress=False)
    assert (s.embedded, s.failed, s.failed_skipped) == (0, 0, 3)  # recorded, not retried
    s = embed_archive(archive, svc_checkpoint, store, EmbedConfig(part_size=100, retry_failed=True), progress=False)
    assert (s.embedded, s.failed) == (1, 2)  # the transient one now succeeds; broken files fail again
    man = _check_store_against_archive(store, archive, N)
    rel = flaky.relative_to(archive).as_posix()
    assert man.filter(pl.col("path") == rel)["status"].item() == "done"
    hist = EmbeddingStore(store).manifest(history=True).filter(pl.col("path") == rel)
    assert hist["status"].to_list() == ["failed", "done"]


def test_two_workers_give_the_vectors_of_one(first_run, archive: Path, svc_checkpoint: Path, tmp_path: Path) -> None:
    """``--workers 2``: two pool processes, every file once, and the vectors of the 1-worker run."""
    store1, s1, _ = first_run
    store = tmp_path / "store"
    s = embed_archive(archive, svc_checkpoint, store, EmbedConfig(workers=2, part_size=4), progress=False)
    assert (s.embedded, s.known, s.failed, s.workers) == (s1.embedded, s1.known, s1.failed, 2)
    man = _check_store_against_archive(store, archive, N)
    assert man.height == len(_archive_files(archive))
    ref = EmbeddingStore(store1).embeddings(windows=False).sort("source_sha256")
    got = EmbeddingStore(store).embeddings(windows=False).sort("source_sha256")
    assert got["source_sha256"].to_list() == ref["source_sha256"].to_list()
    np.testing.assert_allclose(np.stack(got["vector"].to_list()), np.stack(ref["vector"].to_list()), atol=1e-5)


#: ``clef embed`` whose worker processes die (``os._exit``, as when killed for memory) on
#: files named ``killer*``. The patch sits at the top of the script, which spawned workers
#: import too.
_KILLER_SCRIPT = """
import json
import os
import sys

from services import worker

_process = worker.FileEmbedder.process


def process(self, item, known=frozenset()):
    if os.path.basename(item.rel).startswith("killer"):
        os._exit(137)
    return _process(self, item, known)


worker.FileEmbedder.process = process

if __name__ == "__main__":
    from services.batch import embed_archive
    from services.config import EmbedConfig

    archive, checkpoint, store = sys.argv[1:]
    s = embed_archive(archive, checkpoint, store, EmbedConfig(part_size=2), progress=False)
    print(json.dumps(s.to_dict()))
"""


def test_a_file_that_kills_its_worker_is_failed_and_the_run_goes_on(svc_hospital: Path, svc_checkpoint: Path,
                                                                   tmp_path: Path) -> None:
    """A file that kills its worker process (killed for memory, a crash in native code) is
    recorded as ``worker_died``; the others are embedded, and later runs skip it unless
    ``--retry-failed``, so it can end neither this run nor a later one."""
    small = make_archive(svc_hospital, tmp_path / "archive", 3, bad=False, duplicate=False)
    first = sorted(small.rglob("*.edf"))[0]
    killer = first.with_name("killer.edf")
    shutil.copy2(first, killer)  # its worker dies before reading it
    script, store = tmp_path / "killer.py", tmp_path / "store"
    script.write_text(_KILLER_SCRIPT)

    def run() -> dict:
        done = subprocess.run([sys.executable, str(script), str(small), str(svc_checkpoint), str(store)],
                              capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    s = run()
    assert (s["embedded"], s["failed"]) == (3, 1)
    row = EmbeddingStore(store).manifest().filter(pl.col("path") == killer.relative_to(small).as_posix()).row(
        0, named=True)
    assert row["status"] == "failed" and row["error_kind"] == "worker_died" and "--retry-failed" in row["error"]
    s = run()
    assert (s["embedded"], s["failed_skipped"]) == (0, 1)  # not tried again unless asked


def test_each_file_is_read_once_on_the_batch_path(archive: Path, svc_checkpoint: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver reads no recording; a worker reads each file's bytes once (header, data
    and content hash from one pass), with and without a spectrogram cache, and the bipolar
    plan is made once per file."""
    import builtins

    import tokenizer.ingest as ingest
    from services.discovery import ArchiveFile
    from services.worker import FileEmbedder

    recordings = {p.resolve() for p in archive.rglob("*") if p.suffix.lower() in (".edf", ".bdf")}
    read: dict[Path, int] = {}
    opened: dict[Path, int] = {}
    real_open = builtins.open

    class Counting:
        def __init__(self, f, path: Path) -> None:  # noqa: ANN001
            self._f, self._path = f, path

        def read(self, *a):  # noqa: ANN002,ANN202
            block = self._f.read(*a)
            read[self._path] = read.get(self._path, 0) + len(block)
            return block

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(self._f, name)

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc) -> None:  # noqa: ANN002
            self._f.close()

    def counting_open(file, *a, **kw):  # noqa: ANN001,ANN002,ANN003,ANN202
        f = real_open(file, *a, **kw)
        path = Path(file).resolve() if isinstance(file, (str, os.PathLike)) else None
        if path in recordings:
            opened[path] = opened.get(path, 0) + 1
            return Counting(f, path)
        return f

    monkeypatch.setattr(builtins, "open", counting_open)
    plans = []
    real_plan = ingest.plan_bipolar
    monkeypatch.setattr(ingest, "plan_bipolar", lambda *a, **k: plans.append(a[0]) or real_plan(*a, **k))

    embed_archive(archive, svc_checkpoint, tmp_path / "store", EmbedConfig(part_size=100), progress=False)
    assert read == {} and opened == {}  # the driver: paths, sizes and mtimes only

    files = sorted(p for p in archive.rglob("*.edf") if "P999" not in p.parts)[:2]
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # no cache, a cache miss, a cache hit
        fe = FileEmbedder(svc_checkpoint, cache_dir=cache)
        try:
            for f in files:
                for seen in (read, opened, plans):
                    seen.clear()
                st = f.stat()
                r = fe.process(ArchiveFile(path=f, rel=f.name, size=st.st_size, mtime_ns=st.st_mtime_ns,
                                           session_id=f.stem))
                assert r.status == "done" and r.facts is not None and r.vector is not None
                assert opened == {f.resolve(): 1} and read == {f.resolve(): st.st_size}, (cache, f.name)
                assert len(plans) == 1
        finally:
            fe.restore_threads()


def test_kill_9_mid_run_then_resume(archive: Path, svc_checkpoint: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    clef = Path(sys.executable).with_name("clef")
    cmd = [str(clef), "embed", str(archive), "--checkpoint", str(svc_checkpoint), "--store", str(store),
           "--part-size", "1", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    try:  # until three parts are committed, or the run ends too early (reported below)
        wait_until(lambda: proc.poll() is not None or len(list((store / "manifest").glob("part-*.parquet"))) >= 3,
                   240, interval=0.02, message="three committed parts")
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        workers = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        proc.stderr.close()
    # the pool's workers end with their driver instead of working on as orphans
    _, alive = psutil.wait_procs(workers, timeout=10)
    for p in alive:
        p.kill()
    assert not alive, [p.pid for p in alive]
    committed = len(list((store / "manifest").glob("part-*.parquet")))
    assert 3 <= committed < N + 3, committed
    # what a user reading the store right now sees: whole parts only, no duplicates
    raw = pl.read_parquet(store / "embeddings" / "*.parquet")
    assert raw["source_sha256"].n_unique() == raw.height
    s = embed_archive(archive, svc_checkpoint, store, EmbedConfig(part_size=1), progress=False)
    assert s.embedded + s.known + s.failed + s.unchanged + s.failed_skipped == N + 3
    _check_store_against_archive(store, archive, N)
    assert not list((store / ".staging").iterdir())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own, at import
def test_ray_engine_matches_the_local_engine(first_run, archive: Path, svc_checkpoint: Path, tmp_path: Path) -> None:
    """A local Ray instance (2 CPUs: one CPU actor, one model actor) embeds what the local engine does."""
    store = tmp_path / "ray_store"
    cfg = EmbedConfig(engine="ray", workers=1, part_size=4)
    s = embed_archive(archive, svc_checkpoint, store, cfg, progress=False)
    assert (s.embedded, s.known, s.failed) == (N, 1, 2)
    _check_store_against_archive(store, archive, N)
    a = EmbeddingStore(first_run[0]).embeddings().sort("source_sha256")
    b = EmbeddingStore(store).embeddings().sort("source_sha256")
    assert a["source_sha256"].to_list() == b["source_sha256"].to_list()
    assert np.allclose(np.stack(a["vector"].to_numpy()), np.stack(b["vector"].to_numpy()), atol=1e-5)
    again = embed_archive(archive, svc_checkpoint, store, cfg, progress=False)  # nothing to do: Ray not started
    assert (again.embedded, again.unchanged) == (0, N + 1)


def test_cli_embed_errors_are_one_line(tmp_path: Path, svc_checkpoint: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from services.cli import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    for args, msg in ((["embed", str(tmp_path / "none"), "--checkpoint", str(svc_checkpoint), "--store",
                        str(tmp_path / "s")], "expected a directory"),
                      (["embed", str(tmp_path), "--checkpoint", str(tmp_path / "nock"), "--store",
                        str(tmp_path / "s")], "expected a checkpoint folder"),
                      (["embed", str(tmp_path), "--checkpoint", str(svc_checkpoint), "--store", str(tmp_path / "s"),
                        "--engine", "spark"], "--engine must be local or ray")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and msg in " ".join(r.output.split()) and "Traceback" not in r.output, r.output


def test_demo_step_shows_neighbours_with_findings(svc_hospital: Path, svc_checkpoint: Path, tmp_path: Path) -> None:
    from rich.console import Console

    from services.demo import demo_step

    hosp = make_archive(svc_hospital, tmp_path / "hosp", 8, bad=False, duplicate=False)
    shutil.copy2(svc_hospital / "truth.parquet", hosp / "truth.parquet")
    console = Console(record=True, width=160)
    found = demo_step(hosp, svc_checkpoint, tmp_path / "demo", console, k=3)
    assert len(found) == 3 and len({n.patient_hash for n in found}) == 3
    text = console.export_text()
    assert "nearest sessions to" in text and "planted findings" in text and found[0].session_id in text

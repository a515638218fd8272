"""Faults and data safety (issue 9): ``kill -9`` during tokenize, training and indexing; tampered files.

A killed run here is a real ``SIGKILL`` of a ``clef`` process (no ``finally``, no
clean-up), at two kinds of points:

- from outside, once the file system shows progress (a Parquet part, a checkpoint):
  where exactly the process is then varies from run to run, as with a user's kill -9;
- from inside, at a chosen write: run as a script, this file *is* the ``clef`` command
  with ``os.replace`` / ``polars.DataFrame.write_parquet`` wrapped so that the process
  SIGKILLs itself just before or just after the n-th rename of a matching file, or after
  writing only half of one (a torn write); see :func:`_install_kill`. This reaches the
  narrow windows (between two renames) that an outside kill would hit only by luck, and
  it is deterministic.

After each kill: what is on disk is consistent (whole parts only, no duplicate session,
the previous index or checkpoint intact), and a rerun finishes the work exactly once.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: ``WHEN:GLOB:N`` (see :func:`_install_kill`), read by this file run as a script.
KILL_ENV = "CLEF_TEST_KILL"


def _install_kill(spec: str) -> None:
    """SIGKILL this process at the ``N``-th write whose target's file name matches ``GLOB``.

    ``spec`` is ``WHEN:GLOB:N`` with ``WHEN`` one of ``before`` / ``after`` (an
    ``os.replace`` onto a matching name: the process dies just before or just after the
    rename) or ``torn`` (a ``DataFrame.write_parquet`` to a matching name: half the file
    is written, then the process dies).
    """
    when, pattern, nth = spec.split(":")
    seen = 0

    def hit(target: object) -> bool:
        nonlocal seen
        if isinstance(target, (str, os.PathLike)) and fnmatch.fnmatch(os.path.basename(os.fspath(target)), pattern):
            seen += 1
            return seen == int(nth)
        return False

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if when in ("before", "after"):
        real_replace = os.replace

        def replace(src: str | os.PathLike, dst: str | os.PathLike, **kw: object) -> None:
            now = hit(dst)
            if now and when == "before":
                die()
            real_replace(src, dst, **kw)
            if now:
                die()

        os.replace = replace
    elif when == "torn":
        import polars as pl

        real_write = pl.DataFrame.write_parquet

        def write_parquet(self: pl.DataFrame, file: object, *a: object, **kw: object) -> None:
            real_write(self, file, *a, **kw)
            if hit(file):
                os.truncate(file, os.path.getsize(file) // 2)
                die()

        pl.DataFrame.write_parquet = write_parquet
    else:
        raise ValueError(f"{KILL_ENV}: WHEN must be before, after or torn, found {when!r}")


# Run as a script: the `clef` command, killed where CLEF_TEST_KILL says. This comes before the
# imports below, so that a killed run starts as fast as `clef` itself.
if __name__ == "__main__":
    if os.environ.get(KILL_ENV):
        _install_kill(os.environ[KILL_ENV])
    from clef.cli import main

    sys.argv = ["clef", *sys.argv[1:]]
    main()
    sys.exit(0)


# --------------------------------------------------------------------------- the tests

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from services.index import ensure_index, load_index, normalise  # noqa: E402
from services.store import EmbeddingStore, StoreError, vectors_of  # noqa: E402
from services.store_writer import StoreWriter, utc_now  # noqa: E402
from tests.factories import make_archive, synthetic_store  # noqa: E402
from tokenizer.checkpoint_io import CheckpointError, load_checkpoint, load_training_state, save_checkpoint  # noqa: E402
from tokenizer.contract import SignalContract  # noqa: E402
from tokenizer.hashing import file_sha256  # noqa: E402
from tokenizer.presets import load_preset  # noqa: E402
from tokenizer.tokens import read_errors, read_tokens, tokenize_archive  # noqa: E402


def _env(kill: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",  # small models: one thread (a 2-core machine)
           "COLUMNS": "1000"}  # rich wraps nothing: messages are checked as whole lines
    env.pop(KILL_ENV, None)
    if kill:
        env[KILL_ENV] = kill
    return env


def _clef(*args: str | Path, kill: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``clef ARGS`` (optionally killed per ``kill``); returns the finished process."""
    return subprocess.run([sys.executable, __file__, *map(str, args)], env=_env(kill), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _assert_killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, \
        f"expected the run to be killed, it ended with {proc.returncode}: {proc.stderr[-3000:]}"


def _assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"


def _kill_when(cmd: list[str | Path], ready: Callable[[], bool], timeout: float = 240) -> None:
    """Start ``clef CMD``, SIGKILL it as soon as ``ready()`` is true (it must still be running)."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty run never blocks on a full pipe
        proc = subprocess.Popen([sys.executable, __file__, *map(str, cmd)], env=_env(), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and proc.poll() is None and not ready():
                time.sleep(0.01)
            if proc.poll() is not None or not ready():
                log.seek(0)
                pytest.fail(f"the run ended, or showed no progress in {timeout} s, before it could be killed: "
                            f"{log.read().decode()[-2000:]}")
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def _flip_byte(path: Path, offset: int = -1) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def trained(request: pytest.FixtureRequest) -> Any:
    """Paths of a trained pipeline: conftest's ``pipeline`` fixture, or (while developing) the
    ``train_all`` output folder named by ``CLEF_TEST_PIPELINE``."""
    env = os.environ.get("CLEF_TEST_PIPELINE")
    if env:
        from types import SimpleNamespace

        out = Path(env)
        return SimpleNamespace(tokenizer=out / "tokenizer", tokens=out / "tokens", checkpoint=out / "pretrain")
    return request.getfixturevalue("pipeline")


@pytest.fixture(scope="module")
def source(request: pytest.FixtureRequest) -> Path:
    env = os.environ.get("CLEF_TEST_HOSPITAL")
    return Path(env) if env else request.getfixturevalue("hospital")


# --------------------------------------------------------------------------- clef tokenize

N_TOK = 12  # sessions in the tokenize archive (+ 2 broken files + 1 copy of the first)


@pytest.fixture(scope="module")
def tok_archive(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_archive(source, tmp_path_factory.mktemp("tok_archive"), N_TOK)


@pytest.fixture(scope="module")
def tok_cache(trained: Any) -> Path:
    """The pipeline's spectrogram cache (the archive's files are cache hits: fast runs)."""
    return Path(trained.tokens).parent / "cache"


@pytest.fixture(scope="module")
def reference_tokens(tok_archive: Path, trained: Any, tok_cache: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """Tokens of an uninterrupted run (what every interrupted + resumed run must end with)."""
    out = tmp_path_factory.mktemp("tok_ref") / "tokens"
    tokenize_archive(tok_archive, trained.tokenizer, out, cache_dir=tok_cache, part_size=4)
    return read_tokens(out)


def _check_tokens(out: Path, archive: Path, reference: pl.DataFrame | None = None) -> None:
    """Whole parts only; each session's windows exactly once; each broken file's error exactly once."""
    names = sorted(p.name for p in out.iterdir())
    assert all(n == "manifest.json" or fnmatch.fnmatch(n, "tokens-[0-9][0-9][0-9][0-9][0-9].parquet")
               or fnmatch.fnmatch(n, "errors-[0-9][0-9][0-9][0-9][0-9].parquet") for n in names), names
    for p in out.glob("*.parquet"):
        pl.read_parquet(p)  # every part is whole and readable
    df = read_tokens(out)
    assert df.select("source_sha256", "window").n_unique() == df.height, "a session's tokens appear twice"
    per = df.group_by("source_sha256").agg(pl.col("window").sort(), pl.col("n_windows").first())
    for windows, n in zip(per["window"].to_list(), per["n_windows"].to_list()):
        assert windows == list(range(n))
    files = [p for p in archive.rglob("*") if p.suffix.lower() in (".edf", ".bdf")]
    good = {file_sha256(p) for p in files if "P999" not in p.parts}
    assert set(df["source_sha256"].to_list()) == good
    errors = read_errors(out)
    assert sorted(errors["path"].to_list()) == ["edf/S09/P999/cut.edf", "edf/S09/P999/notes.edf"]
    if reference is not None:  # the resumed run wrote what an uninterrupted one writes
        key = ["source_sha256", "window"]
        got = df.select(*key, "codes", "token_mask").sort(key)
        ref = reference.select(*key, "codes", "token_mask").sort(key)
        assert got.equals(ref)


def test_tokenize_killed_mid_run_then_resumed(tok_archive: Path, trained: Any, tmp_path: Path) -> None:
    """kill -9 once two parts are written (spectrograms computed afresh: each file takes a while)."""
    out = tmp_path / "tokens"
    cmd = ["tokenize", "--archive", tok_archive, "--checkpoint", trained.tokenizer, "--out", out,
           "--cache", tmp_path / "cache", "--part-size", "1"]
    _kill_when(cmd, lambda: len(list(out.glob("tokens-*.parquet"))) >= 2)
    committed = sorted(out.glob("tokens-*.parquet"))
    assert 2 <= len(committed) < N_TOK
    raw = pl.read_parquet(out / "tokens-*.parquet")  # as a user reads it right now: whole parts, no duplicates
    assert raw.select("source_sha256", "window").n_unique() == raw.height
    done = raw["source_sha256"].n_unique()
    proc = _clef(*cmd)
    _assert_ok(proc)
    assert f"{N_TOK - done} file(s) tokenized" in " ".join(proc.stdout.split()), proc.stdout  # only what was left
    _check_tokens(out, tok_archive)


@pytest.mark.parametrize("kill", [
    # parts of 5 files: sessions 0-4, 5-9, then 10, 11 and the two broken files (tokens + errors part)
    "torn:.tokens-00001.parquet.tmp-*:1",   # a part half-written to its temp file
    "before:errors-00002.parquet:1",        # a tokens part renamed into place, its errors part not
])
def test_tokenize_killed_at_a_write_then_resumed(kill: str, tok_archive: Path, trained: Any, tok_cache: Path,
                                                 reference_tokens: pl.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "tokens"
    _assert_killed(_clef("tokenize", "--archive", tok_archive, "--checkpoint", trained.tokenizer, "--out", out,
                         "--cache", tok_cache, "--part-size", "5", kill=kill))
    for p in out.glob("*.parquet"):
        pl.read_parquet(p)  # never a visible partial part
    if kill.startswith("torn"):
        assert list(out.glob(".tokens-00001.parquet.tmp-*")), "the torn temp file should be left by the kill"
    s = tokenize_archive(tok_archive, trained.tokenizer, out, cache_dir=tok_cache, part_size=5)
    assert s.tokenized + s.skipped + s.errors == N_TOK + 3
    _check_tokens(out, tok_archive, reference_tokens)


# --------------------------------------------------------------------------- training: clef pretrain

PRETRAIN_STEPS, PRETRAIN_EVERY = 12, 4


@pytest.fixture(scope="module")
def pretrain_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clef.config import SessionConfig

    cfg = load_preset(SessionConfig, "tiny", {"model": {"dim": 32, "depth": 1, "heads": 2},
                                              "train": {"batch_size": 8, "max_steps": PRETRAIN_STEPS,
                                                        "checkpoint_every": PRETRAIN_EVERY, "log_every": PRETRAIN_EVERY},
                                              "optim": {"warmup_steps": 2}})
    path = tmp_path_factory.mktemp("cfg") / "session.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def _no_leftovers_beside(ckpt: Path) -> None:
    left = [p.name for p in ckpt.parent.iterdir() if p.name.startswith(f".{ckpt.name}.")]
    assert not left, f"leftovers of the killed run beside {ckpt}: {left}"


def _step(ckpt: Path) -> int:
    return int(json.loads((ckpt / "meta.json").read_text())["step"])


def test_pretrain_killed_while_replacing_its_checkpoint_resumes_from_the_last_one(
        trained: Any, pretrain_yaml: Path, tmp_path: Path) -> None:
    """The narrowest window: killed between the two renames that replace the checkpoint
    (the step-4 one set aside, the step-8 one not yet in): ``--resume`` puts the step-4
    checkpoint back and continues from step 4, not 0."""
    from clef.embedding import Embedder

    ck = tmp_path / "ck"
    cmd = ["pretrain", "--tokens", trained.tokens, "--config", pretrain_yaml, "--out", ck, "--accelerator", "cpu"]
    _assert_killed(_clef(*cmd, kill=f"after:.{ck.name}.old-*:1"))
    assert not ck.exists() and list(tmp_path.glob(f".{ck.name}.old-*")), "the kill should hit between the renames"
    # the step-8 checkpoint, whole but not yet renamed in, already holds its tokenizer copy (same rename)
    (new,) = tmp_path.glob(f".{ck.name}.tmp-*")
    assert _step(new) == 2 * PRETRAIN_EVERY and (new / "tokenizer" / "meta.json").is_file()
    proc = _clef("-v", *cmd, "--resume")
    _assert_ok(proc)
    log = " ".join(proc.stderr.split())
    assert f"restored the previous one (step {PRETRAIN_EVERY})" in log, log[-2000:]
    assert f"resuming from {ck} at step {PRETRAIN_EVERY}" in log, log[-2000:]
    assert f"at step {PRETRAIN_STEPS}:" in log
    assert _step(ck) == PRETRAIN_STEPS
    assert load_training_state(ck) is not None
    assert Embedder(ck).tokenizer.grid == (8, 64)  # loadable, with a whole copy of its tokenizer
    _no_leftovers_beside(ck)


def test_pretrain_killed_after_a_checkpoint_resumes_from_its_step(trained: Any, pretrain_yaml: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """kill -9 as soon as a checkpoint appears (an outside kill: training goes on a little),
    then resume in-process: the step counter, weights and optimiser continue from it."""
    from clef.config import SessionConfig
    from clef.embedding import Embedder
    from clef.pretrain import load_session_module, pretrain

    ck = tmp_path / "ck"
    cmd = ["pretrain", "--tokens", trained.tokens, "--config", pretrain_yaml, "--out", ck, "--accelerator", "cpu",
           "--max-steps", "4000"]  # long: the kill comes first
    _kill_when(cmd, lambda: (ck / "meta.json").is_file())
    module = load_session_module(ck)  # whole: weights, head, optimiser state (put back if killed mid-replace)
    saved = module.g_step
    assert saved == _step(ck) and saved % PRETRAIN_EVERY == 0 and 0 < saved < 4000
    assert module._optimizer_state is not None
    caplog.set_level("INFO", logger="clef.pretrain")
    r = pretrain(trained.tokens, load_preset(SessionConfig, pretrain_yaml), ck, max_steps=saved + 2 * PRETRAIN_EVERY, resume=True,
                 trainer_kwargs={"enable_progress_bar": False})
    assert f"at step {saved}" in caplog.text
    assert r.steps == saved + 2 * PRETRAIN_EVERY == _step(ck)
    assert Embedder(ck).tokenizer.grid == (8, 64)
    _no_leftovers_beside(ck)


# --------------------------------------------------------------------------- training: clef train tokenizer


@pytest.mark.slow
def test_train_tokenizer_killed_after_a_checkpoint_resumes_from_its_step(tok_archive: Path, tok_cache: Path,
                                                                          tmp_path: Path) -> None:
    from tokenizer.tokens import Tokenizer
    from tokenizer.vqgan.config import VQGANConfig
    from tokenizer.vqgan.training import load_training_checkpoint, train_tokenizer

    raw = load_preset(VQGANConfig, "tiny").model_dump(mode="json")
    raw["train"].update(max_steps=4, checkpoint_every=2, log_every=2)
    cfg_file = tmp_path / "vq.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "tok"
    _assert_killed(_clef("train", "tokenizer", "--archive", tok_archive, "--config", cfg_file, "--out", out,
                         "--cache", tok_cache, "--accelerator", "cpu", kill=f"after:{out.name}:1"))
    assert _step(out) == 2
    module = load_training_checkpoint(out)
    assert module.step_offset == 2 and module._optimizer_state is not None
    train_tokenizer(tok_archive, load_preset(VQGANConfig, cfg_file), out, cache_dir=tok_cache, resume=True, accelerator="cpu",
                    enable_progress_bar=False)
    assert _step(out) == 4
    assert (out.with_name("tok.logs") / "from_step_2").is_dir()  # the resumed run started at step 2, not 0
    assert Tokenizer.from_checkpoint(out).grid == (8, 64)
    _no_leftovers_beside(out)


# --------------------------------------------------------------------------- clef index

N_IDX, N_GROW, DIM, MODEL = 600, 150, 16, "m" * 16


def _grow(store: Path, n: int, start: int, seed: int = 5) -> None:
    """Commit ``n`` more sessions (content hashes ``start`` ...) to a synthetic store."""
    rng = np.random.default_rng(seed)
    man, ses, emb = [], [], []
    for i in range(start, start + n):
        sha, sid, v = f"{i:064x}", f"sess{i:05d}", rng.normal(size=DIM).astype(np.float32).tolist()
        man.append({"path": f"x/{sid}.edf", "sha256": sha, "size": 1, "status": "done", "error_kind": None,
                    "error": None, "seconds": 0.1, "updated": utc_now(), "model_id": MODEL, "mtime_ns": 0})
        ses.append({"session_id": sid, "source_sha256": sha, "path": f"x/{sid}.edf", "format": "EDF+C",
                    "duration_s": 600.0, "n_windows": 1, "sex": "F", "age_years": 50.0, "patient_hash": f"q{i:06d}",
                    "site": "S01", "setting": "routine"})
        emb.append({"session_id": sid, "source_sha256": sha, "model_id": MODEL, "vector": v, "window_vectors": [v],
                    "n_windows": 1})
    with StoreWriter(store, store / "archive") as w:
        w.commit(man, ses, emb, models={MODEL: {"dim": DIM, "checkpoint": "synthetic"}})


def _check_index_matches_store(store: Path) -> None:
    """The saved index covers the store's embeddings exactly, row for row, and nothing else lies beside it."""
    ci = load_index(store)
    df = EmbeddingStore(store).embeddings(MODEL, windows=False)
    assert ci.n == df.height == len(ci.session_ids) == len(set(ci.shas))
    by_sha = dict(zip(df["source_sha256"].to_list(), range(df.height)))
    rows = np.array([by_sha[s] for s in ci.shas])
    assert ci.session_ids == df["session_id"].gather(rows).to_list()
    np.testing.assert_allclose(ci.vectors(np.arange(ci.n)), normalise(vectors_of(df))[rows], atol=1e-6)
    d = store / "index" / MODEL
    assert sorted(p.name for p in d.iterdir() if not fnmatch.fnmatch(p.name, "index-*.faiss")
                  and not fnmatch.fnmatch(p.name, "ids-*.parquet")) == ["index.json"]
    assert len(list(d.glob("index-*.faiss"))) == len(list(d.glob("ids-*.parquet"))) == 1


@pytest.mark.parametrize(("kill", "expect"), [
    ("torn:.ids-*.parquet.tmp-*:1", "old"),  # the new index file in place, the new id map half-written
    ("before:index.json:1", "old"),       # both new files in place, the new pointer in its temp file
    ("after:index.json:1", "new"),        # the new pointer in place, the old files not yet removed
    ("after:ids-*.parquet:1", "absent"),  # the first build of a store, killed before its pointer
])
def test_index_killed_while_saving_keeps_the_previous_index(kill: str, expect: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    synthetic_store(store, n=N_IDX, dim=DIM, model_id=MODEL, part=200)
    if expect != "absent":
        ensure_index(store)
        _grow(store, N_GROW, start=N_IDX)
    before = None if expect == "absent" else load_index(store)
    _assert_killed(_clef("index", store, kill=kill))
    if expect == "absent":
        with pytest.raises(FileNotFoundError):
            load_index(store)
    else:
        ci = load_index(store)  # loadable: never a half-written index nor a new index with an old id map
        assert ci.n == len(ci.shas) == (N_IDX if expect == "old" else N_IDX + N_GROW)
        if expect == "old":
            assert ci.shas == before.shas and ci.digest == before.digest
    ci, action = ensure_index(store)  # the rerun
    assert (ci.n, action) == {"old": (N_IDX + N_GROW, "updated"), "new": (N_IDX + N_GROW, "loaded"),
                              "absent": (N_IDX, "built")}[expect]
    _check_index_matches_store(store)


# --------------------------------------------------------------------------- tampered and corrupted files


def test_loading_never_unpickles(trained: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints (with their training state), tokens, stores and indexes load with pickle disabled."""
    import pickle

    from clef.embedding import Embedder
    from clef.pretrain import load_session_module
    from tokenizer.tokens import Tokenizer
    from tokenizer.vqgan.training import load_training_checkpoint

    store = tmp_path / "store"
    synthetic_store(store, n=300, dim=DIM, model_id=MODEL, part=100)
    ensure_index(store)

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("something was unpickled")

    for mod, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(mod, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    assert load_session_module(trained.checkpoint)._optimizer_state is not None
    assert Embedder(trained.checkpoint).tokenizer.grid == (8, 64)
    assert load_training_checkpoint(trained.tokenizer).step_offset > 0
    assert Tokenizer.from_checkpoint(trained.tokenizer).grid == (8, 64)
    assert read_tokens(trained.tokens).height > 0
    assert EmbeddingStore(store).embeddings(MODEL).height == 300
    assert load_index(store).n == 300


def test_tampered_training_state_is_refused(trained: Any, tmp_path: Path) -> None:
    """``training_state.safetensors`` (optimiser, discriminator, raw weights) is hash-checked like
    the weights: a tampered one would otherwise be resumed from silently."""
    from clef.pretrain import load_session_module, save_session_checkpoint

    path = save_checkpoint(tmp_path / "ck", kind="vqgan", config={"name": "t"}, contract=SignalContract(),
                           state_dict={"w": torch.ones(3)}, training_state={"optimizer.state.0.exp_avg": torch.ones(3)},
                           training_meta={"step": "3"})
    assert load_training_state(path) is not None
    _flip_byte(path / "training_state.safetensors")
    load_checkpoint(path)  # the model itself is fine: using it needs no training state
    with pytest.raises(CheckpointError, match="training_state.safetensors does not match the SHA-256"):
        load_training_state(path)
    st = save_session_checkpoint(load_session_module(trained.checkpoint), tmp_path / "st", tokenizer_dir=None)
    _flip_byte(st / "training_state.safetensors", offset=-3)
    with pytest.raises(CheckpointError, match="refusing to resume"):
        load_session_module(st)  # what `clef pretrain --resume` does


def test_tampered_tokenizer_inside_a_session_checkpoint_is_refused(trained: Any, source: Path, tmp_path: Path) -> None:
    from clef.embedding import Embedder

    bad = tmp_path / "bad"
    shutil.copytree(trained.checkpoint, bad)
    _flip_byte(bad / "tokenizer" / "model.safetensors", offset=-7)
    emb = Embedder(bad)  # the session transformer itself is intact
    edf = next(iter(sorted((source / "edf").rglob("*.edf"))))
    with pytest.raises(CheckpointError, match="tampered"):
        emb.embed(edf)


def test_tampered_aligned_checkpoint_is_refused(trained: Any, tmp_path: Path) -> None:
    """Both the stage-1 weights and the alignment towers of an aligned checkpoint are hash-checked."""
    from clef.align.train import ALIGN_KIND, ALIGN_SUBDIR, load_align_module

    bad = tmp_path / "aligned"
    shutil.copytree(trained.checkpoint, bad)
    save_checkpoint(bad / ALIGN_SUBDIR, kind=ALIGN_KIND, config={}, contract=load_checkpoint(bad).contract,
                    state_dict={"w": torch.ones(4)})
    _flip_byte(bad / ALIGN_SUBDIR / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"{ALIGN_SUBDIR}: model.safetensors does not match .*tampered"):
        load_align_module(bad)
    _flip_byte(bad / "model.safetensors")
    with pytest.raises(CheckpointError, match="aligned: model.safetensors does not match .*tampered"):
        load_align_module(bad)


@pytest.mark.parametrize("damage", ["flip_index", "truncate_ids"])
def test_tampered_index_is_refused_then_rebuilt(damage: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    synthetic_store(store, n=300, dim=DIM, model_id=MODEL, part=100)
    ensure_index(store)
    d = store / "index" / MODEL
    if damage == "flip_index":
        _flip_byte(next(d.glob("index-*.faiss")), offset=-9)
    else:
        f = next(d.glob("ids-*.parquet"))
        os.truncate(f, f.stat().st_size // 2)
    with pytest.raises(StoreError, match="does not match the SHA-256 recorded in index.json"):
        load_index(store)
    ci, action = ensure_index(store)  # derived from the store: `clef index` / search rebuild it
    assert action == "rebuilt" and ci.n == 300
    _check_index_matches_store(store)


def test_corrupted_store_part_is_reported_by_name(tmp_path: Path) -> None:
    store = tmp_path / "store"
    synthetic_store(store, n=300, dim=DIM, model_id=MODEL, part=100)
    part = sorted((store / "embeddings").glob("part-*.parquet"))[1]
    os.truncate(part, part.stat().st_size // 2)
    with pytest.raises(StoreError, match=rf"part embeddings/{part.name} is unreadable \(corrupted or tampered"):
        EmbeddingStore(store).embeddings(MODEL)
    import typer
    from typer.testing import CliRunner

    from services.cli import register

    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["index", str(store)])  # one line, no traceback
    assert r.exit_code == 2 and f"embeddings/{part.name} is unreadable" in " ".join(r.output.split()), r.output
    assert "Traceback" not in r.output

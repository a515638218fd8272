"""``clef tokenize`` / ``tokenize_archive``: Parquet tokens, masks, errors, resumability; ``clef train tokenizer``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from tests.factories import MICRO, micro_config, write_archive
from tokenizer import SignalContract
from tokenizer.checkpoint_io import save_checkpoint
from tokenizer.spectrogram_cache import SpectrogramCache
from tokenizer.tokens import TOKENS_SCHEMA, Tokenizer, read_errors, read_tokens, tokenize_archive
from tokenizer.vqgan import VQGAN, build_context


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tok_archive")
    write_archive(root)  # 1280 s (site_a), 300 s with 2 electrodes missing, 1500 s (site_b)
    (root / "site_b" / "broken.edf").write_bytes(b"PK\x03\x04 this is a zip archive, not an EDF file")
    return root


def _checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    ctx = build_context(micro_config(), SignalContract())
    model = VQGAN(ctx)
    return save_checkpoint(path, kind="vqgan", config=ctx.config.to_dict(), contract=ctx.contract,
                           state_dict=model.state_dict(), extra_meta={"step": 0})


def test_tokenize_archive_tables_masks_errors_and_resume(archive: Path, tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "ckpt")
    out, cache = tmp_path / "tokens", tmp_path / "cache"
    seen: list[tuple[str, str]] = []
    s1 = tokenize_archive(archive, ckpt, out, cache_dir=cache, part_size=2, on_file=lambda p, st: seen.append((p, st)))
    assert (s1.files, s1.tokenized, s1.errors, s1.skipped, s1.windows) == (4, 3, 1, 0, 4)
    assert len(s1.parts) == 2  # parts every 2 files
    df = read_tokens(out)
    assert dict(df.schema) == TOKENS_SCHEMA
    assert df.height == 4 and df["source_sha256"].n_unique() == 3
    assert sorted(df["path"].unique().to_list()) == ["site_a/session_1.edf", "site_b/session_0.edf",
                                                     "site_b/session_2.EDF"]
    assert set(df["grid_freq"]) == {8} and set(df["grid_time"]) == {16}
    assert df["codes"].list.len().unique().to_list() == [128]
    rows = {(r["path"], r["window"]): r for r in df.iter_rows(named=True)}
    short = rows[("site_b/session_0.edf", 0)]  # 300 s: 4 of 16 token columns (80 s each) hold signal
    mask = np.array(short["token_mask"]).reshape(8, 16)
    assert mask[:, :4].all() and not mask[:, 4:].any()
    assert short["n_windows"] == 1 and short["n_valid_frames"] == 296  # 2 edge frames each side masked
    long0, long1 = rows[("site_b/session_2.EDF", 0)], rows[("site_b/session_2.EDF", 1)]
    assert long0["n_windows"] == long1["n_windows"] == 2 and long1["start_s"] == 1280.0
    assert all(long0["token_mask"]) and sum(long1["token_mask"]) == 8 * 3  # 220 s → 3 columns
    assert rows[("site_a/session_1.edf", 0)]["n_valid_frames"] == 1276
    errors = read_errors(out)
    assert errors.height == 1 and errors["path"][0] == "site_b/broken.edf" and errors["error_kind"][0] == "not_edf"
    assert {st for _, st in seen} == {"tokenized", "error"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["grid"] == [8, 16] and manifest["n_codes"] == 32
    meta = pl.read_parquet_metadata(s1.parts[0])
    assert meta["clef.grid"] == "8x16" and meta["clef.schema"] == "clef.tokens/1"

    # identical to tokenizing the file directly
    tok = Tokenizer.from_checkpoint(ckpt)
    _, direct = tok.tokenize_file(archive / "site_b" / "session_2.EDF", SpectrogramCache(cache))
    assert direct.codes.dtype == np.int16
    assert np.array_equal(direct.codes[1].reshape(-1), np.array(long1["codes"], dtype=np.int16))

    # second run: everything skipped, nothing written
    parts = sorted(p.name for p in out.iterdir())
    s2 = tokenize_archive(archive, ckpt, out, cache_dir=cache)
    assert (s2.tokenized, s2.skipped, s2.errors, s2.parts) == (0, 4, 0, [])
    assert sorted(p.name for p in out.iterdir()) == parts

    # a new file (and a copy of a known one) appears: only the new content is tokenized
    write_archive(archive / "later", durations=(400.0,), missing=False)
    new = next((archive / "later").rglob("*.edf"))
    (archive / "later" / "copy.edf").write_bytes((archive / "site_a" / "session_1.edf").read_bytes())
    s3 = tokenize_archive(archive, ckpt, out, cache_dir=cache)
    assert (s3.tokenized, s3.skipped) == (1, 5)
    assert read_tokens(out).filter(pl.col("path") == str(new.relative_to(archive))).height == 1
    # retrying errors tries the broken file again (and records it again)
    s4 = tokenize_archive(archive, ckpt, out, cache_dir=cache, retry_errors=True)
    assert (s4.tokenized, s4.errors) == (0, 1)

    # another checkpoint may not write into the same folder
    with pytest.raises(ValueError, match="another checkpoint"):
        tokenize_archive(archive, _checkpoint(tmp_path / "other", seed=1), out, cache_dir=cache)
    shutil.rmtree(archive / "later")


def _clef(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLEF_HOME": str(home), "OMP_NUM_THREADS": "1", "CLEF_DEID_SALT": "test-salt"}
    return subprocess.run([sys.executable, "-m", "clef", *args], capture_output=True, text=True, env=env, timeout=180)


def test_cli_train_resume_and_tokenize(tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    write_archive(arch, durations=(300.0, 1300.0), missing=False)
    cfg_path = tmp_path / "micro.yaml"
    cfg = json.loads(json.dumps(MICRO))
    cfg["train"] = {"max_steps": 3, "checkpoint_every": 2, "log_every": 1}
    cfg_path.write_text(yaml.safe_dump(cfg))
    ckpt, tokens = tmp_path / "ckpt", tmp_path / "tokens"
    r = _clef("train", "tokenizer", "--archive", str(arch), "--config", str(cfg_path), "--out", str(ckpt),
              "--accelerator", "cpu", "--devices", "1", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((ckpt / "meta.json").read_text())["step"] == 3
    assert (tmp_path / "home" / "cache" / "spectrograms").is_dir()  # default cache under $CLEF_HOME
    r = _clef("train", "tokenizer", "--archive", str(arch), "--config", str(cfg_path), "--out", str(ckpt),
              home=tmp_path / "home")
    assert r.returncode == 2 and "--resume" in r.stderr
    r = _clef("train", "tokenizer", "--archive", str(arch), "--config", str(cfg_path), "--out", str(ckpt),
              "--resume", "--max-steps", "4", "--accelerator", "cpu", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((ckpt / "meta.json").read_text())["step"] == 4
    r = _clef("tokenize", "--archive", str(arch), "--checkpoint", str(ckpt), "--out", str(tokens),
              "--cache", str(tmp_path / "cache2"), home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 file(s) tokenized (3 windows)" in r.stdout
    assert read_tokens(tokens).height == 3
    r = _clef("tokenize", "--archive", str(arch), "--checkpoint", str(ckpt), "--out", str(tokens),
              "--cache", str(tmp_path / "cache2"), home=tmp_path / "home")
    assert r.returncode == 0 and "0 file(s) tokenized" in r.stdout and "2 skipped" in r.stdout
    r = _clef("tokenize", "--archive", str(tmp_path / "nowhere"), "--checkpoint", str(ckpt), "--out", str(tokens),
              home=tmp_path / "home")
    assert r.returncode == 2 and "expected a directory" in r.stderr

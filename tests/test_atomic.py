"""Atomic writes: the target is the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from tokenizer.atomic import (
    atomic_path,
    pid_alive,
    remove_stale_temps,
    replace_dir,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)


def test_writes_replace_the_target_and_leave_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "x.json"
    assert write_json_atomic({"a": [1, 2]}, target, indent=None) == target
    assert target.read_text() == '{"a": [1, 2]}\n'
    write_text_atomic("new", target)
    assert target.read_text() == "new"
    write_bytes_atomic(b"\x00\x01", target)
    assert target.read_bytes() == b"\x00\x01"
    write_parquet_atomic(pl.DataFrame({"v": [1, 2]}), tmp_path / "t.parquet")
    assert pl.read_parquet(tmp_path / "t.parquet")["v"].to_list() == [1, 2]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["t.parquet", "x.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_json_atomic({"old": True}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_dead_writer_s_temporary_is_recognised_by_its_pid(tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.name.startswith(f".x.png.tmp-{os.getpid()}-") and tmp.suffix == ".png"
        tmp.write_bytes(b"live")
        assert remove_stale_temps(tmp_path, ".*.tmp-*") == []  # our own: still writing
    assert pid_alive(os.getpid())
    dead = tmp_path / ".x.png.tmp-999999999-1"
    dead.write_bytes(b"left")
    assert remove_stale_temps(tmp_path, ".*.tmp-*") == [dead]


def test_replace_dir_swaps_a_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "ck"
    for version in ("v1", "v2"):
        staging = tmp_path / f".ck.staging-{version}"
        staging.mkdir()
        (staging / "meta.json").write_text(version)
        assert replace_dir(staging, target) == target
        assert (target / "meta.json").read_text() == version
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # the old folder is gone, no staging left

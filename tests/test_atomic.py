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


def test_json_is_indented_by_one_unless_asked_and_unsorted_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_json_atomic({"b": 1, "a": [2]}, target)
    assert target.read_text() == '{\n "b": 1,\n "a": [\n  2\n ]\n}\n'
    write_json_atomic({"b": 1, "a": 2}, target, indent=None, sort_keys=True)
    assert target.read_text() == '{"a": 2, "b": 1}\n'
    write_text_atomic("é", target)
    assert target.read_bytes() == "é".encode()


def test_only_dead_writers_leftovers_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging = tmp_path / ".ck.staging-999999999-1"
    (staging / "sub").mkdir(parents=True)
    (staging / "sub" / "meta.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / ".ln.staging-999999998-1"
    link.symlink_to(elsewhere, target_is_directory=True)
    kept = [tmp_path / ".x.tmp-abc", tmp_path / f".y.tmp-{os.getpid()}-1"]
    for p in kept:
        p.write_text("")
    assert sorted(remove_stale_temps(tmp_path, ".*")) == [staging, link]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".x.tmp-abc", kept[1].name, "elsewhere"])
    assert not pid_alive(999999999)

    def denied(pid: int, sig: int) -> None:
        raise PermissionError(pid)

    monkeypatch.setattr(os, "kill", denied)
    assert pid_alive(999999999)  # someone else's process: alive, its temporaries are kept
    assert remove_stale_temps(tmp_path, ".*") == []


def test_parquet_options_reach_the_writer(tmp_path: Path) -> None:
    df = pl.DataFrame({"v": list(range(1000))})
    df.write_parquet(tmp_path / "default.parquet")
    df.write_parquet(tmp_path / "plain.parquet", compression="uncompressed")
    write_parquet_atomic(df, tmp_path / "t.parquet", compression="uncompressed")
    assert (tmp_path / "t.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()
    assert (tmp_path / "default.parquet").read_bytes() != (tmp_path / "plain.parquet").read_bytes()

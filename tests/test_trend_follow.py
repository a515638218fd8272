"""Live mode of ``clef trend`` (issue 19): the trend of a recording a recorder is still writing.

A writer process (:func:`clef.synthetic.recordings.record_live`) appends one 1-s record
every ``INTERVAL_S`` wall seconds (real time compressed ``1 / INTERVAL_S`` times) to a file
whose header says -1 records; :func:`clef.trend.follow_trend` follows it with 20-s strides
over a random tiny model whose context is 40 s.

Latency in real-time terms: a point at ``T`` s needs the signal up to ``T`` + 1.5 s (the
last frame's window) + the lookahead, so the record ``n`` that makes it computable is
fixed by the signal; a recorder writing in real time writes it ``n - T`` seconds after the
record that completes ``T``. The follower's own part (its poll, its reading and its
computation, which time compression does not shrink) is measured: the wall time from the
writer's log entry of record ``n`` to the ``on_update`` call that shows the point. The
real-time latency is the sum: ``(n - T) * 1 s + (t_update - t_written[n])``.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from clef.embedding import Embedder
from clef.synthetic.recordings import eeg_signals, record_live
from clef.trend import LIVE_LOOKAHEAD_S, TrendConfig, TrendResult, follow_trend, trend
from tests.factories import wait_until
from tokenizer.edf_writer import EDFStreamWriter

#: Seconds of signal the writer records, one record every ``INTERVAL_S`` wall seconds.
#: (The follower's own work, about 0.05 s per record on a loaded 2-core machine, must stay
#: below the interval, else the backlog it builds is an artefact of the compression.)
SECONDS = 100
INTERVAL_S = 0.08
STRIDE_S = 20.0
#: Short warm-up of the change rule, so that 100 s hold judged boundaries.
CONFIG = TrendConfig(stride_s=STRIDE_S, csa_step_s=10.0, change_k=1, min_history=1)


def _signals(seconds: float = SECONDS) -> list:
    sigs = eeg_signals(seconds=seconds, seed=2)
    for s in sigs:  # a recorder's amplifier range, fixed before any sample
        s.physical_min, s.physical_max = -200.0, 200.0
    return sigs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clef.factory import save_random_checkpoint

    # a 40-s context: the first point comes after 40 s, not after a 1280-s window
    return save_random_checkpoint("tiny", tmp_path_factory.mktemp("follow") / "st",
                                  overrides={"model": {"context_s": 40}})


@pytest.fixture(scope="module")
def embedder(checkpoint: Path) -> Embedder:
    e = Embedder(checkpoint)
    e.tokenizer  # noqa: B018  (loaded before the recorder starts)
    return e


@pytest.fixture(scope="module")
def followed(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory):
    """The live run: the writer process, the follower's updates and the writer's log."""
    d = tmp_path_factory.mktemp("live")
    path, log, out = d / "live.edf", d / "writes.log", d / "live.trend"
    writer = multiprocessing.get_context("spawn").Process(
        target=record_live, args=(path, _signals()),
        kwargs={"interval_s": INTERVAL_S, "record_count": "never", "log_path": log})
    updates: list[tuple[float, int, float, int]] = []  # wall time, points, last point, rows in trend.parquet

    def on_update(r: TrendResult) -> None:
        rows = pl.read_parquet(out / "trend.parquet").height
        updates.append((time.time(), r.n_points, float(r.t_s[-1]) if r.n_points else float("nan"), rows))

    writer.start()
    try:
        wait_until(path.exists, timeout=30, message="the recorder's file")
        result = follow_trend(path, embedder, out=out, stride_s=STRIDE_S, config=CONFIG, poll_s=0.02,
                              idle_timeout_s=0.5, threads=1, on_update=on_update)
        writer.join(timeout=30)
    finally:
        if writer.is_alive():
            writer.kill()
    assert writer.exitcode == 0
    written = {int(n): float(t) for n, t in (line.split() for line in log.read_text().splitlines())}
    return path, out, result, updates, written


def test_the_trend_grows_as_records_arrive(followed) -> None:
    path, out, result, updates, written = followed
    assert result.t_s.tolist() == [40.0, 60.0, 80.0, 100.0]
    # points came one by one while the recorder wrote, each shown once its table was on disk
    live = [u for u in updates if u[0] < written[SECONDS]]
    assert [u[1] for u in live] == list(range(1, len(live) + 1)) and len(live) >= 2
    assert all(rows == n for _, n, _, rows in updates)
    assert {p.name for p in out.iterdir()} == {"trend.parquet", "csa.parquet", "changes.parquet", "trend.png"}
    table = pl.read_parquet(out / "trend.parquet")
    assert table["t_s"].to_list() == result.t_s.tolist()
    assert pl.read_parquet(out / "csa.parquet").height == SECONDS // 10


def test_each_point_is_out_within_5_s_of_its_minute_in_real_time(followed) -> None:
    path, out, result, updates, written = followed
    latencies = []
    for t_wall, _, t_s, _ in updates:
        if not np.isfinite(t_s):
            continue
        needed = int(np.ceil(t_s + 1.5 + LIVE_LOOKAHEAD_S))  # the record that makes the point computable
        if needed > SECONDS or t_wall >= written[SECONDS]:
            continue  # the last point: out when the recording ends, not when its record is written
        assert t_wall >= written[needed]  # never before its signal existed
        own = t_wall - written[needed]  # poll + reading + computation: wall seconds, not compressed
        latencies.append((needed - t_s) * 1.0 + own)
    assert len(latencies) >= 2
    # 4 s of them are the signal a point needs with the default lookahead; the follower's own
    # part was 0.3-1.2 s on a 2-core machine running a study beside the writer process (over
    # 5 s for 6 of 33 points in 11 runs): the bound leaves room for a loaded machine
    assert float(np.median(latencies)) <= 5.5 and max(latencies) <= 6.0, latencies


def test_the_final_trend_is_the_finished_file_but_for_the_lookahead(followed, embedder: Embedder) -> None:
    path, out, result, updates, written = followed
    batch = trend(path, embedder, stride_s=STRIDE_S, config=CONFIG)
    assert result.t_s.tolist() == batch.t_s.tolist() and result.csa_t_s.tolist() == batch.csa_t_s.tolist()
    assert result.source_sha256 == batch.source_sha256
    # the short lookahead's filter transient is slow: the alpha and beta of the CSA are the
    # finished file's within float16 rounding, the delta is off by a few dB on this file,
    # whose delta is weak white noise (the worst case)
    for side in ("left", "right"):
        for band, tol in (("alpha", 0.05), ("beta", 0.5), ("delta", 10.0)):
            d = np.abs(result.bands[f"{side}_{band}_db"] - batch.bands[f"{side}_{band}_db"])
            assert np.nanmax(d) < tol, (side, band, np.nanmax(d))
    cos = (result.embeddings * batch.embeddings).sum(1) / np.linalg.norm(result.embeddings, axis=1) / np.linalg.norm(
        batch.embeddings, axis=1)
    # a changed spectrogram bin can move a token to another code; with random weights and a
    # 40-s context each code weighs much: 0.86-0.97 on this file
    assert cos.min() > 0.8


def test_a_long_lookahead_gives_the_finished_files_trend(followed, embedder: Embedder) -> None:
    path = followed[0]
    batch = trend(path, embedder, stride_s=STRIDE_S, config=CONFIG)
    # the finished file followed in 1-s blocks, as a live edge reads it, with the batch's 60 s of lookahead
    live = follow_trend(path, embedder, stride_s=STRIDE_S, config=CONFIG, poll_s=0.01, idle_timeout_s=0.01,
                        lookahead_s=60.0, block_s=1.0, threads=1)
    assert live.t_s.tolist() == batch.t_s.tolist()
    np.testing.assert_allclose(live.csa_left, batch.csa_left, atol=0.1)  # float16 dB of the frames
    np.testing.assert_allclose(live.csa_right, batch.csa_right, atol=0.1)


@pytest.fixture()
def cli():
    from benchmark_tasks.cli import register
    from clef.cli import app

    if not any(c.name == "trend" for c in app.registered_commands):
        register(app)
    return lambda *args: CliRunner().invoke(app, ["trend", *map(str, args)])


def test_cli_follow_errors(cli, checkpoint: Path, tmp_path: Path) -> None:
    opts = ["--checkpoint", checkpoint, "--follow", "--no-progress", "--idle-timeout", "0.3s", "--poll", "0.05s",
            "--out", tmp_path / "o"]
    text = tmp_path / "notes.edf"
    text.write_text("not an EDF file, whatever its name says\n" * 20)
    r = cli(text, *opts)
    assert r.exit_code == 2 and "EDF" in r.output, r.output
    # a header and no record: the recorder never wrote one before the idle timeout
    header_only = tmp_path / "idle.edf"
    EDFStreamWriter(header_only, _signals(10), record_count="never", atomic=False).abort()
    r = cli(header_only, *opts)
    assert r.exit_code == 2 and "data record" in r.output, r.output
    for bad in ("0s", "-1s", "soon"):
        r = cli(header_only, *opts, "--poll", bad)
        assert r.exit_code == 2 and "--poll" in r.output, r.output
    r = cli(tmp_path / "missing.edf", *opts)
    assert r.exit_code == 2 and "no such file" in r.output


def test_cli_follows_a_file_to_its_end(cli, checkpoint: Path, tmp_path: Path) -> None:
    path = record_live(tmp_path / "done.edf", _signals(50), interval_s=0, record_count="never")
    r = cli(path, "--checkpoint", checkpoint, "--follow", "--stride", "20s", "--idle-timeout", "0.2s", "--poll", "0.05s",
            "--no-figure", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "no new record" in r.output
    assert pl.read_parquet(tmp_path / "o" / "trend.parquet")["t_s"].to_list() == [40.0]


def test_stop_ends_following_with_complete_outputs(embedder: Embedder, tmp_path: Path) -> None:
    # what Ctrl-C does in the command: stop() is asked at every poll; without an idle timeout
    # nothing else would end it
    path = record_live(tmp_path / "done.edf", _signals(60), interval_s=0, record_count="never")
    out = tmp_path / "o"
    start = time.monotonic()
    r = follow_trend(path, embedder, out=out, stride_s=STRIDE_S, config=CONFIG, idle_timeout_s=None,
                     stop=lambda: True, figure=False, threads=1)
    assert time.monotonic() - start < 10
    assert r.t_s.tolist() == [40.0, 60.0] and r.source_sha256
    table = pl.read_parquet(out / "trend.parquet")
    assert table["t_s"].to_list() == [40.0, 60.0]
    assert pl.read_parquet(out / "csa.parquet").height == 6

"""Live mode (issue 19): a recording followed while a recorder writes it, record by record.

A writer process appends records at compressed real time (one second of signal every
0.05 s) to a file whose header says -1 records, or whose count it rewrites as it goes;
the follower yields every record once, in order, the samples are the finished file read
whole, and a block comes out soon after the record that completes it is written.
"""

from __future__ import annotations

import multiprocessing
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from clef.synthetic.recordings import eeg_signals, make_edf, record_live
from tests.factories import wait_until
from tokenizer import (
    EmptyFileError,
    FileChangedError,
    NoDataRecordsError,
    NotEDFError,
    SignalContract,
    follow_recording,
    read_header,
    read_recording,
)
from tokenizer.edf_writer import EDFStreamWriter
from tokenizer.ingest import Follow, RecordingStream

CONTRACT = SignalContract()
#: Seconds of signal the writer process records, one 1-s record every ``INTERVAL_S``.
SECONDS = 50
INTERVAL_S = 0.05
#: Seconds of signal after a block that its filters see: enough for float32 rounding.
LOOKAHEAD_S = 20.0


def _signals(seconds: float = SECONDS, seed: int = 1) -> list:
    sigs = eeg_signals(seconds=seconds, seed=seed)
    for s in sigs:  # a recorder's amplifier range, fixed before any sample
        s.physical_min, s.physical_max = -200.0, 200.0
    return sigs


def _joined(blocks: list) -> np.ndarray:
    assert [b.start for b in blocks] == list(np.cumsum([0] + [b.data.shape[1] for b in blocks[:-1]]))
    return np.concatenate([b.data for b in blocks], axis=1)


@pytest.mark.parametrize("count", ["never", "each"])
def test_a_file_followed_while_written_is_the_finished_file_record_by_record(tmp_path: Path, count: str) -> None:
    path, log = tmp_path / "live.edf", tmp_path / "writes.log"
    writer = multiprocessing.get_context("spawn").Process(
        target=record_live, args=(path, _signals()),
        kwargs={"interval_s": INTERVAL_S, "record_count": count, "log_path": log})
    writer.start()
    try:
        wait_until(path.exists, timeout=30, message="the recorder's file")
        stream = follow_recording(path, CONTRACT, poll_s=0.1, idle_timeout_s=0.5, lookahead_s=LOOKAHEAD_S,
                                  threads=1)
        blocks, yielded = [], []
        for block in stream:
            blocks.append(block)
            yielded.append(time.time())
        writer.join(timeout=30)
    finally:
        if writer.is_alive():
            writer.kill()
    assert writer.exitcode == 0
    whole = read_recording(path, CONTRACT)  # the finished file, read whole by the existing reader
    data = _joined(blocks)
    # every record once and in order: contiguous blocks, as long as the file, the same samples
    assert stream.records_read == SECONDS and data.shape == whole.data.shape
    assert np.abs(data - whole.data).max() < 0.1  # float32 rounding, as a streamed file
    assert np.array_equal(stream.info.channel_mask, whole.channel_mask)
    assert stream.info.n_samples == whole.n_samples and stream.info.source_sha256 == whole.source_sha256
    assert read_header(path).n_records == SECONDS  # the recorder closed it (or kept its count) at the end
    # latency: from the write of the record that completes a block (its end + the lookahead)
    # to the block coming out, for the blocks that came while the recorder was writing
    written = {int(n): float(t) for n, t in (line.split() for line in log.read_text().splitlines())}
    delays = []
    for block, t in zip(blocks, yielded):
        needed = int(np.ceil((block.start + block.data.shape[1]) / CONTRACT.sfreq + LOOKAHEAD_S))
        if needed <= SECONDS:
            delays.append(t - written[needed])
    assert len(delays) >= 5
    assert max(delays) < 1.0, delays
    assert np.median(delays) < 0.3


@pytest.mark.parametrize("kind", ["EDF+D", "BDF+C"])
def test_a_finished_file_followed_is_the_file_read_whole(tmp_path: Path, kind: str) -> None:
    if kind == "EDF+D":  # segments, gaps and annotations, as a recorder paused twice
        onsets = [float(r) for r in range(100)] + [150.0 + r for r in range(100)] + [400.5 + r for r in range(60)]
        path = make_edf(tmp_path / "gaps.edf", eeg_signals(seconds=260, sfreq=250, seed=3), fmt="EDF+D",
                        record_onsets=onsets, annotations=[(10.0, None, "eyes closed"), (160.0, 2.0, "spike")])
    else:
        path = make_edf(tmp_path / "biosemi.bdf", eeg_signals(seconds=200, sfreq=512, seed=3), fmt="BDF+C")
    stream = follow_recording(path, CONTRACT, poll_s=0.01, idle_timeout_s=0.05, block_s=50.0)
    blocks, whole = list(stream), read_recording(path, CONTRACT)
    assert len(blocks) >= 4 and np.abs(_joined(blocks) - whole.data).max() < 0.1
    assert np.array_equal(np.concatenate([b.sample_mask for b in blocks]), whole.sample_mask)
    info = stream.info
    assert (info.segments, info.annotations, info.warnings) == (whole.segments, whole.annotations, whole.warnings)


def test_a_half_written_record_is_read_once_complete(tmp_path: Path) -> None:
    path, sigs = tmp_path / "live.edf", _signals(30)
    writer = EDFStreamWriter(path, sigs, record_count="never", atomic=False)
    writer.write([s.data[: 10 * 256] for s in sigs])
    half = writer.record_bytes // 2
    rest = []

    def grow() -> bool:  # asked before every wait: the recorder's next move
        if not rest:  # half of record 11 appears, then the rest of it and 19 more records
            with open(path, "ab") as f:
                f.write(b"\0" * half)
            rest.append("half")
        elif len(rest) == 1:
            assert stream.records_read == 10  # the half record was not read
            with open(path, "r+b") as f:
                f.truncate(f.seek(0, 2) - half)
            writer.write([s.data[10 * 256 :] for s in sigs])
            rest.append("all")
        return False

    stream = RecordingStream(path, CONTRACT, follow=Follow(poll_s=0.01, idle_timeout_s=0.2, stop=grow,
                                                           lookahead_s=LOOKAHEAD_S))
    data = _joined(list(stream))
    writer.close()
    assert stream.records_read == 30
    assert np.abs(data - read_recording(path, CONTRACT).data).max() < 0.1


def test_a_recording_that_stops_mid_record_keeps_its_complete_records_and_says_so(tmp_path: Path) -> None:
    path = record_live(tmp_path / "crashed.edf", _signals(25), interval_s=0, record_count="close",
                       stop_mid_record=True)
    stream = follow_recording(path, CONTRACT, poll_s=0.01, idle_timeout_s=0.1)
    data = _joined(list(stream))
    assert stream.records_read == 25 and data.shape[1] == 25 * CONTRACT.sfreq
    warnings = " | ".join(stream.info.warnings)
    assert "incomplete last data record (" in warnings and "stopped growing mid-record" in warnings
    assert "record count was -1 (unknown) when following stopped after 25 records" in warnings
    assert stream.info.truncated_tail_s == 1.0
    # the same samples as the reader of finished files gives for the crashed file
    assert np.abs(data - read_recording(path, CONTRACT).data).max() < 0.1


def test_following_stops_when_asked(tmp_path: Path) -> None:
    path, sigs = tmp_path / "live.edf", _signals(40)
    with EDFStreamWriter(path, sigs, record_count="each", atomic=False) as writer:
        writer.write([s.data[: 40 * 256] for s in sigs])
        asked = []
        stream = follow_recording(path, CONTRACT, poll_s=0.01, stop=lambda: asked.append(1) or True)
        blocks = list(stream)
    assert len(asked) == 1 and stream.records_read == 40
    assert _joined(blocks).shape[1] == 40 * CONTRACT.sfreq and stream.info is not None


def test_a_header_that_changes_while_followed_is_refused(tmp_path: Path) -> None:
    path, sigs = tmp_path / "live.edf", _signals(20)
    writer = EDFStreamWriter(path, sigs, record_count="each", atomic=False)
    writer.write([s.data[: 5 * 256] for s in sigs])

    def relabel() -> bool:
        with open(path, "r+b") as f:  # the label of signal 3 rewritten
            f.seek(256 + 2 * 16)
            f.write(b"EEG XX-REF".ljust(16))
        return False

    with pytest.raises(FileChangedError, match=r"found the label of signal 3 changed") as err:
        list(follow_recording(path, CONTRACT, poll_s=0.01, stop=relabel))
    assert err.value.kind == "file_changed"
    writer.abort()


def test_a_file_that_shrinks_while_followed_is_refused(tmp_path: Path) -> None:
    path, sigs = tmp_path / "live.edf", _signals(20)
    with EDFStreamWriter(path, sigs, atomic=False) as writer:
        writer.write([s.data for s in sigs])

    def cut() -> bool:
        with open(path, "r+b") as f:
            f.truncate(f.seek(0, 2) - writer.record_bytes)
        return False

    with pytest.raises(FileChangedError, match="expected a file that only grows"):
        list(follow_recording(path, CONTRACT, poll_s=0.01, stop=cut))


def test_bad_files_are_refused_with_one_clear_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.edf"
    text.write_text("patient notes, not a recording\n")
    t0 = time.monotonic()
    with pytest.raises(NotEDFError, match="expected EDF/BDF magic"):
        list(follow_recording(text, CONTRACT, poll_s=0.05))  # no timeout: refused at once, no wait
    assert time.monotonic() - t0 < 5
    empty = tmp_path / "empty.edf"
    empty.touch()
    with pytest.raises(EmptyFileError):
        list(follow_recording(empty, CONTRACT, poll_s=0.01, idle_timeout_s=0.1))
    header_only = tmp_path / "header_only.edf"
    EDFStreamWriter(header_only, _signals(5), atomic=False).abort()
    with pytest.raises(NoDataRecordsError, match="found none when following stopped"):
        list(follow_recording(header_only, CONTRACT, poll_s=0.01, idle_timeout_s=0.1))
    for bad in ({"poll_s": 0}, {"idle_timeout_s": -1}, {"lookahead_s": 0}, {"block_s": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            follow_recording(header_only, CONTRACT, **bad)


def test_memory_of_a_followed_recording_does_not_grow_with_its_length(tmp_path: Path) -> None:
    short = make_edf(tmp_path / "short.edf", eeg_signals(seconds=300, seed=1))
    long = make_edf(tmp_path / "long.edf", eeg_signals(seconds=1200, seed=1))

    def peak(path: Path) -> int:
        tracemalloc.start()
        try:
            for _ in follow_recording(path, CONTRACT, poll_s=0.01, idle_timeout_s=0.01, block_s=60.0, threads=1):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(long) / peak(short) < 1.25


@pytest.mark.parametrize("count", ["close", "each", "never"])
def test_a_file_written_record_by_record_is_the_file_written_whole(tmp_path: Path, count: str) -> None:
    sigs = _signals(12)
    whole = make_edf(tmp_path / "whole.edf", sigs, annotations=[(3.5, 1.0, "Eyes open")])

    def said() -> bytes:
        return (tmp_path / "parts.edf").read_bytes()[236:244].strip()

    with EDFStreamWriter(tmp_path / "parts.edf", sigs, record_count=count, atomic=False) as writer:
        assert said() == b"-1"
        for a in (0, 4, 8):
            writer.write([s.data[a * 256 : (a + 4) * 256] for s in sigs],
                         annotations=[(3.5, 1.0, "Eyes open")] if a == 0 else ())
            assert said() == (str(a + 4).encode() if count == "each" else b"-1")
        with pytest.raises(ValueError, match="outside the records written"):
            writer.write([s.data[:256] for s in sigs], annotations=[(1.0, None, "late")])
    assert said() == (b"-1" if count == "never" else b"12")
    a, b = read_recording(whole, CONTRACT), read_recording(tmp_path / "parts.edf", CONTRACT)
    assert np.array_equal(a.data, b.data)  # the same digital samples, read the same way
    assert b.annotations == a.annotations
    with pytest.raises(ValueError, match="physical_min and physical_max"):
        EDFStreamWriter(tmp_path / "x.edf", eeg_signals(seconds=2))
    atomic = EDFStreamWriter(tmp_path / "atomic.edf", sigs)
    atomic.write([s.data for s in sigs])
    assert not (tmp_path / "atomic.edf").exists()  # renamed into place at close only
    atomic.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts.edf", "whole.edf"]  # no temporary left

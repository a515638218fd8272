"""Bounded memory (issue 19): a recording streamed block by block gives what the whole-file
path gives (signal within float32 rounding, the same masks and facts, embeddings with a
cosine of at least 0.999), reads its file once, and needs memory that does not grow with
the recording's length."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from clef.embedding import Embedder
from clef.factory import save_random_checkpoint
from clef.synthetic.recordings import eeg_signals, make_edf
from tests.factories import set_patient_field, write_archive, write_bipolar_edf
from tokenizer import SignalContract, read_recording
from tokenizer.edf_writer import EDFSignal
from tokenizer.ingest import RecordingStream
from tokenizer.spectrogram_cache import SpectrogramCache, compute_spectrogram, entry_frames, load_entry
from tokenizer.spectrogram_stream import spectrogram_frames
from tokenizer.tokens import Tokenizer

CONTRACT = SignalContract()
#: Seconds per block: small, so that a few minutes of signal are several blocks.
BLOCK_S = 50.0


def _files(root: Path) -> dict[str, Path]:
    """A plain file, one with a flat channel, an EDF+D with gaps, one at two rates, a bipolar one."""
    root.mkdir(parents=True, exist_ok=True)
    plain = make_edf(root / "plain.edf", eeg_signals(seconds=330, seed=1))
    flat = eeg_signals(seconds=240, seed=2)
    flat[3] = EDFSignal(flat[3].label, np.zeros_like(flat[3].data), flat[3].sfreq)
    onsets = [float(r) for r in range(100)] + [150.0 + r for r in range(100)] + [400.5 + r for r in range(60)]
    rates = eeg_signals(seconds=200, sfreq=500, seed=4)[:10] + eeg_signals(seconds=200, sfreq=256, seed=5)[10:]
    return {
        "plain": plain,
        "flat": make_edf(root / "flat.edf", flat),
        "gaps": make_edf(root / "gaps.edf", eeg_signals(seconds=260, sfreq=250, seed=3), fmt="EDF+D",
                         record_onsets=onsets, annotations=[(10.0, None, "eyes closed"), (160.0, 2.0, "spike")]),
        "rates": make_edf(root / "rates.edf", rates),
        "bipolar": write_bipolar_edf(root / "bipolar.edf", plain),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _files(tmp_path_factory.mktemp("streams"))


def _streamed(path: Path, block_s: float = BLOCK_S) -> tuple[RecordingStream, np.ndarray, np.ndarray, int]:
    """The stream's blocks joined (a channel masked late: the second pass), and its block count."""
    stream = RecordingStream(path, CONTRACT, block_s=block_s)
    blocks = list(stream)
    if stream.late_masked:
        stream = RecordingStream(path, CONTRACT, block_s=block_s, exclude=stream.late_masked)
        blocks = list(stream)
    assert [b.start for b in blocks] == list(np.cumsum([0] + [b.data.shape[1] for b in blocks[:-1]]))
    return (stream, np.concatenate([b.data for b in blocks], axis=1),
            np.concatenate([b.sample_mask for b in blocks]), len(blocks))


@pytest.mark.parametrize("name", ["plain", "flat", "gaps", "rates", "bipolar"])
def test_a_streamed_recording_is_the_whole_file_read_within_float_rounding(files: dict[str, Path], name: str) -> None:
    whole = read_recording(files[name], CONTRACT)
    stream, data, sample_mask, n_blocks = _streamed(files[name])
    info = stream.info
    assert n_blocks >= 4
    assert data.shape == whole.data.shape and data.dtype == np.float32
    # float32 filtering gives differences of a few hundredths of a µV on a ~30 µV signal
    assert np.abs(data - whole.data).max() < 0.1
    assert np.array_equal(sample_mask, whole.sample_mask)
    assert np.array_equal(info.channel_mask, whole.channel_mask)
    assert (info.n_samples, info.recorded_samples) == (whole.n_samples, int(whole.sample_mask.sum()))
    assert (info.segments, info.annotations, info.warnings) == (whole.segments, whole.annotations, whole.warnings)
    assert (info.source_sha256, info.facts) == (whole.source_sha256, whole.facts)
    if name == "bipolar":  # the loop residual, summed over the blocks, is the whole signal's
        assert info.montage["loop_residual"] == pytest.approx(whole.montage["loop_residual"], rel=0.05, abs=1e-5)
    else:
        assert info.montage == whole.montage


def test_a_channel_flat_to_the_end_is_masked_on_a_second_pass(files: dict[str, Path]) -> None:
    first = RecordingStream(files["flat"], CONTRACT, block_s=BLOCK_S)
    carried = next(iter(first)).channel_mask
    list(first)
    assert first.late_masked == ("F3",) and carried[CONTRACT.channels.index("F3")]
    assert not first.info.channel_mask[CONTRACT.channels.index("F3")]
    again = RecordingStream(files["flat"], CONTRACT, block_s=BLOCK_S, exclude=first.late_masked)
    assert not next(iter(again)).channel_mask[CONTRACT.channels.index("F3")]
    # read whole, the statistics are known before the first block: nothing is masked late
    whole = RecordingStream(files["flat"], CONTRACT)
    assert len(list(whole)) == 1 and whole.late_masked == ()


def test_streamed_spectrogram_frames_are_the_whole_spectrogram(files: dict[str, Path]) -> None:
    for name in ("plain", "gaps"):
        whole = compute_spectrogram(read_recording(files[name], CONTRACT), CONTRACT)
        parts = list(spectrogram_frames(RecordingStream(files[name], CONTRACT, block_s=BLOCK_S), CONTRACT))
        values = np.concatenate([p.values for p in parts], axis=2)
        assert len(parts) >= 4 and values.shape == whole.values.shape and values.dtype == np.float16
        assert np.array_equal(np.concatenate([p.frame_mask for p in parts]), whole.frame_mask)
        diff = np.abs(values[:, :, whole.frame_mask].astype(np.float32) - whole.values[:, :, whole.frame_mask])
        # dB: the bins below 1 Hz, of little power after the 0.1 Hz high-pass, show the
        # float32 rounding of the filtered signal most
        assert diff.mean() < 0.02 and diff[:, 4:].max() < 0.25
    # one block: the whole-file computation itself, to the bit
    (one,) = spectrogram_frames(RecordingStream(files["plain"], CONTRACT), CONTRACT)
    whole = compute_spectrogram(read_recording(files["plain"], CONTRACT), CONTRACT)
    assert np.array_equal(one.values, whole.values) and np.array_equal(one.frame_mask, whole.frame_mask)


def test_a_long_file_is_read_once_and_streamed_in_several_blocks(files: dict[str, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import tokenizer.hashing as hashing
    import tokenizer.ingest as ingest

    opened, read = [], []
    real_open, real_read = ingest.open_edf, hashing.HashingReader.read
    monkeypatch.setattr(ingest, "open_edf", lambda p: opened.append(p) or real_open(p))
    monkeypatch.setattr(hashing.HashingReader, "read", lambda self, n=-1: read.append(len(b := real_read(self, n))) or b)
    stream = RecordingStream(files["gaps"], CONTRACT, block_s=BLOCK_S)
    assert len(list(stream)) >= 4
    assert len(opened) == 1 and sum(read) == files["gaps"].stat().st_size
    assert stream.source_sha256 == read_recording(files["gaps"], CONTRACT).source_sha256


def test_known_content_stops_a_stream_before_any_preprocessing(files: dict[str, Path]) -> None:
    sha = read_recording(files["plain"], CONTRACT).source_sha256
    seen: list[str] = []
    stream = RecordingStream(files["plain"], CONTRACT, known=lambda s: seen.append(s) or s == sha)
    assert list(stream) == [] and stream.info is None and seen == [sha] == [stream.source_sha256]


def _peak(fn) -> int:  # noqa: ANN001
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_a_streamed_recording_does_not_grow_with_its_length(tmp_path: Path) -> None:
    short = make_edf(tmp_path / "short.edf", eeg_signals(seconds=300, seed=1))
    long = make_edf(tmp_path / "long.edf", eeg_signals(seconds=900, seed=1))

    def streamed(path: Path) -> None:
        for _ in spectrogram_frames(RecordingStream(path, CONTRACT, block_s=60.0), CONTRACT):
            pass

    def whole(path: Path) -> None:
        compute_spectrogram(read_recording(path, CONTRACT), CONTRACT)

    grown = _peak(lambda: whole(long)) / _peak(lambda: whole(short))
    assert grown > 2.0  # the measure sees a recording held whole
    assert _peak(lambda: streamed(long)) / _peak(lambda: streamed(short)) < 1.25


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight ``tiny`` checkpoint (what is compared does not depend on training)."""
    return save_random_checkpoint("tiny", tmp_path_factory.mktemp("ck") / "tiny")


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1500 s session (two 1280 s windows) of rhythmic EEG."""
    return write_archive(tmp_path_factory.mktemp("long"), (300.0, 1280.0, 1500.0))[2]


def test_streamed_tokens_and_embedding_match_the_whole_file_path(checkpoint: Path, long_file: Path,
                                                                 tmp_path: Path) -> None:
    emb = Embedder(checkpoint)
    tok = emb.tokenizer
    whole = emb.embed(read_recording(long_file, emb.contract))
    info, tokens = tok.tokenize_file(long_file, block_s=200.0)
    streamed = emb.embed(tokens)
    assert info.source_sha256 == whole.source_sha256 == tokens.source_sha256
    assert tokens.n_windows == whole.n_windows == 2
    assert np.mean(tokens.codes == emb.tokens_of(read_recording(long_file, emb.contract)).codes) > 0.99
    cos = float(streamed.vector @ whole.vector / np.linalg.norm(streamed.vector) / np.linalg.norm(whole.vector))
    assert cos >= 0.999
    # the default path of a file (clef embed-one, the batch worker, uploads): a short file is one
    # block, the whole-file path to the bit
    short = long_file.parent.parent / "site_b" / "session_0.edf"
    assert np.array_equal(emb.embed(short).vector, emb.embed(read_recording(short, emb.contract)).vector)


def test_a_streamed_spectrogram_is_cached_and_read_back_block_by_block(checkpoint: Path, long_file: Path,
                                                                       tmp_path: Path) -> None:
    tok = Tokenizer.from_checkpoint(checkpoint / "tokenizer")
    cache = SpectrogramCache(tmp_path / "cache", tok.contract)
    info, tokens = tok.tokenize_file(long_file, cache, block_s=200.0)
    entry = cache.path_for(info.source_sha256)
    stored = load_entry(entry)
    blocks = list(entry_frames(entry, block_frames=500))
    assert len(blocks) == 3 and np.array_equal(np.concatenate([b.values for b in blocks], axis=2), stored.values)
    assert np.array_equal(np.concatenate([b.frame_mask for b in blocks]), stored.frame_mask)
    assert stored.values.shape[2] == 1500 and (stored.source_sha256, stored.source_path) == (info.source_sha256,
                                                                                             str(long_file))
    again = tok.tokenize_frames(cache.frames(info.source_sha256), info.source_sha256, str(long_file))
    assert np.array_equal(again.codes, tokens.codes) and np.array_equal(again.token_mask, tokens.token_mask)
    # a temporary file of the writer is not left in the cache
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == [entry.name]


def test_a_file_whose_spectrogram_is_cached_skips_the_multitaper(checkpoint: Path, files: dict[str, Path],
                                                                 long_file: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import tokenizer.spectrogram_stream as stream_module

    tok = Tokenizer.from_checkpoint(checkpoint / "tokenizer")
    cache = SpectrogramCache(tmp_path / "cache", tok.contract)
    first = {name: tok.tokenize_file(files[name], cache) for name in ("plain", "flat", "gaps")}
    entries = sorted(p.name for p in (tmp_path / "cache").rglob("*.npz"))
    calls = []
    real = stream_module.multitaper_spectrogram
    monkeypatch.setattr(stream_module, "multitaper_spectrogram", lambda *a, **k: calls.append(1) or real(*a, **k))
    for name, (info, tokens) in first.items():
        again_info, again = tok.tokenize_file(files[name], cache)
        # the cache's spectrogram gives the same tokens; what reading decides still comes from the file
        assert np.array_equal(again.codes, tokens.codes) and np.array_equal(again.token_mask, tokens.token_mask)
        assert again_info.source_sha256 == info.source_sha256 and again_info.annotations == info.annotations
        assert np.array_equal(again_info.channel_mask, info.channel_mask), name
    assert calls == []  # no spectrogram computed (the flat channel's second pass included)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.npz")) == entries  # nothing rewritten
    # a file of several blocks is hashed only at its end: its frames are computed again, to the same tokens
    _, long_tokens = tok.tokenize_file(long_file, cache, block_s=200.0)
    _, long_again = tok.tokenize_file(long_file, cache, block_s=200.0)
    assert calls and np.array_equal(long_again.codes, long_tokens.codes)
    # ``known`` still stops a cached file before any work
    assert tok.tokenize_file(files["plain"], cache, known=lambda sha: True) == (None, None)


def test_patient_facts_of_a_stream_are_deidentified(files: dict[str, Path], tmp_path: Path) -> None:
    path = set_patient_field(make_edf(tmp_path / "p.edf", eeg_signals(seconds=200)), "MCH-0234567 F 02-MAY-1951 Haagse_Harry")
    stream = RecordingStream(path, CONTRACT, block_s=BLOCK_S)
    list(stream)
    assert stream.info.facts == read_recording(path, CONTRACT).facts
    assert "Haagse" not in repr(stream.info.summary())

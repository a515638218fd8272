"""The guards between reading and tokenizing: ``Recording.check`` refuses each broken
invariant of the contract on its own, and ``Tokenizer.tokenize_recording`` refuses a
recording read under another contract.

Each case breaks exactly one invariant of a recording that passes, so each test fails
when the check of that invariant is removed (the rest of the suite reads recordings that
are right by construction and would not notice).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from clef.synthetic.recordings import eeg_signals, make_edf
from tests.factories import micro_config
from tokenizer import CANONICAL_CHANNELS, ContractMismatchError, SignalContract, TooShortError, read_recording
from tokenizer.recording import Recording
from tokenizer.spectrogram_cache import SpectrogramCache
from tokenizer.tokens import Tokenizer
from tokenizer.vqgan import VQGAN, build_context

CONTRACT = SignalContract()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """A 20 s, 19-channel recording read under the default contract (it passes the check)."""
    path = make_edf(tmp_path_factory.mktemp("check") / "ok.edf", eeg_signals(seconds=20))
    rec = read_recording(path, CONTRACT)
    rec.check(CONTRACT)
    return rec


def _broken(rec: Recording, **changes: object) -> Recording:
    return dataclasses.replace(rec, **changes)


# Each case: the one change that breaks an invariant, and the words the error must say.
BROKEN = {
    "channel order": (lambda r: {"channels": tuple(reversed(r.channels))}, r"channels \['Fp1'.*expected, found \['O2'"),
    "channel set": (lambda r: {"channels": r.channels[:-1]}, "channels .* expected, found"),
    "sampling rate": (lambda r: {"sfreq": r.sfreq * 2}, "sfreq 200.0 Hz expected, found 400.0 Hz"),
    "one sample off the rate": (lambda r: {"sfreq": r.sfreq + 1e-6}, "sfreq 200.0 Hz expected"),
    "missing channel row": (lambda r: {"data": r.data[:-1]}, r"data of shape \(19, n\) expected, found \(18, "),
    "one-dimensional data": (lambda r: {"data": r.data[0], "sample_mask": r.sample_mask},
                             r"data of shape \(19, n\) expected, found \(\d+,\)"),
    "float64 data": (lambda r: {"data": r.data.astype(np.float64)}, "float32 data expected, found float64"),
    "float16 data": (lambda r: {"data": r.data.astype(np.float16)}, "float32 data expected, found float16"),
    "channel mask too short": (lambda r: {"channel_mask": r.channel_mask[:-1]},
                               r"channel_mask of shape \(19,\) expected, found \(18,\)"),
    "channel mask 2-D": (lambda r: {"channel_mask": r.channel_mask[None, :]},
                         r"channel_mask of shape \(19,\) expected, found \(1, 19\)"),
    "sample mask too short": (lambda r: {"sample_mask": r.sample_mask[:-1]}, "sample_mask length differs from the data$"),
    "sample mask too long": (lambda r: {"sample_mask": np.ones(r.sample_mask.size + 1, bool)},
                             "sample_mask length differs from the data$"),
}


def test_the_reference_recording_satisfies_the_contract(recording: Recording) -> None:
    assert recording.channels == CANONICAL_CHANNELS and recording.sfreq == CONTRACT.sfreq
    assert recording.data.dtype == np.float32 and recording.data.shape[0] == 19
    assert recording.contract_digest == CONTRACT.digest()
    recording.check(CONTRACT)  # does not raise


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_refuses_each_broken_invariant(recording: Recording, case: str) -> None:
    change, message = BROKEN[case]
    bad = _broken(recording, **change(recording))
    with pytest.raises(ContractMismatchError, match=message) as info:
        bad.check(CONTRACT)
    assert recording.source_path in str(info.value)


def test_check_reports_every_problem_at_once(recording: Recording) -> None:
    bad = _broken(recording, sfreq=100.0, data=recording.data.astype(np.float64))
    with pytest.raises(ContractMismatchError, match="sfreq 200.0 Hz expected.*; float32 data expected"):
        bad.check(CONTRACT)


def test_check_compares_with_the_contract_given(recording: Recording) -> None:
    """A recording right for one contract is wrong for another rate or channel set."""
    with pytest.raises(ContractMismatchError, match="sfreq 250.0 Hz expected, found 200.0 Hz"):
        recording.check(SignalContract(sfreq=250.0))
    with pytest.raises(ContractMismatchError, match=r"data of shape \(18, n\) expected"):
        recording.check(SignalContract(channels=CANONICAL_CHANNELS[:-1]))


def test_one_spectrogram_window_of_signal_is_long_enough(recording: Recording) -> None:
    need = CONTRACT.spectrogram.window_s
    _broken(recording, segments=((0.0, need),)).check_long_enough(CONTRACT)  # exactly one window: enough
    _broken(recording, segments=((0.0, 1.0), (5.0, 5.0 + need))).check_long_enough(CONTRACT)  # the longest counts
    with pytest.raises(TooShortError, match=f"^{recording.source_path}: expected at least one {need:g} s "
                                            "spectrogram window of continuous signal, found 2 s \\(the recording\\): "
                                            "too short to embed$"):
        _broken(recording, segments=((0.0, 2.0),)).check_long_enough(CONTRACT)
    with pytest.raises(TooShortError, match=f"at least one {need:g} s spectrogram window.*found 3.5 s "
                                            "\\(the longest of its 2 segments\\)"):
        _broken(recording, segments=((0.0, 3.5), (10.0, 12.0))).check_long_enough(CONTRACT)


# ---- the contract digest guard of Tokenizer.tokenize_recording ----------------------------

@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """An untrained micro tokenizer under the default contract (its codes do not matter here)."""
    torch.manual_seed(0)
    return Tokenizer(VQGAN(build_context(micro_config(), CONTRACT)))


def test_tokenize_recording_accepts_a_recording_of_its_contract(tokenizer: Tokenizer, recording: Recording) -> None:
    tokens = tokenizer.tokenize_recording(recording)
    assert tokens.codes.shape[1:] == tokenizer.grid and tokens.source_sha256 == recording.source_sha256


def test_tokenize_recording_refuses_a_recording_read_under_another_contract(
        tokenizer: Tokenizer, recording: Recording, tmp_path: Path) -> None:
    other = SignalContract(filters={"notch_freq": 50.0})
    assert other.digest() != CONTRACT.digest()
    rec50 = read_recording(Path(recording.source_path), other)
    rec50.check(CONTRACT)  # the same rate, channels and shapes: only the digest tells them apart
    with pytest.raises(ContractMismatchError,
                       match=f"read under contract {CONTRACT.digest()} expected, found {other.digest()}"):
        tokenizer.tokenize_recording(rec50)
    with pytest.raises(ContractMismatchError, match="read under contract"):
        tokenizer.tokenize_recording(rec50, SpectrogramCache(tmp_path / "cache", CONTRACT))


def test_tokenize_recording_checks_the_recording_itself(tokenizer: Tokenizer, recording: Recording) -> None:
    with pytest.raises(ContractMismatchError, match="float32 data expected"):
        tokenizer.tokenize_recording(_broken(recording, data=recording.data.astype(np.float64)))


def test_tokenize_recording_refuses_a_cache_of_another_contract(tokenizer: Tokenizer, recording: Recording,
                                                                tmp_path: Path) -> None:
    cache = SpectrogramCache(tmp_path / "cache", SignalContract(filters={"notch_freq": 50.0}))
    with pytest.raises(ValueError, match="cache must use the tokenizer's contract"):
        tokenizer.tokenize_recording(recording, cache)

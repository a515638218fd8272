"""Tests of the multitaper spectrogram (tokenizer/multitaper.py) against MNE-Python."""

from __future__ import annotations

import numpy as np
import pytest

from tests.factories import real_file
from tokenizer.multitaper import (
    CANONICAL_BANDS,
    Spectrogram,
    band_power,
    multitaper_spectrogram,
)

SFREQ = 200.0


def _eeg_like(n_ch: int, seconds: float, sfreq: float = SFREQ, seed: int = 0) -> np.ndarray:
    """1/f noise plus a 10 Hz alpha sine, in µV, float32."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sfreq))
    spec = np.fft.rfft(rng.standard_normal((n_ch, n)), axis=-1)
    f = np.fft.rfftfreq(n, 1 / sfreq)
    spec /= np.sqrt(np.maximum(f, 0.5))
    pink = np.fft.irfft(spec, n=n, axis=-1)
    pink *= 20.0 / pink.std(axis=-1, keepdims=True)
    alpha = 10.0 * np.sin(2 * np.pi * 10.0 * np.arange(n) / sfreq + rng.uniform(0, 6, (n_ch, 1)))
    return (pink + alpha).astype(np.float32)


def _mne_db(data: np.ndarray, spec: Spectrogram, sfreq: float, window_s: float = 4.0):
    """MNE's PSD in dB on exactly our valid frames, shaped (channels, bins, valid frames)."""
    mne = pytest.importorskip("mne")
    n_win = int(round(window_s * sfreq))
    starts = np.floor((spec.times - window_s / 2) * sfreq + 0.5).astype(int)
    valid = np.flatnonzero(spec.frame_mask)
    frames = np.stack([data[:, s:s + n_win] for s in starts[valid]], axis=1)
    psd, freqs = mne.time_frequency.psd_array_multitaper(
        frames.astype(np.float64), sfreq, fmin=spec.freqs[0], fmax=spec.freqs[-1] + 0.1,
        bandwidth=1.0, adaptive=False, low_bias=True, normalization="full", n_jobs=1,
        verbose=False,
    )
    assert np.allclose(freqs, spec.freqs)
    return 10 * np.log10(psd).transpose(0, 2, 1), valid


def test_matches_mne_on_synthetic_eeg() -> None:
    data = _eeg_like(19, 60.0)
    spec = multitaper_spectrogram(data, SFREQ)
    expected, valid = _mne_db(data, spec, SFREQ)
    assert spec.values.dtype == np.float32
    assert np.abs(spec.values[:, :, valid] - expected).max() < 0.01
    # the alpha peak is where it should be
    assert spec.freqs[spec.values.mean(axis=(0, 2))[20:60].argmax() + 20] == 10.0


def test_matches_mne_with_large_dc_offset() -> None:
    data = _eeg_like(3, 30.0, seed=1) + np.float32(2e4)
    spec = multitaper_spectrogram(data, SFREQ)
    expected, valid = _mne_db(data, spec, SFREQ)
    assert np.abs(spec.values[:, :, valid] - expected).max() < 0.01


@pytest.mark.parametrize("resample", [False, True])
def test_matches_mne_on_real_edf(resample: bool) -> None:
    path = real_file("eegmat_Subject00_1.edf")
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(path, preload=True, verbose=False)
    raw.pick(["EEG Fp1", "EEG C3", "EEG Cz", "EEG T4", "EEG O2"]).crop(0, 60, include_tmax=False)
    if resample:
        raw.resample(SFREQ, verbose=False)
    sfreq = raw.info["sfreq"]
    data = (raw.get_data() * 1e6).astype(np.float32)  # V -> µV
    spec = multitaper_spectrogram(data, sfreq)
    assert spec.shape == (5, 128, 60)
    expected, valid = _mne_db(data, spec, sfreq)
    assert np.abs(spec.values[:, :, valid] - expected).max() < 0.01


def test_session_window_shape_and_edges() -> None:
    data = np.random.default_rng(0).standard_normal((19, 256_000)).astype(np.float32)
    spec = multitaper_spectrogram(data, SFREQ)
    assert spec.shape == (19, 128, 1280)
    assert spec.freqs[0] == 0.0 and spec.freqs[-1] == 31.75 and len(spec.freqs) == 128
    assert np.allclose(np.diff(spec.times), 1.0) and spec.times[0] == 0.5
    # frames 0-1 start before the signal, 1278-1279 end after it (4 s window, 1 s step)
    assert not spec.frame_mask[[0, 1, -2, -1]].any() and spec.frame_mask[2:-2].all()
    assert np.isfinite(spec.values).all()


def test_short_input_and_padding_frames() -> None:
    data = _eeg_like(19, 300.0)
    spec = multitaper_spectrogram(data, SFREQ)
    assert spec.shape == (19, 128, 300)
    padded = multitaper_spectrogram(data, SFREQ, n_frames=320)
    assert padded.shape == (19, 128, 320)
    np.testing.assert_array_equal(padded.values[:, :, :298], spec.values[:, :, :298])
    assert not padded.frame_mask[298:].any()
    assert (padded.values[:, :, 303:] == padded.values.min()).all()  # no signal: floor
    assert padded.clipped().min() == -40.0 and spec.clipped(-10, 10).max() <= 10.0


def test_sample_mask_gaps_mask_frames_and_allow_nan() -> None:
    data = _eeg_like(4, 60.0)
    mask = np.ones(data.shape[1], dtype=bool)
    mask[int(30.2 * SFREQ):int(31.0 * SFREQ)] = False  # a gap from 30.2 s to 31 s
    data[:, ~mask] = np.nan
    spec = multitaper_spectrogram(data, SFREQ, sample_mask=mask)
    # frame k covers [k - 1.5, k + 2.5) s: frames 28..32 touch the gap
    bad = np.flatnonzero(~spec.frame_mask)
    assert set(range(28, 33)) <= set(bad)
    assert set(bad) == {0, 1, 28, 29, 30, 31, 32, 58, 59}
    assert np.isfinite(spec.values).all()
    clean = multitaper_spectrogram(np.nan_to_num(data), SFREQ)
    np.testing.assert_array_equal(spec.values[:, :, 10:20], clean.values[:, :, 10:20])


def test_dc_offset_steps_and_gaps_match_mne() -> None:
    # a large offset, a step of 3000 µV and a gap (NaN) at 30.2-31 s: frames far from their
    # chunk's level take the exact (two-pass) demeaning, the others the fast one
    data = _eeg_like(3, 120.0, seed=2) + np.float32(5000.0)
    data[:, int(61.3 * SFREQ):] += np.float32(3000.0)
    mask = np.ones(data.shape[1], dtype=bool)
    mask[int(30.2 * SFREQ):int(31.0 * SFREQ)] = False
    data[:, ~mask] = np.nan
    spec = multitaper_spectrogram(data, SFREQ, sample_mask=mask)
    expected, valid = _mne_db(np.where(mask, data, 0.0), spec, SFREQ)
    assert np.abs(spec.values[:, :, valid] - expected).max() < 1e-3
    torch = pytest.importorskip("torch")
    got = multitaper_spectrogram(torch.from_numpy(data), SFREQ, sample_mask=mask)
    assert np.abs(got.values - spec.values).max() < 1e-3


def test_constant_channels_get_the_floor() -> None:
    data = _eeg_like(4, 60.0)
    data[1], data[2], data[3] = 0.0, 7.3, 12345.678
    spec = multitaper_spectrogram(data, SFREQ)
    floor = np.float32(10 * np.log10(np.float32(1e-20)))
    assert (spec.values[1:, :, spec.frame_mask] == floor).all()
    assert (spec.values[0] > -60).all()


def test_nan_outside_every_frame_is_found() -> None:
    data = _eeg_like(2, 60.0)
    data[1, -10] = np.nan  # after the last of 20 frames
    with pytest.raises(ValueError, match="must be finite"):
        multitaper_spectrogram(data, SFREQ, n_frames=20)
    data[1, -10] = 0.0
    data[0, 5000] = np.inf
    with pytest.raises(ValueError, match="must be finite"):
        multitaper_spectrogram(data, SFREQ)


def test_torch_cpu_matches_numpy() -> None:
    torch = pytest.importorskip("torch")
    data = _eeg_like(19, 120.0)
    ref = multitaper_spectrogram(data, SFREQ)
    mask = np.ones(data.shape[1], dtype=bool)
    mask[5000:5400] = False
    got = multitaper_spectrogram(torch.from_numpy(data), SFREQ)
    assert isinstance(got.values, np.ndarray) and got.shape == ref.shape
    assert np.abs(got.values - ref.values).max() < 1e-3
    tensor, tensor_mask = torch.from_numpy(data), torch.from_numpy(mask)
    got_m = multitaper_spectrogram(tensor, SFREQ, sample_mask=tensor_mask)
    ref_m = multitaper_spectrogram(data, SFREQ, sample_mask=mask)
    np.testing.assert_array_equal(got_m.frame_mask, ref_m.frame_mask)
    assert np.abs(got_m.values - ref_m.values).max() < 1e-3


def test_both_cpu_ffts_match_mne(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrays go through torch's CPU FFT when ``workers`` is None or torch's thread count,
    through scipy's otherwise; both agree with MNE."""
    torch = pytest.importorskip("torch")
    import scipy.fft

    calls = {"torch": 0, "scipy": 0}
    torch_rfft, scipy_rfft = torch.fft.rfft, scipy.fft.rfft

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(torch.fft, "rfft", spy("torch", torch_rfft))
    monkeypatch.setattr(scipy.fft, "rfft", spy("scipy", scipy_rfft))
    data = _eeg_like(4, 40.0)
    threads = torch.get_num_threads()
    results = {}
    for workers in (None, threads, threads + 1):
        before = dict(calls)
        spec = multitaper_spectrogram(data, SFREQ, threads=workers)
        used = "scipy" if workers == threads + 1 else "torch"
        assert calls[used] > before[used]
        assert calls["torch" if used == "scipy" else "scipy"] == before[
            "torch" if used == "scipy" else "scipy"]
        expected, valid = _mne_db(data, spec, SFREQ)
        assert np.abs(spec.values[:, :, valid] - expected).max() < 0.01
        results[workers] = spec.values
    assert np.abs(results[None] - results[threads + 1]).max() < 1e-3


def test_chunking_does_not_change_the_result() -> None:
    data = _eeg_like(5, 40.0)
    ref = multitaper_spectrogram(data, SFREQ)
    for chunk in (1, 7, 1000):
        got = multitaper_spectrogram(data, SFREQ, chunk_frames=chunk)
        assert np.abs(got.values - ref.values).max() < 1e-4


def test_other_rates_windows_and_bands() -> None:
    data = _eeg_like(2, 30.0, sfreq=256.0)
    spec = multitaper_spectrogram(data, 256.0, window_s=2.0, step_s=0.5, fmin=1.0, fmax=40.0)
    assert spec.shape == (2, 78, 60) and spec.freqs[0] == 1.0 and spec.freqs[-1] == 39.5
    expected, valid = _mne_db(data, spec, 256.0, window_s=2.0)
    assert np.abs(spec.values[:, :, valid] - expected).max() < 0.01
    # a hop of 76.8 samples: frame starts are not evenly spaced (the gather path)
    uneven = multitaper_spectrogram(data, 256.0, window_s=2.0, step_s=0.3)
    assert uneven.shape == (2, 64, 100)
    expected, valid = _mne_db(data, uneven, 256.0, window_s=2.0)
    assert np.abs(uneven.values[:, :, valid] - expected).max() < 0.01
    torch = pytest.importorskip("torch")
    got = multitaper_spectrogram(torch.from_numpy(data), 256.0, window_s=2.0, step_s=0.3)
    assert np.abs(got.values - uneven.values).max() < 1e-3


def test_band_power() -> None:
    data = _eeg_like(3, 30.0)
    spec = multitaper_spectrogram(data, SFREQ)
    bp = band_power(spec)
    assert list(bp) == list(CANONICAL_BANDS)
    assert all(v.shape == (3, 30) and v.dtype == np.float32 for v in bp.values())
    assert (bp["alpha"] > bp["beta"]).all()  # 10 Hz sine + 1/f noise
    lin = band_power(spec, {"a": (8.0, 13.0)}, db=False)["a"]
    np.testing.assert_allclose(10 * np.log10(lin), bp["alpha"], atol=1e-4)
    with pytest.raises(ValueError, match="holds no bin"):
        band_power(spec, {"gamma": (40.0, 80.0)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": np.zeros(4000)}, "must be 2-D"),
        ({"sfreq": 0.0}, "sfreq must be a positive number"),
        ({"step_s": -1.0}, "step_s must be a positive number"),
        ({"fmax": 120.0}, r"fmax must be <= Nyquist \(100.0 Hz\), found 120.0"),
        ({"fmin": 20.0, "fmax": 10.0}, "fmax must exceed fmin"),
        ({"window_s": 4.001}, "whole number of samples"),
        ({"data": np.zeros((2, 500))}, "at least one window"),
        ({"bandwidth": 0.1}, r"NW\) must be >= 0.5"),
        ({"n_frames": 0}, "n_frames must be a positive integer"),
        ({"chunk_frames": 2.5}, "chunk_frames must be a positive integer"),
        ({"sample_mask": np.ones(10, dtype=bool)}, r"sample_mask must be bool of shape \(4000,\)"),
        ({"data": np.full((2, 4000), np.nan)}, "must be finite"),
        ({"data": np.zeros((2, 4000), dtype=complex)}, "real numbers"),
    ],
)
def test_bad_options_raise(kwargs: dict, message: str) -> None:
    args = {"data": np.zeros((2, 4000), dtype=np.float32), "sfreq": SFREQ} | kwargs
    with pytest.raises(ValueError, match=message):
        multitaper_spectrogram(args.pop("data"), args.pop("sfreq"), **args)

"""Generated edge cases: formats, label styles, rates, units, gaps, preprocessing, de-identification."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from scipy import signal

from clef.synthetic.recordings import LABEL_STYLES, eeg_signals, make_edf
from tokenizer import CANONICAL_CHANNELS, SignalContract, TooFewChannelsError, UnitError, read_recording
from tokenizer.edf_writer import EDFSignal, write_edf


def _amp_at(x: np.ndarray, fs: float, f0: float) -> float:
    """Amplitude of the ``f0`` Hz component of the middle of ``x`` (least squares)."""
    n = x.size
    x = x[n // 4 : 3 * n // 4]
    t = np.arange(x.size) / fs
    basis = np.stack([np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(*coef))


@pytest.mark.parametrize("style", sorted(LABEL_STYLES))
@pytest.mark.parametrize("new_names", [False, True])
def test_every_label_style_maps_all_19(tmp_path, style, new_names):
    path = make_edf(tmp_path / "x.edf", eeg_signals(5, 200, style=style, new_names=new_names))
    rec = read_recording(path)
    assert rec.channel_mask.all() and rec.channel_report.missing == []


@pytest.mark.parametrize("fmt", ["EDF", "EDF+C", "BDF", "BDF+C"])
@pytest.mark.parametrize("sfreq", [125, 128, 200, 250, 256, 400, 500, 512, 1000])
def test_formats_and_rates_resample_to_200_and_keep_alpha(tmp_path, fmt, sfreq):
    ext = ".bdf" if fmt.startswith("BDF") else ".edf"
    path = make_edf(tmp_path / f"x{ext}", eeg_signals(20, sfreq, amp=30.0, freq=10.0), fmt=fmt)
    rec = read_recording(path)
    assert rec.format == fmt and rec.sfreq == 200 and rec.sfreq_in == sfreq
    assert rec.n_samples == 20 * 200
    assert _amp_at(rec.data[0].astype(float), 200, 10.0) == pytest.approx(30.0, rel=0.03)
    low = [w for w in rec.warnings if "capped" in w]
    assert bool(low) == (sfreq < 170)  # 0.9 × Nyquist below 75 Hz


def test_notch_removes_mains_and_option_50hz(tmp_path):
    fs, n = 500, 30 * 500
    t = np.arange(n) / fs
    base = 20 * np.sin(2 * np.pi * 10 * t)
    for mains in (60.0, 50.0):
        x = base + 40 * np.sin(2 * np.pi * mains * t)
        sigs = [EDFSignal(f"EEG {c}", x, fs) for c in CANONICAL_CHANNELS]
        path = write_edf(tmp_path / f"m{int(mains)}.edf", sigs)
        rec = read_recording(path, SignalContract(filters={"notch_freq": mains}))
        y = rec.data[0].astype(float)
        assert _amp_at(y, 200, mains) < 0.02 * 40
        assert _amp_at(y, 200, 10.0) == pytest.approx(20, rel=0.03)
        other = read_recording(path, SignalContract(filters={"notch_freq": 110.0 - mains}))
        assert _amp_at(other.data[0].astype(float), 200, mains) > 0.5 * 40  # the wrong notch leaves it


def test_bandpass_removes_drift_and_high_frequencies(tmp_path):
    fs, n = 512, 60 * 512
    t = np.arange(n) / fs
    x = 500 + 100 * t / t[-1] + 20 * np.sin(2 * np.pi * 10 * t) + 20 * np.sin(2 * np.pi * 90 * t)
    path = write_edf(tmp_path / "d.edf", [EDFSignal(f"EEG {c}", x, fs) for c in CANONICAL_CHANNELS])
    y = read_recording(path).data[0].astype(float)
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    assert abs(mid.mean()) < 2.0  # DC offset and drift gone
    assert _amp_at(y, 200, 10.0) == pytest.approx(20, rel=0.03)


@pytest.mark.parametrize("unit, scale", [("uV", 1.0), ("µV", 1.0), ("mV", 1e-3), ("V", 1e-6), ("nV", 1e3), ("", 1.0)])
def test_units_are_converted_to_microvolts(tmp_path, unit, scale):
    path = make_edf(tmp_path / "u.edf", eeg_signals(20, 200, unit=unit, scale=scale, amp=30.0))
    rec = read_recording(path)
    assert _amp_at(rec.data[3].astype(float), 200, 10.0) == pytest.approx(30.0, rel=0.03)
    blank = [w for w in rec.warnings if "blank unit" in w]
    assert bool(blank) == (unit == "")


def test_bad_unit_on_eeg_channel_names_the_channel(tmp_path):
    sigs = eeg_signals(5, 200)
    sigs[4].unit = "degC"
    path = make_edf(tmp_path / "bad.edf", sigs)
    with pytest.raises(UnitError, match="'EEG FZ-REF' has unit 'degC'"):
        read_recording(path)


def test_non_eeg_channels_may_carry_any_unit_and_other_rates(tmp_path):
    sigs = eeg_signals(20, 256)
    sigs.append(EDFSignal("SaO2", np.full(20, 97.0) + np.arange(20) % 2, 1, unit="%"))  # 1 Hz beside 256 Hz
    sigs.append(EDFSignal("PHOTIC", np.zeros(20 * 64), 64, unit="mm"))
    sigs.append(EDFSignal("EKG", np.sin(np.arange(20 * 256)), 256, unit="mV"))
    rec = read_recording(make_edf(tmp_path / "m.edf", sigs))
    ex = rec.channel_report.excluded
    assert set(ex) == {"SaO2", "PHOTIC", "EKG"} and all(v.startswith("non-EEG") for v in ex.values())
    assert rec.channel_mask.all()


def test_eeg_channels_at_two_rates_are_each_resampled(tmp_path):
    sigs = eeg_signals(10, 256, amp=30)
    sigs[18] = eeg_signals(10, 512, channels=["O2"], amp=30)[0]
    rec = read_recording(make_edf(tmp_path / "r.edf", sigs))
    assert any("several rates" in w for w in rec.warnings)
    assert _amp_at(rec.data[18].astype(float), 200, 10) == pytest.approx(30, rel=0.05)


def test_inverted_physical_range_keeps_polarity(tmp_path):
    fs = 200
    x = 30 * np.sin(2 * np.pi * 10 * np.arange(20 * fs) / fs)
    normal = [EDFSignal(f"EEG {c}", x, fs, physical_min=-100, physical_max=100) for c in CANONICAL_CHANNELS]
    inverted = [EDFSignal(f"EEG {c}", x, fs, physical_min=100, physical_max=-100) for c in CANONICAL_CHANNELS]
    a = read_recording(write_edf(tmp_path / "n.edf", normal)).data
    b = read_recording(write_edf(tmp_path / "i.edf", inverted)).data
    raw_n = (tmp_path / "n.edf").read_bytes()[-400:]
    raw_i = (tmp_path / "i.edf").read_bytes()[-400:]
    assert raw_n != raw_i  # the digital samples differ (stored inverted) ...
    np.testing.assert_allclose(a, b, atol=0.05)  # ... but the physical signal is the same


def test_missing_electrodes_are_masked_and_minimum_enforced(tmp_path):
    present = [c for c in CANONICAL_CHANNELS if c not in ("Fz", "Pz", "T6")]
    rec = read_recording(make_edf(tmp_path / "m.edf", eeg_signals(5, 200, channels=present)))
    assert rec.channel_report.missing == ["Fz", "Pz", "T6"]
    idx = [CANONICAL_CHANNELS.index(c) for c in ("Fz", "Pz", "T6")]
    assert not rec.channel_mask[idx].any() and np.all(rec.data[idx] == 0)
    few = make_edf(tmp_path / "few.edf", eeg_signals(5, 200, channels=CANONICAL_CHANNELS[:9]))
    with pytest.raises(TooFewChannelsError, match="at least 10 of the 19.*found 9"):
        read_recording(few)
    assert read_recording(few, SignalContract(min_channels=8)).channel_mask.sum() == 9


def test_flat_and_railed_channels_are_masked_with_a_warning(tmp_path):
    sigs = eeg_signals(10, 200)
    sigs[0].data = np.zeros_like(sigs[0].data)
    sigs[0].physical_min, sigs[0].physical_max = -100, 100
    railed = sigs[1].data.copy()
    railed[: int(0.7 * railed.size)] = 500.0  # stuck at the top of its range 70% of the time
    sigs[1].data = railed
    sigs[1].physical_min, sigs[1].physical_max = -500, 500
    rec = read_recording(make_edf(tmp_path / "f.edf", sigs))
    assert not rec.channel_mask[0] and not rec.channel_mask[1] and rec.channel_mask[2:].all()
    text = " ".join(rec.warnings)
    assert "flat" in text and "railed" in text


def test_edfplus_d_segments_are_kept_apart_with_gaps_masked(tmp_path):
    fs = 256
    onsets = [0, 1, 2, 3, 30, 31, 32, 33, 34, 100, 101]
    sigs = eeg_signals(len(onsets), fs, amp=30)
    path = make_edf(tmp_path / "d.edf", sigs, fmt="EDF+D", record_onsets=onsets,
                    annotations=[(31.5, None, "seizure onset")])
    rec = read_recording(path)
    assert rec.format == "EDF+D"
    assert rec.segments == ((0.0, 4.0), (30.0, 35.0), (100.0, 102.0))
    assert rec.duration_s == pytest.approx(102.0) and rec.recorded_s == pytest.approx(11.0)
    assert not rec.sample_mask[int(4 * 200) : int(30 * 200)].any()
    assert np.all(rec.data[:, 4 * 200 : 30 * 200] == 0)
    assert rec.annotations[0].onset == pytest.approx(31.5) and rec.annotations[0].text == "seizure onset"
    # Segments are not concatenated: the signal at 30 s is the record that started at 30 s.
    assert np.abs(rec.data[0, 31 * 200 : 34 * 200]).mean() > 5


def test_several_annotation_channels_are_merged(tmp_path):
    anns = [(float(i), 0.5, f"event {i}") for i in range(1, 15)]
    path = make_edf(tmp_path / "a.bdf", eeg_signals(20, 256), fmt="BDF+C", annotations=anns, n_annotation_channels=3)
    rec = read_recording(path)
    assert [a.text for a in rec.annotations] == [f"event {i}" for i in range(1, 15)]
    assert rec.annotations[3].onset == 4.0 and rec.annotations[3].duration == 0.5


def test_de_identification_never_leaks_header_phi(tmp_path):
    phi = ["MRN8812345", "Jane_Q_Doe", "02-MAY-1951", "Dr_Technician", "NeuroVendorX", "14-MAR-2020"]
    path = make_edf(
        tmp_path / "phi.edf", eeg_signals(5, 200), fmt="EDF+C",
        patient="MRN8812345 F 02-MAY-1951 Jane_Q_Doe",
        recording="Startdate 14-MAR-2020 ADM77 Dr_Technician NeuroVendorX",
    )
    rec = read_recording(path)
    assert rec.deid.sex == "F" and rec.deid.age_years == pytest.approx(68.87, abs=0.01)
    assert rec.deid.patient_hash and len(rec.deid.patient_hash) == 16
    dumped = json.dumps(rec.summary()) + " ".join(rec.warnings) + repr(rec.deid)
    for item in phi + ["1951", "2020"]:
        assert item not in dumped
    # salted: another salt gives another hash; same salt, same hash
    assert read_recording(path, salt="other").deid.patient_hash != rec.deid.patient_hash
    assert read_recording(path).deid.patient_hash == rec.deid.patient_hash


def test_age_over_89_is_capped_and_child_age_kept(tmp_path):
    old = make_edf(tmp_path / "o.edf", eeg_signals(5, 200), patient="P1 M 01-JAN-1920 X",
                   recording="Startdate 01-JAN-2020 X X X")
    child = make_edf(tmp_path / "c.edf", eeg_signals(5, 200), patient="P2 F 01-JUL-2019 X",
                     recording="Startdate 01-JAN-2020 X X X")
    assert read_recording(old).deid.age_years == 90.0
    assert read_recording(child).deid.age_years == pytest.approx(0.5, abs=0.01)


def test_output_matches_mne_pipeline_on_the_clinical_band(tmp_path):
    mne = pytest.importorskip("mne")
    rng = np.random.default_rng(3)
    fs, secs = 256, 120
    sigs = [EDFSignal(f"EEG {c}", np.cumsum(rng.normal(0, 1, fs * secs)) * 0.5 + rng.normal(0, 10, fs * secs), fs)
            for c in CANONICAL_CHANNELS]
    path = write_edf(tmp_path / "m.edf", sigs)
    ours = read_recording(path).data.astype(float)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    raw.filter(0.1, 75.0, verbose="error").notch_filter([60.0, 120.0], verbose="error").resample(200, verbose="error")
    ref = raw.get_data() * 1e6
    sos = signal.butter(4, [0.5, 32], btype="band", fs=200, output="sos")
    a = signal.sosfiltfilt(sos, ours)[:, 20 * 200 : -20 * 200]
    b = signal.sosfiltfilt(sos, ref)[:, 20 * 200 : -20 * 200]
    rel = np.linalg.norm(a - b) / np.linalg.norm(b)
    assert rel < 0.02, rel


def test_peak_memory_is_a_small_multiple_of_the_signal(tmp_path):
    fs, secs = 512, 20 * 60
    rng = np.random.default_rng(0)
    x = rng.normal(0, 20, fs * secs)
    sigs = [EDFSignal(f"EEG {c}", x, fs, physical_min=-200, physical_max=200) for c in CANONICAL_CHANNELS]
    path = write_edf(tmp_path / "big.edf", sigs)
    del sigs, x
    decoded = 19 * fs * secs * 4  # float32 19-channel signal at the input rate
    tracemalloc.start()
    rec = read_recording(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rec.n_samples == secs * 200
    assert peak <= 3 * decoded, f"peak {peak / 2**20:.0f} MiB vs signal {decoded / 2**20:.0f} MiB"


def test_read_threads_do_not_follow_torch_threads() -> None:
    """Reading decides its threads itself (callers that want one pass ``threads=1``), not
    from the settings of a torch it might find loaded."""
    import os

    import torch

    from tokenizer.ingest import default_threads

    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert default_threads() == min(2, os.cpu_count() or 1)
    finally:
        torch.set_num_threads(n)

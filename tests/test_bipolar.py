"""Bipolar montages converted back to average-referenced potentials (issue 17, item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from clef.cli.inspect import inspect_file
from clef.synthetic.recordings import eeg_signals, make_edf
from tests.factories import CENTRAL_CHAIN, DOUBLE_BANANA, real_file, write_bipolar_edf
from tokenizer import (
    CANONICAL_CHANNELS,
    BipolarMontageError,
    NoEEGChannelsError,
    SignalContract,
    read_recording,
)
from tokenizer.edf_writer import EDFSignal
from tokenizer.montage import bipolar_to_average, derivation_pair
from tokenizer.multitaper import multitaper_spectrogram

SOURCE = "eegmat_Subject00_1.edf"  # 19 referential channels, 500 Hz, 110 s (shipped cut)


@pytest.fixture(scope="module")
def original():
    return read_recording(real_file(SOURCE))


def _average_referenced(rec, mask):
    x = rec.data[mask].astype(np.float64)
    return x - x.mean(axis=0)


def _spectrogram(x):
    sp = SignalContract().spectrogram
    return multitaper_spectrogram(x.astype(np.float32), 200.0, window_s=sp.window_s, step_s=sp.step_s,
                                  bandwidth=sp.bandwidth, fmin=sp.fmin, fmax=sp.fmax)


# ---- the math ------------------------------------------------------------------------

def test_least_squares_recovers_average_referenced_potentials():
    rng = np.random.default_rng(0)
    names = ["Fp1", "F3", "C3", "FT9", "C4", "O1", "Fz", "Cz"]
    v = dict(zip(names, rng.normal(0, 20, (len(names), 50))))
    pairs = [("Fp1", "F3"), ("F3", "C3"), ("C3", "FT9"), ("FT9", "C4"), ("C4", "O1"), ("O1", "Fp1"),  # a loop
             ("C3", "F3"), ("Fp1", "F3"),  # repeats, reversed and as is
             ("Fz", "Cz")]  # not connected to the rest
    d = np.array([v[a] - v[b] for a, b in pairs])
    keep = ["Fp1", "F3", "Fz", "C3", "Cz", "C4", "O1"]  # FT9 links but is not returned
    c = bipolar_to_average(pairs, keep)
    assert c.electrodes == ("Fp1", "F3", "C3", "C4", "O1")
    assert c.masked == ("Fz", "Cz") and c.disconnected == (8,) and c.duplicates == {6: 1, 7: 0}
    assert c.used == (0, 1, 2, 3, 4, 5) and "FT9" in c.nodes and c.n_loops == 1
    truth = np.array([v[e] for e in c.electrodes])
    np.testing.assert_allclose(c.matrix @ d[list(c.used)], truth - truth.mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(c.matrix.sum(axis=0), 0, atol=1e-12)  # average reference whatever the data
    assert np.abs(c.residual @ d[list(c.used)]).max() < 1e-10  # consistent derivations close every loop
    d[1] *= -1  # a wrong polarity cannot be closed
    assert np.linalg.norm(c.residual @ d[list(c.used)]) > 0.1 * np.linalg.norm(d[list(c.used)])


@pytest.mark.parametrize("pairs, keep", [([], ["Fp1"]), ([("Fp1", "Fp1")], ["Fp1"]), ([("Fp1", "F3")], []),
                                         ([("Fp1", "F3")], ["Fp1", "Fp1"])])
def test_bipolar_to_average_refuses_bad_input(pairs, keep):
    with pytest.raises(ValueError):
        bipolar_to_average(pairs, keep)


def test_derivation_labels_use_the_contract_names():
    assert derivation_pair("FP1-F7", CANONICAL_CHANNELS) == ("Fp1", "F7")
    assert derivation_pair("EEG T7-P7", CANONICAL_CHANNELS) == ("T3", "T5")
    assert derivation_pair("FT10-T8", CANONICAL_CHANNELS) == ("FT10", "T4")
    assert derivation_pair("EEG FP1-REF", CANONICAL_CHANNELS) is None
    assert derivation_pair("X1-X2", CANONICAL_CHANNELS) is None


# ---- real file → double banana → potentials ------------------------------------------

@pytest.mark.parametrize("layout, n, masked", [(DOUBLE_BANANA, 16, ["Fz", "Cz", "Pz"]),
                                               (DOUBLE_BANANA + CENTRAL_CHAIN, 19, [])])
def test_double_banana_round_trip(original, tmp_path, layout, n, masked):
    rec = read_recording(write_bipolar_edf(tmp_path / "banana.edf", real_file(SOURCE), layout))
    rec.check(SignalContract())
    m = rec.summary()["montage"]
    assert m["kind"] == "bipolar" and m["electrodes_recovered"] == n and m["masked"] == masked
    assert m["duplicates"] == ["P7-T7", "T8-P8"] and m["loop_residual"] < 1e-3
    assert rec.channel_mask.sum() == n and np.all(rec.data[~rec.channel_mask] == 0)
    assert rec.channel_report.missing == masked
    assert rec.warnings[0].startswith(f"converted from a bipolar montage: {n} electrodes")

    want = _average_referenced(original, rec.channel_mask)
    got = rec.data[rec.channel_mask].astype(np.float64)
    rel = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
    assert rel.max() <= 1e-3, rel  # every connected electrode (measured: 6.5e-4 at most)

    s_want, s_got = _spectrogram(want), _spectrogram(got)
    valid = s_want.frame_mask
    diff = np.abs(s_got.values - s_want.values)[:, :, valid]
    # Bins from 0.5 Hz (half the multitaper bandwidth) up: measured 0.07 dB at most. The 0
    # and 0.25 Hz bins straddle the 0.1 Hz high-pass edge, where almost no signal is left
    # and the float32 filtering of either file differs by up to ~1 dB (both files are
    # float32-filtered; in float64 the two agree to 1e-12).
    assert diff[:, s_want.freqs >= 0.5].max() <= 0.1
    assert np.percentile(diff, 99.9) <= 0.1


def test_unconnected_double_banana_is_refused_with_its_groups(tmp_path):
    layout = tuple(d for d in DOUBLE_BANANA if d != "T7-T8")  # three groups: left, right, midline
    path = write_bipolar_edf(tmp_path / "banana.edf", real_file(SOURCE), layout)
    groups = r"holds 8 \(Fp1 F7 T3 T5 O1 F3 C3 P3 \| Fp2 F4 C4 P4 O2 F8 T4 T6 \| Fz Cz Pz\).*cannot be converted"
    with pytest.raises(BipolarMontageError, match=groups) as info:
        read_recording(path)
    assert info.value.kind == "bipolar_montage" and str(path) in str(info.value)
    # the threshold is the contract's: with min_channels=8 the left side is kept, the rest masked
    rec = read_recording(path, SignalContract(min_channels=8))
    kept = [c for c, ok in zip(rec.channels, rec.channel_mask) if ok]
    assert kept == ["Fp1", "F7", "F3", "T3", "C3", "T5", "P3", "O1"]
    assert rec.summary()["montage"]["masked"] == ["Fp2", "Fz", "F4", "F8", "Cz", "C4", "T4", "Pz", "P4", "T6", "O2"]


def test_flat_derivation_is_left_out_of_the_graph(original, tmp_path):
    # F3-C3 closes a loop: without it every electrode is still connected
    path = write_bipolar_edf(tmp_path / "banana.edf", real_file(SOURCE), DOUBLE_BANANA, flat=["F3-C3"])
    rec = read_recording(path)
    assert rec.channel_mask.sum() == 16
    assert rec.channel_report.excluded["F3-C3"] == "bipolar derivation flat or railed (left out of the conversion)"
    want = _average_referenced(original, rec.channel_mask)
    got = rec.data[rec.channel_mask]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-3
    # T7-T8 is the only bridge between the two sides: without it nothing is connected enough
    path = write_bipolar_edf(tmp_path / "bridge.edf", real_file(SOURCE), DOUBLE_BANANA, flat=["T7-T8"])
    with pytest.raises(BipolarMontageError, match=r"flat or railed derivations \(T3-T4\).*holds 8"):
        read_recording(path)


def test_wrong_polarity_is_warned_about(tmp_path):
    rec = read_recording(write_bipolar_edf(tmp_path / "banana.edf", real_file(SOURCE), DOUBLE_BANANA,
                                           flip=["F3-C3"]))
    assert rec.summary()["montage"]["loop_residual"] > 0.05
    assert any("disagree around the montage's 2 loop(s)" in w and "polarity" in w for w in rec.warnings)


# ---- mixed and unconvertible files ---------------------------------------------------

def _derivations(potentials: dict[str, np.ndarray], layout, sfreq: float) -> list[EDFSignal]:
    out = []
    for label in layout:
        a, b = derivation_pair(label, CANONICAL_CHANNELS)
        out.append(EDFSignal(label, potentials[a] - potentials[b], sfreq))
    return out


def test_mixed_file_with_enough_referential_channels_is_read_as_referential(tmp_path):
    ref = eeg_signals(channels=CANONICAL_CHANNELS[:12])
    pots = {c: s.data for c, s in zip(CANONICAL_CHANNELS, eeg_signals())}
    rec = read_recording(make_edf(tmp_path / "mixed.edf", ref + _derivations(pots, DOUBLE_BANANA[:4], 256)))
    assert rec.summary()["montage"] == {"kind": "referential"} and rec.channel_mask.sum() == 12
    assert "FP1-F7" in rec.channel_report.excluded


def test_mixed_file_with_few_referential_channels_is_converted_from_its_derivations(tmp_path):
    sigs = eeg_signals()
    pots = {c: s.data for c, s in zip(CANONICAL_CHANNELS, sigs)}
    rec = read_recording(make_edf(tmp_path / "mixed.edf", sigs[:3] + _derivations(pots, DOUBLE_BANANA, 256)))
    m = rec.summary()["montage"]
    assert m["kind"] == "bipolar" and m["electrodes_recovered"] == 16
    assert rec.channel_report.excluded["EEG FP1-REF"].startswith("referential channel left out: only 3")
    assert "3 referential channel(s) left out" in rec.warnings[0]


def test_derivations_between_unknown_electrodes_are_refused(tmp_path):
    x = np.random.default_rng(0).normal(0, 10, 256 * 10)
    sigs = [EDFSignal(f"X{k}-Y{k}", x, 256) for k in range(12)]
    with pytest.raises(NoEEGChannelsError, match="found none among 12 signals"):
        read_recording(make_edf(tmp_path / "unknown.edf", sigs))


def test_clef_inspect_reports_the_conversion(tmp_path):
    path = write_bipolar_edf(tmp_path / "banana.edf", real_file(SOURCE), DOUBLE_BANANA)
    record, _ = inspect_file(path, SignalContract())
    assert record["ok"] and record["montage"]["kind"] == "bipolar"
    assert (record["montage"]["derivations"], record["montage"]["electrodes_recovered"]) == (21, 16)
    assert record["channels"]["mapped"]["Fp1"] == "FP1-F7, FP1-F3"
    assert any(w.startswith("converted from a bipolar montage") and "Fz, Cz, Pz" in w for w in record["warnings"])

"""Every real file shipped in tests/data/real (and those that cannot be shipped, where
``CLEF_TEST_REAL_EXTRA`` names a folder holding them) and pyedflib's shipped test files."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from tests.factories import real_file
from tokenizer import (
    NoEEGChannelsError,
    NoSignalsError,
    SignalContract,
    TooFewChannelsError,
    read_header,
    read_recording,
)
from tokenizer.edf_data import read_digital, to_physical

ALL19 = ("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4", "T5", "P3", "Pz", "P4", "T6", "O1", "O2")

# file → (format, sfreq_in, n mapped, missing, excluded labels that must be reported, n annotations, sex)
EXPECTED = {
    "eegmat_Subject00_1.edf": ("EDF+C", 500, 19, [], ["EEG A2-A1", "ECG ECG"], 1, "M"),
    "eegmat_Subject00_2.edf": ("EDF+C", 500, 19, [], ["EEG A2-A1", "ECG ECG"], 1, "F"),
    "nk_chtypes_edfplusC.edf": ("EDF+C", 200, 19, [], ["POL PG1", "ECG ECG1", "SaO2 X9", "POL DC01", "EEG F9-Ref"], 8, None),
    "nk_MB0400FU_edfplusD.edf": ("EDF+D", 200, 19, [], ["POL E", "EEG A1-Ref"], 4, None),
    "openbci_multi_annot_bdfplus.bdf": ("BDF+C", 125, 10, ["Fp1", "Fp2", "F7", "F8", "T3", "Cz", "T4", "T5", "T6"],
                                        ["EMG", "EOG", "ECG", "Trigger", "acc1"], 10, "F"),
    # cut to its first 40 s (tests/data/real/README.md): 13 of its 38 overlapping annotations
    "eegmmidb_bci2000_overlap_annot.edf": ("EDF+C", 128, 19, [], ["Fc5.", "T10.", "Iz.."], 13, None),
    "header_only_white_noise/e2b_aaaaaaac_s001_t000_sample.edf": ("EDF+C", 250, 19, [], ["EEG EKG-LE", "PHOTIC PH", "EEG A1-LE"], 0, None),
    "header_only_white_noise/e2b_PN00-5_sample.edf": ("EDF+C", 512, 19, [], ["EKG EKG", "SPO2", "MK"], 0, None),
    # CHB-MIT double banana, converted to potentials: the midline chain is not connected (masked)
    "header_only_white_noise/e2b_chb01_01_sample.edf": ("EDF+C", 256, 16, ["Fz", "Cz", "Pz"],
                                                        ["FZ-CZ", "CZ-PZ", "P7-T7", "T8-P8"], 0, None),
}
ERRORS = {
    "sleepedf_SC4001EC-Hypnogram.edf": NoSignalsError,
    "hmc_SN001_annotations_only.edf": NoSignalsError,
}


def test_every_real_file_is_covered(real_dir):
    found = {os.path.relpath(f, real_dir) for f in glob.glob(str(real_dir / "**" / "*.*df"), recursive=True)}
    assert found <= set(EXPECTED) | set(ERRORS)  # every shipped file has its expectation
    assert len(found) == 7  # the set listed in tests/data/real/README.md


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_file_maps_as_expected(name):
    fmt, sfreq, n, missing, excluded, n_ann, sex = EXPECTED[name]
    rec = read_recording(real_file(name))
    rec.check(SignalContract())
    s = rec.summary()
    assert s["format"] == fmt and s["sfreq_in"] == sfreq
    assert len(s["channels"]["mapped"]) == n and s["channels"]["missing"] == missing
    assert set(excluded) <= set(s["channels"]["excluded"])
    assert s["annotations"] == n_ann
    assert s["deid"]["sex"] == sex
    assert rec.data.dtype == np.float32 and rec.data.shape[0] == 19
    assert rec.channel_mask.sum() == n
    assert np.all(rec.data[~rec.channel_mask] == 0)  # missing electrodes are masked, not invented
    assert abs(rec.duration_s - read_header(real_file(name)).duration_s) < 0.05
    assert np.isfinite(rec.data).all()


def test_chb_mit_double_banana_is_converted_to_average_referenced_potentials():
    rec = read_recording(real_file("header_only_white_noise/e2b_chb01_01_sample.edf"))
    m = rec.summary()["montage"]
    assert m["kind"] == "bipolar" and m["reference"] == "average"
    assert (m["derivations"], m["derivations_used"], m["electrodes_recovered"]) == (23, 19, 16)
    assert m["masked"] == ["Fz", "Cz", "Pz"] and m["duplicates"] == ["P7-T7", "T8-P8"]
    # T7/T8/P7/P8 are T3/T4/T5/T6; FT9 and FT10 link the two sides but are not returned
    assert rec.channel_report.mapped["T3"] == "F7-T7, T7-P7, T7-FT9"
    assert rec.channel_report.excluded["P7-T7"] == "repeats the derivation 'T7-P7' (dropped)"
    np.testing.assert_allclose(rec.data[rec.channel_mask].sum(axis=0), 0, atol=1e-3)  # common average
    # the sample is white noise, not EEG: its derivations cannot agree around the montage's loops
    assert m["loop_residual"] > 0.05 and any("disagree around" in w for w in rec.warnings)


@pytest.mark.parametrize("name", ["sleepedf_SC4001EC-Hypnogram.edf", "hmc_SN001_annotations_only.edf"])
def test_annotation_only_files_are_refused(name):
    with pytest.raises(NoSignalsError, match="annotation-only") as info:
        read_recording(real_file(name))
    assert name in str(info.value)


def test_real_eeg_values_match_mne():
    """Our decoding of a real 500 Hz file equals MNE's (before preprocessing)."""
    mne = pytest.importorskip("mne")
    path = real_file("eegmat_Subject00_1.edf")
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    h = read_header(path)
    sig = h.signals[0]
    ours = to_physical(read_digital(h, [sig])[0], sig)
    np.testing.assert_allclose(ours, raw.get_data(picks=[0])[0] * 1e6, rtol=1e-6, atol=1e-6)


def test_eegmat_header_inconsistency_is_reported_not_hidden():
    a = read_recording(real_file("eegmat_Subject00_1.edf")).deid
    b = read_recording(real_file("eegmat_Subject00_2.edf")).deid
    assert a.patient_hash == b.patient_hash and a.sex != b.sex  # same subject code, different sex in header


# ---- pyedflib's shipped files ---------------------------------------------------------

def _pyedflib_dir():
    pyedflib = pytest.importorskip("pyedflib")
    d = os.path.join(os.path.dirname(pyedflib.__file__), "tests", "data")
    if not os.path.isdir(d):
        pytest.skip("pyedflib test data not installed")
    return d


PYEDFLIB = {
    "test_generator.edf": NoEEGChannelsError,
    "test_generator.bdf": NoEEGChannelsError,
    "test_generator_datarec_generator_0_5.bdf": NoEEGChannelsError,
    "test_generator_datarec_generator_2.bdf": NoEEGChannelsError,
    "test_legacy.edf": NoEEGChannelsError,
    "test_subsecond.edf": TooFewChannelsError,
    "test_utf8.edf": TooFewChannelsError,
}


@pytest.mark.parametrize("name", sorted(PYEDFLIB))
def test_pyedflib_files_decode_like_pyedflib_and_give_expected_error(name):
    import pyedflib

    path = os.path.join(_pyedflib_dir(), name)
    with pytest.raises(PYEDFLIB[name]):
        read_recording(path)
    h = read_header(path)
    with pyedflib.EdfReader(path) as f:
        keep = [i for i, lab in enumerate(f.getSignalLabels()) if lab.strip() != "EDF Annotations"]
        ref = [f.readSignal(i, digital=False) for i in keep]
        labels = [f.getSignalLabels()[i].strip() for i in keep]
    data_sigs = h.data_signals
    assert [s.label for s in data_sigs] == labels
    dig = read_digital(h, data_sigs)
    for k, s in enumerate(data_sigs):
        np.testing.assert_allclose(to_physical(dig[s.index], s), ref[k], rtol=1e-9, atol=1e-9 * max(1, abs(s.gain)))


def test_subsecond_inverted_range_is_read_with_its_polarity():
    """test_subsecond.edf is a real clinical file with physical min > max on some channels."""
    import pyedflib

    path = os.path.join(_pyedflib_dir(), "test_subsecond.edf")
    h = read_header(path)
    inverted = [s for s in h.data_signals if s.physical_min > s.physical_max]
    assert inverted, "expected at least one inverted channel in test_subsecond.edf"
    rec = read_recording(path, SignalContract(min_channels=1))
    assert rec.channel_mask.sum() == 1 and list(rec.channel_report.mapped) == ["Fp1"]
    s = inverted[0]
    with pyedflib.EdfReader(path) as f:
        ref = f.readSignal(h.data_signals.index(s))
    assert s.gain < 0
    np.testing.assert_allclose(to_physical(read_digital(h, [s])[s.index], s), ref, rtol=1e-9, atol=1e-6)

import pytest

from tokenizer import CANONICAL_CHANNELS, classify_label, map_channels, normalise_label


@pytest.mark.parametrize(
    "label, canonical",
    [
        ("EEG FP1-REF", "Fp1"), ("EEG Fp1-Ref", "Fp1"), ("EEG FP1-LE", "Fp1"), ("EEG Fp1", "Fp1"),
        ("Fp1", "Fp1"), ("POL Fp1", "Fp1"), ("Fp1.", "Fp1"), ("Cz..", "Cz"), ("eeg fz-ref", "Fz"),
        ("EEG T7-REF", "T3"), ("T8", "T4"), ("P7..", "T5"), ("EEG P8-Ref", "T6"), ("EEG T3-LE", "T3"),
        ("EEG O2-AVG", "O2"), ("EEG C3-A2", "C3"), ("EEG PZ-M1", "Pz"), ("  EEG  Cz-REF  ", "Cz"),
    ],
)
def test_label_styles_map_to_canonical(label, canonical):
    kind, name, _ = classify_label(label, CANONICAL_CHANNELS)
    assert (kind, name) == ("canonical", canonical)


@pytest.mark.parametrize(
    "label, kind, reason_part",
    [
        ("ECG ECG", "non_eeg", "ECG"), ("EKG", "non_eeg", "ECG"), ("EEG EKG-LE", "non_eeg", "ECG"),
        ("EOG", "non_eeg", "EOG"), ("EMG", "non_eeg", "EMG"), ("PHOTIC PH", "non_eeg", "photic"),
        ("SaO2 X9", "non_eeg", "oximetry"), ("POL DC01", "non_eeg", "DC"), ("Trigger", "non_eeg", "trigger"),
        ("acc1", "non_eeg", "accelerometer"), ("POL E", "non_eeg", "not a recognised"),
        ("FP1-F7", "bipolar", "bipolar"), ("T7-P7", "bipolar", "bipolar"), ("EEG A2-A1", "reference", "reference"),
        ("EEG A1-REF", "reference", "reference"), ("Fc5.", "extra_eeg", "not in the canonical"),
        ("EEG F10-Ref", "extra_eeg", "not in the canonical"), ("POL PG1", "extra_eeg", "not in the canonical"),
    ],
)
def test_non_canonical_labels_are_classified(label, kind, reason_part):
    k, name, reason = classify_label(label, CANONICAL_CHANNELS)
    assert k == kind and name is None and reason_part in reason


def test_normalise_label_keeps_bipolar_pairs():
    assert normalise_label("EEG FP1-REF") == "fp1"
    assert normalise_label("FP1-F7") == "fp1-f7"
    assert normalise_label("Fc5.") == "fc5"


def test_map_channels_orders_reports_duplicates_and_missing():
    labels = ["EEG O2-REF", "EEG Fp1-REF", "ECG", "EEG FP1-LE", "EDF Annotations", "EEG T7-REF"]
    m = map_channels(labels, CANONICAL_CHANNELS, [False, False, False, False, True, False])
    assert list(m.mapped) == ["Fp1", "T3", "O2"]  # canonical order, not file order
    assert m.mapped["Fp1"] == 1 and m.labels["T3"] == "EEG T7-REF"
    assert "duplicate of Fp1" in m.excluded["EEG FP1-LE"]
    assert m.excluded["ECG"].startswith("non-EEG")
    assert "EDF Annotations" not in m.excluded
    assert len(m.missing) == 16 and "Cz" in m.missing
    assert m.warnings and "duplicates Fp1" in m.warnings[0]


def test_custom_contract_order_with_new_names():
    order = ("Fp1", "Fp2", "T7", "T8")
    assert classify_label("EEG T7-REF", order)[:2] == ("canonical", "T7")
    assert classify_label("T3", order)[:2] == ("canonical", "T7")
    assert classify_label("EEG T4-LE", order)[:2] == ("canonical", "T8")

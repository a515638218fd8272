"""The synthetic hospital as a consumer sees it: files, links, bundles, and truth in the signals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import signal

from clef.synthetic.fhir import validate_bundle
from clef.synthetic.hospital import DEFAULT_STYLES, HospitalConfig, load_truth, synthesize_hospital
from tokenizer import read_recording


@pytest.fixture(scope="module")
def truth(hospital):
    return load_truth(hospital)


@pytest.fixture(scope="module")
def recordings(hospital, truth):
    return {r["session_id"]: read_recording(hospital / r["path"]) for r in truth.iter_rows(named=True)}


def test_layout_and_sessions_csv(hospital, truth):
    rows = list(csv.DictReader(open(hospital / "sessions.csv")))
    assert list(rows[0]) == ["session_id", "patient_id", "encounter_id", "path", "site", "setting", "start"]
    assert len(rows) == truth.height >= 100
    assert {r["setting"] for r in rows} == {"routine", "emu", "icu"}
    assert len({r["site"] for r in rows}) >= 4
    for r in rows:
        assert (hospital / r["path"]).is_file() and r["path"].startswith(f"edf/{r['site']}/{r['patient_id']}/")
        assert (hospital / "reports" / f"{r['session_id']}.txt").is_file()
        assert "T" in r["start"]
    patients = {r["patient_id"] for r in rows}
    assert {p.stem for p in (hospital / "fhir").glob("*.json")} == patients
    assert "finding" not in (hospital / "sessions.csv").read_text().lower()  # no labels in the export


def test_every_file_passes_inspect_and_looks_multivendor(truth, recordings):
    formats, rates, label_styles, missing = set(), set(), set(), set()
    for r in truth.iter_rows(named=True):
        rec = recordings[r["session_id"]]
        formats.add(rec.format)
        rates.add(rec.sfreq_in)
        label_styles.add(rec.channel_report.mapped["Fp1"])
        missing.update(rec.channel_report.missing)
        assert rec.channel_mask.sum() >= 17 and abs(rec.duration_s - r["duration_s"]) < 1.0
        assert rec.channel_report.excluded, "every site writes non-EEG extras"
    assert len(rates) >= 4 and {"EDF", "EDF+C"} <= formats
    assert len(label_styles) >= 4 and missing == {"Fz", "Pz"}


def test_header_phi_is_planted_and_never_output(truth, recordings):
    for r in truth.iter_rows(named=True):
        rec = recordings[r["session_id"]]
        dumped = json.dumps(rec.summary())
        for item in r["edf_phi"]:
            assert item not in dumped
    with_age = [rec for rec in recordings.values() if rec.deid.age_years is not None]
    assert len(with_age) > len(recordings) / 2  # EDF+ sites carry a birthdate in the header


def test_every_bundle_validates_with_atc_and_icd10(hospital):
    systems = set()
    for f in (hospital / "fhir").glob("*.json"):
        b = json.loads(f.read_text())
        validate_bundle(b)
        for e in b["entry"]:
            res = e["resource"]
            for key in ("code", "medicationCodeableConcept"):
                for c in res.get(key, {}).get("coding", []):
                    systems.add(c["system"])
            if res["resourceType"] == "Condition":
                assert res.get("onsetDateTime")
            if res["resourceType"] == "MedicationStatement":
                assert res["effectivePeriod"]["start"]
    assert {"http://www.whocc.no/atc", "http://hl7.org/fhir/sid/icd-10-cm"} <= systems


def test_reports_describe_the_planted_findings(hospital, truth):
    planted = asserted = 0
    for r in truth.iter_rows(named=True):
        text = (hospital / "reports" / f"{r['session_id']}.txt").read_text()
        assert len(text) > 300
        planted += len(r["finding_names"])
        asserted += len(set(r["finding_names"]) & set(r["report_asserted"]))
        assert set(r["report_missed"]) <= set(r["finding_names"])
    rate = asserted / planted
    assert 0.7 <= rate <= 0.97, rate  # configured miss rate 0.15


def test_deterministic_per_seed(tmp_path):
    cfg = HospitalConfig(minutes_range=(1.0, 1.5))
    a = synthesize_hospital(tmp_path / "a", 3, seed=5, config=cfg, workers=1)
    b = synthesize_hospital(tmp_path / "b", 3, seed=5, config=cfg, workers=2)
    c = synthesize_hospital(tmp_path / "c", 3, seed=6, config=cfg, workers=1)
    fa = sorted(p.relative_to(a.out) for p in a.out.rglob("*.edf"))
    assert fa == sorted(p.relative_to(b.out) for p in b.out.rglob("*.edf"))
    for rel in fa:
        assert (a.out / rel).read_bytes() == (b.out / rel).read_bytes()
    assert (a.out / "sessions.csv").read_text() == (b.out / "sessions.csv").read_text()
    assert (a.out / "sessions.csv").read_text() != (c.out / "sessions.csv").read_text()
    with pytest.raises(FileExistsError):
        synthesize_hospital(tmp_path / "a", 3, seed=5, config=cfg)


def test_without_eeg_the_cohort_files_are_those_of_the_full_hospital(tmp_path):
    cfg = HospitalConfig(minutes_range=(1.0, 1.5))
    full = synthesize_hospital(tmp_path / "full", 3, seed=3, config=cfg, workers=1)
    bare = synthesize_hospital(tmp_path / "bare", 3, seed=3, config=cfg, workers=1, write_eeg=False)
    assert not list(bare.out.rglob("*.edf")) and list(full.out.rglob("*.edf"))
    assert (bare.n_sessions, bare.hours_of_eeg) == (full.n_sessions, full.hours_of_eeg)
    rel = sorted(p.relative_to(full.out) for d in ("fhir", "reports") for p in (full.out / d).iterdir())
    assert rel == sorted(p.relative_to(bare.out) for d in ("fhir", "reports") for p in (bare.out / d).iterdir())
    for r in [*rel, "sessions.csv"]:
        assert (bare.out / r).read_bytes() == (full.out / r).read_bytes(), r
    assert load_truth(bare.out).equals(load_truth(full.out))
    assert json.loads((bare.out / "hospital.json").read_text())["eeg_written"] is False


# ---- the truth is in the signals: simple independent statistics on the written files ----

def _psd(rec, picks=None):
    x = rec.data if picks is None else rec.data[picks]
    f, p = signal.welch(x, fs=rec.sfreq, nperseg=int(4 * rec.sfreq), axis=-1)
    return f, p


def _rel_beta(rec) -> float:
    f, p = _psd(rec, np.flatnonzero(rec.channel_mask))
    total = p[:, (f >= 1) & (f < 30)].sum()
    return float(p[:, (f >= 13) & (f < 30)].sum() / total)


def _lr_delta_ratio(rec) -> float:
    left, right = [0, 2, 3, 7, 8, 12, 13, 17], [1, 6, 5, 11, 10, 16, 15, 18]
    f, p = _psd(rec)
    band = (f >= 1) & (f < 4)
    a, b = p[left][:, band].sum(), p[right][:, band].sum()
    return float(np.log(a / b))


def _alpha_peak(rec) -> float:
    f, p = _psd(rec, [17, 18])
    band = (f >= 4) & (f <= 13)
    return float(f[band][np.argmax(p[:, band].mean(0))])


def test_benzodiazepine_sessions_have_more_beta(truth, recordings):
    """Compared within the care setting (benzodiazepines are mostly ICU drugs, where slowing
    and burst suppression lower relative beta): each benzodiazepine session against the
    median of same-setting sessions without one."""
    rows = list(truth.iter_rows(named=True))
    is_benzo = {r["session_id"]: any(c.startswith(("N05BA", "N05CD", "N03AE")) for c in r["atc_codes"]) for r in rows}
    ratios = []
    for r in rows:
        if is_benzo[r["session_id"]]:
            ctrl = [_rel_beta(recordings[q["session_id"]]) for q in rows
                    if q["setting"] == r["setting"] and not is_benzo[q["session_id"]]]
            ratios.append(_rel_beta(recordings[r["session_id"]]) / np.median(ctrl))
    assert len(ratios) >= 4
    assert np.median(ratios) > 1.5, ratios


def test_encephalopathy_sessions_have_a_lower_pdr_peak(truth, recordings):
    enc = [r["session_id"] for r in truth.iter_rows(named=True) if any(c.startswith(("G93.4", "F05")) for c in r["condition_codes"])]
    ctrl = [r["session_id"] for r in truth.iter_rows(named=True)
            if not r["finding_names"] and 18 <= r["age_years"] < 70]
    assert len(enc) >= 3 and len(ctrl) >= 3
    assert np.median([_alpha_peak(recordings[s]) for s in enc]) < np.median([_alpha_peak(recordings[s]) for s in ctrl]) - 1.0


def test_lateralised_sessions_show_asymmetry_and_controls_do_not(truth, recordings):
    rows = list(truth.iter_rows(named=True))
    lat = [(r["session_id"], f["side"]) for r in rows for f in r["findings"] if f["name"] == "focal_slowing" and f["severity"] > 0.3]
    assert len(lat) >= 3
    signed = [_lr_delta_ratio(recordings[s]) * (1 if side == "L" else -1) for s, side in lat]
    assert np.median(signed) > 0.15, signed
    clean = [r["session_id"] for r in rows if not r["finding_names"]]
    assert abs(np.median([_lr_delta_ratio(recordings[s]) for s in clean])) < 0.1


def test_negative_control_conditions_show_no_difference(truth, recordings):
    """Hypothyroidism / hypertension / diabetes carry no EEG signature: among sessions
    without planted findings, having them changes none of the statistics beyond noise."""
    rows = [r for r in truth.iter_rows(named=True) if not r["finding_names"]]
    neg = [r["session_id"] for r in rows if any(c.startswith(("E03", "I10", "E11", "E78")) for c in r["condition_codes"])]
    rest = [r["session_id"] for r in rows if r["session_id"] not in neg]
    assert len(neg) >= 3 and len(rest) >= 3
    for stat in (_rel_beta, _lr_delta_ratio):
        a = [stat(recordings[s]) for s in neg]
        b = [stat(recordings[s]) for s in rest]
        spread = np.std(a + b)
        assert abs(np.median(a) - np.median(b)) < spread, stat.__name__


def test_vendor_styles_cover_the_issue_list():
    labels = {s.label for s in DEFAULT_STYLES}
    assert {"EEG {CH}-REF", "EEG {ch}-Ref", "{ch}"} <= labels
    assert any(s.new_temporal_names for s in DEFAULT_STYLES) and any(s.missing for s in DEFAULT_STYLES)
    assert {s.sfreq for s in DEFAULT_STYLES} >= {200, 250, 256, 500}

"""Synthetic hospital: ATC table, population model, FHIR bundles and reports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from collections import Counter

import numpy as np
import pydantic
import pytest

from clef.synthetic import spec
from clef.synthetic.fhir import (
    ATC_SYSTEM,
    ICD10_SYSTEM,
    RXNORM_SYSTEM,
    patient_bundle,
    population_bundles,
    validate_bundle,
)
from clef.synthetic.catalogue import (
    ALL_ICD10_CODES,
    ALLOWED_FINDINGS,
    CONDITIONS,
    DRUGS,
    EPILEPSY_KEYS,
    NEGATIVE_CONTROL_KEYS,
    RACES,
    SIGNATURE_GROUPS,
)
from clef.synthetic.population import generate_population
from clef.synthetic.population_config import PopulationConfig, ReportConfig
from clef.synthetic.records import Condition, Medication, SessionTruth
from clef.synthetic.reports import NEGATION_PHRASES, SECTION_HEADINGS, write_report
from ehr import atc_for_name, atc_for_rxnorm, atc_level, atc_name, load_atc_table, rxnorm_for_atc

# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pop200():
    return generate_population(200, seed=7)


@pytest.fixture(scope="module")
def pop2000():
    return generate_population(2000, seed=11)


BENZO_ATC = frozenset(d.atc for d in DRUGS.values() if d.signature_group == "benzodiazepine")
NEG_CODES = frozenset(c for k in NEGATIVE_CONTROL_KEYS for c in CONDITIONS[k].codes)
NEG_DRUG_ATC = frozenset(
    d.atc for d in DRUGS.values() if d.indications and d.indications <= set(NEGATIVE_CONTROL_KEYS)
)


def _summary(session: SessionTruth, *, sleep: bool, pdr: float | None = 9.5) -> spec.EEGSummary:
    """An EEGSummary built by hand from a session's planted findings (no simulator)."""
    names = {f.name for f in session.findings}
    if names & {"burst_suppression", "low_voltage"}:
        pdr = None
    elif "pdr_slowing" in names and pdr is not None:
        pdr = 6.5
    d = session.duration_s
    states = [spec.StateSpan(0.0, 0.5 * d, "awake"), spec.StateSpan(0.5 * d, 0.7 * d, "drowsy")]
    if sleep:
        states.append(spec.StateSpan(0.7 * d, d, "n2"))
    events = []
    for f in session.findings:
        if f.name == "ied_focal":
            chans = ("F7", "T3") if f.side == "L" else ("F8", "T4")
            events += [spec.EEGEvent(10.0 * i, 0.2, "ied_focal", chans) for i in range(1, 4)]
        if f.name == "seizure":
            events.append(spec.EEGEvent(100.0, 60.0, "seizure", ("T3", "T5")))
    return spec.EEGSummary(pdr_hz=pdr, states=tuple(states), events=tuple(events), findings=session.findings)


# ------------------------------------------------------------------------------------------
# code tables
# ------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # simple_icd_10_cm reads its data the old way
def test_every_icd10_code_is_valid_and_billable() -> None:
    import simple_icd_10_cm as cm

    assert len(set(ALL_ICD10_CODES)) == len(ALL_ICD10_CODES)
    for cdef in CONDITIONS.values():
        for v in cdef.variants:
            assert cm.is_valid_item(v.code), v.code
            assert cm.is_leaf(v.code), f"{v.code} is not a billable (leaf) code"
            assert v.display == cm.get_description(v.code), v.code
    # the brief's required conditions are present
    for code in ("G40.209", "G40.309", "G40.909", "G40.A09", "G93.40", "G93.41", "F05", "I63.9", "I63.512",
                 "I63.511", "I69.354", "G30.9", "F03.90", "G93.1", "E11.9", "I10", "E03.9", "F32.A", "E78.5",
                 "G43.909", "R55"):
        assert code in ALL_ICD10_CODES, code


def test_every_atc_code_used_is_in_the_table() -> None:
    table = load_atc_table()
    codes = set(table["atc_code"].to_list())
    for d in DRUGS.values():
        assert d.atc in codes, d.atc
        assert len(d.atc) == 7
    for code in ("N03AX14", "N03AX09", "N03AG01", "N05BA06", "N03AE01", "N05CD08", "N01AX10", "N06DA02",
                 "A10BA02", "H03AA01", "C09AA03", "C08CA01", "N06AB06", "C10AA05", "B01AC06", "B01AF02"):
        assert code in codes, code
    for group in ("N", "N03", "N03A", "N05BA", "N05CD", "N06A", "N06D", "N05A", "N02", "L", "H", "H03",
                  "C09", "C07", "C03", "B01"):
        assert group in codes, group


def test_atc_table_and_lookups() -> None:
    df = load_atc_table()
    assert df.columns == ["atc_code", "name", "rxnorm_cui", "level1", "level2", "level3", "level4"]
    assert 60 <= df.height <= 140
    assert df["atc_code"].n_unique() == df.height
    cuis = df["rxnorm_cui"].drop_nulls()
    assert cuis.n_unique() == cuis.len()
    for row in df.iter_rows(named=True):
        code = row["atc_code"]
        for level, n in ((1, 1), (2, 3), (3, 4), (4, 5)):
            assert row[f"level{level}"] == (code[:n] if len(code) >= n else None), (code, level)
    assert atc_level("N03AX14", 1) == "N"
    assert atc_level("N03AX14", 2) == "N03"
    assert atc_level("N03AX14", 3) == "N03A"
    assert atc_level("N03AX14", 4) == "N03AX"
    assert atc_level("N03AX14", 5) == "N03AX14"
    with pytest.raises(ValueError):
        atc_level("N03", 4)
    with pytest.raises(ValueError):
        atc_level("N03AX14", 6)
    with pytest.raises(ValueError):
        atc_level("levetiracetam", 1)
    assert atc_name("N03AX14") == "levetiracetam"
    assert atc_name("N03") == "ANTIEPILEPTICS"
    assert atc_name("Z99ZZ99") is None
    assert rxnorm_for_atc("N03AX14") == "114477"
    assert atc_for_rxnorm("114477") == "N03AX14"
    assert atc_for_rxnorm(6470) == "N05BA06"
    assert rxnorm_for_atc("N03AD01") is None  # left empty rather than guessed
    assert atc_for_name("LeVeTiRaCeTaM") == "N03AX14"
    assert atc_for_name("  Aspirin ") == "B01AC06"
    assert atc_for_name("valproate") == "N03AG01"
    assert atc_for_name("levothyroxine") == "H03AA01"
    assert atc_for_name("ANTIEPILEPTICS") is None  # group names are not drug names
    assert atc_for_name("unobtainium") is None
    # a copy: callers cannot corrupt the cached table
    load_atc_table().clear()
    assert load_atc_table().height == df.height


# ------------------------------------------------------------------------------------------
# population: determinism, spread, speed
# ------------------------------------------------------------------------------------------


def test_generation_is_deterministic(pop200) -> None:
    again = generate_population(200, seed=7)
    assert again.patients == pop200.patients
    assert again.sessions == pop200.sessions
    other = generate_population(200, seed=8)
    assert other.sessions != pop200.sessions
    # patient i depends only on (seed, i)
    head = generate_population(50, seed=7)
    assert head.patients == pop200.patients[:50]
    assert head.sessions == tuple(s for s in pop200.sessions if s.patient_id in {p.patient_id for p in head.patients})


def test_generation_is_fast() -> None:
    generate_population(20, seed=0)  # warm caches (ATC table)
    t0 = time.perf_counter()
    generate_population(200, seed=1)
    assert time.perf_counter() - t0 < 1.0


def test_population_spread(pop200) -> None:
    pats, sess = pop200.patients, pop200.sessions
    assert len(pats) == 200
    ages = np.array([s.age_years for s in sess])
    assert ages.min() >= 0 and ages.max() <= 95
    assert (ages < 18).any() and (ages < 5).any() and (ages >= 80).any()
    assert len({s.site for s in sess}) >= 4
    assert {s.setting for s in sess} == {"routine", "emu", "icu"}
    per_patient = Counter(s.patient_id for s in sess)
    assert set(per_patient.values()) <= {1, 2, 3, 4}
    assert {1, 2, 3, 4} <= set(per_patient.values())
    assert all(p.patient_id in per_patient for p in pats)
    dur = np.array([s.duration_s for s in sess])
    assert (dur < 1280).any() and (dur >= 3600).any()
    assert ((dur >= 1200) & (dur <= 2400)).mean() > 0.3
    by_setting = {k: np.median([s.duration_s for s in sess if s.setting == k]) for k in ("routine", "emu", "icu")}
    assert by_setting["emu"] > by_setting["routine"] and by_setting["icu"] > by_setting["routine"]
    assert {s.mains_hz for s in sess} == {50.0, 60.0}
    assert {p.sex for p in pats} == {"female", "male"}
    assert {p.race for p in pats} <= set(RACES) and len({p.race for p in pats}) >= 5
    assert len({p.mrn for p in pats}) == len(pats)
    assert len({s.session_id for s in sess}) == len(sess)
    assert len({s.seed for s in sess}) == len(sess)
    # sessions of a patient are in time order, inside their encounter
    for p in pats:
        mine = pop200.sessions_of(p.patient_id)
        assert [s.start for s in mine] == sorted(s.start for s in mine)
        for s in mine:
            enc = p.encounter(s.encounter_id)
            assert enc.setting == s.setting and enc.site == s.site
            assert enc.start <= s.start <= enc.end
            assert abs(s.age_years - p.age_on(s.date)) < 0.01


def test_to_spec(pop200) -> None:
    s = next(x for x in pop200.sessions if x.findings)
    sp = s.to_spec()
    assert isinstance(sp, spec.SessionSpec)
    assert (sp.session_id, sp.duration_s, sp.age_years, sp.setting, sp.findings, sp.mains_hz, sp.seed) == (
        s.session_id, s.duration_s, s.age_years, s.setting, s.findings, s.mains_hz, s.seed)


def test_sessions_table(pop200) -> None:
    df = pop200.sessions_table()
    assert df.height == len(pop200.sessions)
    assert {"session_id", "patient_id", "site", "setting", "age_years", "sex", "icd10", "atc", "findings"} <= set(
        df.columns)


# ------------------------------------------------------------------------------------------
# epidemiology
# ------------------------------------------------------------------------------------------


def _ever(pop, key: str) -> set[str]:
    return {p.patient_id for p in pop.patients if any(c.key == key for c in p.conditions)}


def test_prevalence_is_plausible_and_comorbidity_holds(pop2000) -> None:
    pats = pop2000.patients
    n = len(pats)
    epilepsy = set().union(*(_ever(pop2000, k) for k in EPILEPSY_KEYS))
    assert 0.15 < len(epilepsy) / n < 0.45  # an EEG-referred population
    htn, stroke, dm = _ever(pop2000, "hypertension"), _ever(pop2000, "stroke"), _ever(pop2000, "type2_diabetes")
    assert 0.2 < len(htn) / n < 0.5
    # stroke more frequent among hypertensive and diabetic patients
    no_htn = {p.patient_id for p in pats} - htn
    assert len(stroke & htn) / len(htn) > 1.5 * len(stroke & no_htn) / len(no_htn)
    assert len(stroke & dm) / len(dm) > len(stroke - dm) / (n - len(dm))
    # age gradients: hypertension and dementia in the elderly, absence epilepsy in children
    first_age = {p.patient_id: s.age_years for p in pats for s in pop2000.sessions_of(p.patient_id)[:1]}
    old = {pid for pid, a in first_age.items() if a >= 65}
    young = {pid for pid, a in first_age.items() if a < 45}
    assert len(htn & old) / len(old) > 3 * len(htn & young) / len(young)
    dementia = _ever(pop2000, "dementia")
    assert dementia and all(first_age[pid] >= 45 for pid in dementia)
    assert len(dementia & old) / len(dementia) > 0.7
    absence = _ever(pop2000, "epilepsy_absence")
    assert absence and sum(first_age[pid] < 18 for pid in absence) > 0.7 * len(absence)
    for p in pats:  # every condition starts at an age allowed by the catalog
        for c in p.conditions:
            cdef = CONDITIONS[c.key]
            age = p.age_on(c.onset)
            assert cdef.min_onset_age - 0.01 <= age <= (cdef.max_onset_age or 95) + 0.01, (c, age)
    # at most one epilepsy type per patient
    for p in pats:
        assert sum(c.key in EPILEPSY_KEYS for c in p.conditions) <= 1


def test_settings_follow_conditions(pop2000) -> None:
    sess = pop2000.sessions
    epi_codes = {c for k in EPILEPSY_KEYS for c in CONDITIONS[k].codes}

    def rate(setting: str, codes: set[str]) -> float:
        xs = [s for s in sess if s.setting == setting]
        return sum(bool(codes & set(s.condition_codes)) for s in xs) / len(xs)

    assert rate("emu", epi_codes) > 1.5 * rate("routine", epi_codes)
    enceph = set(CONDITIONS["encephalopathy"].codes)
    assert rate("icu", enceph) > 3 * rate("routine", enceph)
    anoxic = {"G93.1"}
    n_anoxic = Counter(s.setting for s in sess if "G93.1" in s.condition_codes)
    assert n_anoxic["icu"] > n_anoxic["routine"] + n_anoxic["emu"]
    assert rate("icu", anoxic) > 5 * rate("routine", anoxic)


def test_medications_only_with_their_indication(pop2000) -> None:
    table = set(load_atc_table()["atc_code"].to_list())
    for p in pop2000.patients:
        for m in p.medications:
            drug = DRUGS[m.key]
            assert m.atc == drug.atc and m.atc in table
            assert m.indication in drug.indications, (m.key, m.indication)
            cause = [c for c in p.conditions if c.key == m.indication and c.code == m.indication_code]
            assert cause and min(c.onset for c in cause) <= m.start, (p.patient_id, m)
            assert m.end is None or m.end >= m.start
            assert m.rxnorm == rxnorm_for_atc(m.atc)
    # negative-control drugs exist and are prescribed for negative controls only
    meds = Counter(m.key for p in pop2000.patients for m in p.medications)
    for key in ("metformin", "levothyroxine", "lisinopril", "amlodipine", "sertraline", "atorvastatin", "aspirin",
                "apixaban", "levetiracetam", "lamotrigine", "valproate", "lorazepam", "clonazepam", "midazolam",
                "propofol", "donepezil"):
        assert meds[key] > 0, key


def test_active_at_session_logic(pop2000) -> None:
    c = Condition(key="encephalopathy", code="G93.41", display="x", onset=dt.date(2020, 1, 10),
                  abatement=dt.date(2020, 1, 20))
    assert not c.active_on(dt.date(2020, 1, 9))
    assert c.active_on(dt.date(2020, 1, 10)) and c.active_on(dt.date(2020, 1, 19))
    assert not c.active_on(dt.date(2020, 1, 20))
    m = Medication(key="lorazepam", atc="N05BA06", name="lorazepam", rxnorm="6470", start=dt.date(2020, 1, 10),
                   end=dt.date(2020, 1, 10), indication="status_epilepticus", indication_code="G40.901")
    assert m.active_on(dt.date(2020, 1, 10)) and not m.active_on(dt.date(2020, 1, 11))
    changed = 0
    for p in pop2000.patients:
        mine = pop2000.sessions_of(p.patient_id)
        for s in mine:
            assert set(s.condition_codes) == {c.code for c in p.conditions if c.active_on(s.date)}
            assert set(s.atc_codes) == {m.atc for m in p.medications if m.active_on(s.date)}
            for code in s.condition_codes:
                assert any(c.code == code and c.onset <= s.date for c in p.conditions)
        if len(mine) > 1 and len({s.condition_codes for s in mine}) > 1:
            changed += 1
    assert changed > 50  # incident and resolving conditions change what is active between sessions


# ------------------------------------------------------------------------------------------
# planted findings
# ------------------------------------------------------------------------------------------


def test_findings_follow_signatures(pop2000) -> None:
    for s in pop2000.sessions:
        assert len({(f.name, f.side) for f in s.findings}) == len(s.findings)
        for f in s.findings:
            assert f.cause in s.condition_codes or f.cause in s.atc_codes, (s.session_id, f)
            assert f.name in ALLOWED_FINDINGS[f.cause], (f.cause, f.name)
            assert f.cause not in NEG_CODES and f.cause not in NEG_DRUG_ATC
            assert 0 < f.severity <= 1
            if f.name in ("ied_focal", "focal_slowing", "asymmetry", "lpd"):
                assert f.side in ("L", "R")
            else:
                assert f.side is None
            if f.name == "seizure" and f.cause != "G40.901":
                assert s.setting == "emu"
            if f.name == "excess_beta":
                assert f.cause in BENZO_ATC
    # negative-control conditions have no signature at all
    for key in NEGATIVE_CONTROL_KEYS:
        assert not CONDITIONS[key].signature
    assert {"I10", "E11.9", "E78.5", "E03.9"} <= NEG_CODES
    # stroke findings take the stroke's side
    for p in pop2000.patients:
        strokes: dict[str, set[str]] = {}
        for c in p.conditions:
            if c.key == "stroke":
                strokes.setdefault(c.code, set()).add(c.side)
        for s in pop2000.sessions_of(p.patient_id):
            for f in s.findings:
                if f.cause in strokes and f.name in ("focal_slowing", "asymmetry", "lpd"):
                    assert f.side in strokes[f.cause]


def test_every_finding_is_planted_somewhere(pop2000) -> None:
    seen = Counter(f.name for s in pop2000.sessions for f in s.findings)
    assert set(seen) == set(spec.FINDINGS)
    assert 0.2 < sum(1 for s in pop2000.sessions if not s.findings) / len(pop2000.sessions) < 0.8


def test_benzodiazepine_penetrance(pop2000) -> None:
    p = pop2000.config.penetrance["benzodiazepine:excess_beta"]
    on_benzo = [s for s in pop2000.sessions if BENZO_ATC & set(s.atc_codes)]
    assert len(on_benzo) > 150
    rate = np.mean([any(f.name == "excess_beta" for f in s.findings) for s in on_benzo])
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / len(on_benzo)) + 0.01
    off = [s for s in pop2000.sessions if not BENZO_ATC & set(s.atc_codes)]
    assert not any(f.name == "excess_beta" for s in off for f in s.findings)
    # the penetrance is a config value, merged onto the defaults
    for value in (0.0, 1.0):
        cfg = PopulationConfig(penetrance={"benzodiazepine:excess_beta": value})
        assert cfg.penetrance["stroke:focal_slowing"] == pop2000.config.penetrance["stroke:focal_slowing"]
        pop = generate_population(400, seed=3, config=cfg)
        benzo = [s for s in pop.sessions if BENZO_ATC & set(s.atc_codes)]
        got = [any(f.name == "excess_beta" for f in s.findings) for s in benzo]
        assert benzo and all(x == bool(value) for x in got)


def test_affected_patients_do_not_show_findings_in_every_session(pop2000) -> None:
    focal = [s for s in pop2000.sessions
             if any(c in s.condition_codes for c in CONDITIONS["epilepsy_focal"].codes)]
    rate = np.mean([any(f.name == "ied_focal" for f in s.findings) for s in focal])
    assert 0.4 < rate < 0.75  # penetrance 0.55 (plus the odd focal IED of another cause)
    severities = [f.severity for s in focal for f in s.findings if f.name == "ied_focal"]
    assert np.std(severities) > 0.1  # graded, not binary
    mixed = 0
    for p in pop2000.patients:
        mine = [s for s in pop2000.sessions_of(p.patient_id)
                if any(c in s.condition_codes for c in CONDITIONS["epilepsy_focal"].codes)]
        if len(mine) >= 2 and len({any(f.name == "ied_focal" for f in s.findings) for s in mine}) == 2:
            mixed += 1
    assert mixed > 5


def test_config_validation() -> None:
    cfg = PopulationConfig()
    assert PopulationConfig.model_validate_json(cfg.model_dump_json()) == cfg  # YAML/JSON round trip
    with pytest.raises(pydantic.ValidationError):
        PopulationConfig(not_a_rate=1.0)
    with pytest.raises(pydantic.ValidationError):
        cfg.p_female = 0.9  # frozen
    with pytest.raises(pydantic.ValidationError):
        PopulationConfig(penetrance={"nonsense:key": 0.5})
    with pytest.raises(pydantic.ValidationError):
        PopulationConfig(penetrance={"stroke:lpd": 1.5})
    with pytest.raises(pydantic.ValidationError):  # comorbidity may only use conditions drawn earlier
        PopulationConfig(prevalence={"hypertension": {"by_age": (0.1,) * 5, "risk_or": {"stroke": 2.0}}})
    with pytest.raises(pydantic.ValidationError):  # a drug only for its indications
        PopulationConfig(treatments={"hypertension": {"p_treated": 0.9, "drugs": {"levetiracetam": 1.0}}})
    with pytest.raises(pydantic.ValidationError):
        PopulationConfig(race_weights={"Martian": 1.0})
    with pytest.raises(ValueError):
        generate_population(-1, seed=0)
    with pytest.raises(ValueError):
        generate_population(10, seed=-3)
    assert generate_population(0, seed=0).sessions == ()
    assert SIGNATURE_GROUPS["benzodiazepine"][0].finding == "excess_beta"


# ------------------------------------------------------------------------------------------
# FHIR
# ------------------------------------------------------------------------------------------


def test_every_bundle_validates(pop200) -> None:
    bundles = list(population_bundles(pop200))
    assert len(bundles) == 200
    n_rx = 0
    for b, p in zip(bundles, pop200.patients):
        model = validate_bundle(b)
        assert model.type == "collection"
        res = [e["resource"] for e in b["entry"]]
        ids = [(r["resourceType"], r["id"]) for r in res]
        assert len(set(ids)) == len(ids)
        by_type = Counter(r["resourceType"] for r in res)
        assert by_type["Patient"] == 1 and by_type["Encounter"] == len(p.encounters)
        assert by_type["Condition"] == len(p.conditions) and by_type["MedicationStatement"] == len(p.medications)
        assert by_type["Procedure"] == len(pop200.sessions_of(p.patient_id))
        pat = res[0]
        assert pat["birthDate"] == p.birth_date.isoformat() and pat["identifier"][0]["value"] == p.mrn
        assert pat["gender"] == p.sex and pat["name"][0]["family"] == p.family_name
        for r in res:
            if r["resourceType"] == "Condition":
                assert r["code"]["coding"][0]["system"] == ICD10_SYSTEM
                assert r["onsetDateTime"]
                assert r["clinicalStatus"]["coding"][0]["code"] in ("active", "resolved")
            elif r["resourceType"] == "MedicationStatement":
                systems = [c["system"] for c in r["medicationCodeableConcept"]["coding"]]
                assert ATC_SYSTEM in systems
                atc = r["medicationCodeableConcept"]["coding"][0]["code"]
                if rxnorm_for_atc(atc):
                    assert RXNORM_SYSTEM in systems
                    n_rx += 1
                assert r["effectivePeriod"]["start"]
                assert r["reasonReference"][0]["reference"].startswith("Condition/")
            elif r["resourceType"] == "Encounter":
                assert r["period"]["start"] and r["period"]["end"]
                assert r["class"]["code"] in ("AMB", "IMP", "ACUTE")
                assert r["type"][0]["coding"][0]["code"] in ("routine", "emu", "icu")
                assert r["serviceProvider"]["reference"].startswith("Organization/site-")
    assert n_rx > 100
    # deterministic
    assert patient_bundle(pop200.patients[0], pop200.sessions_of(pop200.patients[0].patient_id)) == \
        patient_bundle(pop200.patients[0], pop200.sessions_of(pop200.patients[0].patient_id))


def test_bundle_validation_is_real(pop200) -> None:
    p = pop200.patients[0]
    b = patient_bundle(p, pop200.sessions_of(p.patient_id))
    b["entry"][0]["resource"]["gender"] = 42
    with pytest.raises(pydantic.ValidationError):
        validate_bundle(b)
    other = next(s for s in pop200.sessions if s.patient_id != p.patient_id)
    with pytest.raises(ValueError):
        patient_bundle(p, [other])


# ------------------------------------------------------------------------------------------
# reports
# ------------------------------------------------------------------------------------------

_MENTION = {  # what a reader would look for, per finding
    "ied_focal": r"sharp wave|spike|epileptiform|IEDs",
    "ied_generalized": r"spike-and-wave|spike-wave|polyspike|generalized epileptiform",
    "seizure": r"seizure",
    "generalized_slowing": r"diffuse slowing|generalized (polymorphic )?(delta )?.*slowing|generalized slowing",
    "pdr_slowing": r"slow at|slowed to|slow for age|absent PDR|No PDR|slow PDR|posterior dominant rhythm",
    "focal_slowing": r"focal slowing|delta slowing|theta-delta slowing",
    "asymmetry": r"asymmetr|attenuat",
    "burst_suppression": r"burst",
    "low_voltage": r"low.voltage|low amplitude",
    "excess_beta": r"beta",
    "mild_slowing": r"mild(ly)? .*slow",
    "lpd": r"LPDs|lateralized periodic",
    "gpd": r"GPDs|generalized periodic",
}


def _heading_re(section: str) -> re.Pattern[str]:
    alts = "|".join(re.escape(h) for h in SECTION_HEADINGS[section])
    return re.compile(rf"^(?:{alts}):?(?:\s|$)", re.I | re.M)


@pytest.fixture(scope="module")
def reports(pop2000):
    rng = np.random.default_rng(123)
    out = []
    for i, s in enumerate(pop2000.sessions[:1500]):
        eeg = _summary(s, sleep=i % 2 == 0)
        out.append((s, eeg, write_report(s, pop2000.patient(s.patient_id), eeg, rng, pop2000.config)))
    return out


def test_reports_mention_findings_at_one_minus_miss_rate(reports, pop2000) -> None:
    miss = pop2000.config.reports.miss_rate
    n_present = n_asserted = n_over = 0
    for s, eeg, r in reports:
        present = {f.name for f in eeg.findings}
        assert set(r.missed) <= present
        assert set(r.asserted) == (present - set(r.missed)) | set(r.overcalled)
        assert not set(r.overcalled) & present
        n_present += len(present)
        n_asserted += len(present - set(r.missed))
        n_over += len(r.overcalled)
        assert r.normal == (not r.asserted)
        for name in r.asserted:
            assert re.search(_MENTION[name], r.text, re.I), (name, r.text)
    rate = n_asserted / n_present
    assert n_present > 500
    assert abs(rate - (1 - miss)) < 4 * np.sqrt(miss * (1 - miss) / n_present)
    over = n_over / len(reports)
    assert 0.5 * pop2000.config.reports.overcall_rate < over < 1.5 * pop2000.config.reports.overcall_rate + 0.01


def test_reports_have_all_sections_and_negations(reports) -> None:
    headings_used = Counter()
    for s, eeg, r in reports:
        assert r.sections == ("history", "medications", "technique", "description", "impression", "correlation")
        for sec in r.sections:
            m = _heading_re(sec).search(r.text)
            assert m, (sec, r.text)
            headings_used[m.group(0).strip()] += 1
        if not {"ied_focal", "ied_generalized", "lpd", "gpd"} & set(r.asserted):
            assert any(neg in r.text for neg in NEGATION_PHRASES["epileptiform"]), r.text
        assert ("Abnormal" in r.text or "ABNORMAL" in r.text or "abnormal because" in r.text) != r.normal
        assert re.search(r"\b\d+-(year|month)-old\b", r.text)
        assert "10-20" in r.text
    assert len(headings_used) > 20  # varied wording: many heading spellings
    texts = [r.text for _, _, r in reports]
    assert len(set(texts)) == len(texts)
    for abbrev in ("PDR", "IEDs", "GPDs", "LPDs", "BS"):
        assert any(abbrev in t for t in texts), abbrev


def test_reports_describe_the_eeg(reports) -> None:
    for s, eeg, r in reports:
        awake = any(x.state == "awake" for x in eeg.states)
        if eeg.pdr_hz is not None and awake:
            assert f"{eeg.pdr_hz:.1f} Hz" in r.text
        if eeg.reached_sleep:
            assert re.search(r"spindles", r.text) and re.search(r"stage 2|stage II|N2", r.text, re.I)
        else:
            assert re.search(r"sleep (was )?not (recorded|reached)|did not reach|No sleep", r.text, re.I)
        if s.setting == "routine":
            assert f"{int(round(s.duration_s / 60))} min" in r.text or "hour" in r.text


def test_reports_carry_fake_phi(reports, pop2000) -> None:
    with_phi = [(s, r) for s, _, r in reports if r.phi]
    assert 0.3 < len(with_phi) / len(reports) < 0.7
    for s, r in with_phi:
        p = pop2000.patient(s.patient_id)
        assert p.mrn in r.phi and p.mrn in r.text
        for item in r.phi:
            assert item in r.text
    assert all(pop2000.patient(s.patient_id).mrn not in r.text for s, _, r in reports if not r.phi)


def test_perfect_reader_and_determinism(pop200) -> None:
    perfect = ReportConfig(miss_rate=0.0, overcall_rate=0.0, phi_rate=0.0)
    for s in pop200.sessions[:200]:
        p = pop200.patient(s.patient_id)
        eeg = _summary(s, sleep=True)
        r = write_report(s, p, eeg, np.random.default_rng(5), perfect)
        assert set(r.asserted) == {f.name for f in s.findings} and not r.missed and not r.overcalled
        assert not r.phi and p.mrn not in r.text and p.family_name not in r.text
        again = write_report(s, p, eeg, np.random.default_rng(5), perfect)
        assert again == r
    s = pop200.sessions[0]
    with pytest.raises(ValueError):
        write_report(s, pop200.patients[1], _summary(s, sleep=False), np.random.default_rng(0))
    with pytest.raises(TypeError):
        write_report(s, pop200.patient(s.patient_id), _summary(s, sleep=False), 0)  # type: ignore[arg-type]


def test_dataclasses_are_frozen(pop200) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        pop200.sessions[0].duration_s = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pop200.patients[0].mrn = "x"  # type: ignore[misc]

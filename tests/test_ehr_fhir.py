"""ehr.fhir / ehr.record: FHIR exports of the synthetic hospital against its truth, and malformed input."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from ehr import (
    CodeSet,
    ConditionEntry,
    FhirLoadResult,
    MedicationEntry,
    PatientRecord,
    load_fhir,
)

NOW = dt.date(2030, 1, 1)
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


# --------------------------------------------------------------------------------------
# The synthetic hospital
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def population():
    from clef.synthetic.population import generate_population

    return generate_population(150, seed=11)


@pytest.fixture(scope="module")
def bundles(population) -> list[dict[str, Any]]:
    from clef.synthetic.fhir import population_bundles

    return list(population_bundles(population))


@pytest.fixture(scope="module")
def bundle_dir(bundles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fhir")
    for b in bundles:
        pid = b["entry"][0]["resource"]["id"]
        (out / f"{pid}.json").write_text(json.dumps(b), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def loaded(bundle_dir: Path) -> FhirLoadResult:
    return load_fhir(bundle_dir, now=NOW)


def test_synthetic_bundles_load_without_problems(loaded: FhirLoadResult, population) -> None:
    assert loaded.problems == []
    assert loaded.ignored == {}
    assert set(loaded.records) == {p.patient_id for p in population.patients}
    assert loaded.n_files == len(population.patients)


def test_codes_at_each_session_match_truth(loaded: FhirLoadResult, population) -> None:
    """Active-at semantics equal the hospital's: onset <= day < abatement, start <= day <= end."""
    patients = {p.patient_id: p for p in population.patients}
    n_changing = 0
    for s in population.sessions:
        rec = loaded.records[s.patient_id]
        sess = rec.session(s.session_id)
        assert sess is not None and sess.start == s.start and sess.encounter_id == s.encounter_id
        codes = rec.codes_at(sess.start)
        assert set(codes.icd10) == set(s.condition_codes), s.session_id
        assert set(codes.atc) == set(s.atc_codes), s.session_id
        assert len(codes.icd10) == len(set(codes.icd10)) and len(codes.atc) == len(set(codes.atc))
        assert codes.age == pytest.approx(s.age_years, abs=0.006)
        p = patients[s.patient_id]
        assert codes.sex == {"female": "F", "male": "M"}[p.sex]
        assert codes.race == p.race
        enc = rec.encounter(s.encounter_id)
        assert enc is not None and enc.site == s.site and enc.setting == s.setting
        assert enc.care_class in {"AMB", "IMP", "ACUTE"}
        assert enc.start <= s.start <= enc.end
        first = rec.sessions[0]
        n_changing += set(rec.codes_at(first.start).icd10) != set(codes.icd10)
    assert n_changing > 0  # some conditions start or stop between sessions


def test_records_hold_no_phi(loaded: FhirLoadResult, population) -> None:
    fields = {f.name for f in dataclasses.fields(PatientRecord)}
    assert fields == {"patient_id", "sex", "birth_date", "race", "ethnicity", "conditions", "medications",
                      "encounters", "sessions"}
    for p in population.patients[:30]:
        text = repr(loaded.records[p.patient_id])
        for phi in (p.mrn, p.name, f"'{p.given_name}'"):
            assert phi not in text


def test_ndjson_bulk_export_equals_bundles(bundles, loaded: FhirLoadResult, tmp_path: Path) -> None:
    """Bulk Data layout (one type per file) and one mixed gzipped NDJSON give the same records."""
    by_type: dict[str, list[str]] = {}
    mixed: list[str] = []
    for b in bundles[:40]:
        for e in b["entry"]:
            line = json.dumps(e["resource"])
            by_type.setdefault(e["resource"]["resourceType"], []).append(line)
            mixed.append(line)
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    for rtype, lines in by_type.items():
        (bulk / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = load_fhir(bulk, now=NOW)
    assert res.problems == []
    assert res.records == {pid: loaded.records[pid] for pid in res.records}
    assert len(res.records) == 40
    gz = tmp_path / "all.ndjson.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(mixed))
    res2 = load_fhir(gz, now=NOW)
    assert res2.records == res.records and res2.problems == []


def test_load_speed_is_reported(bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    import time

    load_fhir(bundle_dir, now=NOW)  # warm (imports)
    t0 = time.perf_counter()
    res = load_fhir(bundle_dir, now=NOW, progress=True)
    per_patient = (time.perf_counter() - t0) / len(res.records)
    assert per_patient < 0.05, f"{per_patient * 1000:.1f} ms per patient"


# --------------------------------------------------------------------------------------
# Hand-made resources
# --------------------------------------------------------------------------------------


def _patient(pid: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1980-06-15",
            "name": [{"family": "Doe", "given": ["Jane"]}], **extra}


def _condition(rid: str, code: Any = "G40.909", system: str = ICD, pid: str = "p1", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Condition", "id": rid, "subject": {"reference": f"Patient/{pid}"},
                           "onsetDateTime": "2015-01-01", **extra}
    if code is not None:
        out["code"] = {"coding": [{"system": system, "code": code}]}
    return out


def _med(rid: str, codings: list[dict[str, str]], text: str | None = None, pid: str = "p1",
         rtype: str = "MedicationStatement", **extra: Any) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": codings}
    if text:
        concept["text"] = text
    out: dict[str, Any] = {"resourceType": rtype, "id": rid, "status": "active",
                           "subject": {"reference": f"Patient/{pid}"}, "medicationCodeableConcept": concept, **extra}
    if rtype != "MedicationRequest":
        out.setdefault("effectivePeriod", {"start": "2019-01-01"})
    else:
        out["intent"] = "order"
    return out


def _bundle(*resources: dict[str, Any], btype: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": btype,
            "entry": [{"fullUrl": f"urn:x:{i}", "resource": r} for i, r in enumerate(resources)]}


def _write(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def _reasons(res: FhirLoadResult) -> list[str]:
    return [p.reason for p in res.problems]


def test_single_patient_json_is_accepted(tmp_path: Path) -> None:
    res = load_fhir(_write(tmp_path / "p.json", _patient()), now=NOW)
    assert res.problems == []
    rec = res.records["p1"]
    assert (rec.sex, rec.birth_date, rec.race) == ("F", dt.date(1980, 6, 15), None)
    assert rec.age_at(dt.date(2000, 6, 15)) == pytest.approx(20.0, abs=0.01)
    assert rec.codes_at(dt.date(2020, 1, 1)) == CodeSet((), (), rec.age_at(dt.date(2020, 1, 1)), "F", None)


def test_broken_json_file_is_a_problem_and_other_files_are_kept(tmp_path: Path) -> None:
    _write(tmp_path / "good.json", _bundle(_patient(), _condition("c1")))
    _write(tmp_path / "bad.json", '{"resourceType": "Bundle", "entry": [')
    res = load_fhir(tmp_path, now=NOW)
    assert [p.source for p in res.problems] == [str(tmp_path / "bad.json")]
    assert "invalid JSON at line 1" in res.problems[0].reason
    assert [c.code for c in res.records["p1"].conditions] == ["G40.909"]


def test_broken_ndjson_line_is_reported_with_its_line_number(tmp_path: Path) -> None:
    lines = [json.dumps(_patient()), '{"resourceType": "Condition", "id": ', json.dumps(_condition("c1")), ""]
    path = _write(tmp_path / "export.ndjson", "\n".join(lines))
    res = load_fhir(path, now=NOW)
    assert len(res.problems) == 1
    assert res.problems[0].source == f"{path}:2" and "line 2" in res.problems[0].reason
    assert [c.resource_id for c in res.records["p1"].conditions] == ["c1"]


def test_unknown_resource_types(tmp_path: Path) -> None:
    banana = _write(tmp_path / "banana.json", {"resourceType": "Banana", "id": "b1"})
    res = load_fhir(banana, now=NOW)
    assert res.records == {}
    assert res.problems[0].resource_type == "Banana" and res.problems[0].resource_id == "b1"
    assert res.problems[0].reason.startswith("unsupported resource type")
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "hr"}}
    res = load_fhir(_write(tmp_path / "b.json", _bundle(_patient(), {"resourceType": "Banana", "id": "b2"}, obs,
                                                        _condition("c1"))), now=NOW)
    assert [(p.resource_type, p.resource_id) for p in res.problems] == [("Banana", "b2")]
    assert res.ignored == {"Observation": 1}
    assert len(res.records["p1"].conditions) == 1
    res = load_fhir(_write(tmp_path / "list.json", [1, 2]), now=NOW)
    assert "expected a FHIR resource" in res.problems[0].reason


def test_condition_codes(tmp_path: Path) -> None:
    conds = [
        _condition("nocode", code=None),
        _condition("snomed", code="84757009", system="http://snomed.info/sct"),
        _condition("undotted", code="g40909"),
        _condition("who", code="I10", system="http://hl7.org/fhir/sid/icd-10"),
        _condition("invalid", code="XYZ.9"),
        {**_condition("mixed"), "code": {"coding": [
            {"system": "http://snomed.info/sct", "code": "230456007"},
            {"system": "urn:oid:2.16.840.1.113883.6.90", "code": "G43909", "display": "Migraine"}]}},
        _condition("refuted", verificationStatus={"coding": [{"code": "refuted"}]}),
    ]
    res = load_fhir(_write(tmp_path / "b.json", _bundle(_patient(), *conds)), now=NOW)
    problems = {p.resource_id: p.reason for p in res.problems}
    assert set(problems) == {"nocode", "snomed", "invalid"}
    assert all(r.startswith("no ICD-10-CM code") for r in problems.values())
    assert "snomed.info/sct|84757009" in problems["snomed"]
    got = {c.resource_id: (c.code, c.display) for c in res.records["p1"].conditions}
    assert got["undotted"][0] == "G40.909" and got["undotted"][1].startswith("Epilepsy, unspecified")
    assert got["who"][0] == "I10" and got["mixed"] == ("G43.909", "Migraine")
    assert "refuted" not in got


def test_medication_mapping(tmp_path: Path) -> None:
    meds = [
        _med("atc", [{"system": ATC, "code": "N03AX14"}]),
        _med("rx-only", [{"system": RXNORM, "code": "28439"}]),
        _med("name-only", [], text="Levetiracetam 500 MG Oral Tablet"),
        _med("display-only", [{"system": "http://example.org/local", "code": "42", "display": "Aspirin"}]),
        _med("nothing", [{"system": "http://example.org/local", "code": "42"}], text="Unobtainium"),
        _med("rx-unmapped", [{"system": RXNORM, "code": "999999999"}], text="Mystery drug"),
        _med("request", [{"system": RXNORM, "code": "114477"}], rtype="MedicationRequest",
             authoredOn="2018-03-01", dispenseRequest={"validityPeriod": {"start": "2018-03-02", "end": "2018-09"}}),
        _med("admin", [{"system": ATC, "code": "N01AX10"}], rtype="MedicationAdministration",
             effectiveDateTime="2019-05-05T10:00:00Z", effectivePeriod=None),
        {"resourceType": "MedicationStatement", "id": "byref", "status": "active",
         "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "Medication/med1"},
         "effectivePeriod": {"start": "2017-01-01"}},
        {"resourceType": "MedicationStatement", "id": "contained", "status": "active",
         "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "#m"},
         "contained": [{"resourceType": "Medication", "id": "m", "code": {"text": "lorazepam"}}]},
        _med("stopped", [{"system": ATC, "code": "N03AG01"}], status="entered-in-error"),
    ]
    meds[7].pop("effectivePeriod")
    medication = {"resourceType": "Medication", "id": "med1",
                  "code": {"coding": [{"system": RXNORM, "code": "114477", "display": "levetiracetam"}]}}
    res = load_fhir(_write(tmp_path / "b.json", _bundle(_patient(), *meds, medication)), now=NOW)
    problems = {p.resource_id: p.reason for p in res.problems}
    assert set(problems) == {"nothing", "rx-unmapped"}
    assert problems["nothing"].startswith("no mappable medication code")
    assert "kept without ATC" in problems["rx-unmapped"]
    got = {m.resource_id: m for m in res.records["p1"].medications}
    assert set(got) == {"atc", "rx-only", "name-only", "display-only", "rx-unmapped", "request", "admin", "byref",
                        "contained"}
    assert (got["atc"].atc, got["atc"].rxnorm) == ("N03AX14", "114477")  # RxNorm derived
    assert (got["rx-only"].atc, got["rx-only"].rxnorm) == ("N03AX09", "28439")
    assert got["name-only"].atc == "N03AX14" and got["name-only"].name == "Levetiracetam 500 MG Oral Tablet"
    assert got["display-only"].atc == "B01AC06"
    assert (got["rx-unmapped"].atc, got["rx-unmapped"].rxnorm) == (None, "999999999")
    assert (got["request"].atc, got["request"].start, got["request"].end) == (
        "N03AX14", dt.date(2018, 3, 2), dt.date(2018, 9, 30))
    assert (got["admin"].start, got["admin"].end) == (dt.date(2019, 5, 5), dt.date(2019, 5, 5))
    assert got["byref"].atc == "N03AX14" and got["contained"].atc == "N05BA06"
    codes = res.records["p1"].codes_at(dt.date(2019, 5, 5))
    assert "N01AX10" in codes.atc and "N01AX10" not in res.records["p1"].codes_at(dt.date(2019, 5, 6)).atc


def test_invalid_resources_are_reported_with_their_id(tmp_path: Path) -> None:
    bad_date = _condition("c-bad", onsetDateTime="2020-13-45")
    res = load_fhir(_write(tmp_path / "b.json", _bundle(_patient(gender="robot"), bad_date, _condition("c-ok"))),
                    now=NOW)
    problems = {p.resource_id: p for p in res.problems}
    assert set(problems) == {"p1", "c-bad"}
    assert problems["c-bad"].resource_type == "Condition" and "onsetDateTime" in problems["c-bad"].reason
    assert problems["c-bad"].source.endswith("#entry[1]")
    assert "gender 'robot'" in problems["p1"].reason
    rec = res.records["p1"]
    assert rec.sex is None and rec.birth_date == dt.date(1980, 6, 15)  # rest of the Patient kept
    assert [c.resource_id for c in rec.conditions] == ["c-ok"]


def test_future_dates_are_problems_and_unknown(tmp_path: Path) -> None:
    res = load_fhir(_write(tmp_path / "b.json", _bundle(
        _patient(birthDate="2031-01-01"),
        _condition("c-future", onsetDateTime="2035-05-05"),
        _condition("c-planned-end", abatementDateTime="2040-01-01"),
        _med("m-future", [{"system": ATC, "code": "N03AX14"}], effectivePeriod={"start": "2040-01-01"}))), now=NOW)
    problems = {p.resource_id: p.reason for p in res.problems}
    assert set(problems) == {"p1", "c-future", "m-future"}
    assert all("in the future" in r for r in problems.values())
    rec = res.records["p1"]
    assert rec.birth_date is None and rec.age_at(dt.date(2020, 1, 1)) is None
    cond = {c.resource_id: c for c in rec.conditions}
    assert cond["c-future"].onset is None and cond["c-planned-end"].abatement == dt.date(2040, 1, 1)
    assert set(rec.codes_at(dt.date(2020, 1, 1)).icd10) == {"G40.909"}
    assert rec.active_medications(dt.date(1990, 1, 1))[0].start is None  # unknown start: active


def test_empty_files_and_entries_without_resource(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.json", "")
    res = load_fhir(empty, now=NOW)
    assert res.records == {} and res.problems[0].reason.startswith("empty file")
    res = load_fhir(_write(tmp_path / "blank.ndjson", "\n\n"), now=NOW)
    assert res.problems[0].reason.startswith("empty file")
    bundle = _bundle(_patient(), _condition("c1"), btype="searchset")
    bundle["entry"].insert(1, {"fullUrl": "https://x/Condition/gone", "search": {"mode": "match"}})
    res = load_fhir(_write(tmp_path / "b.json", bundle), now=NOW)
    assert len(res.problems) == 1 and res.problems[0].reason.startswith("bundle entry has no resource")
    assert res.problems[0].source.endswith("#entry[1]")
    assert len(res.records["p1"].conditions) == 1


def test_directory_with_ndjson_subfolder(tmp_path: Path) -> None:
    _write(tmp_path / "bundles" / "p1.json", _bundle(_patient(), _condition("c1")))
    _write(tmp_path / "bulk" / "Condition.ndjson", json.dumps(_condition("c2", code="R55", pid="p2")) + "\n")
    _write(tmp_path / "bulk" / "Patient.ndjson", json.dumps(_patient("p2", gender="male")) + "\n")
    _write(tmp_path / "notes.txt", "not FHIR")
    _write(tmp_path / ".hidden" / "x.json", {"resourceType": "Banana"})
    res = load_fhir(tmp_path, now=NOW, progress=True)
    assert res.problems == [] and res.n_files == 3
    assert res.records["p2"].sex == "M" and res.records["p2"].conditions[0].code == "R55"


def test_unknown_patient_gets_a_record_and_a_problem(tmp_path: Path) -> None:
    res = load_fhir(_write(tmp_path / "b.json", _bundle(_condition("c1", pid="ghost"))), now=NOW)
    rec = res.records["ghost"]
    assert (rec.sex, rec.birth_date, len(rec.conditions)) == (None, None, 1)
    assert [(p.resource_type, p.resource_id) for p in res.problems] == [("Patient", "ghost")]
    assert "never defined" in res.problems[0].reason
    res = load_fhir(_write(tmp_path / "c.json", _bundle({"resourceType": "Encounter", "id": "e1",
                                                          "status": "finished",
                                                          "class": {"code": "AMB"}})), now=NOW)
    assert "no patient reference" in res.problems[0].reason


def test_transaction_bundle_with_uuid_references(tmp_path: Path) -> None:
    pat = _patient()
    del pat["id"]
    cond = _condition("c1")
    cond["subject"] = {"reference": "urn:uuid:0b1c7f0e-0000-4000-8000-000000000001"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b1c7f0e-0000-4000-8000-000000000001", "resource": pat,
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:0b1c7f0e-0000-4000-8000-000000000002", "resource": cond,
         "request": {"method": "POST", "url": "Condition"}},
        {"request": {"method": "DELETE", "url": "Condition/old"}},
    ]}
    res = load_fhir(_write(tmp_path / "t.json", bundle), now=NOW)
    assert res.problems == []
    rec = res.records["0b1c7f0e-0000-4000-8000-000000000001"]
    assert rec.sex == "F" and rec.conditions[0].code == "G40.909"


def test_duplicates_partial_dates_and_race(tmp_path: Path) -> None:
    race = [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
        {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}}]},
        {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", "extension": [
            {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2135-2"}}]}]
    res = load_fhir(_write(tmp_path / "b.json", _bundle(
        _patient(extension=race), _condition("c1", onsetDateTime="2015"), _condition("c1", code="R55"),
        _condition("c2", code="R55", onsetDateTime="2016-02", abatementDateTime="2016-03"))), now=NOW)
    assert [(p.resource_id, p.reason) for p in res.problems] == [
        ("c1", "duplicate resource id with different content; kept the first")]
    rec = res.records["p1"]
    assert (rec.race, rec.ethnicity, rec.codes_at(dt.date(2020, 1, 1)).race) == (
        "White", "Hispanic or Latino", "Hispanic/Latino")
    assert [(c.code, c.onset, c.abatement) for c in rec.conditions] == [
        ("G40.909", dt.date(2015, 1, 1), None), ("R55", dt.date(2016, 2, 1), dt.date(2016, 3, 1))]


def test_missing_path_and_bad_now(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_fhir(tmp_path / "nope.json")
    with pytest.raises(TypeError, match="now must be"):
        load_fhir(_write(tmp_path / "p.json", _patient()), now="2020-01-01")  # type: ignore[arg-type]


def test_active_at_semantics_and_priority_order() -> None:
    c = [ConditionEntry("G40.909", ICD, "", dt.date(2010, 1, 1), None, "a"),
         ConditionEntry("R55", ICD, "", dt.date(2020, 1, 1), dt.date(2020, 2, 1), "b"),
         ConditionEntry("I10", ICD, "", None, None, "c")]
    m = [MedicationEntry("N03AX14", None, "lev", dt.date(2019, 1, 1), dt.date(2020, 1, 31), "m1"),
         MedicationEntry("N05BA06", None, "lor", dt.date(2020, 1, 15), None, "m2")]
    rec = PatientRecord("p", "M", dt.date(2000, 1, 1), "Asian", None, tuple(c), tuple(m))
    tz = dt.timezone(dt.timedelta(hours=-5))
    # 2020-01-31 23:30 at UTC-5 is 2020-02-01 in UTC: the session's own calendar day counts
    at = rec.codes_at(dt.datetime(2020, 1, 31, 23, 30, tzinfo=tz))
    assert at.icd10 == ("R55", "G40.909", "I10")  # most recent onset first, unknown last
    assert at.atc == ("N05BA06", "N03AX14")  # end day inclusive
    later = rec.codes_at(dt.date(2020, 2, 1))
    assert later.icd10 == ("G40.909", "I10") and later.atc == ("N05BA06",)  # abatement day exclusive
    assert rec.age_at(dt.date(1999, 1, 1)) is None
    assert rec.session("x") is None and rec.encounter("x") is None
    with pytest.raises(TypeError, match="datetime.date"):
        rec.codes_at("2020-01-01")  # type: ignore[arg-type]

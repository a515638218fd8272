"""FHIR R4 export of synthetic patients: one ``Bundle`` (type ``collection``) per patient.

The bundle holds what a hospital's FHIR server would return for an EEG patient:

* ``Patient``: fake name, birth date, MRN identifier (type ``MR``), gender, race as the
  US Core race extension (OMB category where one exists, the CLEF class as ``text``);
  ``Hispanic/Latino`` is written as the US Core *ethnicity* extension (and as race text).
* ``Organization``: the site(s), referenced as ``serviceProvider`` and
  ``managingOrganization``.
* ``Encounter``: ``class`` (v3 ActCode ``AMB`` outpatient, ``IMP`` inpatient/EMU,
  ``ACUTE`` ICU), ``type`` giving the EEG care setting (:data:`SETTING_SYSTEM`:
  ``routine``/``emu``/``icu``), ``location`` (display), ``period``.
* ``Condition``: ICD-10-CM coding (:data:`ICD10_SYSTEM`), ``onsetDateTime``,
  ``abatementDateTime`` for resolved problems, ``clinicalStatus``.
* ``MedicationStatement``: ``medicationCodeableConcept`` with an ATC coding
  (:data:`ATC_SYSTEM`) and, when the ingredient RxCUI is known, an RxNorm coding
  (:data:`RXNORM_SYSTEM`); ``effectivePeriod`` start (and end when stopped);
  ``reasonReference`` to the indicating Condition.
* ``Procedure``: one per EEG session (SNOMED CT 54550000 Electroencephalogram) with the
  session id as identifier (:data:`SESSION_SYSTEM`), ``performedPeriod`` and encounter.

Ids are deterministic (derived from the patient id) and satisfy FHIR's id syntax.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Iterator

from clef.synthetic.catalogue import CONDITIONS
from clef.synthetic.records import Condition, Encounter, Medication, Patient, Population, SessionTruth
from ehr.atc import atc_name

__all__ = [
    "ATC_SYSTEM",
    "BASE_URL",
    "ICD10_SYSTEM",
    "MRN_SYSTEM",
    "RXNORM_SYSTEM",
    "SESSION_SYSTEM",
    "SETTING_SYSTEM",
    "SITE_SYSTEM",
    "patient_bundle",
    "population_bundles",
    "validate_bundle",
]

BASE_URL = "https://clef.example.org/fhir"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
ATC_SYSTEM = "http://www.whocc.no/atc"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED_SYSTEM = "http://snomed.info/sct"
MRN_SYSTEM = f"{BASE_URL}/sid/mrn"
SITE_SYSTEM = f"{BASE_URL}/sid/site"
SESSION_SYSTEM = f"{BASE_URL}/sid/eeg-session"
SETTING_SYSTEM = f"{BASE_URL}/CodeSystem/eeg-care-setting"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
OMB_SYSTEM = "urn:oid:2.16.840.1.113883.6.238"
NULL_FLAVOR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

_OMB_RACE: dict[str, tuple[str, str, str]] = {
    "White": (OMB_SYSTEM, "2106-3", "White"),
    "Black": (OMB_SYSTEM, "2054-5", "Black or African American"),
    "Asian": (OMB_SYSTEM, "2028-9", "Asian"),
    "American Indian/Alaska Native": (OMB_SYSTEM, "1002-5", "American Indian or Alaska Native"),
    "Native Hawaiian/Pacific Islander": (OMB_SYSTEM, "2076-8", "Native Hawaiian or Other Pacific Islander"),
    "Unknown": (NULL_FLAVOR_SYSTEM, "UNK", "Unknown"),
}
_SETTING_DISPLAY = {"routine": "Routine EEG", "emu": "Epilepsy monitoring unit (video-EEG)",
                    "icu": "Intensive care unit (continuous EEG)"}
_LOCATION = {"routine": "EEG laboratory", "emu": "Epilepsy Monitoring Unit", "icu": "Neurocritical Care Unit"}


def _ref(rtype: str, rid: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": f"{rtype}/{rid}"}
    if display:
        out["display"] = display
    return out


def _iso(value: dt.date | dt.datetime) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # FHIR dateTime with a time needs a zone
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat(timespec="seconds")
    return value.isoformat()


def _site_org_id(site: str) -> str:
    return f"site-{site}"


def _patient_resource(p: Patient, site_name: str | None) -> dict[str, Any]:
    race_ext: list[dict[str, Any]] = []
    omb = _OMB_RACE.get(p.race)
    if omb is not None:
        race_ext.append({"url": "ombCategory", "valueCoding": {"system": omb[0], "code": omb[1], "display": omb[2]}})
    elif p.race == "Other":
        race_ext.append({"url": "detailed", "valueCoding": {"system": OMB_SYSTEM, "code": "2131-1",
                                                             "display": "Other Race"}})
    race_ext.append({"url": "text", "valueString": p.race})
    extensions: list[dict[str, Any]] = [{"url": US_CORE_RACE, "extension": race_ext}]
    hispanic = p.race == "Hispanic/Latino"
    eth_code, eth_display = ("2135-2", "Hispanic or Latino") if hispanic else ("2186-5", "Not Hispanic or Latino")
    if p.race != "Unknown":
        extensions.append({"url": US_CORE_ETHNICITY, "extension": [
            {"url": "ombCategory", "valueCoding": {"system": OMB_SYSTEM, "code": eth_code, "display": eth_display}},
            {"url": "text", "valueString": eth_display},
        ]})
    return {
        "resourceType": "Patient",
        "id": p.patient_id,
        "extension": extensions,
        "identifier": [{
            "use": "usual",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR",
                                 "display": "Medical record number"}], "text": "MRN"},
            "system": MRN_SYSTEM,
            "value": p.mrn,
        }],
        "active": True,
        "name": [{"use": "official", "family": p.family_name, "given": [p.given_name],
                  "text": f"{p.given_name} {p.family_name}"}],
        "gender": p.sex,
        "birthDate": _iso(p.birth_date),
        "managingOrganization": _ref("Organization", _site_org_id(p.site), site_name),
    }


def _organization(site_id: str, name: str | None) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": _site_org_id(site_id),
        "identifier": [{"system": SITE_SYSTEM, "value": site_id}],
        "active": True,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov",
                              "display": "Healthcare Provider"}]}],
        "name": name or site_id,
    }


def _encounter(e: Encounter, patient_id: str, site_name: str | None) -> dict[str, Any]:
    if e.setting == "icu":
        cls = ("ACUTE", "inpatient acute")
    elif e.inpatient:
        cls = ("IMP", "inpatient encounter")
    else:
        cls = ("AMB", "ambulatory")
    out: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": e.encounter_id,
        "status": "finished",
        "class": {"system": ACT_CODE_SYSTEM, "code": cls[0], "display": cls[1]},
        "type": [{"coding": [{"system": SETTING_SYSTEM, "code": e.setting, "display": _SETTING_DISPLAY[e.setting]}],
                  "text": _SETTING_DISPLAY[e.setting]}],
        "subject": _ref("Patient", patient_id),
        "period": {"start": _iso(e.start), "end": _iso(e.end)},
        "location": [{"location": {"display": f"{site_name or e.site} {_LOCATION[e.setting]}"}, "status": "completed"}],
        "serviceProvider": _ref("Organization", _site_org_id(e.site), site_name),
    }
    if e.reason:
        out["reasonCode"] = [{"text": e.reason.replace("_", " ")}]
    return out


def _condition(c: Condition, rid: str, patient_id: str) -> dict[str, Any]:
    status = "resolved" if c.abatement is not None else "active"
    out: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": status}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "encounter-diagnosis" if c.encounter_id else "problem-list-item"}]}],
        "code": {"coding": [{"system": ICD10_SYSTEM, "code": c.code, "display": c.display}],
                 "text": CONDITIONS[c.key].label},
        "subject": _ref("Patient", patient_id),
        "onsetDateTime": _iso(c.onset),
        "recordedDate": _iso(c.onset),
    }
    if c.encounter_id:
        out["encounter"] = _ref("Encounter", c.encounter_id)
    if c.abatement is not None:
        out["abatementDateTime"] = _iso(c.abatement)
    return out


def _medication(m: Medication, rid: str, patient_id: str, reason_id: str | None) -> dict[str, Any]:
    codings = [{"system": ATC_SYSTEM, "code": m.atc, "display": atc_name(m.atc) or m.name}]
    if m.rxnorm:
        codings.append({"system": RXNORM_SYSTEM, "code": m.rxnorm, "display": m.name})
    period: dict[str, str] = {"start": _iso(m.start)}
    if m.end is not None:
        period["end"] = _iso(m.end)
    out: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": rid,
        "status": "active" if m.end is None else "completed",
        "medicationCodeableConcept": {"coding": codings, "text": m.name},
        "subject": _ref("Patient", patient_id),
        "effectivePeriod": period,
        "dateAsserted": _iso(m.start),
    }
    if m.encounter_id:
        out["context"] = _ref("Encounter", m.encounter_id)
    if reason_id:
        out["reasonReference"] = [_ref("Condition", reason_id)]
    return out


def _procedure(s: SessionTruth, patient_id: str) -> dict[str, Any]:
    end = s.start + dt.timedelta(seconds=float(s.duration_s))
    return {
        "resourceType": "Procedure",
        "id": s.session_id,
        "identifier": [{"system": SESSION_SYSTEM, "value": s.session_id}],
        "status": "completed",
        "code": {"coding": [{"system": SNOMED_SYSTEM, "code": "54550000", "display": "Electroencephalogram"}],
                 "text": "EEG"},
        "subject": _ref("Patient", patient_id),
        "encounter": _ref("Encounter", s.encounter_id),
        "performedPeriod": {"start": _iso(s.start), "end": _iso(end)},
    }


def patient_bundle(patient: Patient, sessions: Iterable[SessionTruth],
                   site_names: dict[str, str] | None = None) -> dict[str, Any]:
    """A FHIR R4 ``Bundle`` (type ``collection``) of one patient, as a JSON-ready dict.

    Parameters
    ----------
    patient : Patient
    sessions : iterable of SessionTruth
        The patient's EEG sessions (one ``Procedure`` each); all must belong to
        ``patient``.
    site_names : dict, optional
        Site id → organisation name (e.g. from ``PopulationConfig.sites``); the site id
        is used otherwise.

    Returns
    -------
    dict
        Validates with ``fhir.resources.R4B.bundle.Bundle.model_validate`` (see
        :func:`validate_bundle`).
    """
    sessions = list(sessions)
    wrong = [s.session_id for s in sessions if s.patient_id != patient.patient_id]
    if wrong:
        raise ValueError(f"sessions {wrong} do not belong to patient {patient.patient_id}")
    names = site_names or {}
    pid = patient.patient_id
    resources: list[dict[str, Any]] = [_patient_resource(patient, names.get(patient.site))]
    sites = sorted({patient.site, *(e.site for e in patient.encounters)})
    resources += [_organization(s, names.get(s)) for s in sites]
    resources += [_encounter(e, pid, names.get(e.site)) for e in patient.encounters]
    cond_ids: dict[int, str] = {}
    for n, c in enumerate(patient.conditions, 1):
        cond_ids[id(c)] = f"{pid}-C{n:02d}"
        resources.append(_condition(c, cond_ids[id(c)], pid))
    for n, m in enumerate(patient.medications, 1):
        reason = _indicating_condition(patient, m)
        resources.append(_medication(m, f"{pid}-M{n:02d}", pid, cond_ids.get(id(reason)) if reason else None))
    resources += [_procedure(s, pid) for s in sessions]
    return {
        "resourceType": "Bundle",
        "id": f"{pid}-bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"{BASE_URL}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def _indicating_condition(patient: Patient, m: Medication) -> Condition | None:
    """The condition a drug was prescribed for: same key and code, latest onset not after the start."""
    best: Condition | None = None
    for c in patient.conditions:
        if c.key == m.indication and c.code == m.indication_code and c.onset <= m.start:
            if best is None or c.onset > best.onset:
                best = c
    if best is None:
        best = next((c for c in patient.conditions if c.key == m.indication), None)
    return best


def population_bundles(population: Population) -> Iterator[dict[str, Any]]:
    """One bundle per patient of a population, in patient order."""
    names = {s.site_id: s.name for s in population.config.sites}
    by_patient: dict[str, list[SessionTruth]] = {}
    for s in population.sessions:
        by_patient.setdefault(s.patient_id, []).append(s)
    for p in population.patients:
        yield patient_bundle(p, by_patient.get(p.patient_id, []), site_names=names)


def validate_bundle(bundle: dict[str, Any]) -> Any:
    """Validate a bundle dict with ``fhir.resources`` (R4B); returns the parsed model."""
    from fhir.resources.R4B.bundle import Bundle

    return Bundle.model_validate(bundle)

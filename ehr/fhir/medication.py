"""FHIR ``MedicationStatement``, ``MedicationRequest``, ``MedicationAdministration`` and ``Medication``.

A drug is read as its ATC code: an ATC coding, else its RxNorm code mapped with
:func:`ehr.atc.atc_for_rxnorm`, else its name (coding display or text, also without
trailing strength and form words) mapped with :func:`ehr.atc.atc_for_name`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from ehr.atc import atc_for_name, atc_for_rxnorm, atc_name, is_atc_code, rxnorm_for_atc
from ehr.fhir.collector import Collector, Urls
from ehr.fhir.values import DROP_STATUS, as_date, codings, is_atc_system, is_rxnorm_system
from ehr.record import MedicationEntry

__all__ = ["PendingMedication", "read_medication", "read_medication_resource", "resolve_medication_references"]

log = logging.getLogger(__name__)


@dataclass
class PendingMedication:
    """A medication resource whose ``Medication`` (its code) may come later in the input."""

    patient_id: str
    medication_id: str
    start: dt.date | None
    end: dt.date | None
    resource_id: str
    resource_type: str
    source: str


def read_medication_resource(col: Collector, m: Any, src: str, urls: Urls) -> None:
    """A ``Medication``: its code, for the statements, requests and administrations that reference it."""
    if m.id:
        col.medication_codes[m.id] = m.code


def read_medication(col: Collector, m: Any, src: str, urls: Urls) -> None:
    """A ``MedicationStatement``, ``MedicationRequest`` or ``MedicationAdministration``: drug and dates."""
    rtype = m.get_resource_type()
    if m.status in DROP_STATUS:
        log.debug("dropping %s %s with status %s", rtype, m.id, m.status)
        return
    pid = col.subject(m, src, urls)
    if pid is None:
        return
    rid = m.id or src
    if rtype == "MedicationRequest":
        vp = m.dispenseRequest.validityPeriod if m.dispenseRequest is not None else None
        start_raw = (vp.start if vp is not None and vp.start is not None else m.authoredOn)
        end_raw = vp.end if vp is not None else None
    else:
        ep = m.effectivePeriod
        if ep is not None:
            start_raw, end_raw = ep.start, ep.end
        else:
            start_raw = end_raw = m.effectiveDateTime
    start = col.check_past(start_raw, as_date(start_raw), f"{rtype} start", src, m)
    end = as_date(end_raw, end=True)
    concept = m.medicationCodeableConcept
    if concept is None and m.medicationReference is not None:
        ref = m.medicationReference.reference or ""
        if ref.startswith("#"):
            concept = next((r.code for r in m.contained or []
                            if r.get_resource_type() == "Medication" and r.id == ref[1:]), None)
            if concept is None:
                col.problem(src, rtype, m.id, f"contained Medication {ref} not found; skipped")
                return
        else:
            med_id = col.ref_id(m.medicationReference, "Medication", urls)
            if med_id is None:
                col.problem(src, rtype, m.id, f"cannot resolve medicationReference {ref!r}; skipped")
                return
            col.pending_meds.append(PendingMedication(pid, med_id, start, end, rid, rtype, src))
            return
    _add_medication(col, pid, concept, start, end, rid, rtype, m.id, src)


def _add_medication(col: Collector, pid: str, concept: Any, start: dt.date | None, end: dt.date | None, rid: str,
                    rtype: str, model_id: str | None, src: str) -> None:
    """Map the drug to ATC (:func:`_map_medication`) and add it, or record why it cannot be."""
    mapped = _map_medication(concept)
    if isinstance(mapped, str):
        col.problem(src, rtype, model_id, mapped)
        return
    atc, rx, name, note = mapped
    if note:
        col.problem(src, rtype, model_id, note)
    col.medications.setdefault(pid, []).append(MedicationEntry(atc, rx, name, start, end, rid))


def resolve_medication_references(col: Collector) -> None:
    """Add the medications that referenced a ``Medication`` resource, now that the whole input is read."""
    for pm in col.pending_meds:
        concept = col.medication_codes.get(pm.medication_id)
        if concept is None:
            col.problem(pm.source, pm.resource_type, pm.resource_id.split("#")[0],
                        f"medicationReference Medication/{pm.medication_id} not found in the input; skipped")
            continue
        _add_medication(col, pm.patient_id, concept, pm.start, pm.end, pm.resource_id, pm.resource_type,
                        pm.resource_id, pm.source)


def _map_medication(concept: Any) -> tuple[str | None, str | None, str, str | None] | str:
    """(atc, rxnorm, name, note) for a medication concept, or the reason it cannot be mapped."""
    if concept is None:
        return "no medication code (no medicationCodeableConcept or medicationReference); skipped"
    atc: str | None = None
    rxnorms: list[str] = []
    names: list[str] = []
    for c in codings(concept):
        code = (c.code or "").strip()
        if is_atc_system(c.system) and code and atc is None and is_atc_code(code.upper()):
            atc = code.upper()
        elif is_rxnorm_system(c.system) and code:
            rxnorms.append(code)
        if c.display:
            names.append(c.display)
    if concept.text:
        names.insert(0, concept.text)
    if atc is None:
        atc = next((a for a in (atc_for_rxnorm(r) for r in rxnorms) if a), None)
    if atc is None:
        atc = next((a for n in names for a in (atc_for_name(x) for x in _drug_name_candidates(n)) if a), None)
    rx = rxnorms[0] if rxnorms else (rxnorm_for_atc(atc) if atc else None)
    name = names[0] if names else (atc_name(atc) if atc else None) or atc or rx or ""
    if atc is None:
        if rx is not None:
            return None, rx, name, f"RxNorm {rx} ({name or 'no name'}) is not in the ATC table; kept without ATC"
        return (f"no mappable medication code: no ATC coding, RxNorm {rxnorms or 'none'}, names {names or 'none'} "
                "not in the ATC table; skipped")
    return atc, rx, name, None


def _drug_name_candidates(name: str) -> list[str]:
    """``"Levetiracetam 500 MG Oral Tablet"`` → full name, then the words before the first number."""
    name = " ".join(name.split())
    out = [name]
    words = name.split(" ")
    number = next((i for i, w in enumerate(words) if any(ch.isdigit() for ch in w)), 0)
    if number > 0:
        out.append(" ".join(words[:number]))
    first = re.split(r"[\s,(\[]", name, maxsplit=1)[0]
    if first and first not in out:
        out.append(first)
    return out

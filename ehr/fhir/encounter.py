"""FHIR ``Encounter`` and the ``Organization`` that names its site."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ehr.fhir.collector import Collector, Urls
from ehr.fhir.values import as_datetime, codings, norm_system
from ehr.record import EncounterEntry

__all__ = ["PendingEncounter", "encounter_entries", "read_encounter", "read_organization"]


@dataclass
class PendingEncounter:
    """An encounter whose site is named once every Organization is read."""

    patient_id: str
    encounter_id: str
    start: dt.datetime | None
    end: dt.datetime | None
    org_id: str | None
    org_display: str | None
    setting: str | None
    care_class: str | None


def read_organization(col: Collector, o: Any, src: str, urls: Urls) -> None:
    """An ``Organization`` names the site of encounters: its first identifier value, else its name."""
    if not o.id:
        return
    ident = next((i.value for i in o.identifier or [] if i.value), None)
    col.organizations[o.id] = ident or o.name or o.id


def read_encounter(col: Collector, e: Any, src: str, urls: Urls) -> None:
    """An ``Encounter``: period, class, care setting (a ``type`` coding of an ``eeg-care-setting`` system), site."""
    pid = col.subject(e, src, urls)
    if pid is None or not e.id:
        if pid is not None:
            col.problem(src, "Encounter", None, "Encounter has no id; skipped")
        return
    period = e.period
    start = as_datetime(period.start) if period else None
    if start is not None and col.check_past(period.start, start.date(), "Encounter.period.start", src, e) is None:
        start = None
    end = as_datetime(period.end) if period else None
    setting = None
    for concept in e.type or []:
        for c in codings(concept):
            if norm_system(c.system).endswith("eeg-care-setting") and c.code:
                setting = c.code
                break
        if setting:
            break
    care_class = getattr(e.class_fhir, "code", None) if e.class_fhir is not None else None
    sp = e.serviceProvider
    col.encounters.append(PendingEncounter(
        pid, e.id, start, end, col.ref_id(sp, "Organization", urls),
        getattr(sp, "display", None) if sp is not None else None, setting, care_class))


def encounter_entries(col: Collector) -> dict[str, list[EncounterEntry]]:
    """Every encounter read, per patient, its site named by its Organization when the input has it."""
    encounters: dict[str, list[EncounterEntry]] = {}
    for pe in col.encounters:
        site = col.organizations.get(pe.org_id or "") or pe.org_display or pe.org_id
        encounters.setdefault(pe.patient_id, []).append(
            EncounterEntry(pe.encounter_id, pe.start, pe.end, site, pe.setting, pe.care_class))
    return encounters

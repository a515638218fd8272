"""FHIR values read by every resource reader: coding systems, codings, dates and statuses."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import Any

__all__ = [
    "ATC_SYSTEMS",
    "DROP_STATUS",
    "ICD10_SYSTEMS",
    "RXNORM_SYSTEMS",
    "SNOMED_EEG",
    "SNOMED_SYSTEM",
    "US_CORE_ETHNICITY",
    "US_CORE_RACE",
    "as_date",
    "as_datetime",
    "codings",
    "is_atc_system",
    "is_icd_system",
    "is_rxnorm_system",
    "norm_system",
    "repair_naive_datetimes",
]

#: Coding systems read as ICD-10-CM (also any system whose URI contains ``icd-10`` / ``icd10``).
ICD10_SYSTEMS: frozenset[str] = frozenset({
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10",
    "urn:oid:2.16.840.1.113883.6.90",  # ICD-10-CM
    "urn:oid:2.16.840.1.113883.6.3",  # ICD-10 (WHO)
})
#: Coding systems read as ATC.
ATC_SYSTEMS: frozenset[str] = frozenset({"http://www.whocc.no/atc", "urn:oid:2.16.840.1.113883.6.73"})
#: Coding systems read as RxNorm.
RXNORM_SYSTEMS: frozenset[str] = frozenset({"http://www.nlm.nih.gov/research/umls/rxnorm",
                                            "urn:oid:2.16.840.1.113883.6.88"})
SNOMED_SYSTEM = "http://snomed.info/sct"
SNOMED_EEG = "54550000"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"

#: Statuses (verification or resource status) whose resource is dropped.
DROP_STATUS = frozenset({"entered-in-error", "not-taken", "cancelled", "refuted", "not-done"})

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
_NAIVE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")


def repair_naive_datetimes(data: Any, path: str = "") -> list[str]:
    """Give zone-less ``dateTime`` strings an explicit ``+00:00``, in place; return where.

    FHIR requires a zone on a dateTime with a time; many hospital exports omit it. The
    wall-clock time (and so the calendar day CLEF uses) is kept as written.

    Parameters
    ----------
    data : dict or list
        A resource's JSON (modified in place).
    path : str
        Prefix of the reported locations.

    Returns
    -------
    list of str
        Dotted locations of the repaired values (``onsetDateTime``, ``effectivePeriod.start``).
    """
    fixed: list[str] = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in list(items):
        where = f"{path}.{key}" if path else str(key)
        if isinstance(value, str) and _NAIVE_DATETIME.match(value):
            data[key] = value + "+00:00"
            fixed.append(where)
        elif isinstance(value, (dict, list)):
            fixed += repair_naive_datetimes(value, where)
    return fixed


def as_date(value: Any, *, end: bool = False) -> dt.date | None:
    """A FHIR date/dateTime (model value) as a calendar day; partial dates expand per ``end``."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    m = _PARTIAL.match(str(value).strip())
    if not m:
        return None
    year = int(m.group(1))
    if m.group(2) is None:
        return dt.date(year, 12, 31) if end else dt.date(year, 1, 1)
    month = int(m.group(2))
    if not 1 <= month <= 12:
        return None
    return dt.date(year, month, calendar.monthrange(year, month)[1]) if end else dt.date(year, month, 1)


def as_datetime(value: Any) -> dt.datetime | None:
    """A FHIR date/dateTime (model value) as a datetime; a date is read as its midnight."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    day = as_date(value)
    return dt.datetime.combine(day, dt.time()) if day is not None else None


def norm_system(system: str | None) -> str:
    """A coding system URI compared case-blind, without a trailing slash."""
    return (system or "").strip().rstrip("/").lower()


_ICD_LOWER = frozenset(s.lower() for s in ICD10_SYSTEMS)
_ATC_LOWER = frozenset(s.lower() for s in ATC_SYSTEMS)
_RX_LOWER = frozenset(s.lower() for s in RXNORM_SYSTEMS)


def is_icd_system(system: str | None) -> bool:
    """An ICD-10(-CM) coding system, by URI, OID or name."""
    s = norm_system(system)
    return s in _ICD_LOWER or "icd-10" in s or "icd10" in s


def codings(concept: Any) -> list[Any]:
    """The codings of a CodeableConcept (none for a missing one)."""
    return list(getattr(concept, "coding", None) or []) if concept is not None else []


def is_atc_system(system: str | None) -> bool:
    """The ATC coding system, by URI or OID."""
    return norm_system(system) in _ATC_LOWER


def is_rxnorm_system(system: str | None) -> bool:
    """The RxNorm coding system, by URI or OID."""
    return norm_system(system) in _RX_LOWER

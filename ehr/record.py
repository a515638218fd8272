"""The de-identified EHR record of one patient, as read from FHIR (:mod:`ehr.fhir`).

A :class:`PatientRecord` holds what CLEF needs from the EHR and nothing that identifies
the patient: no name, MRN, address or telecom. ``patient_id`` is the FHIR
``Patient.id`` (a pseudonymous key of the export); the birth date is kept because ages
are computed from it.

Active-at semantics
-------------------
The question "what did the patient have at this session?" is answered on the *calendar
day* of the session, in the session's own time zone (``when.date()`` of an aware
datetime; no conversion to UTC), as clinical coding is day-resolved:

* a condition is active on ``day`` when ``onset <= day`` and (no abatement or
  ``day < abatement``): the abatement day itself is no longer active;
* a medication is active on ``day`` when ``start <= day <= end``: FHIR ``Period.end`` is
  inclusive, so a drug stopped on the session day was still taken that day;
* an unknown onset / start counts as "since forever" and an unknown abatement / end as
  "ongoing" (a problem-list entry without dates is active).

These are exactly the rules of the synthetic hospital's ground truth.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DAYS_PER_YEAR",
    "CodeSet",
    "ConditionEntry",
    "EncounterEntry",
    "MedicationEntry",
    "PatientRecord",
    "SessionEntry",
]

#: Mean length of a year in days; ages are ``days / DAYS_PER_YEAR``.
DAYS_PER_YEAR = 365.25

_MIN_DATE = dt.date.min


def _day(when: dt.date | dt.datetime) -> dt.date:
    """Calendar day of ``when`` in its own time zone (a date is returned as is)."""
    if isinstance(when, dt.datetime):
        return when.date()
    if isinstance(when, dt.date):
        return when
    raise TypeError(f"expected a datetime.date or datetime.datetime, found {type(when).__name__}: {when!r}")


@dataclass(frozen=True)
class ConditionEntry:
    """One diagnosis (FHIR ``Condition``) coded in ICD-10-CM.

    Attributes
    ----------
    code : str
        Dotted, upper-case ICD-10-CM code (``"G40.909"``).
    system : str
        The coding system URI the code was read from.
    display : str
        Human-readable name (the coding's display, else the ICD-10-CM description).
    onset, abatement : datetime.date or None
        First day active / first day no longer active; None when unknown.
    resource_id : str
        FHIR ``Condition.id`` (or a ``source#n`` locator when the resource had none).
    """

    code: str
    system: str
    display: str
    onset: dt.date | None
    abatement: dt.date | None
    resource_id: str

    def active_on(self, when: dt.date | dt.datetime) -> bool:
        """True when the condition is active on the calendar day of ``when``."""
        day = _day(when)
        return (self.onset is None or self.onset <= day) and (self.abatement is None or day < self.abatement)


@dataclass(frozen=True)
class MedicationEntry:
    """One drug exposure (``MedicationStatement``, ``MedicationRequest`` or ``MedicationAdministration``).

    Attributes
    ----------
    atc : str or None
        ATC code (substance level where known); None when only an RxNorm code that the
        curated ATC table cannot map was given.
    rxnorm : str or None
        RxNorm RxCUI, given or derived from the ATC code.
    name : str
        Drug name as written (text or coding display), else the WHO name.
    start, end : datetime.date or None
        First and last day of the exposure (``end`` inclusive); None when unknown.
    resource_id : str
        FHIR resource id.
    """

    atc: str | None
    rxnorm: str | None
    name: str
    start: dt.date | None
    end: dt.date | None
    resource_id: str

    def active_on(self, when: dt.date | dt.datetime) -> bool:
        """True when the drug is taken on the calendar day of ``when`` (end inclusive)."""
        day = _day(when)
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class EncounterEntry:
    """A visit or admission (FHIR ``Encounter``).

    Attributes
    ----------
    encounter_id : str
        FHIR ``Encounter.id``.
    start, end : datetime.datetime or None
        ``Encounter.period`` (naive midnight when only a date was given).
    site : str or None
        The ``serviceProvider`` organisation: its first identifier value, else its name,
        else the reference's display or id.
    setting : str or None
        EEG care setting (``routine``/``emu``/``icu``) from a ``type`` coding of an
        ``.../eeg-care-setting`` code system; None when absent.
    care_class : str or None
        ``Encounter.class`` code (v3 ActCode: ``AMB``, ``IMP``, ``ACUTE``, ``EMER`` ...).
    """

    encounter_id: str
    start: dt.datetime | None
    end: dt.datetime | None
    site: str | None
    setting: str | None
    care_class: str | None


@dataclass(frozen=True)
class SessionEntry:
    """One EEG session (FHIR ``Procedure``).

    Attributes
    ----------
    session_id : str
        Value of the ``.../eeg-session`` identifier, else the Procedure id.
    start : datetime.datetime or None
        ``performedPeriod.start`` or ``performedDateTime``.
    encounter_id : str or None
        The encounter the session belongs to.
    """

    session_id: str
    start: dt.datetime | None
    encounter_id: str | None


@dataclass(frozen=True)
class CodeSet:
    """What the EHR says about a patient at one moment: the input of :func:`ehr.vocab.ehr_tokens`.

    Attributes
    ----------
    icd10 : tuple of str
        Distinct active ICD-10-CM codes in *priority order*: most recent onset first
        (unknown onset last, ties by code). Truncation keeps the first ones.
    atc : tuple of str
        Distinct active ATC codes, most recent start first (same rule).
    age : float or None
        Age in years (``days / 365.25``); None when the birth date is unknown.
    sex : {"F", "M"} or None
    race : str or None
        CLEF race class; Hispanic or Latino ethnicity is folded in as
        ``"Hispanic/Latino"`` (CLEF's 8 race classes do the same).
    """

    icd10: tuple[str, ...]
    atc: tuple[str, ...]
    age: float | None
    sex: Literal["F", "M"] | None
    race: str | None


def _recent_first(items: list[tuple[dt.date | None, str]]) -> tuple[str, ...]:
    """Distinct codes ordered by date descending (None last), ties by code."""
    best: dict[str, dt.date] = {}
    for when, code in items:
        key = when or _MIN_DATE
        if code not in best or key > best[code]:
            best[code] = key
    return tuple(sorted(best, key=lambda c: (-best[c].toordinal(), c)))


@dataclass(frozen=True)
class PatientRecord:
    """The de-identified EHR of one patient.

    Attributes
    ----------
    patient_id : str
        FHIR ``Patient.id``.
    sex : {"F", "M"} or None
        From ``Patient.gender`` (``other``/``unknown``/absent give None).
    birth_date : datetime.date or None
    race : str or None
        CLEF race class (``White``, ``Black``, ``Asian``, ``American Indian/Alaska
        Native``, ``Native Hawaiian/Pacific Islander``, ``Other``, ``Unknown``,
        ``Hispanic/Latino``) from the US Core race extension; None when absent.
    ethnicity : str or None
        ``"Hispanic or Latino"`` / ``"Not Hispanic or Latino"`` (US Core ethnicity) or None.
    conditions, medications, encounters, sessions : tuple
        Entries sorted by date (unknown first), then code / id.
    """

    patient_id: str
    sex: Literal["F", "M"] | None
    birth_date: dt.date | None
    race: str | None
    ethnicity: str | None
    conditions: tuple[ConditionEntry, ...] = ()
    medications: tuple[MedicationEntry, ...] = ()
    encounters: tuple[EncounterEntry, ...] = ()
    sessions: tuple[SessionEntry, ...] = ()

    def age_at(self, when: dt.date | dt.datetime) -> float | None:
        """Age in years on the calendar day of ``when``.

        Returns
        -------
        float or None
            ``(day - birth_date).days / 365.25``; None when the birth date is unknown or
            after ``when``.
        """
        if self.birth_date is None:
            return None
        days = (_day(when) - self.birth_date).days
        return days / DAYS_PER_YEAR if days >= 0 else None

    def active_conditions(self, when: dt.date | dt.datetime) -> list[ConditionEntry]:
        """Conditions active on the calendar day of ``when`` (onset <= day < abatement)."""
        return [c for c in self.conditions if c.active_on(when)]

    def active_medications(self, when: dt.date | dt.datetime) -> list[MedicationEntry]:
        """Medications taken on the calendar day of ``when`` (start <= day <= end)."""
        return [m for m in self.medications if m.active_on(when)]

    @property
    def race_class(self) -> str | None:
        """Race with Hispanic or Latino ethnicity folded in (the race of :class:`CodeSet`)."""
        return "Hispanic/Latino" if self.ethnicity == "Hispanic or Latino" else self.race

    def codes_at(self, when: dt.date | dt.datetime) -> CodeSet:
        """The :class:`CodeSet` of the patient on the calendar day of ``when``.

        Parameters
        ----------
        when : datetime.date or datetime.datetime
            Typically a session start (``record.session(sid).start``).

        Returns
        -------
        CodeSet
            Active ICD-10-CM and ATC codes (most recent first), age, sex and race.
        """
        meds = [(m.start, m.atc) for m in self.active_medications(when) if m.atc is not None]
        return CodeSet(icd10=_recent_first([(c.onset, c.code) for c in self.active_conditions(when)]),
                       atc=_recent_first(meds), age=self.age_at(when), sex=self.sex, race=self.race_class)

    def session(self, session_id: str) -> SessionEntry | None:
        """The session with this id, or None."""
        return next((s for s in self.sessions if s.session_id == session_id), None)

    def encounter(self, encounter_id: str) -> EncounterEntry | None:
        """The encounter with this id, or None."""
        return next((e for e in self.encounters if e.encounter_id == encounter_id), None)

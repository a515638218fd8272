"""What the population model produces: patients (conditions, drugs, encounters) and each session's truth.

Frozen dataclasses: a generated :class:`Population` is a value. Each
:class:`SessionTruth` converts to the simulator's :class:`~clef.synthetic.spec.SessionSpec`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from clef.synthetic.catalogue import CONDITIONS, SignatureItem
from clef.synthetic.spec import PlantedFinding, SessionSpec, Setting, Side

if TYPE_CHECKING:
    from clef.synthetic.population_config import PopulationConfig

__all__ = ["DAYS_PER_YEAR", "Condition", "Encounter", "Medication", "Patient", "Population", "SessionTruth"]

#: Days per year of age.
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class Condition:
    """A condition of one patient (hidden truth and EHR record).

    Active on ``day`` when ``onset <= day`` and (no abatement or ``day < abatement``).
    """

    key: str
    code: str
    display: str
    onset: dt.date
    abatement: dt.date | None = None
    side: Side | None = None
    severity: float = 0.5
    encounter_id: str | None = None
    signature: tuple[SignatureItem, ...] = field(default=(), repr=False)

    def active_on(self, day: dt.date) -> bool:
        return self.onset <= day and (self.abatement is None or day < self.abatement)

    @property
    def label(self) -> str:
        return CONDITIONS[self.key].label


@dataclass(frozen=True)
class Medication:
    """A drug exposure: active on ``day`` when ``start <= day <= end`` (``end`` None: ongoing)."""

    key: str
    atc: str
    name: str
    rxnorm: str | None
    start: dt.date
    end: dt.date | None
    indication: str
    indication_code: str
    encounter_id: str | None = None

    def active_on(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class Encounter:
    """A visit or admission holding one or more EEG sessions."""

    encounter_id: str
    site: str
    setting: Setting
    inpatient: bool
    start: dt.datetime
    end: dt.datetime
    reason: str | None = None


@dataclass(frozen=True)
class Patient:
    """One synthetic patient, with fake PHI."""

    patient_id: str
    mrn: str
    given_name: str
    family_name: str
    birth_date: dt.date
    sex: Literal["female", "male"]
    race: str
    site: str
    conditions: tuple[Condition, ...]
    medications: tuple[Medication, ...]
    encounters: tuple[Encounter, ...]

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def age_on(self, day: dt.date) -> float:
        return (day - self.birth_date).days / DAYS_PER_YEAR

    def encounter(self, encounter_id: str) -> Encounter:
        for e in self.encounters:
            if e.encounter_id == encounter_id:
                return e
        raise KeyError(f"patient {self.patient_id} has no encounter {encounter_id!r}")


@dataclass(frozen=True)
class SessionTruth:
    """The hidden truth of one EEG session.

    Attributes
    ----------
    session_id, patient_id, encounter_id, site : str
    setting : {"routine", "emu", "icu"}
    start : datetime.datetime
        Local start time, timezone-aware (the site's UTC offset).
    duration_s : float
    age_years : float
        Age at the session.
    condition_codes : tuple of str
        ICD-10-CM codes of the conditions active on the session date.
    atc_codes : tuple of str
        ATC codes of the drugs active on the session date.
    findings : tuple of PlantedFinding
        Findings planted in this session (one per finding name and side).
    mains_hz : float
    seed : int
        Seed of the session's own random stream, for the EEG simulator.
    """

    session_id: str
    patient_id: str
    encounter_id: str
    site: str
    setting: Setting
    start: dt.datetime
    duration_s: float
    age_years: float
    condition_codes: tuple[str, ...]
    atc_codes: tuple[str, ...]
    findings: tuple[PlantedFinding, ...]
    mains_hz: float
    seed: int

    @property
    def date(self) -> dt.date:
        return self.start.date()

    @property
    def finding_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.name for f in self.findings))

    def to_spec(self) -> SessionSpec:
        """The simulator's view of this session."""
        return SessionSpec(
            session_id=self.session_id,
            duration_s=float(self.duration_s),
            age_years=float(self.age_years),
            setting=self.setting,
            findings=self.findings,
            mains_hz=float(self.mains_hz),
            seed=int(self.seed),
        )


@dataclass(frozen=True)
class Population:
    """A generated population: patients, sessions (ordered by patient, then time)."""

    patients: tuple[Patient, ...]
    sessions: tuple[SessionTruth, ...]
    seed: int
    config: PopulationConfig = field(repr=False)

    def patient(self, patient_id: str) -> Patient:
        idx = self._patient_index().get(patient_id)
        if idx is None:
            raise KeyError(f"unknown patient {patient_id!r}")
        return self.patients[idx]

    def sessions_of(self, patient_id: str) -> tuple[SessionTruth, ...]:
        return tuple(s for s in self.sessions if s.patient_id == patient_id)

    def _patient_index(self) -> dict[str, int]:
        cache = self.__dict__.get("_pidx")
        if cache is None:
            cache = {p.patient_id: i for i, p in enumerate(self.patients)}
            object.__setattr__(self, "_pidx", cache)
        return cache

    def sessions_table(self) -> "Any":
        """One row per session (polars DataFrame): ids, site, setting, time, demographics, codes, findings."""
        import polars as pl

        rows = []
        for s in self.sessions:
            p = self.patient(s.patient_id)
            rows.append({
                "session_id": s.session_id, "patient_id": s.patient_id, "encounter_id": s.encounter_id,
                "site": s.site, "setting": s.setting, "start": s.start.replace(tzinfo=None),
                "duration_s": s.duration_s, "age_years": s.age_years, "sex": p.sex, "race": p.race,
                "icd10": list(s.condition_codes), "atc": list(s.atc_codes),
                "findings": list(s.finding_names), "mains_hz": s.mains_hz, "seed": s.seed,
            })
        schema = {"session_id": pl.Utf8, "patient_id": pl.Utf8, "encounter_id": pl.Utf8, "site": pl.Utf8,
                  "setting": pl.Utf8, "start": pl.Datetime("us"), "duration_s": pl.Float64,
                  "age_years": pl.Float64, "sex": pl.Utf8, "race": pl.Utf8, "icd10": pl.List(pl.Utf8),
                  "atc": pl.List(pl.Utf8), "findings": pl.List(pl.Utf8), "mains_hz": pl.Float64,
                  "seed": pl.Int64}
        return pl.DataFrame(rows, schema=schema)

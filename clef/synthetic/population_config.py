"""Configuration of the synthetic hospital's population model: every rate, with plausible defaults.

:class:`PopulationConfig` gathers the sites, demographics, session and admission
patterns, prevalence of chronic conditions (:class:`PrevalenceRule`), treatment
(:class:`TreatmentRule`), ICU and inpatient care (:class:`IcuConfig`,
:class:`InpatientConfig`), the penetrance of EEG signatures and the imperfection of
reports (:class:`ReportConfig`). Conditions, drugs and signature keys are those of the
clinical catalogue (:mod:`clef.synthetic.catalogue`); every reference to them is checked.
The default prevalence and treatment of each chronic condition are data beside the
catalogue (``data/prevalence.yaml``, ``data/treatments.yaml``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from clef.config import FrozenConfig
from clef.synthetic.catalogue import (
    CHRONIC_ORDER,
    CONDITIONS,
    DATA_DIR,
    DEFAULT_PENETRANCE,
    DRUGS,
    RACES,
    SETTINGS,
    SIGNATURE_KEYS,
    CatalogueError,
    read_yaml,
)

__all__ = [
    "AGE_BAND_EDGES",
    "MAX_AGE",
    "AgeBand",
    "DurationBand",
    "IcuConfig",
    "InpatientConfig",
    "PopulationConfig",
    "PrevalenceRule",
    "ReportConfig",
    "SiteConfig",
    "TreatmentRule",
    "read_rules",
]

#: Edges of the 5 age bands every age-dependent rate is given for: [0,18) [18,45) [45,65) [65,80) [80,96).
AGE_BAND_EDGES: tuple[float, ...] = (0.0, 18.0, 45.0, 65.0, 80.0, 96.0)
#: Oldest age of a patient at a session.
MAX_AGE = 95.0


class AgeBand(FrozenConfig):
    """A band of the age distribution: ages uniform in ``[low, high)`` with probability ``weight``."""

    weight: float = Field(ge=0)
    low: float = Field(ge=0, le=MAX_AGE)
    high: float = Field(ge=0, le=MAX_AGE + 1)

    @model_validator(mode="after")
    def _ordered(self) -> "AgeBand":
        if self.high <= self.low:
            raise ValueError(f"age band needs low < high, found [{self.low}, {self.high})")
        return self


class DurationBand(FrozenConfig):
    """A band of session durations: uniform in ``[low_s, high_s]`` with probability ``weight``."""

    weight: float = Field(ge=0)
    low_s: float = Field(gt=0)
    high_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "DurationBand":
        if self.high_s < self.low_s:
            raise ValueError(f"duration band needs low_s <= high_s, found [{self.low_s}, {self.high_s}]")
        return self


def _check_setting_weights(v: Mapping[str, float], what: str) -> None:
    bad = set(v) - set(SETTINGS)
    if bad:
        raise ValueError(f"{what}: unknown settings {sorted(bad)}; expected {SETTINGS}")
    if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
        raise ValueError(f"{what}: weights must be >= 0 with a positive sum, found {dict(v)}")


class SiteConfig(FrozenConfig):
    """A hospital site: id, mains frequency, share of patients and care-setting mix."""

    site_id: str = Field(pattern=r"^[A-Za-z0-9\-\.]{1,32}$")
    name: str
    weight: float = Field(default=1.0, ge=0)
    mains_hz: float = 60.0
    utc_offset_h: float = Field(default=-5.0, ge=-12, le=14)
    setting_mix: dict[str, float] = Field(default_factory=lambda: {"routine": 0.6, "emu": 0.15, "icu": 0.25})
    age_bands: tuple[AgeBand, ...] | None = None

    @field_validator("mains_hz")
    @classmethod
    def _mains(cls, v: float) -> float:
        if v not in (50.0, 60.0):
            raise ValueError(f"mains_hz must be 50 or 60, found {v}")
        return v

    @model_validator(mode="after")
    def _mix(self) -> "SiteConfig":
        _check_setting_weights(self.setting_mix, f"site {self.site_id} setting_mix")
        return self


class PrevalenceRule(FrozenConfig):
    """Probability that a patient has a chronic condition.

    ``by_age`` gives, for each of the 5 age bands (:data:`AGE_BAND_EDGES`, age at the
    first session), the probability for a male patient without the risk factors; a
    female patient's odds are multiplied by ``female_or``, and by ``risk_or[k]`` for
    each condition ``k`` the patient already has (``k`` earlier in :data:`CHRONIC_ORDER`).
    """

    by_age: tuple[float, float, float, float, float]
    female_or: float = Field(default=1.0, gt=0)
    risk_or: dict[str, float] = Field(default_factory=dict)

    @field_validator("by_age")
    @classmethod
    def _probs(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 <= p <= 1.0 for p in v):
            raise ValueError(f"by_age probabilities must lie in [0, 1], found {v}")
        return v


class TreatmentRule(FrozenConfig):
    """How a chronic condition is treated.

    Attributes
    ----------
    p_treated : float
        Probability a patient with the condition gets a first drug.
    drugs : dict
        Drug key → weight for the first (and any second) drug.
    p_second : float
        Probability of an add-on second drug (started later, ongoing).
    p_stop : float
        Probability the first drug is stopped after a while (end date).
    p_switch : float
        Probability the first drug is replaced by another of ``drugs``.
    delay_days : int
        Maximum delay between onset and first prescription.
    """

    p_treated: float = Field(ge=0, le=1)
    drugs: dict[str, float]
    p_second: float = Field(default=0.0, ge=0, le=1)
    p_stop: float = Field(default=0.1, ge=0, le=1)
    p_switch: float = Field(default=0.0, ge=0, le=1)
    delay_days: int = Field(default=60, ge=0)

    @field_validator("drugs")
    @classmethod
    def _drugs(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(DRUGS)
        if unknown:
            raise ValueError(f"unknown drugs {sorted(unknown)}; expected keys of DRUGS")
        if not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"drug weights must be >= 0 with a positive sum, found {v}")
        return v


class IcuConfig(FrozenConfig):
    """ICU admissions: reasons, intubation, sedation and antiseizure drugs.

    Reasons: ``encephalopathy`` (adds encephalopathy/delirium), ``sepsis`` (sepsis, often
    with encephalopathy), ``cardiac_arrest`` (cardiac arrest, often anoxic brain injury),
    ``acute_stroke`` (a new ischaemic stroke), ``status_epilepticus``,
    ``respiratory_failure`` (intubated, nothing neurological), ``other``.
    """

    reasons: dict[str, float] = Field(default_factory=lambda: {
        "encephalopathy": 0.30, "sepsis": 0.12, "cardiac_arrest": 0.12, "acute_stroke": 0.16,
        "status_epilepticus": 0.10, "respiratory_failure": 0.10, "other": 0.10})
    status_epilepticus_or_epilepsy: float = Field(default=4.0, gt=0)
    intubation_p: dict[str, float] = Field(default_factory=lambda: {
        "encephalopathy": 0.25, "sepsis": 0.5, "cardiac_arrest": 0.9, "acute_stroke": 0.35,
        "status_epilepticus": 0.55, "respiratory_failure": 1.0, "other": 0.3})
    sedation_p: float = Field(default=0.85, ge=0, le=1)
    sedatives: dict[str, float] = Field(default_factory=lambda: {"propofol": 0.6, "midazolam": 0.3, "dexmedetomidine": 0.1})
    fentanyl_p: float = Field(default=0.6, ge=0, le=1)
    sepsis_encephalopathy_p: float = Field(default=0.7, ge=0, le=1)
    arrest_anoxic_p: float = Field(default=0.75, ge=0, le=1)
    status_benzo_p: float = Field(default=0.85, ge=0, le=1)
    status_load: dict[str, float] = Field(default_factory=lambda: {"levetiracetam": 0.6, "fosphenytoin": 0.2, "valproate": 0.1, "lacosamide": 0.1})
    asm_prophylaxis_p: float = Field(default=0.25, ge=0, le=1)
    max_days_before_eeg: int = Field(default=3, ge=0)
    max_stay_after_eeg: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "IcuConfig":
        reasons = {"encephalopathy", "sepsis", "cardiac_arrest", "acute_stroke", "status_epilepticus",
                   "respiratory_failure", "other"}
        if set(self.reasons) - reasons or sum(self.reasons.values()) <= 0:
            raise ValueError(f"icu reasons must be a subset of {sorted(reasons)} with a positive sum, found {self.reasons}")
        if set(self.intubation_p) != reasons:
            raise ValueError(f"intubation_p needs exactly the reasons {sorted(reasons)}")
        for name, d in (("sedatives", self.sedatives), ("status_load", self.status_load)):
            if set(d) - set(DRUGS) or sum(d.values()) <= 0:
                raise ValueError(f"{name} must map drug keys to weights, found {d}")
        return self


class InpatientConfig(FrozenConfig):
    """Routine EEGs of inpatients, and EMU rescue benzodiazepines."""

    routine_inpatient_p: tuple[float, float, float, float, float] = (0.08, 0.10, 0.15, 0.25, 0.30)
    encephalopathy_p: float = Field(default=0.45, ge=0, le=1)
    emu_rescue_benzo_p: float = Field(default=0.12, ge=0, le=1)


class ReportConfig(FrozenConfig):
    """Imperfection of the neurologists' reports.

    Attributes
    ----------
    miss_rate : float
        Probability that a finding present in the EEG is not mentioned.
    overcall_rate : float
        Probability that a report asserts one finding absent from the EEG.
    phi_rate : float
        Probability that the report body carries fake PHI (name, MRN, dates, physician).
    """

    miss_rate: float = Field(default=0.15, ge=0, le=1)
    overcall_rate: float = Field(default=0.05, ge=0, le=1)
    phi_rate: float = Field(default=0.5, ge=0, le=1)


def _default_sites() -> tuple[SiteConfig, ...]:
    return (
        SiteConfig(site_id="S01", name="Northgate University Hospital", weight=0.32,
                   setting_mix={"routine": 0.62, "emu": 0.15, "icu": 0.23}),
        SiteConfig(site_id="S02", name="Riverside Medical Center", weight=0.26,
                   setting_mix={"routine": 0.60, "emu": 0.10, "icu": 0.30}),
        SiteConfig(site_id="S03", name="Lakeshore Community Hospital", weight=0.18,
                   setting_mix={"routine": 0.80, "emu": 0.05, "icu": 0.15}),
        SiteConfig(site_id="S04", name="Hillcrest Children's Hospital", weight=0.14,
                   setting_mix={"routine": 0.65, "emu": 0.25, "icu": 0.10},
                   age_bands=(AgeBand(weight=0.25, low=0, high=5), AgeBand(weight=0.40, low=5, high=12),
                              AgeBand(weight=0.35, low=12, high=21))),
        SiteConfig(site_id="S05", name="Eastbridge Neurology Institute", weight=0.10, mains_hz=50.0,
                   utc_offset_h=1.0, setting_mix={"routine": 0.75, "emu": 0.10, "icu": 0.15}),
    )


def _default_age_bands() -> tuple[AgeBand, ...]:
    return (AgeBand(weight=0.08, low=0, high=18), AgeBand(weight=0.27, low=18, high=45),
            AgeBand(weight=0.30, low=45, high=65), AgeBand(weight=0.25, low=65, high=80),
            AgeBand(weight=0.10, low=80, high=MAX_AGE))


def _default_durations() -> dict[str, tuple[DurationBand, ...]]:
    b = DurationBand
    return {
        "routine": (b(weight=0.18, low_s=600, high_s=1200), b(weight=0.42, low_s=1200, high_s=1500),
                    b(weight=0.33, low_s=1500, high_s=2400), b(weight=0.05, low_s=2400, high_s=3600),
                    b(weight=0.02, low_s=3600, high_s=4500)),
        "emu": (b(weight=0.50, low_s=1800, high_s=3600), b(weight=0.40, low_s=3600, high_s=5400),
                b(weight=0.10, low_s=5400, high_s=7200)),
        "icu": (b(weight=0.30, low_s=1200, high_s=1800), b(weight=0.50, low_s=1800, high_s=3600),
                b(weight=0.20, low_s=3600, high_s=7200)),
    }


_Rule = TypeVar("_Rule", bound=BaseModel)


def read_rules(path: Path, model: type[_Rule]) -> dict[str, _Rule]:
    """The rules of a data file (condition key → ``model``), each validated.

    Parameters
    ----------
    path : Path
        A YAML mapping, e.g. ``data/prevalence.yaml``.
    model : type
        :class:`PrevalenceRule` or :class:`TreatmentRule`.

    Raises
    ------
    CatalogueError
        The file is missing or not YAML, or a rule is invalid (the message names the
        file, the condition and the field).
    """
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise CatalogueError(f"{path}: expected a mapping of condition keys to rules, found {type(raw).__name__}")
    out: dict[str, _Rule] = {}
    for key, rule in raw.items():
        try:
            out[key] = model.model_validate(rule)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}" for e in exc.errors())
            raise CatalogueError(f"{path}, {key!r}: {problems}") from None
    return out


#: Defaults of the mappings a configuration is merged onto: the penetrance of the
#: catalogue, the prevalence and treatment of the chronic conditions (data files).
_MERGED_DEFAULTS: dict[str, Mapping[str, Any]] = {
    "penetrance": DEFAULT_PENETRANCE,
    "prevalence": read_rules(DATA_DIR / "prevalence.yaml", PrevalenceRule),
    "treatments": read_rules(DATA_DIR / "treatments.yaml", TreatmentRule),
}


def _default_races() -> dict[str, float]:
    return {"White": 0.60, "Black": 0.12, "Asian": 0.07, "American Indian/Alaska Native": 0.01,
            "Native Hawaiian/Pacific Islander": 0.005, "Other": 0.04, "Unknown": 0.065, "Hispanic/Latino": 0.09}


class PopulationConfig(FrozenConfig):
    """Every rate of the population model (defaults: a plausible EEG-referred population).

    ``penetrance``, ``prevalence`` and ``treatments`` are *merged* onto their defaults,
    so ``PopulationConfig(penetrance={"benzodiazepine:excess_beta": 1.0})`` changes one
    key only.

    Attributes
    ----------
    sites : tuple of SiteConfig
        At least one site; default 5 (one children's hospital, one 50 Hz site).
    study_start, study_end : datetime.date
        Window of the first sessions.
    age_bands : tuple of AgeBand
        Age at the first session (sites may override), 0-95.
    p_female : float
    race_weights : dict
        Over :data:`RACES`.
    sessions_per_patient : tuple of 4 floats
        Weights of 1, 2, 3, 4 sessions.
    mean_gap_days, min_gap_days : float
        Gap between admissions (exponential, at least ``min_gap_days``).
    same_admission_p : float
        After an EMU/ICU session, probability that the next session is the next day in
        the same admission.
    durations : dict
        Setting → duration bands (s). Default routine mostly 20-40 min, EMU/ICU longer.
    emu_or_spells, icu_or_elderly : float
        Multipliers of the site's EMU weight for patients with spells (epilepsy, PNES,
        syncope) and of the ICU weight for patients aged 65+.
    prevalence : dict of PrevalenceRule
        One per chronic condition of :data:`CHRONIC_ORDER`.
    incident_p : float
        Fraction of chronic conditions starting during follow-up (multi-session patients).
    treatments : dict of TreatmentRule
    icu : IcuConfig
    inpatient : InpatientConfig
    penetrance : dict
        Signature key → probability per session (see :class:`SignatureItem`).
    severity_trait_weight : float
        Share of a finding's severity set by the patient's trait (the rest is per session).
    reports : ReportConfig
    """

    sites: tuple[SiteConfig, ...] = Field(default_factory=_default_sites)
    study_start: dt.date = dt.date(2012, 1, 1)
    study_end: dt.date = dt.date(2024, 12, 31)
    age_bands: tuple[AgeBand, ...] = Field(default_factory=_default_age_bands)
    p_female: float = Field(default=0.52, ge=0, le=1)
    race_weights: dict[str, float] = Field(default_factory=_default_races)
    sessions_per_patient: tuple[float, float, float, float] = (0.55, 0.25, 0.12, 0.08)
    mean_gap_days: float = Field(default=270.0, gt=0)
    min_gap_days: int = Field(default=7, ge=2)
    same_admission_p: float = Field(default=0.35, ge=0, le=1)
    durations: dict[str, tuple[DurationBand, ...]] = Field(default_factory=_default_durations)
    emu_or_spells: float = Field(default=3.0, gt=0)
    icu_or_elderly: float = Field(default=1.6, gt=0)
    prevalence: dict[str, PrevalenceRule] = Field(default_factory=lambda: dict(_MERGED_DEFAULTS["prevalence"]))
    incident_p: float = Field(default=0.12, ge=0, le=1)
    treatments: dict[str, TreatmentRule] = Field(default_factory=lambda: dict(_MERGED_DEFAULTS["treatments"]))
    icu: IcuConfig = Field(default_factory=IcuConfig)
    inpatient: InpatientConfig = Field(default_factory=InpatientConfig)
    penetrance: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_PENETRANCE))
    severity_trait_weight: float = Field(default=0.6, ge=0, le=1)
    reports: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("penetrance", "prevalence", "treatments", mode="before")
    @classmethod
    def _merge_onto_defaults(cls, v: Any, info: ValidationInfo) -> Any:
        return {**_MERGED_DEFAULTS[info.field_name], **dict(v)} if isinstance(v, Mapping) else v

    @model_validator(mode="after")
    def _check(self) -> "PopulationConfig":
        if not self.sites:
            raise ValueError("at least one site is required")
        ids = [s.site_id for s in self.sites]
        if len(set(ids)) != len(ids):
            raise ValueError(f"site ids must be unique, found {ids}")
        if sum(s.weight for s in self.sites) <= 0:
            raise ValueError("site weights must have a positive sum")
        if self.study_end <= self.study_start:
            raise ValueError(f"study_end ({self.study_end}) must follow study_start ({self.study_start})")
        if sum(b.weight for b in self.age_bands) <= 0:
            raise ValueError("age band weights must have a positive sum")
        bad = set(self.race_weights) - set(RACES)
        if bad or sum(self.race_weights.values()) <= 0 or any(w < 0 for w in self.race_weights.values()):
            raise ValueError(f"race_weights must weigh classes of {RACES}; unknown {sorted(bad)}")
        if any(w < 0 for w in self.sessions_per_patient) or sum(self.sessions_per_patient) <= 0:
            raise ValueError(f"sessions_per_patient weights must be >= 0 with a positive sum, found {self.sessions_per_patient}")
        if set(self.durations) != set(SETTINGS):
            raise ValueError(f"durations needs exactly the settings {SETTINGS}, found {sorted(self.durations)}")
        for s, bands in self.durations.items():
            if not bands or sum(b.weight for b in bands) <= 0:
                raise ValueError(f"durations[{s!r}] needs bands with a positive weight sum")
        missing = set(CHRONIC_ORDER) - set(self.prevalence)
        unknown = set(self.prevalence) - set(CHRONIC_ORDER)
        if missing or unknown:
            raise ValueError(f"prevalence: missing {sorted(missing)}, unknown {sorted(unknown)} (expected CHRONIC_ORDER)")
        for key, rule in self.prevalence.items():
            pos = CHRONIC_ORDER.index(key)
            for risk, orv in rule.risk_or.items():
                if risk not in CHRONIC_ORDER[:pos]:
                    raise ValueError(f"prevalence[{key!r}].risk_or names {risk!r}, which is not drawn before {key!r}")
                if orv <= 0:
                    raise ValueError(f"prevalence[{key!r}].risk_or[{risk!r}] must be > 0, found {orv}")
        for key, rule in self.treatments.items():
            if key not in CONDITIONS:
                raise ValueError(f"treatments: unknown condition {key!r}")
            for drug in rule.drugs:
                if key not in DRUGS[drug].indications:
                    raise ValueError(f"treatments[{key!r}] prescribes {drug!r}, whose indications are "
                                     f"{sorted(DRUGS[drug].indications)}")
        unknown = set(self.penetrance) - SIGNATURE_KEYS
        if unknown:
            raise ValueError(f"penetrance: unknown keys {sorted(unknown)}; expected {sorted(SIGNATURE_KEYS)}")
        if any(not 0 <= p <= 1 for p in self.penetrance.values()):
            raise ValueError("penetrance values must lie in [0, 1]")
        return self

    def site(self, site_id: str) -> SiteConfig:
        """The site with this id."""
        for s in self.sites:
            if s.site_id == site_id:
                return s
        raise KeyError(f"unknown site {site_id!r}; expected one of {[s.site_id for s in self.sites]}")

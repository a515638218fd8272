"""Population model of the synthetic hospital: who is ill with what, and what their EEGs show.

Like :mod:`mne.simulation`, this is a documented, seeded, fast public module whose hidden
truth is known, so the benchmark can be shown to find planted effects and not absent
ones. :func:`generate_population` draws patients (fake PHI, demographics), their
conditions (real ICD-10-CM codes, with onset and, for acute problems, abatement dates),
their medications (real drugs with ATC codes, prescribed *because of* a condition, with
start/end dates), their encounters (site, care setting, period) and their EEG sessions.
Every session's truth (:class:`~clef.synthetic.records.SessionTruth`) lists the conditions
and drugs active on the session date and the EEG findings planted in it
(:class:`~clef.synthetic.spec.PlantedFinding`), and converts to the simulator's
:class:`~clef.synthetic.spec.SessionSpec`.

What the model knows is kept apart from how it draws: the clinical catalogue (conditions,
drugs, EEG signatures) is data, loaded by :mod:`clef.synthetic.catalogue`; the rates are
:class:`~clef.synthetic.population_config.PopulationConfig`; the output types are in
:mod:`clef.synthetic.records`. This module draws patients, one step after another
(:meth:`_PatientBuilder.build`).

The model
---------
* **Sites** (:class:`~clef.synthetic.population_config.SiteConfig`): an id, a mains
  frequency, a share of patients, a care setting mix (``routine``/``emu``/``icu``) and
  optionally their own age distribution (the default children's hospital sees patients
  aged 0-21).
* **Demographics**: age at the first session from age bands (0-95, children included),
  sex, and race in the 8 classes of CLEF's EHR tokens
  (:data:`~clef.synthetic.catalogue.RACES`).
* **Chronic conditions** (:data:`~clef.synthetic.catalogue.CONDITIONS`, not
  ``admission_only``) are drawn in a fixed order
  (:data:`~clef.synthetic.catalogue.CHRONIC_ORDER`) with an age-band probability
  (:class:`~clef.synthetic.population_config.PrevalenceRule`) moved on the log-odds scale
  by sex and by conditions drawn earlier (comorbidity: stroke is more likely with
  hypertension, diabetes and atrial fibrillation; focal epilepsy with stroke, brain tumour
  and dementia ...). A fraction (``incident_p``) starts between the patient's first and
  last session, so "active at the session" differs between sessions.
* **Sessions**: 1-4 per patient, weeks to years apart; the setting follows the site mix,
  EMU being more likely for patients with spells (epilepsy, PNES, syncope) and ICU for the
  elderly. EMU and ICU admissions may hold several sessions on consecutive days.
* **Acute conditions** come with admissions: an ICU admission has a reason
  (encephalopathy, sepsis, cardiac arrest, acute stroke, status epilepticus, respiratory
  failure, other; :class:`~clef.synthetic.population_config.IcuConfig`) which adds its
  codes (e.g. cardiac arrest → I46.9 and often anoxic brain injury G93.1), intubation
  (J96.00) and ICU drugs (propofol, midazolam, dexmedetomidine, fentanyl, lorazepam,
  antiseizure loading); a routine EEG may be an inpatient one, often for
  encephalopathy/delirium. So encephalopathy and anoxic injury are mostly ICU problems,
  epilepsy is over-represented in the EMU.
* **Medications** follow :class:`~clef.synthetic.population_config.TreatmentRule` per
  condition (probability of treatment, drug weights, second drug, stop, switch). Every
  drug declares its indications (:data:`~clef.synthetic.catalogue.DRUGS`); a drug is only
  ever prescribed for one of them.
* **EEG signatures**: each condition and drug group declares the findings it causes
  (:class:`~clef.synthetic.catalogue.SignatureItem`: finding, severity range, laterality,
  settings, acute window). In each session, each signature key present is planted with its
  penetrance (``PopulationConfig.penetrance``), so an affected patient does not show it in
  every session. Severity combines a per-patient trait and per-session noise.
  Negative-control conditions (hypertension, type 2 diabetes, hyperlipidemia,
  hypothyroidism, depression) and their drugs carry no signature.

Generation is deterministic per ``seed``; patient ``i`` depends only on ``(seed, i)``, so
the first 100 patients of a 200-patient population equal a 100-patient population.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from clef.synthetic.catalogue import (
    CHRONIC_ORDER,
    CONDITIONS,
    DATA_DIR,
    DRUGS,
    EPILEPSY_KEYS,
    SETTINGS,
    SIGNATURE_GROUPS,
    SPELL_KEYS,
    CodeVariant,
    SignatureItem,
    read_yaml,
)
from clef.synthetic.population_config import AGE_BAND_EDGES, MAX_AGE, PopulationConfig, SiteConfig
from clef.synthetic.records import DAYS_PER_YEAR, Condition, Encounter, Medication, Patient, Population, SessionTruth
from clef.synthetic.spec import FINDINGS, PlantedFinding, Side

__all__ = ["generate_population"]


def _age_band(age: float) -> int:
    for i in range(5):
        if age < AGE_BAND_EDGES[i + 1]:
            return i
    return 4


# --------------------------------------------------------------------------------------
# Fake PHI
# --------------------------------------------------------------------------------------

#: Given names by sex and family names (``data/names.yaml``).
_NAMES = read_yaml(DATA_DIR / "names.yaml")

_MRN_MOD = 89_999_999
_MRN_MULT = 37_513_229
assert math.gcd(_MRN_MOD, _MRN_MULT) == 1


def _mrn(index: int, seed: int) -> str:
    """A unique 8-digit MRN per patient index (an affine permutation, offset by the seed)."""
    offset = (seed * 2_654_435_761) % _MRN_MOD
    return str(10_000_000 + (index * _MRN_MULT + offset) % _MRN_MOD)


# --------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, items: Sequence[Any], weights: Sequence[float]) -> Any:
    total = float(sum(weights))
    u = rng.random() * total
    acc = 0.0
    for item, w in zip(items, weights):
        acc += w
        if u < acc:
            return item
    return items[-1]


def _choice_map(rng: np.random.Generator, weights: Mapping[str, float], exclude: Iterable[str] = ()) -> str | None:
    ex = set(exclude)
    keys = [k for k in weights if k not in ex and weights[k] > 0]
    if not keys:
        return None
    return _choice(rng, keys, [weights[k] for k in keys])


def _randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Integer in [lo, hi] inclusive."""
    return lo + int(rng.random() * (hi - lo + 1)) if hi > lo else lo


def _days(n: float) -> dt.timedelta:
    return dt.timedelta(days=int(round(n)))


#: An encounter's start, end, whether it is an admission, and its reason.
_Visit = tuple[dt.datetime, dt.datetime, bool, str | None]


class _PatientBuilder:
    """Mutable state while one patient is generated."""

    def __init__(self, index: int, seed: int, config: PopulationConfig) -> None:
        self.index = index
        self.seed = seed
        self.cfg = config
        self.rng = np.random.default_rng([seed, index])
        self.pid = f"P{index + 1:06d}"
        self.conditions: list[Condition] = []
        self.medications: list[Medication] = []
        self.encounters: list[Encounter] = []
        self.sessions: list[dict[str, Any]] = []
        self.chronic_drugs: set[str] = set()

    # -- helpers --------------------------------------------------------------------
    def _side_of(self, keys: Iterable[str]) -> Side | None:
        for c in self.conditions:
            if c.key in keys and c.side is not None:
                return c.side
        return None

    def _new_condition(self, key: str, onset: dt.date, *, abatement: dt.date | None = None,
                       encounter_id: str | None = None, variant: CodeVariant | None = None,
                       side: Side | None = None) -> Condition:
        rng = self.rng
        cdef = CONDITIONS[key]
        if variant is None:
            variant = _choice(rng, cdef.variants, [v.weight for v in cdef.variants])
        if cdef.lateralized:
            if variant.side is not None:
                side = variant.side
            elif side is None:
                side = "L" if rng.random() < 0.5 else "R"
        else:
            side = None
        severity = float(rng.beta(2.0, 2.0))
        # resolve alternatives (e.g. focal vs generalised IEDs of unspecified epilepsy)
        chosen: dict[str, SignatureItem] = {}
        for alt in sorted({i.alt for i in cdef.signature if i.alt}):
            items = [i for i in cdef.signature if i.alt == alt]
            chosen[alt] = _choice(rng, items, [i.alt_weight for i in items])
        signature = tuple(i for i in cdef.signature if i.alt is None or chosen[i.alt] is i)
        cond = Condition(key=key, code=variant.code, display=variant.display, onset=onset, abatement=abatement,
                         side=side, severity=round(severity, 4), encounter_id=encounter_id, signature=signature)
        self.conditions.append(cond)
        return cond

    def _prescribe(self, drug: str, cond: Condition, start: dt.date, end: dt.date | None,
                   encounter_id: str | None = None) -> Medication:
        d = DRUGS[drug]
        if cond.key not in d.indications:  # pragma: no cover - guarded by config validation
            raise RuntimeError(f"{drug} is not indicated for {cond.key}")
        med = Medication(key=drug, atc=d.atc, name=drug, rxnorm=d.rxnorm, start=start, end=end,
                         indication=cond.key, indication_code=cond.code, encounter_id=encounter_id)
        self.medications.append(med)
        return med

    def _treat_chronic(self, cond: Condition, not_before: dt.date | None = None) -> None:
        rule = self.cfg.treatments.get(cond.key)
        if rule is None:
            return
        rng = self.rng
        if rng.random() >= rule.p_treated:
            return
        first = _choice_map(rng, rule.drugs, exclude=self.chronic_drugs)
        if first is None:
            return
        start = cond.onset + _days(_randint(rng, 0, rule.delay_days))
        if not_before is not None and start < not_before:
            start = not_before
        end: dt.date | None = None
        u = rng.random()
        switched_to: str | None = None
        if u < rule.p_switch:
            end = start + _days(_randint(rng, 60, 1500))
            switched_to = _choice_map(rng, rule.drugs, exclude=self.chronic_drugs | {first})
        elif u < rule.p_switch + rule.p_stop:
            end = start + _days(_randint(rng, 30, 1500))
        self.chronic_drugs.add(first)
        self._prescribe(first, cond, start, end)
        if switched_to is not None and end is not None:
            self.chronic_drugs.add(switched_to)
            self._prescribe(switched_to, cond, end + dt.timedelta(days=1), None)
        if rng.random() < rule.p_second:
            second = _choice_map(rng, rule.drugs, exclude=self.chronic_drugs)
            if second is not None:
                self.chronic_drugs.add(second)
                self._prescribe(second, cond, start + _days(_randint(rng, 30, 720)), None)

    # -- the patient, step by step --------------------------------------------------
    # The steps draw from one random stream in this order; reordering them changes every
    # patient of every seed.
    def build(self) -> tuple[Patient, list[SessionTruth]]:
        """Draw the patient (demographics, admission days, name, chronic conditions and their
        drugs, encounters with their acute problems) and the truth of each session."""
        site, sex, race, age0, n_sessions = self._demographics()
        days = self._admission_days(n_sessions, age0)
        given, family = self._name(sex)
        self._chronic_conditions(sex, age0, days)
        self._encounters(site, days)
        truths = [self._truth(s, site) for s in self.sessions]
        patient = Patient(
            patient_id=self.pid, mrn=_mrn(self.index, self.seed), given_name=given, family_name=family,
            birth_date=self.birth, sex=sex, race=race, site=site.site_id,
            conditions=tuple(self.conditions), medications=tuple(self.medications),
            encounters=tuple(self.encounters),
        )
        return patient, truths

    def _demographics(self) -> tuple[SiteConfig, Literal["female", "male"], str, float, int]:
        """Site, sex, race, age at the first session and number of sessions."""
        cfg, rng = self.cfg, self.rng
        site = _choice(rng, cfg.sites, [s.weight for s in cfg.sites])
        sex: Literal["female", "male"] = "female" if rng.random() < cfg.p_female else "male"
        races = list(cfg.race_weights)
        race = _choice(rng, races, [cfg.race_weights[r] for r in races])
        bands = site.age_bands or cfg.age_bands
        band = _choice(rng, bands, [b.weight for b in bands])
        age0 = min(band.low + rng.random() * (band.high - band.low), MAX_AGE)
        n_sessions = 1 + int(_choice(rng, range(4), cfg.sessions_per_patient))
        return site, sex, race, age0, n_sessions

    def _admission_days(self, n_sessions: int, age0: float) -> list[dt.date]:
        """The first day of each admission (gaps of weeks to years, within the study); sets the birth date."""
        cfg, rng = self.cfg, self.rng
        gaps = [max(cfg.min_gap_days, int(round(rng.exponential(cfg.mean_gap_days)))) for _ in range(n_sessions - 1)]
        span = (cfg.study_end - cfg.study_start).days
        room = max(0, span - sum(gaps))
        days = [cfg.study_start + _days(rng.random() * room)]
        for g in gaps:
            days.append(days[-1] + dt.timedelta(days=g))
        self.birth = days[0] - _days(age0 * DAYS_PER_YEAR)
        return days

    def _name(self, sex: str) -> tuple[str, str]:
        """Fake given and family names."""
        names, family_names = _NAMES["given_female" if sex == "female" else "given_male"], _NAMES["family"]
        given = names[int(self.rng.random() * len(names))]
        family = family_names[int(self.rng.random() * len(family_names))]
        return given, family

    def _chronic_conditions(self, sex: str, age0: float, days: list[dt.date]) -> None:
        """Chronic conditions in :data:`CHRONIC_ORDER`, then the drugs that treat them."""
        band = _age_band(age0)
        present: set[str] = set()
        exclusive_taken: set[str] = set()
        for key in CHRONIC_ORDER:
            cdef = CONDITIONS[key]
            if cdef.exclusive and cdef.exclusive in exclusive_taken:
                continue
            if not self._draw_chronic(key, sex, band, present):
                continue
            max_onset = MAX_AGE if cdef.max_onset_age is None else cdef.max_onset_age
            onset = self._chronic_onset(key, age0, days, max_onset)
            onset_age = (onset - self.birth).days / DAYS_PER_YEAR
            if not cdef.min_onset_age <= onset_age <= max_onset + 1e-9:
                continue  # outside the condition's onset ages (e.g. dementia before 50)
            present.add(key)
            if cdef.exclusive:
                exclusive_taken.add(cdef.exclusive)
            side = None
            if key in ("epilepsy_focal", "epilepsy_unspecified"):  # mostly on the side of a lesion
                lesion = self._side_of(("stroke", "brain_tumor"))
                if lesion is not None and self.rng.random() < 0.8:
                    side = lesion
            self._new_condition(key, onset, side=side)
        for cond in list(self.conditions):
            self._treat_chronic(cond)

    def _draw_chronic(self, key: str, sex: str, band: int, present: set[str]) -> bool:
        """Whether the patient has chronic condition ``key``: the age band's rate, moved on
        the log-odds scale by sex and by the conditions already ``present`` (comorbidity)."""
        rule = self.cfg.prevalence[key]
        p = rule.by_age[band]
        if p <= 0.0:
            return False
        if p < 1.0:
            logit = math.log(p / (1.0 - p))
            if sex == "female":
                logit += math.log(rule.female_or)
            for risk, orv in rule.risk_or.items():
                if risk in present:
                    logit += math.log(orv)
            p = 1.0 / (1.0 + math.exp(-logit))
        return bool(self.rng.random() < p)

    def _chronic_onset(self, key: str, age0: float, days: list[dt.date], max_onset: float) -> dt.date:
        """Onset of a chronic condition: during follow-up (incident) or within its history before the first session."""
        cdef, rng = CONDITIONS[key], self.rng
        first, last = days[0], days[-1]
        if len(days) > 1 and (last - first).days > 1 and rng.random() < self.cfg.incident_p:
            return first + _days(1 + rng.random() * ((last - first).days - 1))
        lo_age = max(cdef.min_onset_age, age0 - cdef.history_years, 0.0)
        hi_age = min(age0, max_onset)
        onset_age = lo_age + rng.random() * (hi_age - lo_age) if lo_age < hi_age else lo_age
        return min(self.birth + _days(onset_age * DAYS_PER_YEAR), first)

    def _encounters(self, site: SiteConfig, days: list[dt.date]) -> None:
        """The encounters, one per admission day; an EMU or ICU admission may hold the next sessions too."""
        cfg, rng = self.cfg, self.rng
        n_sessions = len(days)
        k = 0
        enc_no = 0
        while k < n_sessions:
            day = days[k]
            age = (day - self.birth).days / DAYS_PER_YEAR
            if age > MAX_AGE and k > 0:  # ages stay within 0-95: no follow-up past 95
                break
            setting = self._setting(site, day, age)
            m = 1
            if setting in ("emu", "icu"):
                while k + m < n_sessions and rng.random() < cfg.same_admission_p:
                    m += 1
            enc_no += 1
            self._encounter(f"{self.pid}-E{enc_no:02d}", site, setting,
                            [day + dt.timedelta(days=j) for j in range(m)], k)
            k += m

    def _setting(self, site: SiteConfig, day: dt.date, age: float) -> str:
        """The care setting: the site's mix, EMU more likely with spells, ICU for the elderly."""
        cfg = self.cfg
        weights = dict(site.setting_mix)
        if any(c.key in SPELL_KEYS and c.active_on(day) for c in self.conditions):
            weights["emu"] = weights.get("emu", 0.0) * cfg.emu_or_spells
        if age >= 65:
            weights["icu"] = weights.get("icu", 0.0) * cfg.icu_or_elderly
        settings = [s for s in SETTINGS if weights.get(s, 0.0) > 0]
        return str(_choice(self.rng, settings, [weights[s] for s in settings]))

    def _session_start(self, day: dt.date, setting: str, tz: dt.tzinfo) -> dt.datetime:
        rng = self.rng
        if setting == "routine":
            minutes = _randint(rng, 8 * 60, 16 * 60)
        else:
            minutes = _randint(rng, 0, 24 * 60 - 1)
        return dt.datetime.combine(day, dt.time(minutes // 60, minutes % 60), tzinfo=tz)

    def _duration(self, setting: str) -> float:
        rng = self.rng
        bands = self.cfg.durations[setting]
        b = _choice(rng, bands, [x.weight for x in bands])
        return float(round(b.low_s + rng.random() * (b.high_s - b.low_s)))

    def _encounter(self, eid: str, site: SiteConfig, setting: str, days: list[dt.date], k0: int) -> None:
        """One encounter of ``setting`` holding the sessions of ``days`` (session numbers from ``k0``)."""
        tz = dt.timezone(dt.timedelta(hours=site.utc_offset_h))
        starts = [self._session_start(d, setting, tz) for d in days]
        durations = [self._duration(setting) for _ in days]
        if setting == "routine":
            enc_start, enc_end, inpatient, reason = self._routine_visit(eid, days, tz, starts, durations)
        elif setting == "emu":
            enc_start, enc_end, inpatient, reason = self._emu_admission(eid, days, tz)
        else:
            enc_start, enc_end, inpatient, reason = self._icu_admission(eid, days, tz)
        # the admission's start precedes its first session
        enc_start = min(enc_start, starts[0] - dt.timedelta(minutes=10))
        enc_end = max(enc_end, starts[-1] + dt.timedelta(seconds=durations[-1], minutes=10))
        self.encounters.append(Encounter(eid, site.site_id, setting, inpatient, enc_start, enc_end, reason))
        for j, (start, dur) in enumerate(zip(starts, durations)):
            self.sessions.append({"k": k0 + j, "encounter_id": eid, "setting": setting, "start": start,
                                  "duration_s": dur})

    def _routine_visit(self, eid: str, days: list[dt.date], tz: dt.tzinfo, starts: list[dt.datetime],
                       durations: list[float]) -> _Visit:
        """A routine EEG: an outpatient visit, or (by age) an inpatient one, often for encephalopathy."""
        cfg, rng = self.cfg, self.rng
        age = (days[0] - self.birth).days / DAYS_PER_YEAR
        if rng.random() >= cfg.inpatient.routine_inpatient_p[_age_band(age)]:
            return (starts[0] - dt.timedelta(minutes=20),
                    starts[-1] + dt.timedelta(seconds=durations[-1], minutes=40), False, None)
        reason = None
        admit = days[0] - _days(_randint(rng, 0, 3))
        discharge = days[-1] + _days(_randint(rng, 1, 7))
        if rng.random() < cfg.inpatient.encephalopathy_p:
            reason = "encephalopathy"
            self._new_condition("encephalopathy", admit, abatement=discharge + _days(_randint(rng, 0, 14)),
                                encounter_id=eid)
        return (dt.datetime.combine(admit, dt.time(10, 0), tzinfo=tz),
                dt.datetime.combine(discharge, dt.time(12, 0), tzinfo=tz), True, reason)

    def _emu_admission(self, eid: str, days: list[dt.date], tz: dt.tzinfo) -> _Visit:
        """An EMU admission; a patient with epilepsy may get a rescue benzodiazepine."""
        cfg, rng = self.cfg, self.rng
        admit = days[0]
        discharge = days[-1] + _days(_randint(rng, 1, 4))
        epi = [c for c in self.conditions if c.key in EPILEPSY_KEYS and c.active_on(days[0])]
        if epi and rng.random() < cfg.inpatient.emu_rescue_benzo_p:
            rescue_day = days[_randint(rng, 0, len(days) - 1)]
            self._prescribe("lorazepam", epi[0], rescue_day, rescue_day, encounter_id=eid)
        return (dt.datetime.combine(admit, dt.time(7, 30), tzinfo=tz),
                dt.datetime.combine(discharge, dt.time(11, 0), tzinfo=tz), True, None)

    def _icu_admission(self, eid: str, days: list[dt.date], tz: dt.tzinfo) -> _Visit:
        """An ICU admission: its reason and what comes with it (:meth:`_icu_problems`)."""
        cfg, rng = self.cfg.icu, self.rng
        admit = days[0] - _days(_randint(rng, 0, cfg.max_days_before_eeg))
        discharge = days[-1] + _days(_randint(rng, 1, cfg.max_stay_after_eeg))
        enc_start = dt.datetime.combine(admit, dt.time(_randint(rng, 0, 23), 0), tzinfo=tz)
        enc_end = dt.datetime.combine(discharge, dt.time(14, 0), tzinfo=tz)
        reason = self._icu_problems(eid, admit, discharge, days[0])
        return enc_start, enc_end, True, reason

    def _icu_problems(self, eid: str, admit: dt.date, discharge: dt.date, eeg_day: dt.date) -> str:
        """The reason of an ICU admission, with its conditions, intubation, sedation and antiseizure drugs."""
        cfg, rng = self.cfg.icu, self.rng
        weights = dict(cfg.reasons)
        if any(c.key in EPILEPSY_KEYS and c.active_on(eeg_day) for c in self.conditions):
            weights["status_epilepticus"] = weights.get("status_epilepticus", 0.0) * cfg.status_epilepticus_or_epilepsy
        reason = _choice_map(rng, weights) or "other"
        stay = max(1, (discharge - admit).days)
        indication_for_sedation: Condition | None = None
        asm_indication: Condition | None = None
        if reason == "encephalopathy":
            self._new_condition("encephalopathy", admit, abatement=discharge + _days(_randint(rng, 0, 14)),
                                encounter_id=eid)
        elif reason == "sepsis":
            self._new_condition("sepsis", admit, abatement=discharge, encounter_id=eid)
            if rng.random() < cfg.sepsis_encephalopathy_p:
                self._new_condition("encephalopathy", admit, abatement=discharge + _days(_randint(rng, 0, 14)),
                                    encounter_id=eid)
        elif reason == "cardiac_arrest":
            self._new_condition("cardiac_arrest", admit, abatement=admit + dt.timedelta(days=1), encounter_id=eid)
            if rng.random() < cfg.arrest_anoxic_p:
                asm_indication = self._new_condition("anoxic_brain_injury", admit, encounter_id=eid)
        elif reason == "acute_stroke":
            cdef = CONDITIONS["stroke"]
            acute_variants = [v for v in cdef.variants if v.code.startswith("I63")]
            variant = _choice(rng, acute_variants, [v.weight for v in acute_variants])
            asm_indication = self._new_condition("stroke", admit, encounter_id=eid, variant=variant)
        elif reason == "status_epilepticus":
            se = self._new_condition("status_epilepticus", admit, abatement=admit + _days(_randint(rng, 1, 5)),
                                     encounter_id=eid)
            indication_for_sedation = se
            if rng.random() < cfg.status_benzo_p:
                self._prescribe("lorazepam", se, admit, admit, encounter_id=eid)
            load = _choice_map(rng, cfg.status_load)
            if load is not None:
                self._prescribe(load, se, admit, discharge + _days(_randint(rng, 30, 365)), encounter_id=eid)
        elif reason == "respiratory_failure":
            indication_for_sedation = self._new_condition("acute_respiratory_failure", admit, abatement=discharge,
                                                          encounter_id=eid)
        intubated = reason == "respiratory_failure" or rng.random() < cfg.intubation_p[reason]
        if intubated:
            if indication_for_sedation is None:
                indication_for_sedation = self._new_condition("acute_respiratory_failure", admit,
                                                              abatement=discharge, encounter_id=eid)
            if rng.random() < cfg.sedation_p:
                sedative = _choice_map(rng, {k: w for k, w in cfg.sedatives.items()
                                             if indication_for_sedation.key in DRUGS[k].indications})
                if sedative is not None:
                    self._prescribe(sedative, indication_for_sedation, admit,
                                    admit + _days(_randint(rng, 0, stay)), encounter_id=eid)
            if rng.random() < cfg.fentanyl_p:
                resp = next((c for c in self.conditions
                             if c.key == "acute_respiratory_failure" and c.encounter_id == eid), None)
                if resp is None:
                    resp = self._new_condition("acute_respiratory_failure", admit, abatement=discharge,
                                               encounter_id=eid)
                self._prescribe("fentanyl", resp, admit, admit + _days(_randint(rng, 0, stay)), encounter_id=eid)
        if asm_indication is not None and rng.random() < cfg.asm_prophylaxis_p:
            on_lev = any(m.key == "levetiracetam" and m.active_on(eeg_day) for m in self.medications)
            if not on_lev:
                self._prescribe("levetiracetam", asm_indication, admit, discharge + _days(_randint(rng, 0, 90)),
                                encounter_id=eid)
        # chronic conditions acquired here are treated from discharge on
        for c in list(self.conditions):
            if c.encounter_id == eid and not CONDITIONS[c.key].acute:
                self._treat_chronic(c, not_before=discharge)
        return reason

    def _truth(self, s: dict[str, Any], site: SiteConfig) -> SessionTruth:
        cfg, rng = self.cfg, self.rng
        start: dt.datetime = s["start"]
        day = start.date()
        setting = s["setting"]
        conds = [c for c in self.conditions if c.active_on(day)]
        meds = [m for m in self.medications if m.active_on(day)]
        # signature key -> candidate causes (condition causes first, then drugs)
        causes: dict[str, list[tuple[str, float, Side | None, SignatureItem]]] = {}
        for c in conds:
            for item in c.signature:
                if setting not in item.settings:
                    continue
                if item.acute_days is not None and (day - c.onset).days > item.acute_days:
                    continue
                causes.setdefault(item.key, []).append((c.code, c.severity, c.side if item.lateralized else None, item))
        for m in meds:
            group = DRUGS[m.key].signature_group
            for item in SIGNATURE_GROUPS.get(group or "", ()):
                if setting not in item.settings:
                    continue
                causes.setdefault(item.key, []).append((m.atc, 0.5, None, item))
        merged: dict[tuple[str, str | None], PlantedFinding] = {}
        w = cfg.severity_trait_weight
        for key in sorted(causes):
            if rng.random() >= cfg.penetrance[key]:
                continue
            code, trait, side, item = max(causes[key], key=lambda c: c[1])
            lo, hi = item.severity
            frac = min(1.0, max(0.0, w * trait + (1.0 - w) * rng.random()))
            sev = round(lo + (hi - lo) * frac, 3)
            if item.lateralized and side is None:
                side = "L" if rng.random() < 0.5 else "R"
            f = PlantedFinding(name=item.finding, severity=sev, side=side, cause=code)
            prev = merged.get((f.name, f.side))
            if prev is None or f.severity > prev.severity:
                merged[(f.name, f.side)] = f
        order = {n: i for i, n in enumerate(FINDINGS)}
        findings = tuple(sorted(merged.values(), key=lambda f: (order[f.name], f.side or "")))
        k = s["k"]
        seed = int(np.random.SeedSequence([self.seed, self.index, k]).generate_state(1)[0])
        return SessionTruth(
            session_id=f"{self.pid}-S{k + 1:02d}",
            patient_id=self.pid,
            encounter_id=s["encounter_id"],
            site=site.site_id,
            setting=setting,
            start=start,
            duration_s=s["duration_s"],
            age_years=round((day - self.birth).days / DAYS_PER_YEAR, 2),
            condition_codes=tuple(dict.fromkeys(c.code for c in conds)),
            atc_codes=tuple(dict.fromkeys(m.atc for m in meds)),
            findings=findings,
            mains_hz=site.mains_hz,
            seed=seed,
        )


def generate_population(n_patients: int, seed: int, config: PopulationConfig | None = None) -> Population:
    """Generate a synthetic hospital population with known EEG truth.

    Parameters
    ----------
    n_patients : int
        Number of patients (>= 0). Each has 1-4 EEG sessions.
    seed : int
        Seed (>= 0). Patient ``i`` depends only on ``(seed, i)``.
    config : PopulationConfig or None
        Rates of the model; None uses the defaults.

    Returns
    -------
    Population
        Patients (with conditions, medications, encounters) and session truths, ordered
        by patient then session time.

    Examples
    --------
    >>> pop = generate_population(200, seed=0)
    >>> spec = pop.sessions[0].to_spec()
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 0:
        raise ValueError(f"n_patients must be a non-negative integer, found {n_patients!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, found {seed!r}")
    cfg = config if config is not None else PopulationConfig()
    if not isinstance(cfg, PopulationConfig):
        raise TypeError(f"config must be a PopulationConfig, found {type(cfg).__name__}")
    patients: list[Patient] = []
    sessions: list[SessionTruth] = []
    for i in range(int(n_patients)):
        patient, truths = _PatientBuilder(i, int(seed), cfg).build()
        patients.append(patient)
        sessions.extend(truths)
    return Population(patients=tuple(patients), sessions=tuple(sessions), seed=int(seed), config=cfg)

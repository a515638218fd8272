"""Population model of the synthetic hospital: who is ill with what, and what their EEGs show.

Like :mod:`mne.simulation`, this is a documented, seeded, fast public module whose hidden
truth is known, so the benchmark can be shown to find planted effects and not absent
ones. :func:`generate_population` draws patients (fake PHI, demographics), their
conditions (real ICD-10-CM codes, with onset and, for acute problems, abatement dates),
their medications (real drugs with ATC codes, prescribed *because of* a condition, with
start/end dates), their encounters (site, care setting, period) and their EEG sessions.
Every session's truth (:class:`SessionTruth`) lists the conditions and drugs active on
the session date and the EEG findings planted in it (:class:`~clef.synthetic.spec.PlantedFinding`),
and converts to the simulator's :class:`~clef.synthetic.spec.SessionSpec`.

The model
---------
* **Sites** (:class:`SiteConfig`): an id, a mains frequency, a share of patients, a care
  setting mix (``routine``/``emu``/``icu``) and optionally their own age distribution
  (the default children's hospital sees patients aged 0-21).
* **Demographics**: age at the first session from age bands (0-95, children included),
  sex, and race in the 8 classes of CLEF's EHR tokens (:data:`RACES`).
* **Chronic conditions** (:data:`CONDITIONS`, ``acute=False``) are drawn in a fixed order
  (:data:`CHRONIC_ORDER`) with an age-band probability (:class:`PrevalenceRule`) moved
  on the log-odds scale by sex and by conditions drawn earlier (comorbidity: stroke is
  more likely with hypertension, diabetes and atrial fibrillation; focal epilepsy with
  stroke, brain tumour and dementia ...). A fraction (``incident_p``) starts between the
  patient's first and last session, so "active at the session" differs between sessions.
* **Sessions**: 1-4 per patient, weeks to years apart; the setting follows the site mix,
  EMU being more likely for patients with spells (epilepsy, PNES, syncope) and ICU for
  the elderly. EMU and ICU admissions may hold several sessions on consecutive days.
* **Acute conditions** come with admissions: an ICU admission has a reason
  (encephalopathy, sepsis, cardiac arrest, acute stroke, status epilepticus, respiratory
  failure, other; :class:`IcuConfig`) which adds its codes (e.g. cardiac arrest →
  I46.9 and often anoxic brain injury G93.1), intubation (J96.00) and ICU drugs
  (propofol, midazolam, dexmedetomidine, fentanyl, lorazepam, antiseizure loading);
  a routine EEG may be an inpatient one, often for encephalopathy/delirium. So
  encephalopathy and anoxic injury are mostly ICU problems, epilepsy is over-represented
  in the EMU.
* **Medications** follow :class:`TreatmentRule` per condition (probability of treatment,
  drug weights, second drug, stop, switch). Every drug declares its indications
  (:data:`DRUGS`); a drug is only ever prescribed for one of them.
* **EEG signatures**: each condition and drug group declares the findings it causes
  (:class:`SignatureItem`: finding, severity range, laterality, settings, acute window).
  In each session, each signature key present is planted with its penetrance
  (``PopulationConfig.penetrance``), so an affected patient does not show it in every
  session. Severity combines a per-patient trait and per-session noise. Negative-control
  conditions (hypertension, type 2 diabetes, hyperlipidemia, hypothyroidism, depression)
  and their drugs carry no signature.

Generation is deterministic per ``seed``; patient ``i`` depends only on ``(seed, i)``, so
the first 100 patients of a 200-patient population equal a 100-patient population.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clef.synthetic.spec import FINDINGS, PlantedFinding, SessionSpec, Setting, Side
from ehr.atc import atc_name, rxnorm_for_atc

__all__ = [
    "AGE_BAND_EDGES",
    "ALL_ICD10_CODES",
    "ALLOWED_FINDINGS",
    "CHRONIC_ORDER",
    "CONDITIONS",
    "DEFAULT_PENETRANCE",
    "DRUGS",
    "EPILEPSY_KEYS",
    "NEGATIVE_CONTROL_KEYS",
    "RACES",
    "SETTINGS",
    "SIGNATURE_GROUPS",
    "AgeBand",
    "CodeVariant",
    "Condition",
    "ConditionDef",
    "DrugDef",
    "DurationBand",
    "Encounter",
    "IcuConfig",
    "InpatientConfig",
    "Medication",
    "Patient",
    "Population",
    "PopulationConfig",
    "PrevalenceRule",
    "ReportConfig",
    "SessionTruth",
    "SignatureItem",
    "SiteConfig",
    "TreatmentRule",
    "atc_display",
    "drug_for_atc",
    "generate_population",
]

# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

#: The 8 race classes of CLEF's EHR tokens. "Hispanic/Latino" is an OMB *ethnicity*;
#: CLEF folds it into the race token (as the paper's 8 classes do), and the FHIR export
#: writes it as the US Core ethnicity extension.
RACES: tuple[str, ...] = (
    "White",
    "Black",
    "Asian",
    "American Indian/Alaska Native",
    "Native Hawaiian/Pacific Islander",
    "Other",
    "Unknown",
    "Hispanic/Latino",
)
SETTINGS: tuple[str, ...] = ("routine", "emu", "icu")
SEXES: tuple[str, ...] = ("female", "male")

#: Edges of the 5 age bands every age-dependent rate is given for: [0,18) [18,45) [45,65) [65,80) [80,96).
AGE_BAND_EDGES: tuple[float, ...] = (0.0, 18.0, 45.0, 65.0, 80.0, 96.0)
MAX_AGE = 95.0
_DAYS_PER_YEAR = 365.25


def _age_band(age: float) -> int:
    for i in range(5):
        if age < AGE_BAND_EDGES[i + 1]:
            return i
    return 4


# --------------------------------------------------------------------------------------
# Catalog: conditions, drugs, signatures
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureItem:
    """One EEG finding a condition or drug group can cause.

    Attributes
    ----------
    finding : str
        One of :data:`~clef.synthetic.spec.FINDINGS`.
    key : str
        Penetrance key, ``"<cause>:<finding>"``; its probability per session is
        ``PopulationConfig.penetrance[key]``. Several causes may share a key (all
        epilepsies share ``epilepsy:seizure``); a key is drawn once per session.
    severity : (float, float)
        Severity range; a session's severity mixes the patient's trait and noise.
    lateralized : bool
        The finding takes the side of the condition (stroke, tumour, focal epilepsy).
    settings : tuple of str
        Care settings in which it can appear (``seizure`` from epilepsy: EMU only).
    acute_days : int or None
        Only within this many days of the condition's onset (e.g. LPDs after a stroke).
    alt : str or None
        Alternatives: among items sharing ``alt``, each patient gets one (weighted by
        ``alt_weight``), e.g. focal or generalised IEDs in unspecified epilepsy.
    """

    finding: str
    key: str
    severity: tuple[float, float]
    lateralized: bool = False
    settings: tuple[str, ...] = SETTINGS
    acute_days: int | None = None
    alt: str | None = None
    alt_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.finding not in FINDINGS:
            raise ValueError(f"unknown finding {self.finding!r}; expected one of {FINDINGS}")
        lo, hi = self.severity
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"severity range must satisfy 0 < lo <= hi <= 1, found {self.severity}")


@dataclass(frozen=True)
class CodeVariant:
    """One ICD-10-CM code a condition is coded with (chosen per patient by ``weight``)."""

    code: str
    display: str
    weight: float = 1.0
    side: Side | None = None  # lesion hemisphere implied by the code


@dataclass(frozen=True)
class ConditionDef:
    """A condition of the catalog.

    Attributes
    ----------
    key : str
        Catalog key (``"epilepsy_focal"``); rates in :class:`PopulationConfig` use it.
    label : str
        Plain-English name, as a report's history would say it.
    variants : tuple of CodeVariant
        Real ICD-10-CM codes (validated by the tests with ``simple_icd_10_cm``).
    signature : tuple of SignatureItem
        EEG findings it causes; empty for conditions without an EEG signature.
    negative_control : bool
        A benchmark negative control: no EEG signature, nor do its drugs have one.
    acute : bool
        Acquired with an admission and resolving (has an abatement date).
    lateralized : bool
        Has a hemisphere (stroke, brain tumour, focal epilepsy).
    exclusive : str or None
        At most one condition of an exclusive group per patient (the epilepsies).
    history_years, min_onset_age, max_onset_age : float
        The onset of a condition present at the first session lies at most
        ``history_years`` before it, at an age within ``[min_onset_age, max_onset_age]``;
        a patient drawn with a condition whose onset cannot fit does not get it.
    """

    key: str
    label: str
    variants: tuple[CodeVariant, ...]
    signature: tuple[SignatureItem, ...] = ()
    negative_control: bool = False
    acute: bool = False
    lateralized: bool = False
    exclusive: str | None = None
    history_years: float = 15.0
    min_onset_age: float = 0.0
    max_onset_age: float | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(v.code for v in self.variants)


def _v(code: str, display: str, weight: float = 1.0, side: Side | None = None) -> CodeVariant:
    return CodeVariant(code, display, weight, side)


_EMU = ("emu",)
_SEIZURE_EMU = SignatureItem("seizure", "epilepsy:seizure", (0.4, 1.0), settings=_EMU)

_CONDITION_LIST: tuple[ConditionDef, ...] = (
    # ---- negative controls (no EEG signature) ----
    ConditionDef("hypertension", "hypertension", (_v("I10", "Essential (primary) hypertension"),),
                 negative_control=True, history_years=20, min_onset_age=12),
    ConditionDef("hyperlipidemia", "hyperlipidemia", (_v("E78.5", "Hyperlipidemia, unspecified"),),
                 negative_control=True, history_years=20, min_onset_age=12),
    ConditionDef("type2_diabetes", "type 2 diabetes",
                 (_v("E11.9", "Type 2 diabetes mellitus without complications"),),
                 negative_control=True, history_years=20, min_onset_age=10),
    ConditionDef("hypothyroidism", "hypothyroidism", (_v("E03.9", "Hypothyroidism, unspecified"),),
                 negative_control=True, history_years=25),
    ConditionDef("depression", "depression",
                 (_v("F32.A", "Depression, unspecified", 0.6),
                  _v("F32.9", "Major depressive disorder, single episode, unspecified", 0.4)),
                 negative_control=True, history_years=15, min_onset_age=8),
    # ---- other conditions without a signature (realism; some are confounders) ----
    ConditionDef("atrial_fibrillation", "atrial fibrillation", (_v("I48.91", "Unspecified atrial fibrillation"),),
                 history_years=10, min_onset_age=30),
    ConditionDef("anxiety", "anxiety", (_v("F41.1", "Generalized anxiety disorder"),),
                 history_years=15, min_onset_age=8),
    ConditionDef("migraine", "migraine",
                 (_v("G43.909", "Migraine, unspecified, not intractable, without status migrainosus"),),
                 history_years=25, min_onset_age=5),
    ConditionDef("syncope", "syncope", (_v("R55", "Syncope and collapse"),), history_years=3),
    ConditionDef("pnes", "psychogenic non-epileptic seizures",
                 (_v("F44.5", "Conversion disorder with seizures or convulsions"),),
                 history_years=5, min_onset_age=8),
    # ---- conditions with an EEG signature ----
    ConditionDef(
        "stroke", "ischemic stroke",
        (_v("I63.512", "Cerebral infarction due to unspecified occlusion or stenosis of left middle cerebral artery", 0.30, "L"),
         _v("I63.511", "Cerebral infarction due to unspecified occlusion or stenosis of right middle cerebral artery", 0.30, "R"),
         _v("I63.9", "Cerebral infarction, unspecified", 0.15),
         # Sequelae: hemiparesis of the right (dominant) body side = left-hemisphere lesion, and vice versa.
         _v("I69.351", "Hemiplegia and hemiparesis following cerebral infarction affecting right dominant side", 0.125, "L"),
         _v("I69.354", "Hemiplegia and hemiparesis following cerebral infarction affecting left non-dominant side", 0.125, "R")),
        signature=(
            SignatureItem("focal_slowing", "stroke:focal_slowing", (0.3, 0.9), lateralized=True),
            SignatureItem("asymmetry", "stroke:asymmetry", (0.2, 0.8), lateralized=True),
            SignatureItem("lpd", "stroke:lpd", (0.3, 0.9), lateralized=True, acute_days=30),
        ),
        lateralized=True, history_years=8, min_onset_age=0),
    ConditionDef(
        "brain_tumor", "brain tumor", (_v("C71.9", "Malignant neoplasm of brain, unspecified"),),
        signature=(SignatureItem("focal_slowing", "brain_tumor:focal_slowing", (0.3, 0.9), lateralized=True),),
        lateralized=True, history_years=3),
    ConditionDef(
        "dementia", "dementia",
        (_v("G30.9", "Alzheimer's disease, unspecified", 0.45),
         _v("F03.90", "Unspecified dementia, unspecified severity, without behavioral disturbance, "
                      "psychotic disturbance, mood disturbance, and anxiety", 0.55)),
        signature=(SignatureItem("pdr_slowing", "dementia:pdr_slowing", (0.25, 0.8)),),
        history_years=8, min_onset_age=50),
    ConditionDef(
        "epilepsy_absence", "childhood absence epilepsy",
        (_v("G40.A09", "Absence epileptic syndrome, not intractable, without status epilepticus"),),
        signature=(SignatureItem("ied_generalized", "epilepsy_absence:ied_generalized", (0.4, 1.0)), _SEIZURE_EMU),
        exclusive="epilepsy", history_years=40, min_onset_age=3, max_onset_age=20),
    ConditionDef(
        "epilepsy_generalized", "generalized epilepsy",
        (_v("G40.309", "Generalized idiopathic epilepsy and epileptic syndromes, not intractable, without status epilepticus", 0.6),
         _v("G40.B09", "Juvenile myoclonic epilepsy, not intractable, without status epilepticus", 0.4)),
        signature=(SignatureItem("ied_generalized", "epilepsy_generalized:ied_generalized", (0.3, 1.0)), _SEIZURE_EMU),
        exclusive="epilepsy", history_years=40, min_onset_age=2, max_onset_age=40),
    ConditionDef(
        "epilepsy_focal", "focal epilepsy",
        (_v("G40.209", "Localization-related (focal) (partial) symptomatic epilepsy and epileptic syndromes with "
                       "complex partial seizures, not intractable, without status epilepticus", 0.5),
         _v("G40.219", "Localization-related (focal) (partial) symptomatic epilepsy and epileptic syndromes with "
                       "complex partial seizures, intractable, without status epilepticus", 0.25),
         _v("G40.109", "Localization-related (focal) (partial) symptomatic epilepsy and epileptic syndromes with "
                       "simple partial seizures, not intractable, without status epilepticus", 0.25)),
        signature=(SignatureItem("ied_focal", "epilepsy_focal:ied_focal", (0.3, 1.0), lateralized=True), _SEIZURE_EMU),
        lateralized=True, exclusive="epilepsy", history_years=40),
    ConditionDef(
        "epilepsy_unspecified", "epilepsy",
        (_v("G40.909", "Epilepsy, unspecified, not intractable, without status epilepticus"),),
        signature=(
            SignatureItem("ied_focal", "epilepsy_unspecified:ied_focal", (0.3, 0.9), lateralized=True, alt="ied", alt_weight=0.6),
            SignatureItem("ied_generalized", "epilepsy_unspecified:ied_generalized", (0.3, 0.9), alt="ied", alt_weight=0.4),
            _SEIZURE_EMU,
        ),
        lateralized=True, exclusive="epilepsy", history_years=40),
    # ---- acute conditions, acquired with an admission ----
    ConditionDef(
        "encephalopathy", "encephalopathy",
        (_v("G93.40", "Encephalopathy, unspecified", 0.35),
         _v("G93.41", "Metabolic encephalopathy", 0.40),
         _v("F05", "Delirium due to known physiological condition", 0.25)),
        signature=(
            SignatureItem("generalized_slowing", "encephalopathy:generalized_slowing", (0.35, 1.0)),
            SignatureItem("pdr_slowing", "encephalopathy:pdr_slowing", (0.35, 1.0)),
            SignatureItem("gpd", "encephalopathy:gpd", (0.3, 0.8)),
        ),
        acute=True),
    ConditionDef(
        "anoxic_brain_injury", "anoxic brain injury",
        (_v("G93.1", "Anoxic brain damage, not elsewhere classified"),),
        signature=(
            SignatureItem("burst_suppression", "anoxic_brain_injury:burst_suppression", (0.5, 1.0), acute_days=14),
            SignatureItem("gpd", "anoxic_brain_injury:gpd", (0.4, 1.0), acute_days=14),
            SignatureItem("low_voltage", "anoxic_brain_injury:low_voltage", (0.4, 1.0), acute_days=60),
            SignatureItem("generalized_slowing", "anoxic_brain_injury:generalized_slowing", (0.3, 0.9)),
        ),
        acute=False),  # acquired acutely but permanent: no abatement
    ConditionDef("cardiac_arrest", "cardiac arrest", (_v("I46.9", "Cardiac arrest, cause unspecified"),), acute=True),
    ConditionDef(
        "status_epilepticus", "status epilepticus",
        (_v("G40.901", "Epilepsy, unspecified, not intractable, with status epilepticus"),),
        signature=(
            SignatureItem("seizure", "status_epilepticus:seizure", (0.5, 1.0)),
            SignatureItem("gpd", "status_epilepticus:gpd", (0.3, 0.9)),
        ),
        acute=True),
    ConditionDef("acute_respiratory_failure", "acute respiratory failure",
                 (_v("J96.00", "Acute respiratory failure, unspecified whether with hypoxia or hypercapnia"),), acute=True),
    ConditionDef("sepsis", "sepsis", (_v("A41.9", "Sepsis, unspecified organism"),), acute=True),
)

#: The condition catalog, by key.
CONDITIONS: dict[str, ConditionDef] = {c.key: c for c in _CONDITION_LIST}

#: Order in which chronic conditions are drawn; a comorbidity odds ratio may only name
#: a condition earlier in this order.
CHRONIC_ORDER: tuple[str, ...] = (
    "hypertension", "hyperlipidemia", "type2_diabetes", "hypothyroidism", "depression",
    "atrial_fibrillation", "anxiety", "migraine", "syncope", "pnes",
    "stroke", "brain_tumor", "dementia",
    "epilepsy_absence", "epilepsy_generalized", "epilepsy_focal", "epilepsy_unspecified",
)
_ADMISSION_ONLY = ("encephalopathy", "anoxic_brain_injury", "cardiac_arrest", "status_epilepticus",
                   "acute_respiratory_failure", "sepsis")
NEGATIVE_CONTROL_KEYS: tuple[str, ...] = tuple(c.key for c in _CONDITION_LIST if c.negative_control)
_SPELL_KEYS = frozenset({"epilepsy_absence", "epilepsy_generalized", "epilepsy_focal", "epilepsy_unspecified",
                         "pnes", "syncope"})
EPILEPSY_KEYS: tuple[str, ...] = ("epilepsy_absence", "epilepsy_generalized", "epilepsy_focal", "epilepsy_unspecified")

#: Every ICD-10-CM code the model can emit.
ALL_ICD10_CODES: tuple[str, ...] = tuple(v.code for c in _CONDITION_LIST for v in c.variants)


@dataclass(frozen=True)
class DrugDef:
    """A drug the model prescribes.

    Attributes
    ----------
    key : str
        Common (US) generic name, e.g. ``"valproate"``.
    atc : str
        ATC substance code; must be in :mod:`ehr.atc`'s table.
    indications : frozenset of str
        Condition keys it may be prescribed for.
    signature_group : str or None
        Key of :data:`SIGNATURE_GROUPS` giving its EEG effect (None: no effect).
    """

    key: str
    atc: str
    indications: frozenset[str]
    signature_group: str | None = None

    @property
    def name(self) -> str:
        return self.key

    @property
    def rxnorm(self) -> str | None:
        return rxnorm_for_atc(self.atc)


#: EEG effects of drug groups.
SIGNATURE_GROUPS: dict[str, tuple[SignatureItem, ...]] = {
    "benzodiazepine": (SignatureItem("excess_beta", "benzodiazepine:excess_beta", (0.3, 0.9)),),
    "antiseizure": (SignatureItem("mild_slowing", "antiseizure:mild_slowing", (0.15, 0.5)),),
    "propofol": (SignatureItem("burst_suppression", "propofol:burst_suppression", (0.4, 1.0), settings=("icu",)),),
}

_EPI = frozenset(EPILEPSY_KEYS)


def _d(key: str, atc: str, indications: Iterable[str], group: str | None = None) -> DrugDef:
    return DrugDef(key, atc, frozenset(indications), group)


_DRUG_LIST: tuple[DrugDef, ...] = (
    # antiseizure medications
    _d("levetiracetam", "N03AX14", _EPI | {"status_epilepticus", "stroke", "anoxic_brain_injury", "brain_tumor"}, "antiseizure"),
    _d("lamotrigine", "N03AX09", _EPI, "antiseizure"),
    _d("valproate", "N03AG01", _EPI | {"status_epilepticus"}, "antiseizure"),
    _d("carbamazepine", "N03AF01", {"epilepsy_focal", "epilepsy_unspecified"}, "antiseizure"),
    _d("oxcarbazepine", "N03AF02", {"epilepsy_focal"}, "antiseizure"),
    _d("lacosamide", "N03AX18", {"epilepsy_focal", "epilepsy_unspecified", "status_epilepticus"}, "antiseizure"),
    _d("topiramate", "N03AX11", _EPI | {"migraine"}, "antiseizure"),
    _d("zonisamide", "N03AX15", {"epilepsy_focal"}, "antiseizure"),
    _d("brivaracetam", "N03AX23", {"epilepsy_focal"}, "antiseizure"),
    _d("ethosuximide", "N03AD01", {"epilepsy_absence"}, "antiseizure"),
    _d("phenytoin", "N03AB02", {"epilepsy_focal", "epilepsy_unspecified"}, "antiseizure"),
    _d("fosphenytoin", "N03AB05", {"status_epilepticus"}, "antiseizure"),
    _d("phenobarbital", "N03AA02", {"epilepsy_unspecified"}, "antiseizure"),
    # benzodiazepines
    _d("clonazepam", "N03AE01", _EPI | {"anxiety"}, "benzodiazepine"),
    _d("clobazam", "N05BA09", {"epilepsy_generalized", "epilepsy_focal"}, "benzodiazepine"),
    _d("lorazepam", "N05BA06", _EPI | {"anxiety", "status_epilepticus"}, "benzodiazepine"),
    _d("alprazolam", "N05BA12", {"anxiety"}, "benzodiazepine"),
    _d("midazolam", "N05CD08", {"acute_respiratory_failure", "status_epilepticus"}, "benzodiazepine"),
    # ICU sedation / analgesia
    _d("propofol", "N01AX10", {"acute_respiratory_failure", "status_epilepticus"}, "propofol"),
    _d("dexmedetomidine", "N05CM18", {"acute_respiratory_failure"}),
    _d("fentanyl", "N02AB03", {"acute_respiratory_failure"}),
    # dementia
    _d("donepezil", "N06DA02", {"dementia"}),
    _d("rivastigmine", "N06DA03", {"dementia"}),
    _d("galantamine", "N06DA04", {"dementia"}),
    _d("memantine", "N06DX01", {"dementia"}),
    # antidepressants
    _d("sertraline", "N06AB06", {"depression", "anxiety", "pnes"}),
    _d("escitalopram", "N06AB10", {"depression", "anxiety", "pnes"}),
    _d("fluoxetine", "N06AB03", {"depression"}),
    _d("bupropion", "N06AX12", {"depression"}),
    _d("mirtazapine", "N06AX11", {"depression"}),
    _d("duloxetine", "N06AX21", {"depression"}),
    _d("venlafaxine", "N06AX16", {"depression"}),
    _d("amitriptyline", "N06AA09", {"migraine", "depression"}),
    _d("sumatriptan", "N02CC01", {"migraine"}),
    # cardiometabolic
    _d("metformin", "A10BA02", {"type2_diabetes"}),
    _d("insulin glargine", "A10AE04", {"type2_diabetes"}),
    _d("levothyroxine", "H03AA01", {"hypothyroidism"}),
    _d("lisinopril", "C09AA03", {"hypertension"}),
    _d("losartan", "C09CA01", {"hypertension"}),
    _d("amlodipine", "C08CA01", {"hypertension"}),
    _d("hydrochlorothiazide", "C03AA03", {"hypertension"}),
    _d("metoprolol", "C07AB02", {"hypertension", "atrial_fibrillation"}),
    _d("propranolol", "C07AA05", {"migraine"}),
    _d("atorvastatin", "C10AA05", {"hyperlipidemia", "stroke"}),
    _d("simvastatin", "C10AA01", {"hyperlipidemia"}),
    _d("aspirin", "B01AC06", {"stroke"}),
    _d("clopidogrel", "B01AC04", {"stroke"}),
    _d("apixaban", "B01AF02", {"atrial_fibrillation"}),
    _d("rivaroxaban", "B01AF01", {"atrial_fibrillation"}),
    _d("warfarin", "B01AA03", {"atrial_fibrillation"}),
    # neuro-oncology
    _d("temozolomide", "L01AX03", {"brain_tumor"}),
    _d("bevacizumab", "L01FG01", {"brain_tumor"}),
    _d("dexamethasone", "H02AB02", {"brain_tumor"}),
)

#: The drugs the model prescribes, by key.
DRUGS: dict[str, DrugDef] = {d.key: d for d in _DRUG_LIST}
_DRUG_BY_ATC: dict[str, DrugDef] = {d.atc: d for d in _DRUG_LIST}


def _allowed_findings() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for c in _CONDITION_LIST:
        for v in c.variants:
            out.setdefault(v.code, set()).update(i.finding for i in c.signature)
    for d in _DRUG_LIST:
        items = SIGNATURE_GROUPS.get(d.signature_group or "", ())
        out.setdefault(d.atc, set()).update(i.finding for i in items)
    return {k: frozenset(v) for k, v in out.items()}


#: For every ICD-10-CM or ATC code the model emits, the findings it may cause.
ALLOWED_FINDINGS: dict[str, frozenset[str]] = _allowed_findings()

_ALL_SIGNATURE_KEYS = frozenset(
    [i.key for c in _CONDITION_LIST for i in c.signature]
    + [i.key for items in SIGNATURE_GROUPS.values() for i in items]
)

# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

DEFAULT_PENETRANCE: dict[str, float] = {
    "epilepsy_absence:ied_generalized": 0.75,
    "epilepsy_generalized:ied_generalized": 0.6,
    "epilepsy_focal:ied_focal": 0.55,
    "epilepsy_unspecified:ied_focal": 0.45,
    "epilepsy_unspecified:ied_generalized": 0.45,
    "epilepsy:seizure": 0.3,
    "stroke:focal_slowing": 0.7,
    "stroke:asymmetry": 0.5,
    "stroke:lpd": 0.2,
    "brain_tumor:focal_slowing": 0.75,
    "dementia:pdr_slowing": 0.7,
    "encephalopathy:generalized_slowing": 0.9,
    "encephalopathy:pdr_slowing": 0.8,
    "encephalopathy:gpd": 0.12,
    "anoxic_brain_injury:burst_suppression": 0.45,
    "anoxic_brain_injury:gpd": 0.25,
    "anoxic_brain_injury:low_voltage": 0.5,
    "anoxic_brain_injury:generalized_slowing": 0.6,
    "status_epilepticus:seizure": 0.5,
    "status_epilepticus:gpd": 0.2,
    "benzodiazepine:excess_beta": 0.7,
    "antiseizure:mild_slowing": 0.3,
    "propofol:burst_suppression": 0.35,
}
if set(DEFAULT_PENETRANCE) != _ALL_SIGNATURE_KEYS:  # pragma: no cover - catalog consistency
    raise RuntimeError(f"penetrance defaults and signature keys differ: {set(DEFAULT_PENETRANCE) ^ _ALL_SIGNATURE_KEYS}")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgeBand(_Frozen):
    """A band of the age distribution: ages uniform in ``[low, high)`` with probability ``weight``."""

    weight: float = Field(ge=0)
    low: float = Field(ge=0, le=MAX_AGE)
    high: float = Field(ge=0, le=MAX_AGE + 1)

    @model_validator(mode="after")
    def _ordered(self) -> "AgeBand":
        if self.high <= self.low:
            raise ValueError(f"age band needs low < high, found [{self.low}, {self.high})")
        return self


class DurationBand(_Frozen):
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


class SiteConfig(_Frozen):
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


class PrevalenceRule(_Frozen):
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


class TreatmentRule(_Frozen):
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


class IcuConfig(_Frozen):
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


class InpatientConfig(_Frozen):
    """Routine EEGs of inpatients, and EMU rescue benzodiazepines."""

    routine_inpatient_p: tuple[float, float, float, float, float] = (0.08, 0.10, 0.15, 0.25, 0.30)
    encephalopathy_p: float = Field(default=0.45, ge=0, le=1)
    emu_rescue_benzo_p: float = Field(default=0.12, ge=0, le=1)


class ReportConfig(_Frozen):
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


def _default_prevalence() -> dict[str, PrevalenceRule]:
    r = PrevalenceRule
    # Rates of an EEG-referred population (not the general population): epilepsy and
    # spells are common, cardiometabolic conditions follow age.
    return {
        "hypertension": r(by_age=(0.01, 0.10, 0.35, 0.60, 0.70)),
        "hyperlipidemia": r(by_age=(0.005, 0.08, 0.28, 0.42, 0.42), risk_or={"hypertension": 1.8}),
        "type2_diabetes": r(by_age=(0.005, 0.04, 0.12, 0.20, 0.18),
                            risk_or={"hypertension": 2.0, "hyperlipidemia": 1.5}),
        "hypothyroidism": r(by_age=(0.004, 0.02, 0.04, 0.06, 0.07), female_or=3.0),
        "depression": r(by_age=(0.03, 0.12, 0.13, 0.11, 0.10), female_or=1.7),
        "atrial_fibrillation": r(by_age=(0.0, 0.005, 0.04, 0.12, 0.20), risk_or={"hypertension": 1.5}),
        "anxiety": r(by_age=(0.04, 0.10, 0.09, 0.06, 0.05), female_or=1.6, risk_or={"depression": 3.0}),
        "migraine": r(by_age=(0.05, 0.08, 0.06, 0.03, 0.015), female_or=2.5),
        "syncope": r(by_age=(0.05, 0.07, 0.07, 0.09, 0.11)),
        "pnes": r(by_age=(0.01, 0.025, 0.02, 0.008, 0.004), female_or=2.5,
                  risk_or={"depression": 2.0, "anxiety": 2.0}),
        "stroke": r(by_age=(0.003, 0.015, 0.04, 0.08, 0.11),
                    risk_or={"hypertension": 2.2, "type2_diabetes": 1.6, "atrial_fibrillation": 2.5,
                             "hyperlipidemia": 1.3}),
        "brain_tumor": r(by_age=(0.005, 0.01, 0.02, 0.02, 0.01)),
        "dementia": r(by_age=(0.0, 0.001, 0.02, 0.10, 0.28), risk_or={"stroke": 1.8}),
        "epilepsy_absence": r(by_age=(0.05, 0.004, 0.0, 0.0, 0.0)),
        "epilepsy_generalized": r(by_age=(0.08, 0.06, 0.03, 0.01, 0.01)),
        "epilepsy_focal": r(by_age=(0.10, 0.16, 0.14, 0.11, 0.09),
                            risk_or={"stroke": 3.0, "brain_tumor": 5.0, "dementia": 2.0}),
        "epilepsy_unspecified": r(by_age=(0.05, 0.06, 0.06, 0.05, 0.05), risk_or={"stroke": 2.0}),
    }


def _default_treatments() -> dict[str, TreatmentRule]:
    t = TreatmentRule
    return {
        "hypertension": t(p_treated=0.85, drugs={"lisinopril": 0.30, "amlodipine": 0.30, "losartan": 0.15,
                                                 "hydrochlorothiazide": 0.15, "metoprolol": 0.10}, p_second=0.35),
        "hyperlipidemia": t(p_treated=0.75, drugs={"atorvastatin": 0.7, "simvastatin": 0.3}),
        "type2_diabetes": t(p_treated=0.85, drugs={"metformin": 0.8, "insulin glargine": 0.2}, p_second=0.25),
        "hypothyroidism": t(p_treated=0.95, drugs={"levothyroxine": 1.0}, p_stop=0.02),
        "depression": t(p_treated=0.7, drugs={"sertraline": 0.30, "escitalopram": 0.25, "fluoxetine": 0.15,
                                              "bupropion": 0.10, "mirtazapine": 0.10, "duloxetine": 0.05,
                                              "venlafaxine": 0.05}, p_second=0.1, p_stop=0.25, p_switch=0.15),
        "anxiety": t(p_treated=0.6, drugs={"sertraline": 0.30, "escitalopram": 0.30, "alprazolam": 0.15,
                                           "lorazepam": 0.10, "clonazepam": 0.15}, p_second=0.25, p_stop=0.25),
        "migraine": t(p_treated=0.6, drugs={"sumatriptan": 0.5, "topiramate": 0.2, "propranolol": 0.15,
                                            "amitriptyline": 0.15}, p_second=0.2, p_stop=0.2),
        "atrial_fibrillation": t(p_treated=0.85, drugs={"apixaban": 0.55, "warfarin": 0.15, "rivaroxaban": 0.10,
                                                        "metoprolol": 0.20}, p_second=0.4, p_stop=0.05),
        "stroke": t(p_treated=0.9, drugs={"aspirin": 0.55, "clopidogrel": 0.25, "atorvastatin": 0.20},
                    p_second=0.6, p_stop=0.05, delay_days=7),
        "dementia": t(p_treated=0.7, drugs={"donepezil": 0.6, "memantine": 0.25, "rivastigmine": 0.10,
                                            "galantamine": 0.05}, p_second=0.25),
        "brain_tumor": t(p_treated=0.85, drugs={"temozolomide": 0.45, "dexamethasone": 0.25, "levetiracetam": 0.20,
                                                "bevacizumab": 0.10}, p_second=0.6, p_stop=0.3, delay_days=30),
        "pnes": t(p_treated=0.3, drugs={"sertraline": 0.6, "escitalopram": 0.4}),
        "epilepsy_absence": t(p_treated=0.9, drugs={"ethosuximide": 0.55, "valproate": 0.30, "lamotrigine": 0.15},
                              p_second=0.1, p_switch=0.1, delay_days=30),
        "epilepsy_generalized": t(p_treated=0.9, drugs={"valproate": 0.35, "levetiracetam": 0.35, "lamotrigine": 0.20,
                                                        "topiramate": 0.05, "clobazam": 0.05},
                                  p_second=0.25, p_switch=0.15, delay_days=30),
        "epilepsy_focal": t(p_treated=0.88, drugs={"levetiracetam": 0.40, "lamotrigine": 0.20, "oxcarbazepine": 0.10,
                                                   "carbamazepine": 0.08, "lacosamide": 0.10, "topiramate": 0.04,
                                                   "zonisamide": 0.03, "brivaracetam": 0.03, "clobazam": 0.02},
                            p_second=0.35, p_switch=0.2, delay_days=30),
        "epilepsy_unspecified": t(p_treated=0.8, drugs={"levetiracetam": 0.50, "lamotrigine": 0.20, "valproate": 0.10,
                                                        "phenytoin": 0.10, "phenobarbital": 0.05, "clonazepam": 0.05},
                                  p_second=0.25, p_switch=0.15, delay_days=30),
    }


def _default_races() -> dict[str, float]:
    return {"White": 0.60, "Black": 0.12, "Asian": 0.07, "American Indian/Alaska Native": 0.01,
            "Native Hawaiian/Pacific Islander": 0.005, "Other": 0.04, "Unknown": 0.065, "Hispanic/Latino": 0.09}


class PopulationConfig(_Frozen):
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
    prevalence: dict[str, PrevalenceRule] = Field(default_factory=_default_prevalence)
    incident_p: float = Field(default=0.12, ge=0, le=1)
    treatments: dict[str, TreatmentRule] = Field(default_factory=_default_treatments)
    icu: IcuConfig = Field(default_factory=IcuConfig)
    inpatient: InpatientConfig = Field(default_factory=InpatientConfig)
    penetrance: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_PENETRANCE))
    severity_trait_weight: float = Field(default=0.6, ge=0, le=1)
    reports: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("penetrance", mode="before")
    @classmethod
    def _merge_penetrance(cls, v: Any) -> Any:
        return {**DEFAULT_PENETRANCE, **dict(v)} if isinstance(v, Mapping) else v

    @field_validator("prevalence", mode="before")
    @classmethod
    def _merge_prevalence(cls, v: Any) -> Any:
        return {**_default_prevalence(), **dict(v)} if isinstance(v, Mapping) else v

    @field_validator("treatments", mode="before")
    @classmethod
    def _merge_treatments(cls, v: Any) -> Any:
        return {**_default_treatments(), **dict(v)} if isinstance(v, Mapping) else v

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
        unknown = set(self.penetrance) - _ALL_SIGNATURE_KEYS
        if unknown:
            raise ValueError(f"penetrance: unknown keys {sorted(unknown)}; expected {sorted(_ALL_SIGNATURE_KEYS)}")
        if any(not 0 <= p <= 1 for p in self.penetrance.values()):
            raise ValueError("penetrance values must lie in [0, 1]")
        return self

    def site(self, site_id: str) -> SiteConfig:
        """The site with this id."""
        for s in self.sites:
            if s.site_id == site_id:
                return s
        raise KeyError(f"unknown site {site_id!r}; expected one of {[s.site_id for s in self.sites]}")


# --------------------------------------------------------------------------------------
# Output records
# --------------------------------------------------------------------------------------


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
        return (day - self.birth_date).days / _DAYS_PER_YEAR

    def active_conditions(self, day: dt.date) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if c.active_on(day))

    def active_medications(self, day: dt.date) -> tuple[Medication, ...]:
        return tuple(m for m in self.medications if m.active_on(day))

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


# --------------------------------------------------------------------------------------
# Fake PHI
# --------------------------------------------------------------------------------------

_GIVEN_F = ("Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Susan", "Jessica", "Sarah", "Karen", "Lisa",
            "Nancy", "Sandra", "Ashley", "Emily", "Michelle", "Amanda", "Melissa", "Rebecca", "Laura", "Emma",
            "Olivia", "Sophia", "Ava", "Isabella", "Mia", "Chloe", "Grace", "Lucia", "Mei", "Aisha", "Fatima",
            "Priya", "Rosa", "Yuki", "Ingrid")
_GIVEN_M = ("James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas", "Charles",
            "Daniel", "Matthew", "Anthony", "Mark", "Steven", "Paul", "Andrew", "Joshua", "Kevin", "Brian",
            "Liam", "Noah", "Ethan", "Lucas", "Mason", "Carlos", "Jose", "Wei", "Hiroshi", "Omar", "Ahmed",
            "Raj", "Dmitri", "Kwame", "Lars")
_FAMILY = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
           "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
           "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
           "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green",
           "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Chen",
           "Patel", "Kim", "Okafor", "Kowalski", "Novak", "Haddad", "Tanaka", "Larsen", "O'Brien")

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
    def _has(self, key: str, day: dt.date | None = None) -> bool:
        return any(c.key == key and (day is None or c.active_on(day)) for c in self.conditions)

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

    # -- the patient ----------------------------------------------------------------
    def build(self) -> tuple[Patient, list[SessionTruth]]:
        cfg, rng = self.cfg, self.rng
        site = _choice(rng, cfg.sites, [s.weight for s in cfg.sites])
        sex = "female" if rng.random() < cfg.p_female else "male"
        races = list(cfg.race_weights)
        race = _choice(rng, races, [cfg.race_weights[r] for r in races])
        bands = site.age_bands or cfg.age_bands
        band = _choice(rng, bands, [b.weight for b in bands])
        age0 = min(band.low + rng.random() * (band.high - band.low), MAX_AGE)
        n_sessions = 1 + int(_choice(rng, range(4), cfg.sessions_per_patient))

        # skeleton of admission dates
        gaps = [max(cfg.min_gap_days, int(round(rng.exponential(cfg.mean_gap_days)))) for _ in range(n_sessions - 1)]
        span = (cfg.study_end - cfg.study_start).days
        room = max(0, span - sum(gaps))
        first = cfg.study_start + _days(rng.random() * room)
        skeleton = [first]
        for g in gaps:
            skeleton.append(skeleton[-1] + dt.timedelta(days=g))
        last = skeleton[-1]
        birth = first - _days(age0 * _DAYS_PER_YEAR)
        self.birth = birth

        names = _GIVEN_F if sex == "female" else _GIVEN_M
        given = names[int(rng.random() * len(names))]
        family = _FAMILY[int(rng.random() * len(_FAMILY))]

        # chronic conditions, in CHRONIC_ORDER (comorbidity on the log-odds scale)
        band_idx = _age_band(age0)
        present: set[str] = set()
        exclusive_taken: set[str] = set()
        for key in CHRONIC_ORDER:
            cdef = CONDITIONS[key]
            if cdef.exclusive and cdef.exclusive in exclusive_taken:
                continue
            rule = cfg.prevalence[key]
            p = rule.by_age[band_idx]
            if p <= 0.0:
                continue
            if p < 1.0:
                logit = math.log(p / (1.0 - p))
                if sex == "female":
                    logit += math.log(rule.female_or)
                for risk, orv in rule.risk_or.items():
                    if risk in present:
                        logit += math.log(orv)
                p = 1.0 / (1.0 + math.exp(-logit))
            if rng.random() >= p:
                continue
            max_onset = MAX_AGE if cdef.max_onset_age is None else cdef.max_onset_age
            if n_sessions > 1 and (last - first).days > 1 and rng.random() < cfg.incident_p:
                onset = first + _days(1 + rng.random() * ((last - first).days - 1))
            else:
                lo_age = max(cdef.min_onset_age, age0 - cdef.history_years, 0.0)
                hi_age = min(age0, max_onset)
                onset_age = lo_age + rng.random() * (hi_age - lo_age) if lo_age < hi_age else lo_age
                onset = min(birth + _days(onset_age * _DAYS_PER_YEAR), first)
            onset_age = (onset - birth).days / _DAYS_PER_YEAR
            if not cdef.min_onset_age <= onset_age <= max_onset + 1e-9:
                continue  # outside the condition's onset ages (e.g. dementia before 50)
            present.add(key)
            if cdef.exclusive:
                exclusive_taken.add(cdef.exclusive)
            side = None
            if key in ("epilepsy_focal", "epilepsy_unspecified"):
                lesion = self._side_of(("stroke", "brain_tumor"))
                if lesion is not None and rng.random() < 0.8:
                    side = lesion
            self._new_condition(key, onset, side=side)
        for cond in list(self.conditions):
            self._treat_chronic(cond)

        # sessions, grouped in encounters
        k = 0
        enc_no = 0
        while k < n_sessions:
            day = skeleton[k]
            age = (day - birth).days / _DAYS_PER_YEAR
            if age > MAX_AGE and k > 0:  # ages stay within 0-95: no follow-up past 95
                break
            weights = dict(site.setting_mix)
            if any(c.key in _SPELL_KEYS and c.active_on(day) for c in self.conditions):
                weights["emu"] = weights.get("emu", 0.0) * cfg.emu_or_spells
            if age >= 65:
                weights["icu"] = weights.get("icu", 0.0) * cfg.icu_or_elderly
            settings = [s for s in SETTINGS if weights.get(s, 0.0) > 0]
            setting = _choice(rng, settings, [weights[s] for s in settings])
            m = 1
            if setting in ("emu", "icu"):
                while k + m < n_sessions and rng.random() < cfg.same_admission_p:
                    m += 1
            days = [day + dt.timedelta(days=j) for j in range(m)]
            enc_no += 1
            eid = f"{self.pid}-E{enc_no:02d}"
            self._encounter(eid, site, setting, days, k)
            k += m

        # the sessions' truth
        truths = [self._truth(s, site) for s in self.sessions]
        patient = Patient(
            patient_id=self.pid, mrn=_mrn(self.index, self.seed), given_name=given, family_name=family,
            birth_date=birth, sex=sex, race=race, site=site.site_id,
            conditions=tuple(self.conditions), medications=tuple(self.medications),
            encounters=tuple(self.encounters),
        )
        return patient, truths

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
        cfg, rng = self.cfg, self.rng
        tz = dt.timezone(dt.timedelta(hours=site.utc_offset_h))
        starts = [self._session_start(d, setting, tz) for d in days]
        durations = [self._duration(setting) for _ in days]
        first_day, last_day = days[0], days[-1]
        age = (first_day - self.birth).days / _DAYS_PER_YEAR
        reason: str | None = None
        inpatient = setting != "routine"
        if setting == "routine":
            if rng.random() < cfg.inpatient.routine_inpatient_p[_age_band(age)]:
                inpatient = True
                admit = first_day - _days(_randint(rng, 0, 3))
                discharge = last_day + _days(_randint(rng, 1, 7))
                if rng.random() < cfg.inpatient.encephalopathy_p:
                    reason = "encephalopathy"
                    self._new_condition("encephalopathy", admit, abatement=discharge + _days(_randint(rng, 0, 14)),
                                        encounter_id=eid)
                enc_start = dt.datetime.combine(admit, dt.time(10, 0), tzinfo=tz)
                enc_end = dt.datetime.combine(discharge, dt.time(12, 0), tzinfo=tz)
            else:
                enc_start = starts[0] - dt.timedelta(minutes=20)
                enc_end = starts[-1] + dt.timedelta(seconds=durations[-1], minutes=40)
        elif setting == "emu":
            admit = first_day
            discharge = last_day + _days(_randint(rng, 1, 4))
            enc_start = dt.datetime.combine(admit, dt.time(7, 30), tzinfo=tz)
            enc_end = dt.datetime.combine(discharge, dt.time(11, 0), tzinfo=tz)
            epi = [c for c in self.conditions if c.key in EPILEPSY_KEYS and c.active_on(first_day)]
            if epi and rng.random() < cfg.inpatient.emu_rescue_benzo_p:
                rescue_day = days[_randint(rng, 0, len(days) - 1)]
                self._prescribe("lorazepam", epi[0], rescue_day, rescue_day, encounter_id=eid)
        else:
            admit = first_day - _days(_randint(rng, 0, cfg.icu.max_days_before_eeg))
            discharge = last_day + _days(_randint(rng, 1, cfg.icu.max_stay_after_eeg))
            enc_start = dt.datetime.combine(admit, dt.time(_randint(rng, 0, 23), 0), tzinfo=tz)
            enc_end = dt.datetime.combine(discharge, dt.time(14, 0), tzinfo=tz)
            reason = self._icu_admission(eid, admit, discharge, first_day)
        # the admission's start precedes its first session
        enc_start = min(enc_start, starts[0] - dt.timedelta(minutes=10))
        enc_end = max(enc_end, starts[-1] + dt.timedelta(seconds=durations[-1], minutes=10))
        self.encounters.append(Encounter(eid, site.site_id, setting, inpatient, enc_start, enc_end, reason))
        for j, (start, dur) in enumerate(zip(starts, durations)):
            self.sessions.append({"k": k0 + j, "encounter_id": eid, "setting": setting, "start": start,
                                  "duration_s": dur})

    def _icu_admission(self, eid: str, admit: dt.date, discharge: dt.date, eeg_day: dt.date) -> str:
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
            age_years=round((day - self.birth).days / _DAYS_PER_YEAR, 2),
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


def drug_for_atc(atc: str) -> DrugDef | None:
    """The prescribed drug with this ATC code, if the model uses it."""
    return _DRUG_BY_ATC.get(atc)


def atc_display(atc: str) -> str:
    """WHO name of an ATC code (falls back to the code)."""
    return atc_name(atc) or atc

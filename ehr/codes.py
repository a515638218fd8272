"""Code hierarchies and curated groups: ICD-10-CM (via ``simple_icd_10_cm``) and ATC.

ICD-10-CM
---------
:func:`icd10_normalise` turns ``g40909`` / ``G40.909`` / ``G40909 `` into the dotted,
upper-case form and rejects anything that is not a category or (sub)category code of
ICD-10-CM (blocks such as ``G40-G47`` and chapters are not codes). WHO ICD-10 codes that
ICD-10-CM does not hold (``G41.9``, ``I64``, ``E14.9``) are rejected too.
:func:`icd10_ancestors` walks up the tabular list (nearest first, ending with the block
and the chapter number, e.g. ``G40.909 → G40.90, G40.9, G40, G40-G47, 6``).

``simple_icd_10_cm`` is slow to import (it parses the whole tabular list), so it is
imported on first use, not with this module.

Phenotype groups
----------------
:data:`PHENOTYPE_GROUPS` are curated, documented groupings of ICD-10-CM code prefixes
(the dotted prefix ``G93.4`` matches ``G93.4``, ``G93.40``, ``G93.41``, ``G93.49``),
written out explicitly instead of as ranges so that each can be read and tested. They
cover every condition the synthetic hospital codes and the usual phenotypes of an EEG
population. A few WHO ICD-10 prefixes (``G41``, ``I64``, ``E14``) are listed for
completeness; they never match a validated ICD-10-CM code.

ATC
---
:func:`atc_ancestors` gives the ATC levels above a code (``N03AX14 → N03AX, N03A, N03,
N``); :data:`MEDICATION_GROUPS` are curated drug-class groupings of ATC prefixes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from ehr.atc import ATC_LEVEL_LENGTHS, atc_level, is_atc_code

__all__ = [
    "MEDICATION_GROUPS",
    "PHENOTYPE_GROUPS",
    "STATUS_EPILEPTICUS_CODES",
    "CodeGroup",
    "MedicationGroup",
    "PhenotypeGroup",
    "atc_ancestors",
    "icd10_ancestors",
    "icd10_category",
    "icd10_description",
    "icd10_normalise",
    "is_icd10_code",
    "medication_groups_of",
    "phenotypes_of",
]

_ICD_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")


@lru_cache(maxsize=1)
def _cm() -> ModuleType:
    """The ``simple_icd_10_cm`` module, imported once (its import warns on Python 3.11+)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

    return simple_icd_10_cm


def _dotted(code: str) -> str:
    """Upper-case, strip, remove a trailing dot, insert the dot after 3 characters."""
    c = "".join(code.split()).upper().rstrip(".")
    if "." not in c and len(c) > 3:
        c = f"{c[:3]}.{c[3:]}"
    return c


@lru_cache(maxsize=65536)
def icd10_normalise(code: str) -> str:
    """Dotted, upper-case form of an ICD-10-CM code, validated against the tabular list.

    Parameters
    ----------
    code : str
        ``"G40909"``, ``"g40.909"``, ``" G40.909 "`` ...

    Returns
    -------
    str
        e.g. ``"G40.909"``.

    Raises
    ------
    TypeError
        When ``code`` is not a string.
    ValueError
        When ``code`` is not an ICD-10-CM category / subcategory code
        (blocks such as ``"G40-G47"``, chapters and WHO-only codes included).
    """
    if not isinstance(code, str):
        raise TypeError(f"ICD-10-CM code must be a string, found {type(code).__name__}: {code!r}")
    c = _dotted(code)
    if not _ICD_SHAPE.match(c):
        raise ValueError(f"not an ICD-10-CM code: {code!r} (expected e.g. 'G40.909' or 'G40909')")
    cm = _cm()
    if not cm.is_valid_item(c) or cm.is_chapter_or_block(c):
        raise ValueError(f"not a valid ICD-10-CM code: {code!r} (normalised {c!r} is not in the "
                         "ICD-10-CM tabular list)")
    return c


def is_icd10_code(code: str) -> bool:
    """True when :func:`icd10_normalise` accepts ``code``."""
    try:
        icd10_normalise(code)
    except (TypeError, ValueError):
        return False
    return True


@lru_cache(maxsize=65536)
def _ancestors(code: str) -> tuple[str, ...]:
    return tuple(_cm().get_ancestors(code))


def icd10_ancestors(code: str) -> list[str]:
    """Ancestors of an ICD-10-CM code in the tabular list, nearest first.

    >>> icd10_ancestors("G40909")
    ['G40.90', 'G40.9', 'G40', 'G40-G47', '6']

    Raises
    ------
    ValueError
        When the code is invalid (see :func:`icd10_normalise`).
    """
    return list(_ancestors(icd10_normalise(code)))


def icd10_category(code: str) -> str:
    """The 3-character category of an ICD-10-CM code (``G40.909 → G40``)."""
    return icd10_normalise(code)[:3]


def icd10_description(code: str) -> str:
    """The ICD-10-CM description of a code (``G40.909 → 'Epilepsy, unspecified, not intractable, ...'``)."""
    return str(_cm().get_description(icd10_normalise(code)))


# --------------------------------------------------------------------------------------
# Curated groups
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeGroup:
    """A named group of codes given by code prefixes.

    Attributes
    ----------
    name : str
        Key (snake_case).
    description : str
        What the group means and where its definition comes from.
    prefixes : tuple of str
        Code prefixes (dotted ICD-10-CM or ATC); a code belongs to the group when it
        starts with one of them.
    exclude : tuple of str
        Prefixes removed from the group again.
    """

    name: str
    description: str
    prefixes: tuple[str, ...]
    exclude: tuple[str, ...] = ()

    def matches(self, code: str) -> bool:
        """True when ``code`` (already normalised) starts with a prefix and no exclusion."""
        return code.startswith(self.prefixes) and not (self.exclude and code.startswith(self.exclude))


class PhenotypeGroup(CodeGroup):
    """A disease phenotype: a group of dotted ICD-10-CM prefixes."""


class MedicationGroup(CodeGroup):
    """A drug class: a group of ATC prefixes."""


#: ICD-10-CM codes "with status epilepticus" (G40.x01/x11, G40.80x ...): ICD-10-CM has no
#: G41; status is coded in the 6th character of G40 (checked against the tabular list's
#: descriptions by the tests).
STATUS_EPILEPTICUS_CODES: tuple[str, ...] = (
    "G40.001", "G40.011", "G40.101", "G40.111", "G40.201", "G40.211", "G40.301", "G40.311",
    "G40.401", "G40.411", "G40.501", "G40.801", "G40.803", "G40.811", "G40.813", "G40.821",
    "G40.823", "G40.833", "G40.841", "G40.843", "G40.901", "G40.911", "G40.A01", "G40.A11",
    "G40.B01", "G40.B11", "G40.C01", "G40.C11",
)


def _p(name: str, description: str, *prefixes: str, exclude: tuple[str, ...] = ()) -> PhenotypeGroup:
    return PhenotypeGroup(name, description, tuple(prefixes), exclude)


_PHENOTYPES: tuple[PhenotypeGroup, ...] = (
    # ---- seizures and epilepsy ----
    _p("epilepsy", "Epilepsy and recurrent seizures, any type (G40; WHO G41 status epilepticus).", "G40", "G41"),
    _p("epilepsy_focal", "Localization-related (focal) epilepsy, idiopathic or symptomatic (G40.0-G40.2).",
       "G40.0", "G40.1", "G40.2"),
    _p("epilepsy_generalized", "Generalized epilepsy: idiopathic, other generalized, absence, juvenile myoclonic, "
       "Lafora (G40.3, G40.4, G40.A, G40.B, G40.C).", "G40.3", "G40.4", "G40.A", "G40.B", "G40.C"),
    _p("epilepsy_absence", "Absence epileptic syndrome (G40.A).", "G40.A"),
    _p("status_epilepticus", "Status epilepticus: ICD-10-CM G40 codes 'with status epilepticus' "
       "(STATUS_EPILEPTICUS_CODES) and WHO ICD-10 G41.", *STATUS_EPILEPTICUS_CODES, "G41"),
    _p("convulsions", "Convulsions / seizures not elsewhere classified, febrile seizures (R56).", "R56"),
    _p("pnes", "Psychogenic non-epileptic seizures: conversion disorder with seizures or convulsions (F44.5).",
       "F44.5"),
    _p("syncope", "Syncope and collapse (R55).", "R55"),
    # ---- acute brain dysfunction ----
    _p("encephalopathy", "Encephalopathy: toxic (G92), other/unspecified incl. metabolic (G93.4x), Wernicke "
       "(E51.2), hepatic (K76.82), and delirium due to a known physiological condition (F05), "
       "the bedside face of acute encephalopathy.", "G92", "G93.4", "E51.2", "K76.82", "F05"),
    _p("delirium", "Delirium due to a known physiological condition (F05).", "F05"),
    _p("anoxic_brain_injury", "Anoxic brain damage, not elsewhere classified (G93.1).", "G93.1"),
    _p("cardiac_arrest", "Cardiac arrest (I46).", "I46"),
    _p("altered_consciousness", "Somnolence, stupor and coma (R40).", "R40"),
    _p("sepsis", "Sepsis: streptococcal and other (A40-A41), severe sepsis (R65.2).", "A40", "A41", "R65.2"),
    _p("respiratory_failure", "Respiratory failure, not elsewhere classified (J96).", "J96"),
    # ---- structural and neurodegenerative ----
    _p("stroke", "Cerebrovascular disease: haemorrhage (I60-I62), infarction (I63; WHO I64) and sequelae (I69).",
       "I60", "I61", "I62", "I63", "I64", "I69"),
    _p("ischemic_stroke", "Cerebral infarction (I63) and sequelae of cerebral infarction (I69.3).", "I63", "I69.3"),
    _p("intracranial_haemorrhage", "Non-traumatic intracranial haemorrhage (I60-I62).", "I60", "I61", "I62"),
    _p("tbi", "Intracranial injury (S06).", "S06"),
    _p("brain_tumour", "Brain tumour: malignant (C71), secondary (C79.31), benign (D33), uncertain behaviour (D43).",
       "C71", "C79.31", "D33", "D43"),
    _p("dementia", "Dementia: vascular (F01), in other diseases (F02), unspecified (F03), Alzheimer's disease "
       "(G30), frontotemporal (G31.0), senile degeneration (G31.1), Lewy bodies (G31.83).",
       "F01", "F02", "F03", "G30", "G31.0", "G31.1", "G31.83"),
    _p("alzheimer", "Alzheimer's disease (G30).", "G30"),
    _p("parkinsonism", "Parkinson's disease (G20).", "G20"),
    _p("multiple_sclerosis", "Multiple sclerosis (G35).", "G35"),
    _p("cerebral_palsy", "Cerebral palsy (G80).", "G80"),
    _p("hydrocephalus", "Hydrocephalus (G91).", "G91"),
    # ---- headache, sleep, development, psychiatry ----
    _p("migraine", "Migraine (G43).", "G43"),
    _p("sleep_disorders", "Sleep disorders (G47).", "G47"),
    _p("autism_developmental", "Pervasive developmental disorders (F84) and other / unspecified disorders of "
       "psychological development (F88, F89).", "F84", "F88", "F89"),
    _p("intellectual_disability", "Intellectual disabilities (F70-F79).",
       "F70", "F71", "F72", "F73", "F78", "F79"),
    _p("depression", "Depressive episode (F32) and recurrent major depressive disorder (F33).", "F32", "F33"),
    _p("anxiety", "Other anxiety disorders: panic, generalized anxiety (F41).", "F41"),
    _p("alcohol_use", "Alcohol related disorders (F10).", "F10"),
    # ---- cardiometabolic and other (mostly negative controls) ----
    _p("hypertension", "Hypertensive diseases (I10-I16).", "I10", "I11", "I12", "I13", "I15", "I16"),
    _p("atrial_fibrillation", "Atrial fibrillation and flutter (I48).", "I48"),
    _p("hyperlipidemia", "Disorders of lipoprotein metabolism and other lipidaemias (E78).", "E78"),
    _p("diabetes", "Diabetes mellitus: type 1 (E10), type 2 (E11), other specified (E13); WHO unspecified (E14).",
       "E10", "E11", "E13", "E14"),
    _p("type2_diabetes", "Type 2 diabetes mellitus (E11).", "E11"),
    _p("hypothyroidism", "Hypothyroidism: iodine-deficiency related (E01-E02), other (E03), postprocedural "
       "(E89.0).", "E01", "E02", "E03", "E89.0"),
    _p("ckd", "Chronic kidney disease (N18).", "N18"),
)

#: Curated disease phenotypes by name (see the module docstring).
PHENOTYPE_GROUPS: dict[str, PhenotypeGroup] = {g.name: g for g in _PHENOTYPES}


def _m(name: str, description: str, *prefixes: str, exclude: tuple[str, ...] = ()) -> MedicationGroup:
    return MedicationGroup(name, description, tuple(prefixes), exclude)


_MEDICATIONS: tuple[MedicationGroup, ...] = (
    _m("antiseizure", "Antiepileptics (N03A), clonazepam (N03AE) included.", "N03A"),
    _m("benzodiazepines", "Benzodiazepines: anxiolytic (N05BA), hypnotic (N05CD) and antiepileptic (N03AE).",
       "N05BA", "N05CD", "N03AE"),
    _m("opioids", "Opioid analgesics (N02A) and opioid anaesthetics (N01AH).", "N02A", "N01AH"),
    _m("anaesthetics", "General anaesthetics (N01A), propofol and ketamine (N01AX) included.", "N01A"),
    _m("propofol", "Propofol (N01AX10), the usual cause of drug-induced burst suppression.", "N01AX10"),
    _m("hypnotics_sedatives", "Hypnotics and sedatives (N05C), dexmedetomidine and midazolam included.", "N05C"),
    _m("antipsychotics", "Antipsychotics (N05A).", "N05A"),
    _m("antidepressants", "Antidepressants (N06A).", "N06A"),
    _m("ssri", "Selective serotonin reuptake inhibitors (N06AB).", "N06AB"),
    _m("anti_dementia", "Anti-dementia drugs: cholinesterase inhibitors (N06DA), memantine (N06DX).", "N06D"),
    _m("antiparkinson", "Anti-Parkinson drugs (N04).", "N04"),
    _m("antimigraine", "Antimigraine preparations (N02C).", "N02C"),
    _m("antithrombotics", "Antithrombotic agents (B01).", "B01"),
    _m("anticoagulants", "Anticoagulants: vitamin K antagonists (B01AA), heparins (B01AB), direct thrombin "
       "(B01AE) and factor Xa (B01AF) inhibitors.", "B01AA", "B01AB", "B01AE", "B01AF"),
    _m("antiplatelets", "Platelet aggregation inhibitors (B01AC).", "B01AC"),
    _m("antihypertensives", "Antihypertensives (C02), diuretics (C03), beta blockers (C07), calcium channel "
       "blockers (C08), renin-angiotensin agents (C09).", "C02", "C03", "C07", "C08", "C09"),
    _m("beta_blockers", "Beta blocking agents (C07).", "C07"),
    _m("statins", "HMG CoA reductase inhibitors (C10AA).", "C10AA"),
    _m("antidiabetics", "Drugs used in diabetes (A10).", "A10"),
    _m("insulins", "Insulins and analogues (A10A).", "A10A"),
    _m("corticosteroids", "Corticosteroids for systemic use (H02).", "H02"),
    _m("thyroid_hormones", "Thyroid preparations (H03A).", "H03A"),
    _m("antineoplastics", "Antineoplastic agents (L01).", "L01"),
    _m("immunosuppressants", "Immunosuppressants (L04).", "L04"),
    _m("proton_pump_inhibitors", "Proton pump inhibitors (A02BC).", "A02BC"),
    _m("nsaids", "Non-steroidal anti-inflammatory products (M01A).", "M01A"),
)

#: Curated drug classes by name, as ATC prefixes.
MEDICATION_GROUPS: dict[str, MedicationGroup] = {g.name: g for g in _MEDICATIONS}


def _lenient_icd(code: str) -> str:
    try:
        return icd10_normalise(code)
    except (TypeError, ValueError):
        return _dotted(code) if isinstance(code, str) else ""


def phenotypes_of(codes: Iterable[str]) -> set[str]:
    """Names of the :data:`PHENOTYPE_GROUPS` the ICD-10 codes fall in.

    Parameters
    ----------
    codes : iterable of str
        ICD-10-CM codes, dotted or not; invalid codes are matched in their dotted
        upper-case form (so WHO ``G41.9`` still falls in ``status_epilepticus``).

    Returns
    -------
    set of str
    """
    if isinstance(codes, str):
        raise TypeError(f"codes must be an iterable of codes, found a single string {codes!r}")
    normalised = {_lenient_icd(c) for c in codes}
    return {g.name for g in _PHENOTYPES for c in normalised if c and g.matches(c)}


def medication_groups_of(codes: Iterable[str]) -> set[str]:
    """Names of the :data:`MEDICATION_GROUPS` the ATC codes fall in."""
    if isinstance(codes, str):
        raise TypeError(f"codes must be an iterable of codes, found a single string {codes!r}")
    normalised = {c.strip().upper() for c in codes if isinstance(c, str)}
    return {g.name for g in _MEDICATIONS for c in normalised if g.matches(c)}


def atc_ancestors(code: str) -> list[str]:
    """ATC levels above a code, nearest first (``N03AX14 → ['N03AX', 'N03A', 'N03', 'N']``).

    Raises
    ------
    ValueError
        When ``code`` is not a syntactically valid ATC code.
    """
    c = code.strip().upper() if isinstance(code, str) else code
    if not is_atc_code(c):
        raise ValueError(f"not an ATC code: {code!r} (expected e.g. 'N03AX14')")
    return [atc_level(c, lv) for lv in sorted(ATC_LEVEL_LENGTHS, reverse=True) if ATC_LEVEL_LENGTHS[lv] < len(c)]

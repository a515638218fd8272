"""EHR room of CLEF: FHIR R4 exports to patient records, code tables and hierarchies,
phenotype and drug groups, the EHR token vocabulary and the EHR set encoder.

Flow: ``load_fhir(path)`` → ``PatientRecord`` per patient → ``record.codes_at(session
start)`` → ``CodeSet`` → ``ehr_tokens(codes)`` → ``CodeVocab.encode_batch`` →
``EHREncoder`` → one embedding per session.

Modules
-------
:mod:`ehr.atc`      the curated ATC table (names, RxNorm CUIs, levels)
:mod:`ehr.codes`    ICD-10-CM hierarchy (``simple_icd_10_cm``), ATC levels, curated
                    phenotype and medication groups
:mod:`ehr.record`   ``PatientRecord`` and its entries; active-at semantics
:mod:`ehr.fhir`     ``load_fhir``: Bundle / NDJSON / directory → records + problems
:mod:`ehr.vocab`    ``ehr_tokens`` and ``CodeVocab`` (held-out codes, hierarchical roll-up)
:mod:`ehr.encoder`  ``EHREncoder`` (set transformer) and ``augment_codes``

This package imports nothing else of CLEF. The encoder (``torch``) is imported from its
module, ``from ehr.encoder import EHREncoder``, so ``import ehr`` does not load torch;
``simple_icd_10_cm`` is loaded on the first ICD lookup.
"""

from __future__ import annotations

from ehr.atc import (
    atc_for_name,
    atc_for_rxnorm,
    atc_level,
    atc_name,
    is_atc_code,
    load_atc_table,
    rxnorm_for_atc,
)
from ehr.codes import (
    MEDICATION_GROUPS,
    PHENOTYPE_GROUPS,
    MedicationGroup,
    PhenotypeGroup,
    atc_ancestors,
    icd10_ancestors,
    icd10_category,
    icd10_description,
    icd10_normalise,
    is_icd10_code,
    medication_groups_of,
    phenotypes_of,
)
from ehr.fhir.collector import FhirLoadResult, FhirProblem
from ehr.fhir.load import load_fhir
from ehr.record import (
    CodeSet,
    ConditionEntry,
    EncounterEntry,
    MedicationEntry,
    PatientRecord,
    SessionEntry,
)
from ehr.vocab import CodeVocab, age_bucket, ehr_tokens, parse_held_out

__all__ = [
    "MEDICATION_GROUPS",
    "PHENOTYPE_GROUPS",
    "CodeSet",
    "CodeVocab",
    "ConditionEntry",
    "EncounterEntry",
    "FhirLoadResult",
    "FhirProblem",
    "MedicationEntry",
    "MedicationGroup",
    "PatientRecord",
    "PhenotypeGroup",
    "SessionEntry",
    "age_bucket",
    "atc_ancestors",
    "atc_for_name",
    "atc_for_rxnorm",
    "atc_level",
    "atc_name",
    "ehr_tokens",
    "icd10_ancestors",
    "icd10_category",
    "icd10_description",
    "icd10_normalise",
    "is_atc_code",
    "is_icd10_code",
    "load_atc_table",
    "load_fhir",
    "medication_groups_of",
    "parse_held_out",
    "phenotypes_of",
    "rxnorm_for_atc",
]


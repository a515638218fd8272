"""EHR room of CLEF: FHIR R4 bundles to patient records, code tables (ICD-10-CM, ATC),
hierarchies and phenotype groups, the code vocabulary and the EHR set encoder.

For now it holds the curated ATC table (:mod:`ehr.atc`).
"""

from ehr.atc import (
    atc_for_name,
    atc_for_rxnorm,
    atc_level,
    atc_name,
    is_atc_code,
    load_atc_table,
    rxnorm_for_atc,
)

__all__ = [
    "atc_for_name",
    "atc_for_rxnorm",
    "atc_level",
    "atc_name",
    "is_atc_code",
    "load_atc_table",
    "rxnorm_for_atc",
]

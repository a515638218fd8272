"""ehr.codes: ICD-10-CM hierarchy, phenotype and medication groups, ATC levels."""

from __future__ import annotations

import pytest

from ehr.atc import is_atc_code
from ehr.codes import (
    MEDICATION_GROUPS,
    PHENOTYPE_GROUPS,
    STATUS_EPILEPTICUS_CODES,
    _cm,
    atc_ancestors,
    icd10_ancestors,
    icd10_category,
    icd10_description,
    icd10_normalise,
    is_icd10_code,
    medication_groups_of,
    phenotypes_of,
)

#: WHO ICD-10 prefixes deliberately listed in groups although ICD-10-CM lacks them.
WHO_ONLY = {"G41", "I64", "E14"}


@pytest.mark.parametrize("raw", ["G40909", "g40.909", " G40.909 ", "G40.909.", "g40 909"])
def test_normalise_variants(raw: str) -> None:
    assert icd10_normalise(raw) == "G40.909"


@pytest.mark.parametrize("raw", ["G40-G47", "6", "XYZ", "G41.9", "I64", "", "G40.9999", "1234"])
def test_normalise_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="ICD-10-CM code"):
        icd10_normalise(raw)
    assert not is_icd10_code(raw)


def test_normalise_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="must be a string"):
        icd10_normalise(40909)  # type: ignore[arg-type]


def test_hierarchy() -> None:
    assert icd10_ancestors("G40909") == ["G40.90", "G40.9", "G40", "G40-G47", "6"]
    assert icd10_ancestors("R55")[0] == "R50-R69"
    assert icd10_category("g40.A09") == "G40"
    assert icd10_description("G40.909").startswith("Epilepsy, unspecified, not intractable")
    assert icd10_description("F32.A") == "Depression, unspecified"


def test_every_synthetic_condition_has_its_phenotype() -> None:
    from clef.synthetic.catalogue import CONDITIONS

    expected = {
        "hypertension": "hypertension", "hyperlipidemia": "hyperlipidemia", "type2_diabetes": "type2_diabetes",
        "hypothyroidism": "hypothyroidism", "depression": "depression", "atrial_fibrillation": "atrial_fibrillation",
        "anxiety": "anxiety", "migraine": "migraine", "syncope": "syncope", "pnes": "pnes", "stroke": "stroke",
        "brain_tumor": "brain_tumour", "dementia": "dementia", "epilepsy_absence": "epilepsy_absence",
        "epilepsy_generalized": "epilepsy_generalized", "epilepsy_focal": "epilepsy_focal",
        "epilepsy_unspecified": "epilepsy", "encephalopathy": "encephalopathy",
        "anoxic_brain_injury": "anoxic_brain_injury", "cardiac_arrest": "cardiac_arrest",
        "status_epilepticus": "status_epilepticus", "acute_respiratory_failure": "respiratory_failure",
        "sepsis": "sepsis",
    }
    assert set(expected) == set(CONDITIONS), "a condition was added to the synthetic catalog"
    for key, cdef in CONDITIONS.items():
        for code in cdef.codes:
            assert icd10_normalise(code) == code
            assert expected[key] in phenotypes_of([code]), (key, code)
    # negative controls stay out of the neurological groups
    assert phenotypes_of(["I10", "E78.5"]) == {"hypertension", "hyperlipidemia"}
    assert "status_epilepticus" not in phenotypes_of(["G40.909"])
    assert phenotypes_of(["G40.901"]) == {"epilepsy", "status_epilepticus"}
    assert phenotypes_of(["G41.9"]) == {"epilepsy", "status_epilepticus"}  # WHO code, matched leniently
    assert phenotypes_of(["G93.41"]) == {"encephalopathy"}


def test_group_prefixes_are_real_codes() -> None:
    cm = _cm()
    for g in PHENOTYPE_GROUPS.values():
        assert g.description and g.prefixes
        for prefix in g.prefixes + g.exclude:
            assert prefix in WHO_ONLY or (cm.is_valid_item(prefix) and not cm.is_chapter_or_block(prefix)), \
                (g.name, prefix)
    for g in MEDICATION_GROUPS.values():
        assert g.description and all(is_atc_code(p) for p in g.prefixes), g.name


def test_status_epilepticus_codes_match_the_tabular_list() -> None:
    cm = _cm()
    derived = {c for c in cm.get_descendants("G40") if cm.is_leaf(c)
               and "with status epilepticus" in cm.get_description(c)}
    assert set(STATUS_EPILEPTICUS_CODES) == derived


def test_medication_groups_cover_the_synthetic_drugs() -> None:
    from clef.synthetic.catalogue import DRUGS

    for drug in DRUGS.values():
        assert medication_groups_of([drug.atc]), drug.key
    assert medication_groups_of(["N03AE01"]) == {"antiseizure", "benzodiazepines"}
    assert {"anaesthetics", "propofol"} <= medication_groups_of(["N01AX10"])
    assert medication_groups_of(["N05CD08"]) == {"benzodiazepines", "hypnotics_sedatives"}
    assert medication_groups_of(["C10AA05"]) == {"statins"}
    with pytest.raises(TypeError):
        medication_groups_of("N03AX14")


def test_atc_ancestors() -> None:
    assert atc_ancestors("N03AX14") == ["N03AX", "N03A", "N03", "N"]
    assert atc_ancestors("n03a") == ["N03", "N"]
    assert atc_ancestors("N") == []
    with pytest.raises(ValueError, match="not an ATC code"):
        atc_ancestors("N3")

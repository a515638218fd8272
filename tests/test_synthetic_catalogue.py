"""The synthetic hospital's clinical catalogue: shipped as data, validated on load, bad entries refused clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from clef.synthetic.catalogue import (
    CATALOGUE,
    CHRONIC_ORDER,
    CONDITIONS,
    DATA_DIR,
    DEFAULT_PENETRANCE,
    DRUGS,
    SIGNATURE_GROUPS,
    Catalogue,
    CatalogueError,
    load_catalogue,
)
from clef.synthetic.population_config import PopulationConfig, PrevalenceRule, TreatmentRule, read_rules


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    """A writable copy of the package's catalogue files."""
    folder = tmp_path / "catalogue"
    shutil.copytree(DATA_DIR, folder)
    return folder


def _edit(folder: Path, name: str, change) -> None:  # noqa: ANN001 - a callable editing the parsed YAML
    data = yaml.safe_load((folder / name).read_text())
    change(data)
    (folder / name).write_text(yaml.safe_dump(data, sort_keys=False))


def test_the_package_catalogue_loads_and_validates() -> None:
    again = load_catalogue()
    assert isinstance(again, Catalogue) and again == CATALOGUE
    assert {"conditions.yaml", "drugs.yaml", "signature_groups.yaml", "penetrance.yaml"} <= {
        p.name for p in DATA_DIR.iterdir()}
    assert len(CONDITIONS) == len(CATALOGUE.conditions) and len(DRUGS) == len(CATALOGUE.drugs)
    assert set(DEFAULT_PENETRANCE) == {i.key for c in CONDITIONS.values() for i in c.signature} | {
        i.key for items in SIGNATURE_GROUPS.values() for i in items}
    assert CHRONIC_ORDER[0] == "hypertension" and "sepsis" in CONDITIONS and "sepsis" not in CHRONIC_ORDER
    for d in DRUGS.values():
        assert d.indications <= set(CONDITIONS)


def test_a_copy_loads_like_the_package(copy: Path) -> None:
    assert load_catalogue(copy) == CATALOGUE


@pytest.mark.parametrize(("name", "change", "expected"), [
    # an unknown field (a typo) is refused, not ignored
    ("conditions.yaml", lambda d: d[0].update(negative_contol=True),
     r"conditions.yaml, entry 1 \('hypertension'\), negative_contol: Extra inputs are not permitted"),
    ("conditions.yaml", lambda d: d[10]["signature"][0].update(finding="spikes"),
     r"conditions.yaml, entry 11 \('stroke'\), signature.0.finding: Value error, unknown finding 'spikes'"),
    ("conditions.yaml", lambda d: d[10]["signature"][0].update(severity=[0.9, 0.3]),
     r"entry 11 \('stroke'\), signature.0.severity: Value error, severity range must satisfy 0 < lo <= hi <= 1"),
    ("conditions.yaml", lambda d: d[10]["variants"][0].update(side="left"),
     r"entry 11 \('stroke'\), variants.0.side: Input should be 'L' or 'R'"),
    ("conditions.yaml", lambda d: d[0].update(signature=[{"finding": "pdr_slowing", "key": "hypertension:pdr_slowing",
                                                           "severity": [0.2, 0.5]}]),
     r"entry 1 \('hypertension'\): Value error, a negative control has no EEG signature"),
    ("conditions.yaml", lambda d: d.append(dict(d[0])), r"conditions: duplicate keys \['hypertension'\]"),
    ("drugs.yaml", lambda d: d[0].update(indications=["epilepsy_focal", "headache"]),
     r"drug 'levetiracetam': unknown indications \['headache'\]"),
    ("drugs.yaml", lambda d: d[0].update(atc="N03"),
     r"drugs.yaml, entry 1 \('levetiracetam'\), atc: Value error, expected an ATC substance code"),
    ("drugs.yaml", lambda d: d[0].update(signature_group="stimulant"), r"unknown signature_group 'stimulant'"),
    ("penetrance.yaml", lambda d: d.update({"stroke:lpd": 1.5}), r"penetrance values must lie in \[0, 1\]"),
    ("penetrance.yaml", lambda d: d.pop("stroke:lpd"), r"penetrance must give exactly the signature keys: "
                                                       r"missing \['stroke:lpd'\]"),
])
def test_a_bad_entry_is_refused_with_a_clear_message(copy: Path, name: str, change,  # noqa: ANN001
                                                       expected: str) -> None:
    _edit(copy, name, change)
    with pytest.raises(CatalogueError, match=expected) as info:
        load_catalogue(copy)
    assert str(copy) in str(info.value)


def test_missing_or_malformed_files_are_refused(copy: Path) -> None:
    (copy / "drugs.yaml").unlink()
    with pytest.raises(CatalogueError, match="cannot read the catalogue file .*drugs.yaml"):
        load_catalogue(copy)
    (copy / "drugs.yaml").write_text("- {key: [unclosed\n")
    with pytest.raises(CatalogueError, match="drugs.yaml is not valid YAML"):
        load_catalogue(copy)
    (copy / "drugs.yaml").write_text("levetiracetam: N03AX14\n")
    with pytest.raises(CatalogueError, match="drugs.yaml: Input should be a valid tuple"):
        load_catalogue(copy)


def test_default_rates_are_data_and_a_bad_rule_is_refused(tmp_path: Path) -> None:
    defaults = PopulationConfig()
    assert read_rules(DATA_DIR / "prevalence.yaml", PrevalenceRule) == defaults.prevalence
    assert read_rules(DATA_DIR / "treatments.yaml", TreatmentRule) == defaults.treatments
    bad = tmp_path / "prevalence.yaml"
    bad.write_text("stroke: {by_age: [0.1, 0.2, 1.5, 0.1, 0.1]}\n")
    with pytest.raises(CatalogueError, match=r"prevalence.yaml, 'stroke': by_age: Value error, by_age probabilities"):
        read_rules(bad, PrevalenceRule)
    bad.write_text("epilepsy_focal: {p_treated: 0.5, drugs: {aspirin: 1.0}, p_secnd: 0.1}\n")
    with pytest.raises(CatalogueError, match=r"'epilepsy_focal': p_secnd: Extra inputs are not permitted"):
        read_rules(bad, TreatmentRule)

"""The clinical catalogue of the synthetic hospital: conditions, drugs and the EEG findings they cause.

The catalogue is data, beside this module (``clef/synthetic/data/``, shipped with the
package): ``conditions.yaml`` (real ICD-10-CM codes, EEG signatures, onset ages),
``drugs.yaml`` (real drugs with ATC codes and indications), ``signature_groups.yaml`` (the
EEG effects of drug groups) and ``penetrance.yaml`` (how often each effect shows in a
session). This module holds its schema (pydantic models that refuse unknown fields) and
loads it once, on import, checking every entry and every cross-reference; a bad entry is
refused with a :class:`CatalogueError` that names the file and the entry.

The constants below (:data:`CONDITIONS`, :data:`DRUGS`, ...) are views of the loaded
catalogue used by the population model (:mod:`clef.synthetic.population`), the FHIR
export, the reports and the benchmark's truth classes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from clef.config import FrozenConfig

from clef.synthetic.spec import FINDINGS, Setting, Side
from ehr.atc import is_atc_code, rxnorm_for_atc

__all__ = [
    "ALLOWED_FINDINGS",
    "ALL_ICD10_CODES",
    "CATALOGUE",
    "CHRONIC_ORDER",
    "CONDITIONS",
    "DATA_DIR",
    "DEFAULT_PENETRANCE",
    "DRUGS",
    "EPILEPSY_KEYS",
    "NEGATIVE_CONTROL_KEYS",
    "RACES",
    "SETTINGS",
    "SIGNATURE_GROUPS",
    "SIGNATURE_KEYS",
    "SPELL_KEYS",
    "Catalogue",
    "CatalogueError",
    "CodeVariant",
    "ConditionDef",
    "DrugDef",
    "SignatureItem",
    "load_catalogue",
    "read_yaml",
]

#: The folder holding the catalogue's files.
DATA_DIR = Path(__file__).resolve().parent / "data"

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
#: Care settings of an EEG session.
SETTINGS: tuple[Setting, ...] = ("routine", "emu", "icu")

_FILES = {"conditions": "conditions.yaml", "drugs": "drugs.yaml", "signature_groups": "signature_groups.yaml",
          "penetrance": "penetrance.yaml"}


class CatalogueError(ValueError):
    """A catalogue file is missing, is not YAML of the expected shape, or holds an invalid entry."""


class SignatureItem(FrozenConfig):
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
    alt_weight : float
    """

    finding: str
    key: str = Field(pattern=r"^[a-z0-9_]+:[a-z0-9_]+$")
    severity: tuple[float, float]
    lateralized: bool = False
    settings: tuple[Setting, ...] = SETTINGS
    acute_days: int | None = Field(default=None, ge=0)
    alt: str | None = None
    alt_weight: float = Field(default=1.0, gt=0)

    @field_validator("finding")
    @classmethod
    def _known_finding(cls, v: str) -> str:
        if v not in FINDINGS:
            raise ValueError(f"unknown finding {v!r}; expected one of {FINDINGS}")
        return v

    @field_validator("severity")
    @classmethod
    def _severity_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"severity range must satisfy 0 < lo <= hi <= 1, found {list(v)}")
        return v


class CodeVariant(FrozenConfig):
    """One ICD-10-CM code a condition is coded with (chosen per patient by ``weight``).

    ``side`` is the lesion hemisphere the code implies, if any.
    """

    code: str = Field(pattern=r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
    display: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)
    side: Side | None = None


class ConditionDef(FrozenConfig):
    """A condition of the catalogue.

    Attributes
    ----------
    key : str
        Catalogue key (``"epilepsy_focal"``); rates in ``PopulationConfig`` use it.
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
    admission_only : bool
        Only ever acquired with an admission (never drawn as a chronic condition).
    lateralized : bool
        Has a hemisphere (stroke, brain tumour, focal epilepsy).
    exclusive : str or None
        At most one condition of an exclusive group per patient (the epilepsies).
    spells : bool
        Causes spells (epilepsy, PNES, syncope): an EMU admission is more likely.
    history_years, min_onset_age, max_onset_age : float
        The onset of a condition present at the first session lies at most
        ``history_years`` before it, at an age within ``[min_onset_age, max_onset_age]``;
        a patient drawn with a condition whose onset cannot fit does not get it.
    """

    key: str = Field(pattern=r"^[a-z0-9_]+$")
    label: str = Field(min_length=1)
    variants: tuple[CodeVariant, ...] = Field(min_length=1)
    signature: tuple[SignatureItem, ...] = ()
    negative_control: bool = False
    acute: bool = False
    admission_only: bool = False
    lateralized: bool = False
    exclusive: str | None = None
    spells: bool = False
    history_years: float = Field(default=15.0, ge=0)
    min_onset_age: float = Field(default=0.0, ge=0)
    max_onset_age: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ConditionDef":
        if self.negative_control and self.signature:
            raise ValueError("a negative control has no EEG signature")
        if self.acute and not self.admission_only:
            raise ValueError("an acute condition is acquired with an admission: set admission_only")
        if self.max_onset_age is not None and self.max_onset_age < self.min_onset_age:
            raise ValueError(f"max_onset_age ({self.max_onset_age}) is below min_onset_age ({self.min_onset_age})")
        return self

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(v.code for v in self.variants)


class DrugDef(FrozenConfig):
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

    key: str = Field(pattern=r"^[a-z][a-z0-9 \-]*$")
    atc: str
    indications: frozenset[str] = Field(min_length=1)
    signature_group: str | None = None

    @field_validator("atc")
    @classmethod
    def _atc_code(cls, v: str) -> str:
        if not is_atc_code(v) or len(v) != 7:
            raise ValueError(f"expected an ATC substance code (7 characters, e.g. N03AX14), found {v!r}")
        return v

    @property
    def name(self) -> str:
        return self.key

    @property
    def rxnorm(self) -> str | None:
        return rxnorm_for_atc(self.atc)


class Catalogue(FrozenConfig):
    """The whole catalogue, its cross-references checked.

    Attributes
    ----------
    conditions : tuple of ConditionDef
        In drawing order: conditions that are not ``admission_only`` are drawn in this
        order, so a comorbidity may only name an earlier one.
    drugs : tuple of DrugDef
    signature_groups : dict
        Drug group → the EEG findings it causes.
    penetrance : dict
        Signature key → default probability per session; exactly the keys used.
    """

    conditions: tuple[ConditionDef, ...] = Field(min_length=1)
    drugs: tuple[DrugDef, ...] = Field(min_length=1)
    signature_groups: dict[str, tuple[SignatureItem, ...]]
    penetrance: dict[str, float]

    @model_validator(mode="after")
    def _cross_references(self) -> "Catalogue":
        _unique("conditions", [c.key for c in self.conditions])
        _unique("drugs", [d.key for d in self.drugs])
        _unique("drug ATC codes", [d.atc for d in self.drugs])
        known = {c.key for c in self.conditions}
        for d in self.drugs:
            unknown = sorted(d.indications - known)
            if unknown:
                raise ValueError(f"drug {d.key!r}: unknown indications {unknown}; expected condition keys")
            if d.signature_group is not None and d.signature_group not in self.signature_groups:
                raise ValueError(f"drug {d.key!r}: unknown signature_group {d.signature_group!r}; "
                                 f"expected one of {sorted(self.signature_groups)}")
        keys = {i.key for c in self.conditions for i in c.signature}
        keys |= {i.key for items in self.signature_groups.values() for i in items}
        if set(self.penetrance) != keys:
            raise ValueError(f"penetrance must give exactly the signature keys: missing "
                             f"{sorted(keys - set(self.penetrance))}, unknown {sorted(set(self.penetrance) - keys)}")
        bad = {k: p for k, p in self.penetrance.items() if not 0.0 <= p <= 1.0}
        if bad:
            raise ValueError(f"penetrance values must lie in [0, 1], found {bad}")
        return self


def _unique(what: str, keys: list[str]) -> None:
    dup = sorted(k for k, n in Counter(keys).items() if n > 1)
    if dup:
        raise ValueError(f"{what}: duplicate keys {dup}")


def read_yaml(path: Path) -> Any:
    """A YAML data file, parsed; :class:`CatalogueError` when it is missing or not YAML."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise CatalogueError(f"cannot read the catalogue file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path} is not valid YAML: {exc}") from None


def _where(raw: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """``drugs.yaml, entry 3 ('lacosamide'), indications`` for a pydantic error location."""
    if not loc or loc[0] not in _FILES:
        return "catalogue"
    section, rest = str(loc[0]), list(loc[1:])
    where = _FILES[section]
    if rest and isinstance(rest[0], int) and isinstance(raw.get(section), list):
        i = rest.pop(0)
        entry = raw[section][i] if i < len(raw[section]) else None
        name = f" ({entry['key']!r})" if isinstance(entry, dict) and "key" in entry else ""
        where += f", entry {i + 1}{name}"
    elif rest and section == "signature_groups":
        where += f", group {rest.pop(0)!r}"
    if rest:
        where += ", " + ".".join(str(p) for p in rest)
    return where


def load_catalogue(folder: str | Path = DATA_DIR) -> Catalogue:
    """Read and validate the catalogue files of ``folder``.

    Parameters
    ----------
    folder : str or Path
        Holds ``conditions.yaml``, ``drugs.yaml``, ``signature_groups.yaml`` and
        ``penetrance.yaml`` (default: the package's own).

    Returns
    -------
    Catalogue

    Raises
    ------
    CatalogueError
        A file is missing or unreadable, or an entry is invalid; the message names the
        file, the entry (number and key) and the field.
    """
    folder = Path(folder)
    raw = {section: read_yaml(folder / name) for section, name in _FILES.items()}
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_where(raw, tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise CatalogueError(f"invalid clinical catalogue in {folder}:\n  " + "\n  ".join(problems)) from None


#: The package's catalogue.
CATALOGUE: Catalogue = load_catalogue()

#: The condition catalogue, by key.
CONDITIONS: dict[str, ConditionDef] = {c.key: c for c in CATALOGUE.conditions}
#: Order in which chronic conditions are drawn; a comorbidity odds ratio may only name
#: a condition earlier in this order.
CHRONIC_ORDER: tuple[str, ...] = tuple(c.key for c in CATALOGUE.conditions if not c.admission_only)
NEGATIVE_CONTROL_KEYS: tuple[str, ...] = tuple(c.key for c in CATALOGUE.conditions if c.negative_control)
EPILEPSY_KEYS: tuple[str, ...] = tuple(c.key for c in CATALOGUE.conditions if c.exclusive == "epilepsy")
#: Conditions with spells (an EMU admission is more likely).
SPELL_KEYS: frozenset[str] = frozenset(c.key for c in CATALOGUE.conditions if c.spells)
#: Every ICD-10-CM code the model can emit.
ALL_ICD10_CODES: tuple[str, ...] = tuple(v.code for c in CATALOGUE.conditions for v in c.variants)

#: The drugs the model prescribes, by key.
DRUGS: dict[str, DrugDef] = {d.key: d for d in CATALOGUE.drugs}
#: EEG effects of drug groups.
SIGNATURE_GROUPS: dict[str, tuple[SignatureItem, ...]] = dict(CATALOGUE.signature_groups)
#: Default probability per session of every signature key.
DEFAULT_PENETRANCE: dict[str, float] = dict(CATALOGUE.penetrance)
#: Every signature key (of conditions and drug groups).
SIGNATURE_KEYS: frozenset[str] = frozenset(DEFAULT_PENETRANCE)


def _allowed_findings() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for c in CATALOGUE.conditions:
        for v in c.variants:
            out.setdefault(v.code, set()).update(i.finding for i in c.signature)
    for d in CATALOGUE.drugs:
        items = SIGNATURE_GROUPS.get(d.signature_group or "", ())
        out.setdefault(d.atc, set()).update(i.finding for i in items)
    return {k: frozenset(v) for k, v in out.items()}


#: For every ICD-10-CM or ATC code the model emits, the findings it may cause.
ALLOWED_FINDINGS: dict[str, frozenset[str]] = _allowed_findings()

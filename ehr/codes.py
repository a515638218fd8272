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
written out explicitly in ``ehr/data/code_groups.yaml`` instead of as ranges so that
each can be read and tested. They cover every condition the synthetic hospital codes and
the usual phenotypes of an EEG population. A few WHO ICD-10 prefixes (``G41``, ``I64``, ``E14``) are listed for
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
from importlib import resources
from types import ModuleType
from typing import TypeVar

import yaml

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


_G = TypeVar("_G", bound=CodeGroup)
_GROUP_TABLE = yaml.safe_load(resources.files("ehr").joinpath("data", "code_groups.yaml").read_text(encoding="utf-8"))


def _groups(kind: str, cls: type[_G]) -> dict[str, _G]:
    """The ``kind`` groups (``phenotypes`` or ``medications``) of ``ehr/data/code_groups.yaml``, in file order."""
    return {name: cls(name, g["description"], tuple(g["prefixes"]), tuple(g.get("exclude", ())))
            for name, g in _GROUP_TABLE[kind].items()}


#: Curated disease phenotypes by name (see the module docstring).
PHENOTYPE_GROUPS: dict[str, PhenotypeGroup] = _groups("phenotypes", PhenotypeGroup)
#: Curated drug classes by name, as ATC prefixes.
MEDICATION_GROUPS: dict[str, MedicationGroup] = _groups("medications", MedicationGroup)

#: ICD-10-CM codes "with status epilepticus": the G40 prefixes of the ``status_epilepticus`` group.
STATUS_EPILEPTICUS_CODES: tuple[str, ...] = tuple(
    p for p in PHENOTYPE_GROUPS["status_epilepticus"].prefixes if p.startswith("G40"))


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
    return {g.name for g in PHENOTYPE_GROUPS.values() for c in normalised if c and g.matches(c)}


def medication_groups_of(codes: Iterable[str]) -> set[str]:
    """Names of the :data:`MEDICATION_GROUPS` the ATC codes fall in."""
    if isinstance(codes, str):
        raise TypeError(f"codes must be an iterable of codes, found a single string {codes!r}")
    normalised = {c.strip().upper() for c in codes if isinstance(c, str)}
    return {g.name for g in MEDICATION_GROUPS.values() for c in normalised if g.matches(c)}


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

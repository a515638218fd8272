"""A small curated ATC table (WHO Anatomical Therapeutic Chemical classification).

No installable package ships ATC, so CLEF carries ``ehr/data/atc.csv``: about 125 rows
covering the drugs the synthetic hospital prescribes and the groups of CLEF's EHR
vocabulary (N nervous system: N01 anaesthetics, N02 analgesics/opioids, N03
antiepileptics, N05A antipsychotics, N05BA/N05CD benzodiazepines, N06A antidepressants,
N06D anti-dementia drugs; L antineoplastic/immunomodulating; H systemic hormones; plus
the common cardiovascular, antithrombotic and diabetes drugs of an adult EEG population).

Columns
-------
atc_code : str
    Group (1, 3, 4 or 5 characters) or substance (7 characters) code.
name : str
    WHO name (groups in upper case as the WHO index prints levels 1-3).
rxnorm_cui : str or null
    RxNorm ingredient RxCUI; left empty where it was not verified (never guessed).
level1 .. level4 : str or null
    The code's ancestors: anatomical main group (``N``), therapeutic subgroup
    (``N03``), pharmacological subgroup (``N03A``), chemical subgroup (``N03AX``).

Substance names follow the WHO (INN) spelling (``paracetamol``, ``acetylsalicylic acid``,
``valproic acid``); :func:`atc_for_name` also accepts the common US names listed in
:data:`NAME_ALIASES` (``acetaminophen``, ``aspirin``, ``valproate`` ...).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import polars as pl

__all__ = [
    "ATC_LEVEL_LENGTHS",
    "NAME_ALIASES",
    "atc_for_name",
    "atc_for_rxnorm",
    "atc_level",
    "atc_name",
    "is_atc_code",
    "load_atc_table",
    "rxnorm_for_atc",
]

#: Length of an ATC code at each level (1: anatomical group ... 5: chemical substance).
ATC_LEVEL_LENGTHS: dict[int, int] = {1: 1, 2: 3, 3: 4, 4: 5, 5: 7}

#: Common (mostly US) drug names mapped to the WHO name used in the table.
NAME_ALIASES: dict[str, str] = {
    "acetaminophen": "paracetamol",
    "aspirin": "acetylsalicylic acid",
    "asa": "acetylsalicylic acid",
    "valproate": "valproic acid",
    "sodium valproate": "valproic acid",
    "divalproex": "valproic acid",
    "divalproex sodium": "valproic acid",
    "levothyroxine": "levothyroxine sodium",
    "methimazole": "thiamazole",
    "cyclosporine": "ciclosporin",
    "mycophenolate": "mycophenolic acid",
    "mycophenolate mofetil": "mycophenolic acid",
    "carbidopa-levodopa": "levodopa and decarboxylase inhibitor",
    "carbidopa/levodopa": "levodopa and decarboxylase inhibitor",
    "levodopa/carbidopa": "levodopa and decarboxylase inhibitor",
}

_CODE_RE = re.compile(r"^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$")
_SCHEMA = dict.fromkeys(("atc_code", "name", "rxnorm_cui", "level1", "level2", "level3", "level4"), pl.Utf8)


def is_atc_code(code: str) -> bool:
    """True when ``code`` is syntactically an ATC code of any level (``N``, ``N03``, ``N03AX14``)."""
    return isinstance(code, str) and bool(_CODE_RE.match(code))


@lru_cache(maxsize=1)
def _table() -> pl.DataFrame:
    source = resources.files("ehr").joinpath("data", "atc.csv")
    with resources.as_file(source) as path:
        df = pl.read_csv(path, schema=_SCHEMA)
    bad = [c for c in df["atc_code"].to_list() if not is_atc_code(c)]
    if bad:
        raise ValueError(f"atc.csv holds malformed ATC codes: {bad}")
    if df["atc_code"].n_unique() != df.height:
        raise ValueError("atc.csv holds duplicate ATC codes")
    return df


def load_atc_table() -> pl.DataFrame:
    """The curated ATC table as a polars DataFrame (one row per group or substance).

    Returns
    -------
    polars.DataFrame
        Columns ``atc_code, name, rxnorm_cui, level1, level2, level3, level4`` (all
        strings; ``rxnorm_cui`` and the deeper levels are null where not applicable).
    """
    return _table().clone()


@lru_cache(maxsize=1)
def _indexes() -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]:
    df = _table()
    by_code: dict[str, str] = {}
    rx_by_code: dict[str, str] = {}
    code_by_rx: dict[str, str] = {}
    code_by_name: dict[str, str] = {}
    for code, name, cui in zip(df["atc_code"], df["name"], df["rxnorm_cui"]):
        by_code[code] = name
        if cui:
            rx_by_code[code] = cui
            code_by_rx.setdefault(cui, code)
        if len(code) == 7:  # substances only: a group name is not a drug name
            code_by_name.setdefault(name.lower(), code)
    return by_code, rx_by_code, code_by_rx, code_by_name


def atc_level(code: str, level: int) -> str:
    """The ancestor of ``code`` at ``level`` (1-5), e.g. ``atc_level("N03AX14", 2) == "N03"``.

    Parameters
    ----------
    code : str
        An ATC code of level ``level`` or deeper.
    level : int
        1 anatomical main group, 2 therapeutic subgroup, 3 pharmacological subgroup,
        4 chemical subgroup, 5 chemical substance.

    Raises
    ------
    ValueError
        When the level is not 1-5, the code is malformed, or the code is shallower
        than the requested level.
    """
    if level not in ATC_LEVEL_LENGTHS:
        raise ValueError(f"ATC level must be 1-5, found {level!r}")
    code = code.strip().upper() if isinstance(code, str) else code
    if not is_atc_code(code):
        raise ValueError(f"not an ATC code: {code!r} (expected e.g. 'N03AX14')")
    n = ATC_LEVEL_LENGTHS[level]
    if len(code) < n:
        raise ValueError(f"ATC code {code!r} is shallower than level {level} ({n} characters)")
    return code[:n]


def atc_name(code: str) -> str | None:
    """WHO name of an ATC code in the table, or None when the table does not hold it."""
    return _indexes()[0].get(code.strip().upper()) if isinstance(code, str) else None


def rxnorm_for_atc(code: str) -> str | None:
    """RxNorm ingredient RxCUI of a substance code, or None when unknown."""
    return _indexes()[1].get(code.strip().upper()) if isinstance(code, str) else None


def atc_for_rxnorm(cui: str | int) -> str | None:
    """ATC substance code of an RxNorm ingredient RxCUI, or None when not in the table."""
    return _indexes()[2].get(str(cui).strip())


def atc_for_name(drug_name: str) -> str | None:
    """ATC substance code for a drug name (case-insensitive; WHO or common US name).

    >>> atc_for_name("Levetiracetam")
    'N03AX14'
    >>> atc_for_name("aspirin")
    'B01AC06'
    """
    if not isinstance(drug_name, str):
        return None
    key = " ".join(drug_name.strip().lower().split())
    key = NAME_ALIASES.get(key, key)
    return _indexes()[3].get(key)

"""FHIR ``Patient``: sex, birth date, race and ethnicity (US Core extensions); no name, MRN or address."""

from __future__ import annotations

from typing import Any

from ehr.fhir.collector import Collector, Demographics, Urls
from ehr.fhir.values import US_CORE_ETHNICITY, US_CORE_RACE, as_date

__all__ = ["read_patient"]

_OMB_RACE = {
    "2106-3": "White",
    "2054-5": "Black",
    "2028-9": "Asian",
    "1002-5": "American Indian/Alaska Native",
    "2076-8": "Native Hawaiian/Pacific Islander",
    "2131-1": "Other",
}
_RACE_TEXT = {
    "white": "White",
    "caucasian": "White",
    "black": "Black",
    "black or african american": "Black",
    "african american": "Black",
    "asian": "Asian",
    "american indian/alaska native": "American Indian/Alaska Native",
    "american indian or alaska native": "American Indian/Alaska Native",
    "native hawaiian/pacific islander": "Native Hawaiian/Pacific Islander",
    "native hawaiian or other pacific islander": "Native Hawaiian/Pacific Islander",
    "other": "Other",
    "other race": "Other",
    "unknown": "Unknown",
    "asked but unknown": "Unknown",
    "declined": "Unknown",
    "patient declined": "Unknown",
    "hispanic/latino": "Hispanic/Latino",
    "hispanic or latino": "Hispanic/Latino",
    "hispanic": "Hispanic/Latino",
    "latino": "Hispanic/Latino",
}
_UNKNOWN_CODES = {"UNK", "ASKU", "NI", "NASK", "NAVU", "PREFUS", "ASKED-DECLINED"}

_ETHNICITY = {"2135-2": "Hispanic or Latino", "2186-5": "Not Hispanic or Latino"}
_SEX = {"female": "F", "male": "M", "other": None, "unknown": None}


def read_patient(col: Collector, p: Any, src: str, urls: Urls) -> None:
    """Demographics of a ``Patient``: sex, birth date, race and ethnicity (no name, MRN or address)."""
    pid = p.id
    if not pid:
        col.problem(src, "Patient", None, "Patient has no id; skipped")
        return
    demo = Demographics()
    if p.gender is not None:
        if p.gender in _SEX:
            demo.sex = _SEX[p.gender]
        else:
            col.problem(src, "Patient", pid, f"invalid gender {p.gender!r} (expected male, female, other or "
                                             "unknown); sex treated as unknown")
    demo.birth_date = col.check_past(p.birthDate, as_date(p.birthDate), "birthDate", src, p)
    for ext in p.extension or []:
        if ext.url == US_CORE_RACE:
            demo.race = _race(ext)
        elif ext.url == US_CORE_ETHNICITY:
            demo.ethnicity = _ethnicity(ext)
    col.demo[pid] = demo


def _race(ext: Any) -> str | None:
    """One of CLEF's 8 race classes from a US Core race extension (None: not stated)."""
    omb: set[str] = set()
    unknown = False
    text: str | None = None
    detailed = False
    for sub in ext.extension or []:
        coding = sub.valueCoding
        if sub.url in ("ombCategory", "detailed") and coding is not None:
            if coding.code in _OMB_RACE:
                omb.add(_OMB_RACE[coding.code])
            elif sub.url == "detailed":
                detailed = True
            elif coding.code in _UNKNOWN_CODES:
                unknown = True
        elif sub.url == "text" and sub.valueString:
            text = sub.valueString
    if len(omb) == 1:
        return omb.pop()
    if len(omb) > 1:
        return "Other"  # more than one race: CLEF's 8 classes have no "multiple"
    if text:
        return _RACE_TEXT.get(" ".join(text.lower().split()), "Unknown" if unknown else "Other")
    if unknown:
        return "Unknown"
    return "Other" if detailed else None


def _ethnicity(ext: Any) -> str | None:
    """The OMB ethnicity of a US Core ethnicity extension (None: not stated)."""
    text: str | None = None
    for sub in ext.extension or []:
        if sub.url == "ombCategory" and sub.valueCoding is not None and sub.valueCoding.code in _ETHNICITY:
            return _ETHNICITY[sub.valueCoding.code]
        if sub.url == "text" and sub.valueString:
            text = sub.valueString
    if text:
        t = text.strip().lower()
        if t.startswith(("not ", "non")):
            return "Not Hispanic or Latino"
        if "hispanic" in t or "latino" in t:
            return "Hispanic or Latino"
    return None

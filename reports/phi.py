"""Rule-based PHI scrubbing of report text (HIPAA Safe Harbor identifiers that reports carry).

:func:`scrub_phi` replaces, with typed placeholders:

* ``[NAME]``: person names after cues ("Patient:", "Name:", "Referring physician:",
  "Interpreted by:", "Signed by" ...), after titles ("Dr.", "Mr.", "Mrs.", "Ms."), before
  degrees ("A. Smith, MD"), "LAST, FIRST" in header lines; then every other occurrence
  of a harvested name anywhere in the text ("Rosa Carter is a 15-year-old ..."), and the
  caller's ``extra_names`` (e.g. from the EHR or the EDF header).
* ``[DATE]``: 06/29/2018, 6-29-18, 29.06.2018, 2018-06-29, 2018/06/29, November 8, 2003,
  Nov. 8th 2003, 8 Nov 2003, 8th of November 2003, 08-NOV-2003, November 2003.
* ``[ID]``: values after "MRN", "Medical record number", "Acct", "Accession", "FIN",
  "CSN", "SSN", "Patient ID" ...; SSN-shaped numbers; any other run of 6+ digits.
* ``[PHONE]``: (617) 555-0134, 617-555-0134, +1 617 555 0134, with extensions;
  values after "Phone:", "Tel:", "Fax:" and "Pager:".
* ``[EMAIL]``, ``[URL]``.
* ``[PLACE]``: street addresses ("12 Elm Street", with the city that follows when a
  state or a ZIP code closes it: "12 Elm Street Boston MA 02115"), "City, ST 02115",
  facility names ending in Hospital/Medical Center/Clinic/Institute/Infirmary ("at
  Northgate University Hospital"), values after "Address:".
* ages over 89 become "90+" (Safe Harbor aggregates them): "a 93-year-old" → "a
  90+-year-old".

Clinical content is left alone: frequencies ("9 Hz", "2.5-3 Hz"), durations, counts
("19 electrodes"), ages up to 89, electrode names (F7, T3, Fp1 ...), "10-20 system",
amplitudes, ranges such as "1-3 s". Only cue-based names are harvested for the
document-wide pass, and harvested tokens that are also clinical or common English words
("White", "Young", "Sharp" ...) are replaced only where capitalised next to another part
of the name, so "sharp waves" survive a Dr. Sharp.

Where matches overlap, their union is replaced by one placeholder (that of the longest
match, then the most specific kind), so no part of any match is left: the scrubber
over-redacts rather than leaks.

Optionally, a spaCy model (:class:`PhiConfig` ``spacy_model``: a package name or a local
path) adds its PERSON/GPE/LOC/FAC entities; spaCy is imported lazily and a clear
:class:`ImportError` says so when it is requested but not installed.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PLACEHOLDERS", "PhiConfig", "ScrubResult", "scrub_phi"]

logger = logging.getLogger(__name__)

#: Placeholder written for each kind of identifier.
PLACEHOLDERS: dict[str, str] = {k: f"[{k.upper()}]" for k in ("name", "date", "id", "phone", "email", "url", "place")}


class PhiConfig(BaseModel):
    """Options of :func:`scrub_phi`.

    Attributes
    ----------
    min_id_digits : int
        Runs of at least this many digits are replaced as identifiers anywhere.
    scrub_places : bool
        Replace addresses, "City, ST" and facility names.
    cap_ages : bool
        Replace ages over 89 by "90+".
    spacy_model : str or None
        spaCy model (installed package name or local path) whose PERSON, GPE, LOC and
        FAC entities are also replaced; None (default) uses the rules only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_id_digits: int = Field(default=6, ge=4, le=20)
    scrub_places: bool = True
    cap_ages: bool = True
    spacy_model: str | None = None


@dataclass(frozen=True)
class ScrubResult:
    """A scrubbed text.

    Attributes
    ----------
    text : str
        The text with identifiers replaced by :data:`PLACEHOLDERS`.
    n_replacements : int
        Number of spans replaced.
    kinds : dict of str to int
        Replacements per kind (``name``, ``date``, ``id``, ``phone``, ``email``,
        ``url``, ``place``, ``age``).
    """

    text: str
    n_replacements: int
    kinds: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------ patterns

_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_FULL_MONTHS = r"(?:January|February|March|April|June|July|August|September|October|November|December)"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d{2}"

_DATE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # 06/29/2018, 6-29-18, 29.06.2018 (same separator twice)
    re.compile(r"(?<![\w./-])\d{1,2}([/.-])\d{1,2}\1(?:\d{4}|\d{2})(?![\w/-]|\.\d)"),
    # 2018-06-29, 2018/06/29, 2018.06.29
    re.compile(r"(?<![\w./-])(?:19|20)\d{2}([/.-])\d{1,2}\1\d{1,2}(?![\w/-]|\.\d)"),
    # November 8, 2003 / Nov. 8th 2003 / NOV 8 2003
    re.compile(rf"\b{_MONTHS}\.?\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE),
    # 8 Nov 2003 / 8th of November, 2003 / 08-NOV-2003 / 8-Nov-03
    re.compile(rf"\b{_DAY}(?:\s+of)?[\s-]+{_MONTHS}\.?,?[\s-]+(?:{_YEAR}|\d{{2}})\b", re.IGNORECASE),
    # November 2003 / Nov. 2003
    re.compile(rf"\b{_MONTHS}\.?,?\s+{_YEAR}\b", re.IGNORECASE),
    # November 8 (full month name, capitalised, no year)
    re.compile(rf"\b{_FULL_MONTHS}\s+{_DAY}\b(?!\s*(?:Hz|s\b|sec|min|%))"),
)

_ID_CUE = re.compile(
    r"\b(?:MRN|MR\s?#|medical\s+record(?:\s+(?:number|no\.?|#))?|patient\s+(?:id|number|no\.?)|pt\s+id|"
    r"acct|account(?:\s+(?:number|no\.?))?|accession(?:\s+(?:number|no\.?))?|FIN|CSN|SSN|"
    r"encounter\s+(?:id|number)|visit\s+(?:id|number)|study\s+(?:id|number)|EEG\s*(?:#|no\.?|number)|"
    r"record\s+(?:number|no\.?)|ID)\b\s*(?:[:#=]|no\.?)?\s*(?P<v>[A-Z]{0,4}[-\s]?\d[\w-]{2,})",
    re.IGNORECASE,
)
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_PHONE_CUE = re.compile(r"\b(?:phone|tel(?:ephone)?|fax|pager|cell|mobile)\b\.?\s*(?:#|no\.?)?\s*:?\s*"
                        r"(?P<v>\+?[\d()][\d() .-]{5,}\d(?:\s*(?:x|ext\.?)\s*\d{1,5})?)", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w.-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
                    r"(?:\s*(?:x|ext\.?)\s*\d{1,5})?(?![\w-])", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)

_STREET = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
           r"Terrace|Parkway|Pkwy|Highway|Hwy|Square|Sq)")
_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|"
           "NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY")
_ZIP = r"\d{5}(?:-\d{4})?"
# The street address takes a city that follows it when a state or a ZIP code closes the
# city ("12 Elm Street Boston MA 02115"): without the comma "City, ST" needs, nothing else
# would replace the city. A capitalised word alone after the street is not taken (it is
# as likely the next sentence).
_ADDRESS = re.compile(rf"\b\d{{1,5}}(?:[ \t]+[A-Z][a-zA-Z]+){{1,4}}[ \t]+{_STREET}\b\.?"
                      r"(?:,?\s+(?:Apt|Suite|Unit|#)\.?\s*\w+)?"
                      rf"(?:,?[ \t]+[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){{0,2}},?[ \t]+"
                      rf"(?:(?:{_STATES})\b(?:[ \t]+{_ZIP}\b)?|{_ZIP}\b))?")
_CITY_STATE = re.compile(rf"\b[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){{0,2}},[ \t]+(?:{_STATES})\b"
                         rf"(?:\s+{_ZIP})?")
_FACILITY_WORDS = (r"(?:Hospital|Medical\s+Cent(?:er|re)|Health\s+(?:System|Center|Centre)|Clinic|Clinics|Institute|"
                   r"Infirmary|Children'?s|Healthcare)")
_FACILITY = re.compile(rf"\b(?:(?:St\.|Saint|Mount|Mt\.)[ \t]+)?(?:[A-Z][a-zA-Z'&-]+[ \t]+){{1,4}}{_FACILITY_WORDS}\b"
                       rf"(?:[ \t]+(?:of|at)[ \t]+[A-Z][a-zA-Z]+(?:[ \t]+[A-Z][a-zA-Z]+)?)?")
# The cued value runs to two spaces, the line's end or the next "Key:" field; a key never
# follows a comma ("4 birch road, springfield Tel:" keeps the city in the value) and holds
# no run of spaces (those end the value first).
_ADDRESS_CUE = re.compile(r"\b(?:address|location|city|hometown)\s*:\s*(?P<v>[^\n]+?)"
                          r"(?=\s{2,}|\s*$|(?<!,)\s+\w(?:\w| (?=\w)){0,25}:)",
                          re.IGNORECASE | re.MULTILINE)
_AGE_OVER_89 = re.compile(r"\b(?P<n>9\d|1[0-2]\d)(?P<u>[- ](?:years?|yrs?|y)[- ]old|\s*(?:yo|y/o)\b)", re.IGNORECASE)

# -- names
_TITLE = r"(?:Dr|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor)\.?"
_INITIAL = r"[A-Z]\.(?:\s?[A-Z]\.)?"
_NAME_WORD = (r"(?:[A-Z][a-z]+(?:['’-][A-Z]?[a-z]+)*|[A-Z]['’][A-Z][a-z]+|Mc[A-Z][a-z]+|"
              r"[A-Z]{2,}(?:['’-][A-Z]+)?)"
              r"(?![\w'’-]|[ \t]*:)")
_PARTICLE = r"(?:van|von|de|del|della|da|di|la|le|du|bin|al|ten|ter)"
_DEGREE = (r"(?:M\.D\.|MD|D\.O\.|DO|Ph\.D\.|PhD|R\.N\.|RN|NP|PA-C|MBBS|MBChB|FRCPC|FRCP|"
           r"R\.[ \t]?EEG[ \t]?T\.|CNIM|RPSGT|Jr\.|Jr|Sr\.|Sr|III|II|IV)")
_NAME_SEQ = rf"(?:{_INITIAL}[ \t]?|{_NAME_WORD}[ \t]|{_PARTICLE}[ \t])*(?:{_NAME_WORD}|{_INITIAL})"
_NAME_CUES = (
    r"patient(?:'s)?(?:\s+name)?", r"pt(?:\s+name)?", r"name", r"full name", r"last name", r"first name",
    r"referring(?:\s+(?:physician|provider|doctor|md|clinician))?", r"referred by",
    r"ordering(?:\s+(?:physician|provider|md))?", r"ordered by", r"requested by",
    r"requesting(?:\s+(?:physician|provider))?", r"attending(?:\s+(?:physician|neurologist))?",
    r"interpreted by", r"interpreting(?:\s+(?:physician|neurologist))?", r"read by", r"reviewed by", r"reported by",
    r"(?:electronically\s+)?signed(?:\s+by)?", r"dictated by", r"transcribed by", r"verified by", r"finalized by",
    r"technologist", r"eeg tech(?:nologist)?", r"tech", r"recorded by", r"physician", r"neurologist", r"fellow",
    r"resident", r"pcp", r"primary care(?:\s+physician)?", r"cc", r"guardian", r"mother", r"father", r"parent",
    r"spouse", r"contact", r"next of kin",
)
_CUE_RE = re.compile(rf"\b(?:{'|'.join(_NAME_CUES)})\s*:\s*|\b(?:referred|interpreted|read|reviewed|signed|dictated|"
                     r"ordered|requested|seen|evaluated|examined)\s+by\s+", re.IGNORECASE)
_CUE_VALUE = re.compile(rf"(?:{_TITLE}[ \t]+)?(?P<name>{_NAME_SEQ})(?:[ \t]*,?[ \t]*{_DEGREE}(?![\w]))*")
_TITLED = re.compile(rf"\b{_TITLE}[ \t]+(?P<name>{_NAME_SEQ})(?:[ \t]*,?[ \t]*{_DEGREE}(?![\w]))*")
_DEGREED = re.compile(rf"(?<![\w.])(?P<name>(?:{_INITIAL}[ \t]?|{_NAME_WORD}[ \t]){{0,3}}{_NAME_WORD}),?[ \t]+"
                      r"(?:M\.D\.|MD(?![\w])|D\.O\.|DO(?![\w])|Ph\.D\.|PhD(?![\w])|MBBS(?![\w])|FRCPC(?![\w]))")
_LAST_FIRST = re.compile(rf"\b(?P<name>{_NAME_WORD}(?:[- ]{_NAME_WORD})?,[ \t]*{_NAME_WORD}"
                         rf"(?:[ \t]+{_INITIAL}|[ \t]+{_NAME_WORD})?)")

# Words that are never names (headings, header keys, report words), so a capitalised word
# after a cue or a title is not taken for one.
_NOT_NAMES = frozenset(
    [
        "patient", "name", "mrn", "dob", "date", "study", "referring", "physician", "interpreted", "by", "md", "do",
        "phd", "rn", "eeg", "report", "routine", "video", "continuous", "icu", "emu", "unit", "history", "clinical",
        "indication", "medications", "meds", "technique", "introduction", "description", "findings", "impression",
        "interpretation", "conclusion", "correlation", "comment", "summary", "none", "unknown", "not", "available",
        "n/a", "na", "the", "a", "an", "of", "and", "or", "with", "for", "at", "on", "in", "to", "is", "was", "are",
        "were", "male", "female", "reason", "referral", "time", "age", "sex", "gender", "location", "room", "bed",
        "hospital", "medical", "center", "clinic", "university", "department", "neurology", "neurophysiology",
        "epilepsy", "monitoring", "intensive", "care", "attending", "technologist", "tech", "signed", "electronically",
        "dictated", "reviewed", "read", "staff", "team", "neurologist", "fellow", "resident", "service", "see", "above",
        "below", "dr", "mr", "mrs", "ms", "miss", "prof", "doctor", "yes", "no", "normal", "abnormal",
    ]
)
# Harvested name tokens that are also clinical or ordinary English words: replaced
# elsewhere in the text only in a name context (capitalised, next to another name token).
_COMMON_WORDS = frozenset(
    [
        "left", "right", "bilateral", "awake", "asleep", "drowsy", "sleep", "background", "rhythm", "alpha", "beta",
        "theta", "delta", "spike", "spikes", "sharp", "waves", "wave", "slowing", "slow", "focal", "generalized",
        "diffuse", "seizure", "seizures", "discharges", "epileptiform", "periodic", "burst", "suppression", "voltage",
        "amplitude", "asymmetry", "artifact", "hz", "white", "young", "green", "king", "hill", "hall", "brown", "black",
        "gray", "grey", "rose", "grace", "hope", "joy", "may", "june", "april", "mark", "will", "bill", "long", "short",
        "small", "little", "early", "late", "summer", "winter", "page", "ward", "nurse", "baker", "miller", "hunter",
        "fisher", "cook", "carter", "mason", "taylor", "turner", "walker", "wood", "woods", "park", "lee", "bell",
        "moore", "love", "chance", "frank", "rich", "price", "lane", "field", "ford", "stone", "rivers", "banks",
        "bush", "cross", "hart", "day", "light", "close", "best", "strong", "power",
    ]
) | _NOT_NAMES


# Capitalised words that precede names without being part of them.
_NOT_PREFIX = frozenset(
    [
        "his", "her", "their", "its", "our", "my", "your", "mother", "father", "son", "daughter", "wife", "husband",
        "sister", "brother", "aunt", "uncle", "grandmother", "grandfather", "parent", "guardian", "per", "from", "with",
        "when", "then", "while", "after", "before", "since", "by", "and", "or", "but", "as", "seen", "saw", "mrs", "mr",
        "ms", "dr", "miss", "patient", "pt",
    ]
)


@dataclass
class _Span:
    start: int
    end: int
    kind: str
    replacement: str | None = None


#: Which placeholder names a union of overlapping spans of equal length: the kind whose
#: patterns are the most specific first (a number after "Tel:" that is also a long digit
#: run is a phone).
_KIND_RANK = {kind: i for i, kind in enumerate(("email", "url", "phone", "id", "date", "name", "place", "age"))}


def _add(spans: list[_Span], start: int, end: int, kind: str, replacement: str | None = None) -> None:
    if end > start:
        spans.append(_Span(start, end, kind, replacement))


def _name_tokens(name: str) -> list[str]:
    """Tokens of a name worth harvesting (no titles, initials, degrees, particles)."""
    name = re.sub(rf"\b{_TITLE}(?=\s)", " ", name)
    out = []
    for tok in re.split(r"[\s,]+", name):
        tok = tok.strip(".,;:'’()")
        if len(tok) < 2 or not re.match(r"^[A-Za-z][A-Za-z'’-]*$", tok):
            continue
        if re.fullmatch(_DEGREE, tok) or re.fullmatch(_PARTICLE, tok, re.IGNORECASE):
            continue
        out.append(tok)
    return out


def _looks_like_name(candidate: str) -> bool:
    toks = _name_tokens(candidate)
    if not toks:
        return bool(re.fullmatch(rf"\s*(?:{_INITIAL}\s*)+", candidate))
    return not all(t.lower() in _NOT_NAMES for t in toks)


def _name_spans(text: str, spans: list[_Span], harvested: set[str]) -> None:
    # Cue-based: "Patient: Rosa Carter", "Referring physician: Dr. E. Delgado", "Interpreted by: T. Petrov, MD".
    for cue in _CUE_RE.finditer(text):
        m = _CUE_VALUE.match(text, cue.end())
        if not m:
            continue
        name = m.group("name")
        # "LAST, FIRST" after a cue: include the part after the comma.
        lf = _LAST_FIRST.match(text, cue.end())
        end = m.end()
        if lf and lf.end() > end and _looks_like_name(lf.group("name")):
            name, end = lf.group("name"), max(end, lf.end())
        if not _looks_like_name(name):
            continue
        _add(spans, cue.end(), end, "name")
        harvested.update(_name_tokens(name))
        harvested.add(name)
    for m in _TITLED.finditer(text):
        if _looks_like_name(m.group("name")):
            _add(spans, m.start(), m.end(), "name")
            harvested.update(_name_tokens(m.group("name")))
    for m in _DEGREED.finditer(text):
        name = m.group("name")
        # keep only the trailing name-looking words ("Interpreted by A. Smith, MD")
        if _looks_like_name(name):
            toks = [t for t in _name_tokens(name) if t.lower() not in _NOT_NAMES]
            if not toks:
                continue
            first = text.find(toks[0], m.start())
            init = re.search(rf"(?:{_INITIAL}\s?)+$", text[m.start():first])
            start = m.start() + init.start() if init else first
            _add(spans, start, m.end(), "name")
            harvested.update(toks)
    # "LAST, FIRST" in header lines (lines holding "Key: value" fields or before any prose).
    for line in re.finditer(r"[^\n]+", text):
        s = line.group(0)
        if not re.search(r"\b(?:patient|name|pt|mrn|dob)\b\s*:", s, re.IGNORECASE):
            continue
        for m in _LAST_FIRST.finditer(s):
            if _looks_like_name(m.group("name")):
                _add(spans, line.start() + m.start(), line.start() + m.end(), "name")
                harvested.update(_name_tokens(m.group("name")))


def _propagate_names(text: str, spans: list[_Span], names: Iterable[str]) -> None:
    """Replace every other occurrence of harvested names and tokens."""
    full_set = {n.strip() for n in names if len(n.strip()) >= 2}
    for n in list(full_set):  # "CARTER, ROSA" is also written "Rosa Carter"
        parts = [p.strip() for p in n.split(",") if p.strip()]
        if len(parts) == 2:
            full_set.add(f"{parts[1]} {parts[0]}")
    full = sorted(full_set, key=len, reverse=True)
    tokens = {t for n in full for t in _name_tokens(n)} | {n for n in full if " " not in n and "," not in n}
    for n in full:
        if " " in n or "," in n:
            pat = r"[\s,]+".join(re.escape(t) for t in re.split(r"[\s,]+", n) if t)
            for m in re.finditer(rf"(?<![\w])(?:{pat})(?![\w])", text, re.IGNORECASE):
                _add(spans, m.start(), m.end(), "name")
    common = {t for t in tokens if t.lower() in _COMMON_WORDS}
    plain = tokens - common
    if plain:
        alt = "|".join(re.escape(t) for t in sorted(plain, key=len, reverse=True))
        # a capitalised first name right before a harvested surname joins it ("his mother Jane Smith")
        pat = rf"(?<![\w'’-])(?:(?P<pre>[A-Z][a-z]+)[ \t]+)?(?P<tok>(?:{alt})(?:['’]s)?)(?![\w'’-])"
        for m in re.finditer(pat, text, re.IGNORECASE):
            pre = m.group("pre")
            joins = bool(pre) and pre[:1].isupper() and pre.lower() not in _COMMON_WORDS | _NOT_PREFIX
            _add(spans, m.start() if joins else m.start("tok"), m.end(), "name")
    if common and plain:
        # a common-word surname only when capitalised right next to another name token
        alt_c = "|".join(re.escape(t) for t in sorted(common, key=len, reverse=True))
        alt_p = "|".join(re.escape(t) for t in sorted(plain, key=len, reverse=True))
        pat = rf"(?<![\w])(?:(?:{alt_p})[\s,]+(?:{alt_c})|(?:{alt_c}),?\s+(?:{alt_p}))(?![\w])"
        for m in re.finditer(pat, text, re.IGNORECASE):
            if all(w[:1].isupper() for w in re.split(r"[\s,]+", m.group(0)) if w):
                _add(spans, m.start(), m.end(), "name")


def _regex_spans(text: str, spans: list[_Span], cfg: PhiConfig) -> None:
    long_number = re.compile(rf"(?<![\w.,])\d{{{cfg.min_id_digits},}}(?![\w]|[.,]\d)")
    rules = [(_EMAIL, 0, "email"), (_URL, 0, "url"), (_PHONE_CUE, "v", "phone"), (_PHONE, 0, "phone"),
             *((p, 0, "date") for p in _DATE_PATTERNS), (_ID_CUE, "v", "id"), (_SSN, 0, "id"), (long_number, 0, "id")]
    if cfg.scrub_places:
        rules += [(_ADDRESS_CUE, "v", "place"), (_ADDRESS, 0, "place"), (_CITY_STATE, 0, "place"),
                  (_FACILITY, 0, "place")]
    for pat, group, kind in rules:
        for m in pat.finditer(text):
            if pat is not _ID_CUE or re.search(r"\d", m.group("v")):  # a cued ID holds a digit
                _add(spans, m.start(group), m.end(group), kind)
    if cfg.cap_ages:
        for m in _AGE_OVER_89.finditer(text):
            _add(spans, m.start("n"), m.end("n"), "age", replacement="90+")


@lru_cache(maxsize=2)
def _load_spacy(model: str) -> Any:
    try:
        import spacy
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"PHI scrubbing with spaCy was requested (spacy_model={model!r}) but spaCy is not installed; "
            "install spacy and a model, or set PhiConfig.spacy_model=None to use the rules only"
        ) from e
    try:
        return spacy.load(model)
    except OSError as e:  # pragma: no cover - needs spaCy
        raise ImportError(f"could not load the spaCy model {model!r} (expected an installed package or a "
                          f"local model directory): {e}") from e


def _spacy_spans(text: str, spans: list[_Span], model: str, harvested: set[str]) -> None:
    nlp = _load_spacy(model)
    for ent in nlp(text).ents:  # pragma: no cover - needs spaCy
        if ent.label_ == "PERSON":
            _add(spans, ent.start_char, ent.end_char, "name")
            harvested.update(t for t in _name_tokens(ent.text) if t.lower() not in _COMMON_WORDS)
        elif ent.label_ in ("GPE", "LOC", "FAC"):
            _add(spans, ent.start_char, ent.end_char, "place")


def _resolve(spans: list[_Span]) -> list[_Span]:
    """Non-overlapping spans: each run of overlapping spans becomes their union.

    A scrubber must over-redact rather than leak: keeping one of two overlapping spans
    would leave the other's remainder in the text ("12 Elm Street" and "Elm Street
    Boston, MA 02115" would leave "Boston, MA 02115"). Spans that only touch stay apart.
    The union's placeholder is that of its longest span (it names most of the text
    removed: an address cue's value that holds a phone number is a ``[PLACE]``), between
    spans of equal length that of the kind first in :data:`_KIND_RANK`, so the choice
    never depends on the order the patterns ran in. A literal replacement (an age's
    "90+") stands only for its own span: a union holding any placeholder span takes the
    placeholder.
    """
    order = sorted(spans, key=lambda s: (s.start, s.end))
    groups: list[list[_Span]] = []
    end = 0
    for s in order:
        if groups and s.start < end:
            groups[-1].append(s)
            end = max(end, s.end)
        else:
            groups.append([s])
            end = s.end
    kept = []
    for group in groups:
        typed = [s for s in group if s.replacement is None] or group
        best = min(typed, key=lambda s: (-(s.end - s.start), _KIND_RANK[s.kind]))
        kept.append(_Span(group[0].start, max(s.end for s in group), best.kind, best.replacement))
    return kept


def scrub_phi(text: str, *, extra_names: Iterable[str] = (), config: PhiConfig | None = None) -> ScrubResult:
    """Replace protected health information in a report by typed placeholders.

    Parameters
    ----------
    text : str
        Report text.
    extra_names : iterable of str
        Names known to belong to this report (patient, relatives, staff), e.g. from the
        EHR or the EDF header; each full name and each of its tokens is replaced
        everywhere (case-insensitive).
    config : PhiConfig, optional
        Options (ID digit threshold, places, ages over 89, optional spaCy model).

    Returns
    -------
    ScrubResult
        Scrubbed text, number of replacements and counts per kind.

    Raises
    ------
    TypeError
        If ``text`` is not a str.
    ImportError
        If a spaCy model is requested and spaCy (or the model) is not available.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, found {type(text).__name__}")
    if isinstance(extra_names, str):
        extra_names = (extra_names,)
    cfg = config or PhiConfig()
    spans: list[_Span] = []
    harvested: set[str] = set()
    _regex_spans(text, spans, cfg)
    _name_spans(text, spans, harvested)
    if cfg.spacy_model:
        _spacy_spans(text, spans, cfg.spacy_model, harvested)
    harvested.update(n for n in extra_names if isinstance(n, str))
    harvested = {h for h in harvested if h.lower() not in _NOT_NAMES}
    _propagate_names(text, spans, harvested)

    kept = _resolve(spans)
    kinds = Counter(s.kind for s in kept)
    out: list[str] = []
    pos = 0
    for s in kept:
        out += [text[pos:s.start], s.replacement if s.replacement is not None else PLACEHOLDERS[s.kind]]
        pos = s.end
    out.append(text[pos:])
    if kept:
        logger.debug("scrubbed %d PHI spans: %s", len(kept), dict(kinds))
    return ScrubResult(text="".join(out), n_replacements=len(kept), kinds=dict(kinds))

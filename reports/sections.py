"""Split a clinical EEG report into its canonical sections.

Real reports (and the synthetic hospital's) are laid out as a title, a PHI header, and
headed sections in the ACNS order: history, medications, technique, description of the
record, impression, clinical correlation. Headings vary in wording ("DESCRIPTION OF THE
RECORD", "Findings", "EEG description" ...), case, punctuation (with or without a colon,
a dash, markdown emphasis) and layout (heading alone on its line, or followed by text
on the same line: "IMPRESSION: Abnormal EEG ...").

Rules
-----
* A line starts a section when it begins with a known heading (:data:`HEADING_SYNONYMS`,
  any case) that is either alone on the line, followed by ``:``/``-``, or written in
  upper case and followed by text ("IMPRESSION Normal EEG"). "History of epilepsy ..."
  in running text is therefore *not* a heading.
* A heading written in upper case with a colon after a sentence end on the same line
  ("... reactive. IMPRESSION: normal EEG.") also starts a section, so reports whose line
  breaks were lost still split.
* "Background" is ambiguous (clinical background or background *activity*): it goes to
  ``description`` when its text reads electrographic (Hz, rhythm, alpha, slowing ...),
  else to ``history``.
* Text before the first heading (title, PHI header), header fields anywhere
  ("MRN: ...", "Date of study: ...") and signature lines ("Interpreted by: ...") go to
  ``other``; only prose with EEG vocabulary before the first heading (a collapsed
  report: "The background is continuous. IMPRESSION: ...") goes to ``description``.
* **Free text with no recognised heading** goes to ``description`` (minus header and
  signature lines, which still go to ``other``): the body of an unstructured report is
  almost always its description and impression, and putting it there keeps
  :meth:`ReportSections.electrographic_text` and finding extraction working on it.
* A section heading seen twice (e.g. "Findings" then "EEG description") accumulates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

__all__ = ["HEADING_SYNONYMS", "SECTION_NAMES", "ReportSections", "parse_sections"]

#: Canonical section names, in report order.
SECTION_NAMES: tuple[str, ...] = ("history", "medications", "technique", "description", "impression", "correlation")

#: Canonical section → heading texts recognised for it (matched case-insensitively, with
#: any run of spaces, and "/" with or without spaces around it).
HEADING_SYNONYMS: dict[str, tuple[str, ...]] = {
    "history": (
        "clinical history", "history", "indication/history", "history/indication", "indications/history",
        "reason for study", "reason for referral", "reason for eeg", "reason for the study", "reason for exam",
        "indication", "indications", "indication for study", "clinical indication", "clinical information",
        "clinical summary", "history of present illness", "hpi", "patient history", "brief history",
        "clinical background", "background",
    ),
    "medications": (
        "medications", "medication", "current medications", "current medication", "meds", "current meds",
        "medications at time of study", "antiseizure medications", "anticonvulsants", "aeds", "asms",
    ),
    "technique": (
        "technique", "introduction", "technical description", "technical", "technical summary",
        "technical comments", "recording technique", "procedure", "methods", "method", "study type",
        "type of study", "recording conditions", "montages",
    ),
    "description": (
        "description of the record", "description of the recording", "description of record", "description",
        "eeg description", "findings", "eeg findings", "record description", "recording description",
        "background activity", "eeg background", "activation procedures", "activation", "sleep", "events",
        "epileptiform activity", "interictal findings", "ictal findings", "body of report", "report",
    ),
    "impression": (
        "impression", "impressions", "eeg impression", "interpretation", "eeg interpretation", "conclusion",
        "conclusions", "summary", "summary of findings", "diagnosis", "eeg diagnosis", "opinion",
    ),
    "correlation": (
        "clinical correlation", "correlation", "comment", "comments", "clinical comment", "clinical comments",
        "clinical interpretation", "clinical impression", "clinical significance", "recommendation",
        "recommendations", "clinical correlation and recommendations",
    ),
}

# Headings resolved by content ("background" activity vs clinical background).
_AMBIGUOUS = {"background": ("history", "description")}

# Headings that are ordinary words: taken only alone on their line or with a separator
# ("SLEEP:"), never as an upper-case word followed by text ("SLEEP SPINDLES ...").
_ALONE_ONLY = {"report", "events", "sleep", "activation", "method", "procedure", "opinion"}

_EEG_WORDS = re.compile(
    r"\b(?:hz|rhythm|alpha|beta|theta|delta|slowing|voltage|amplitude|reactive|reactivity|symmetric|"
    r"continuous|discontinuous|posterior dominant|pdr|spindles|epileptiform|discharges|background activity|"
    r"uv|µv|organized|organised)\b",
    re.IGNORECASE,
)

# Header fields ("Key: value") that hold identity/admin data, not report content.
_HEADER_KEYS = (
    r"patient(?:\s+name)?", r"name", r"pt", r"mrn", r"medical record(?:\s+(?:number|no\.?|#))?", r"dob",
    r"date of birth", r"birth ?date", r"date(?: of (?:study|service|exam|recording|report|eeg|admission))?",
    r"study date", r"exam date", r"eeg (?:no\.?|number|#)", r"study (?:no\.?|number|id|#)",
    r"accession(?: ?(?:no\.?|#))?",
    r"account(?: ?(?:no\.?|#))?", r"acct(?: ?#)?", r"fin", r"csn", r"encounter(?: id)?", r"visit(?: id)?",
    r"referring(?:\s+(?:physician|provider|doctor|md))?", r"ordering(?:\s+(?:physician|provider))?",
    r"requesting physician", r"attending(?:\s+physician)?", r"location", r"room", r"unit", r"ward", r"bed",
    r"age", r"sex", r"gender", r"address", r"phone", r"tel", r"technologist", r"tech", r"eeg tech",
    r"pcp", r"primary care(?: physician)?", r"hospital", r"site", r"facility", r"clinic",
)
_HEADER_LINE = re.compile(rf"^\s*(?:{'|'.join(_HEADER_KEYS)})\s*[:#]", re.IGNORECASE)
_SIGNATURE_LINE = re.compile(
    r"^\s*(?:interpreted by|interpreting physician|read by|reviewed by|(?:electronically\s+)?signed(?: by)?|"
    r"dictated by|transcribed by|attending neurophysiologist|neurophysiologist|attestation|cc\s*:|"
    r"report (?:signed|finalized|verified)|verified by|finalized by)\b",
    re.IGNORECASE,
)
_TITLE_LINE = re.compile(r"^\s*[\w ()/.,&-]{0,60}\breport\b[\w ()/.,&-]{0,40}$", re.IGNORECASE)

_MARKUP = r"[#*_\s]*"
_SEP = r"[ \t]*(?:[:：]|[-–—](?=\s|$))"


def _norm_heading(h: str) -> str:
    h = re.sub(r"\s*/\s*", "/", h.strip().lower())
    return re.sub(r"\s+", " ", h)


def _heading_alternation(upper: bool = False) -> str:
    alts = []
    for syns in HEADING_SYNONYMS.values():
        for s in syns:
            s = s.upper() if upper else s
            words = [re.escape(w) for w in re.split(r"\s+", s.replace("/", " / ").strip())]
            alts.append(r"[ \t]+".join(words).replace(r"[ \t]+/[ \t]+", r"[ \t]*/[ \t]*"))
    return "|".join(sorted(set(alts), key=len, reverse=True))


_ALT = _heading_alternation()
_HEADING_LINE = re.compile(
    rf"^{_MARKUP}(?:\d{{1,2}}[.)][ \t]*)?(?P<h>{_ALT})(?![\w/])[*_]*(?P<sep>{_SEP})?[*_]*[ \t]*(?P<rest>.*)$",
    re.IGNORECASE,
)
# An upper-case heading with a colon in the middle of a line, after a sentence end.
_INLINE_UPPER = re.compile(rf"(?<=[.!?])[ \t]+(?=(?:{_heading_alternation(upper=True)})[ \t]*:)")

_LOOKUP: dict[str, str] = {}
for _sec, _syns in HEADING_SYNONYMS.items():
    for _s in _syns:
        _LOOKUP[_norm_heading(_s)] = _sec


@dataclass(frozen=True)
class ReportSections:
    """The canonical sections of one report (empty string where absent).

    Attributes
    ----------
    history, medications, technique, description, impression, correlation : str
        Section bodies, headings removed, whitespace-trimmed.
    other : str
        Title, PHI header fields, signature lines and text before the first heading.
    """

    history: str = ""
    medications: str = ""
    technique: str = ""
    description: str = ""
    impression: str = ""
    correlation: str = ""
    other: str = ""

    def get(self, name: str) -> str:
        """Body of section ``name`` (one of :data:`SECTION_NAMES` or ``"other"``).

        Raises
        ------
        KeyError
            For an unknown section name.
        """
        if name not in SECTION_NAMES and name != "other":
            raise KeyError(f"unknown section {name!r}; expected one of {SECTION_NAMES + ('other',)}")
        return getattr(self, name)

    @property
    def present(self) -> tuple[str, ...]:
        """Names of the non-empty canonical sections, in report order."""
        return tuple(n for n in SECTION_NAMES if getattr(self, n))

    def electrographic_text(self) -> str:
        """The report's electrographic content.

        Description, impression and clinical correlation (those present, joined by blank
        lines); when none of them is present, the whole text minus history, medications
        and ``other`` (that is, the technique section).
        """
        parts = [p for p in (self.description, self.impression, self.correlation) if p]
        if not parts:
            parts = [p for p in (self.technique,) if p]
        return "\n\n".join(parts)

    def as_dict(self) -> dict[str, str]:
        """All fields as a plain dict (canonical sections then ``other``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _match_heading(line: str) -> tuple[str, str, str] | None:
    """``(section, heading_key, rest_of_line)`` when ``line`` starts with a heading, else None."""
    m = _HEADING_LINE.match(line)
    if not m:
        return None
    raw, sep, rest = m.group("h"), m.group("sep"), m.group("rest").strip()
    key = _norm_heading(raw)
    section = _LOOKUP.get(key)
    if section is None:  # pragma: no cover - the alternation is built from the lookup
        return None
    if rest.lstrip("*_ ").strip() == "":
        return section, key, ""
    if sep:
        return section, key, rest
    if key in _ALONE_ONLY:
        return None
    # Text right after the heading without a separator: only an upper-case heading
    # followed by a capital or a digit ("IMPRESSION Normal EEG"), never running prose.
    letters = [c for c in raw if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters) and (rest[:1].isupper() or rest[:1].isdigit()):
        return section, key, rest
    return None


def _is_other_line(line: str) -> bool:
    return bool(_HEADER_LINE.match(line) or _SIGNATURE_LINE.match(line))


def parse_sections(text: str) -> ReportSections:
    """Split a report into canonical sections.

    Parameters
    ----------
    text : str
        The report text (any line endings; may be empty).

    Returns
    -------
    ReportSections
        One string per canonical section plus ``other``; see the module docstring for
        the rules (headings, ambiguous "Background", free text → ``description``).

    Raises
    ------
    TypeError
        If ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, found {type(text).__name__}")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines: list[str] = []
    for line in text.split("\n"):
        lines.extend(_INLINE_UPPER.sub("\n", line).split("\n"))

    # Pass 1: locate headings.
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]  # (heading key or None, lines)
    keys: list[str | None] = [None]
    for line in lines:
        hit = _match_heading(line)
        if hit is not None:
            section, key, rest = hit
            blocks.append((section, [rest] if rest else []))
            keys.append(key)
        else:
            blocks[-1][1].append(line)

    out: dict[str, list[str]] = {n: [] for n in (*SECTION_NAMES, "other")}
    any_heading = len(blocks) > 1
    for (section, body), key in zip(blocks, keys):
        if section is None and any_heading:  # title and header before the first heading
            for ln in (ln.strip() for ln in body if ln.strip()):
                # prose describing the record before any heading (a report whose line
                # breaks were lost) is description; anything else is header material
                prose = not _is_other_line(ln) and not _TITLE_LINE.match(ln) and len(ln.split()) >= 3
                out["description" if prose and _EEG_WORDS.search(ln) else "other"].append(ln)
            continue
        keep: list[str] = []
        for line in body:
            if _is_other_line(line):
                out["other"].append(line.strip())
            else:
                keep.append(line)
        if section is None:
            # No heading at all: titles go to other, the rest is the description.
            first = next((i for i, ln in enumerate(keep) if ln.strip()), None)
            if first is not None and _TITLE_LINE.match(keep[first]) and not keep[first].rstrip().endswith("."):
                out["other"].append(keep[first].strip())
                keep = keep[first + 1:]
            section = "description"
        elif key in _AMBIGUOUS:  # "Background": history unless it speaks of the EEG
            history, description = _AMBIGUOUS[key]
            section = description if _EEG_WORDS.search("\n".join(keep)) else history
        out[section].append(_clean_block(keep))

    return ReportSections(**{k: "\n".join(p for p in v if p).strip() for k, v in out.items()})


def _clean_block(lines: list[str]) -> str:
    """Join a block's lines, trimming each and collapsing runs of blank lines."""
    out: list[str] = []
    for ln in lines:
        ln = ln.strip()
        if not ln and (not out or not out[-1]):
            continue
        out.append(ln)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)

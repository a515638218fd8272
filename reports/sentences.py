"""Sentence splitting tuned to EEG reports.

Reports mix prose ("The background is continuous. No IEDs were seen."), numbered
impression items without final periods ("1. Mild diffuse slowing"), hard-wrapped lines
and decimals/abbreviations that a naive splitter cuts ("9.5 Hz", "Dr. E. Smith",
"e.g."). :func:`split_sentences` returns one string per sentence or list item, list
markers removed, in order.
"""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

_LIST_MARKER = re.compile(r"^\s*(?:\(?\d{1,2}[.)](?!\d)|\(?[a-h]\)|[-•*·▪–])\s+")
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_NO_SPLIT_BEFORE = re.compile(
    r"(?:\b(?:dr|mr|mrs|ms|prof|st|vs|approx|e\.g|i\.e|fig|cf|jr|sr)\.|"
    r"(?<![\w.])[A-Z]\.)$",
    re.IGNORECASE,
)
_TERMINAL = (".", "!", "?", ":", ";")


def _units(block: str) -> list[str]:
    """Lines of one paragraph joined into units (list items and complete lines stay apart)."""
    units: list[str] = []
    for raw in block.split("\n"):
        line = raw.strip()
        if not line:
            continue
        item = bool(_LIST_MARKER.match(line))
        line = _LIST_MARKER.sub("", line).strip()
        if not line:
            continue
        if units and not item:
            prev = units[-1]
            wrapped = (not prev.endswith(_TERMINAL)) and (len(prev) >= 60 or line[:1].islower())
            if wrapped:
                units[-1] = f"{prev} {line}"
                continue
        units.append(line)
    return units


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences and list items.

    Parameters
    ----------
    text : str
        Any report text (a section body or a whole report).

    Returns
    -------
    list of str
        Non-empty sentences, whitespace-collapsed, list markers ("1.", "(2)", "-")
        removed, in order. Blank lines, list items and lines that do not look
        hard-wrapped end a sentence; inside a line, a sentence ends at ``.``, ``!`` or
        ``?`` followed by space and a capital/digit, except after abbreviations and
        initials ("Dr.", "e.g.", "E.").
    """
    if not text:
        return []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        for unit in _units(block):
            start = 0
            for m in _BOUNDARY.finditer(unit):
                head = unit[start:m.start()]
                if _NO_SPLIT_BEFORE.search(head):
                    continue
                out.append(head)
                start = m.end()
            out.append(unit[start:])
    return [re.sub(r"\s+", " ", s).strip() for s in out if s.strip()]

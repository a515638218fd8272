"""Channel-label normalisation and the mapping of source channels onto the canonical montage.

Real exports label the same electrode many ways: ``EEG FP1-REF``, ``EEG Fp1-Ref``,
``EEG FP1-LE``, ``EEG Fp1``, ``Fp1``, ``POL Fp1``, BCI2000's ``Fp1.``; T7/T8/P7/P8 for
T3/T4/T5/T6. Everything is matched case-insensitively. Non-EEG channels are excluded and
reported with a reason; a bipolar-only montage is recognised so it can be refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

#: Old and new names of the same electrode (T3=T7, T4=T8, T5=P7, T6=P8). Either member
#: maps onto whichever of the pair the contract uses.
CANONICAL_ALIASES: tuple[frozenset[str], ...] = (
    frozenset({"t3", "t7"}), frozenset({"t4", "t8"}), frozenset({"t5", "p7"}), frozenset({"t6", "p8"}),
)

#: Reference suffixes stripped from referential labels (``Fp1-REF``, ``Fp1-LE`` ...).
REFERENCE_SUFFIXES: frozenset[str] = frozenset(
    {"ref", "le", "re", "ar", "avg", "av", "car", "m1", "m2", "a1", "a2", "a1a2", "a1+a2",
     "lm", "linked", "ears", "org"}
)

#: Every 10-10 / clinical scalp and reference electrode name we recognise (lower case).
#: Used to tell an extra EEG electrode (excluded: not in the montage) and a bipolar
#: derivation (both sides electrodes) from a non-EEG channel.
KNOWN_ELECTRODES: frozenset[str] = frozenset(
    n.lower()
    for n in (
        "Fp1 Fpz Fp2 AF9 AF7 AF5 AF3 AF1 AFz AF2 AF4 AF6 AF8 AF10 "
        "F9 F7 F5 F3 F1 Fz F2 F4 F6 F8 F10 FT9 FT7 FC5 FC3 FC1 FCz FC2 FC4 FC6 FT8 FT10 "
        "T9 T7 C5 C3 C1 Cz C2 C4 C6 T8 T10 TP9 TP7 CP5 CP3 CP1 CPz CP2 CP4 CP6 TP8 TP10 "
        "P9 P7 P5 P3 P1 Pz P2 P4 P6 P8 P10 PO9 PO7 PO5 PO3 PO1 POz PO2 PO4 PO6 PO8 PO10 "
        "O1 Oz O2 O9 O10 I1 Iz I2 T3 T4 T5 T6 A1 A2 M1 M2 T1 T2 Pg1 Pg2 Sp1 Sp2 Nz"
    ).split()
)

#: Patterns naming the kind of a non-EEG channel, for the exclusion report.
_NON_EEG_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pat, re.IGNORECASE))
    for kind, pat in (
        ("ECG", r"\b(ecg|ekg)"),
        ("EOG", r"\b(eog|loc|roc)\b|eog"),
        ("EMG", r"\b(emg|chin)"),
        ("photic", r"photic|\bph\b|^ph$"),
        ("oximetry", r"sao2|spo2|\bsat\b|pleth"),
        ("DC", r"\bdc\d*|^dc"),
        ("trigger", r"trig|\bmk\b|^mk$|sti\b|status|event|marker"),
        ("accelerometer", r"acc|accel"),
        ("respiration", r"resp|thor|abd|airflow|flow|snore|nasal"),
        ("heart rate", r"\bhr\b|pulse|bpm"),
    )
)

_PREFIX = re.compile(r"^(eeg|pol|ref)[\s:_]+", re.IGNORECASE)


@dataclass(frozen=True)
class ChannelDecision:
    """What the mapper decided for one source channel."""

    index: int
    label: str
    kind: Literal["canonical", "extra_eeg", "bipolar", "reference", "non_eeg", "duplicate", "annotation"]
    canonical: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class ChannelMapping:
    """Result of mapping a file's channels onto a canonical montage.

    Attributes
    ----------
    mapped : dict
        ``{canonical name: source index}`` for the channels used.
    labels : dict
        ``{canonical name: source label}``.
    missing : list of str
        Canonical channels not found (masked, never invented).
    excluded : dict
        ``{source label: reason}`` for every channel not used.
    bipolar : list of str
        Source labels recognised as bipolar derivations.
    warnings : list of str
        Notes for the user (duplicates ...).
    """

    mapped: dict[str, int]
    labels: dict[str, str]
    missing: list[str]
    excluded: dict[str, str]
    bipolar: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def normalise_label(label: str) -> str:
    """Strip type prefixes (``EEG``, ``POL``), BCI2000 dots and reference suffixes.

    Parameters
    ----------
    label : str
        Label as written in the file.

    Returns
    -------
    str
        The bare label in lower case, e.g. ``"EEG FP1-REF"`` → ``"fp1"``,
        ``"Fc5."`` → ``"fc5"``, ``"FP1-F7"`` → ``"fp1-f7"`` (bipolar kept).
    """
    s = label.strip()
    s = _PREFIX.sub("", s).strip()
    s = s.rstrip(".").strip()
    low = s.lower().replace(" ", "")
    if "-" in low:
        head, _, tail = low.rpartition("-")
        if tail in REFERENCE_SUFFIXES and head:
            low = head
    return low


def classify_label(label: str, canonical: Sequence[str]) -> tuple[str, str | None, str]:
    """Classify one label: ``(kind, canonical name or None, reason)``.

    ``kind`` is one of ``canonical``, ``extra_eeg``, ``bipolar``, ``reference`` or
    ``non_eeg`` (see :class:`ChannelDecision`).
    """
    by_lower = {c.lower(): c for c in canonical}
    bare = normalise_label(label)
    if bare in by_lower:
        return "canonical", by_lower[bare], ""
    for group in CANONICAL_ALIASES:
        if bare in group:
            for other in group:
                if other in by_lower:
                    return "canonical", by_lower[other], ""
    if "-" in bare:
        left, _, right = bare.partition("-")
        if left in KNOWN_ELECTRODES and right in KNOWN_ELECTRODES:
            if left in ("a1", "a2", "m1", "m2") and right in ("a1", "a2", "m1", "m2"):
                return "reference", None, "reference-electrode derivation"
            return "bipolar", None, "bipolar derivation (the model needs referential channels)"
    if bare in KNOWN_ELECTRODES:
        if bare in ("a1", "a2", "m1", "m2"):
            return "reference", None, "reference electrode (not in the montage)"
        return "extra_eeg", None, "EEG electrode not in the canonical montage"
    for kind, pat in _NON_EEG_KINDS:
        if pat.search(label):
            return "non_eeg", None, f"non-EEG channel ({kind})"
    return "non_eeg", None, "not a recognised EEG electrode"


def map_channels(labels: Sequence[str], canonical: Sequence[str], annotation: Sequence[bool] | None = None) -> ChannelMapping:
    """Map source channel labels onto the canonical montage.

    Parameters
    ----------
    labels : sequence of str
        Source labels in file order.
    canonical : sequence of str
        Canonical channel order of the contract.
    annotation : sequence of bool, optional
        True for annotation channels (skipped silently).

    Returns
    -------
    ChannelMapping
        Used, missing and excluded channels. The first occurrence of a canonical
        electrode wins; later duplicates are excluded with a warning.
    """
    annotation = annotation or [False] * len(labels)
    mapped: dict[str, int] = {}
    names: dict[str, str] = {}
    excluded: dict[str, str] = {}
    bipolar: list[str] = []
    warnings: list[str] = []
    for i, (label, is_ann) in enumerate(zip(labels, annotation)):
        if is_ann:
            continue
        kind, name, reason = classify_label(label, canonical)
        key = _unique_key(label, excluded)
        if kind == "canonical" and name is not None:
            if name in mapped:
                excluded[key] = f"duplicate of {name} (kept '{names[name]}')"
                warnings.append(f"channel '{label}' duplicates {name}; kept the first ('{names[name]}')")
                continue
            mapped[name] = i
            names[name] = label
            continue
        if kind == "bipolar":
            bipolar.append(label)
        excluded[key] = reason
    missing = [c for c in canonical if c not in mapped]
    ordered = {c: mapped[c] for c in canonical if c in mapped}
    return ChannelMapping(
        mapped=ordered,
        labels={c: names[c] for c in ordered},
        missing=missing,
        excluded=excluded,
        bipolar=bipolar,
        warnings=warnings,
    )


def _unique_key(label: str, existing: dict[str, str]) -> str:
    key, n = label, 2
    while key in existing:
        key = f"{label} #{n}"
        n += 1
    return key

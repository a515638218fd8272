"""Channel-label normalisation and the mapping of source channels onto the canonical montage.

Real exports label the same electrode many ways: ``EEG FP1-REF``, ``EEG Fp1-Ref``,
``EEG FP1-LE``, ``EEG Fp1``, ``Fp1``, ``POL Fp1``, BCI2000's ``Fp1.``, MASS's
``EEG C3-LER`` / ``EEG C3-CLE``, ``EEG FP1 REF``, ``EEG_Fp1_REF``, ``EEG-Fp1``; T7/T8/P7/P8
for T3/T4/T5/T6. A label is split at its separators (space, underscore, dash, dot) into
an optional type prefix, the electrode and an optional reference; everything is matched
case-insensitively. The reference each channel was recorded against is kept
(:data:`REFERENCE_SCHEMES`), so a file's reference scheme can be reported and filtered on.

Non-EEG channels are excluded and reported with a reason; a bipolar montage is
recognised so it can be converted to potentials (:mod:`tokenizer.montage`) or refused.
Dense caps whose electrodes are named by position (BioSemi ABC ``A1``..``H32``, EGI
``E1``..``E256``) are recognised from the label set and never mapped by name: their ``C3``
or ``A1`` are cap positions, not the 10-20 sites or ear references of the same name. A
site's own labels are mapped with a :class:`ChannelMap` (``--channel-map FILE``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from tokenizer.contract import CANONICAL_CHANNELS

#: Old and new names of the same electrode (T3=T7, T4=T8, T5=P7, T6=P8). Either member
#: maps onto whichever of the pair the contract uses.
CANONICAL_ALIASES: tuple[frozenset[str], ...] = (
    frozenset({"t3", "t7"}), frozenset({"t4", "t8"}), frozenset({"t5", "p7"}), frozenset({"t6", "p8"}),
)

#: Reference written after the electrode (lower case) → the reference scheme it names.
#: ``REF``: a named common reference (the amplifier's); ``LE``: linked ears (MASS writes
#: ``LER``, and ``CLE`` for computed linked ears); ``AVG``: common average; ``MAST``:
#: mastoids, linked or single; ``EAR``: a single ear (``C3-A2``; left and right channels
#: against opposite ears are one scheme).
REFERENCE_SCHEMES: dict[str, str] = {
    "ref": "REF", "org": "REF",
    "le": "LE", "ler": "LE", "cle": "LE", "a1a2": "LE", "a1+a2": "LE", "a12": "LE", "linked": "LE", "ears": "LE",
    "avg": "AVG", "av": "AVG", "ave": "AVG", "average": "AVG", "ar": "AVG", "car": "AVG",
    "m1": "MAST", "m2": "MAST", "m1m2": "MAST", "m1+m2": "MAST", "mast": "MAST", "lm": "MAST",
    "a1": "EAR", "a2": "EAR", "re": "EAR",
}

#: Reference suffixes stripped from referential labels (``Fp1-REF``, ``Fp1-LE`` ...).
REFERENCE_SUFFIXES: frozenset[str] = frozenset(REFERENCE_SCHEMES)

#: Every reference scheme a file can be given, and what it means. Besides these, a file
#: whose channels share one scalp electrode as reference (``Fp1-Cz``, ``C3-Cz`` ...) gets
#: that electrode's name (``CZ``).
SCHEMES: dict[str, str] = {
    "REF": "named common reference (REF, Ref, ORG)",
    "LE": "linked ears (LE, LER, CLE, A1A2)",
    "AVG": "common average (AVG, AV, AR, CAR)",
    "MAST": "mastoids (M1, M2, M1M2, MAST, LM)",
    "EAR": "single ear (A1, A2)",
    "CZ": "vertex electrode Cz",
    "bipolar": "bipolar derivations only (no common reference)",
    "unknown": "no reference written in the labels",
    "mixed": "channels recorded against several references",
}

#: Value of a channel-map line that excludes the channel.
EXCLUDE = "exclude"

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
        ("EOG", r"\b(eog|loc|roc|luc|ruc|llc|rlc|lloc|rroc)\b|eog"),
        ("EMG", r"\b(emg|chin)"),
        ("photic", r"photic|\bph\b|^ph$"),
        ("oximetry", r"sao2|spo2|\bsat\b|pleth"),
        ("DC", r"\bdc\d*|^dc"),
        ("trigger", r"trig|\bmk\b|^mk$|sti\b|status|event|marker"),
        ("accelerometer", r"acc|accel"),
        ("respiration", r"resp|thor|abd|airflow|flow|snore|nasal"),
        ("heart rate", r"\bhr\b|pulse|bpm"),
        ("BioSemi external electrode", r"^exg\d*$"),
    )
)

#: Reference sites: an ear or a mastoid.
_REFERENCE_SITES = frozenset({"a1", "a2", "m1", "m2"})
_PREFIX = re.compile(r"^(eeg|pol|ref)[\s:_.\-]+", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s_.\-]+")
#: BioSemi ABC electrode names (A1..H32) and EGI geodesic-net names (E1..E256).
_ABC = re.compile(r"^([a-h])([1-9]|[12]\d|3[0-2])$")
_EGI = re.compile(r"^e([1-9]\d{0,2})$")
#: Fewest position-named electrodes that make a label set a dense cap (a 10-20 file has
#: at most 18 10-10 names of the A1..H32 form: A1, A2, C1..C6, F1..F10).
DENSE_MIN = 16


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
        Notes for the user (duplicates, mixed references ...).
    aliases : dict
        ``{source label: target}`` for every label a :class:`ChannelMap` matched (target
        a canonical site or ``"exclude"``).
    references : dict
        ``{canonical name: reference scheme}`` of the mapped channels, from their labels
        as recorded (:data:`SCHEMES`).
    dense_cap : str or None
        Description of the dense cap the label set comes from (BioSemi ABC, EGI), whose
        names were not mapped; None for other files.
    """

    mapped: dict[str, int]
    labels: dict[str, str]
    missing: list[str]
    excluded: dict[str, str]
    bipolar: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    dense_cap: str | None = None

    @property
    def reference_counts(self) -> dict[str, int]:
        """``{scheme: number of mapped channels}``, most frequent first."""
        return dict(Counter(self.references.values()).most_common())

    @property
    def reference(self) -> str:
        """The file's reference scheme: the one all mapped channels share, ``mixed`` when
        they differ, ``bipolar`` for a montage of derivations only, ``unknown`` when the
        labels name none."""
        counts = self.reference_counts
        if not counts:
            return "bipolar" if self.bipolar else "unknown"
        return next(iter(counts)) if len(counts) == 1 else "mixed"


def split_label(label: str, common_reference: str | None = None) -> tuple[str, str | None]:
    """Split a label into its bare electrode part and the reference it names.

    The type prefix (``EEG``, ``POL``) and BCI2000's trailing dots are dropped; the rest
    is cut at its separators (space, underscore, dash, dot). A last part that names a
    reference (:data:`REFERENCE_SUFFIXES`) is the reference.

    Parameters
    ----------
    label : str
        Label as written in the file.
    common_reference : str, optional
        A scalp electrode (lower case) the file's channels share as reference
        (:func:`common_reference`): ``"Fp1-Cz"`` then splits as ``("fp1", "cz")``
        instead of a bipolar pair.

    Returns
    -------
    bare : str
        Lower case; the parts of a label without a reference joined by ``-``
        (``"FP1-F7"`` → ``"fp1-f7"``, a bipolar pair kept).
    reference : str or None
        The reference as written (lower case), e.g. ``"ler"``; None when there is none.

    Examples
    --------
    >>> split_label("EEG C3-LER")
    ('c3', 'ler')
    >>> split_label("EEG_Fp1_REF")
    ('fp1', 'ref')
    >>> split_label("FP1-F7")
    ('fp1-f7', None)
    """
    s = _PREFIX.sub("", label.strip()).strip().rstrip(".").strip()
    parts = [q for q in _SEPARATORS.split(s.lower()) if q]
    if len(parts) >= 2 and parts[-1] in REFERENCE_SUFFIXES:
        return "-".join(parts[:-1]), parts[-1]
    if common_reference is not None and len(parts) == 2 and parts[1] == common_reference \
            and parts[0] in KNOWN_ELECTRODES:
        return parts[0], parts[1]
    return "-".join(parts), None


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
        ``"EEG FP1 REF"`` → ``"fp1"``, ``"Fc5."`` → ``"fc5"``, ``"FP1-F7"`` →
        ``"fp1-f7"`` (bipolar kept).
    """
    return split_label(label)[0]


def label_reference(label: str, common_reference: str | None = None) -> str:
    """Reference scheme a label names (:data:`SCHEMES`): ``"EEG C3-CLE"`` → ``"LE"``,
    ``"EEG Fp1"`` → ``"unknown"``, ``"Fp1-Cz"`` with ``common_reference="cz"`` → ``"CZ"``."""
    ref = split_label(label, common_reference)[1]
    return "unknown" if ref is None else REFERENCE_SCHEMES.get(ref, ref.upper())


def reference_scheme(name: str) -> str | None:
    """The scheme a user's word names: a scheme (``le`` → ``LE``), a way labels write one
    (``LER`` → ``LE``, ``M1M2`` → ``MAST``) or a shared scalp electrode (``Cz`` → ``CZ``);
    None for anything else."""
    low = name.strip().lower()
    return ({s.lower(): s for s in SCHEMES}.get(low) or REFERENCE_SCHEMES.get(low)
            or (low.upper() if low in KNOWN_ELECTRODES else None))


def common_reference(labels: Sequence[str]) -> str | None:
    """A scalp electrode most of the file's electrode pairs share on their right side.

    ``Fp1-Cz``, ``F3-Cz``, ``C3-Cz`` ... are referential channels against Cz, not bipolar
    derivations: the right-hand electrode is common to at least three labels and to more
    than half of the pairs. A double banana never qualifies (each electrode ends at most
    two of its chains).

    Returns
    -------
    str or None
        The electrode in lower case, or None.
    """
    rights = []
    for label in labels:
        bare, ref = split_label(label)
        if ref is None and bare.count("-") == 1:
            left, right = bare.split("-")
            if left in KNOWN_ELECTRODES and right in KNOWN_ELECTRODES and right not in _REFERENCE_SITES:
                rights.append(right)
    if not rights:
        return None
    right, n = Counter(rights).most_common(1)[0]
    return right if n >= 3 and n > len(rights) / 2 else None


def detect_dense_cap(labels: Sequence[str]) -> str | None:
    """Describe the dense cap whose position names the labels use, or None.

    A BioSemi ABC cap names its electrodes by group and position (``A1``..``A32``,
    ``B1``.. up to ``H32``), an EGI geodesic net ``E1``..``E256``. Either is recognised when
    at least :data:`DENSE_MIN` labels have such names and, for BioSemi, at least half that
    many are not 10-10 names (``A17``, ``B3``, ``D25``): a 10-20 file's ``A1``/``A2``,
    ``C3`` or ``F8`` never make a cap.

    Returns
    -------
    str or None
        e.g. ``"BioSemi ABC cap (128 electrodes named A1..D32)"``.
    """
    bares = [split_label(label)[0] for label in labels]
    abc = [b for b in bares if _ABC.match(b)]
    egi = [int(m.group(1)) for b in bares if (m := _EGI.match(b)) and int(m.group(1)) <= 257]
    # E1..E32 fit both patterns: EGI unless other BioSemi groups are there (a BioSemi cap
    # always has group A) or EGI numbers run past 32
    if len(egi) >= DENSE_MIN and ({b[0] for b in abc} <= {"e"} or len(egi) > len(abc)):
        return f"EGI geodesic net ({len(egi)} electrodes named E{min(egi)}..E{max(egi)})"
    if len(abc) >= DENSE_MIN and sum(b not in KNOWN_ELECTRODES for b in abc) >= DENSE_MIN // 2:
        last = max(abc)[0]
        top = max(int(b[1:]) for b in abc if b[0] == last)
        return f"BioSemi ABC cap ({len(abc)} electrodes named {min(abc)[0].upper()}1..{last.upper()}{top})"
    return None


def _canonical_name(bare: str, canonical: Sequence[str]) -> str | None:
    """The contract's name of electrode ``bare`` (T7 found as T3 and so on), or None."""
    by_lower = {c.lower(): c for c in canonical}
    group = next((g for g in CANONICAL_ALIASES if bare in g), ())
    return next((by_lower[n] for n in (bare, *group) if n in by_lower), None)


def classify_label(label: str, canonical: Sequence[str], *,
                   common_reference: str | None = None) -> tuple[str, str | None, str]:
    """Classify one label: ``(kind, canonical name or None, reason)``.

    ``kind`` is one of ``canonical``, ``extra_eeg``, ``bipolar``, ``reference`` or
    ``non_eeg``. ``common_reference`` is the file's shared reference electrode, if any
    (:func:`common_reference`).
    """
    bare, ref = split_label(label, common_reference)
    if ref is not None and bare == ref:
        return "reference", None, f"the reference electrode {bare.upper()} against itself (no signal)"
    name = _canonical_name(bare, canonical)
    if name is not None:
        return "canonical", name, ""
    if bare in _REFERENCE_SITES and ref in _REFERENCE_SITES | {"a1a2", "a1+a2", "m1m2", "m1+m2"}:
        # EEGMAT's 'EEG A2-A1': the difference of two reference sites, no scalp signal.
        what = "ear-to-ear" if bare[0] == ref[0] == "a" else "mastoid-to-mastoid" if bare[0] == ref[0] == "m" \
            else "ear-to-mastoid"
        return "reference", None, f"{what} derivation ({bare.upper()}-{ref.upper()}) between reference sites, " \
                                  "not a scalp channel"
    if "-" in bare:
        left, _, right = bare.partition("-")
        if left in KNOWN_ELECTRODES and right in KNOWN_ELECTRODES:
            if left in _REFERENCE_SITES and right in _REFERENCE_SITES:
                what = "ear-to-ear" if left[0] == right[0] == "a" else "reference-site"
                return "reference", None, f"{what} derivation ({left.upper()}-{right.upper()}) between reference " \
                                          "sites, not a scalp channel"
            return "bipolar", None, "bipolar derivation (the model needs referential channels)"
    if bare in KNOWN_ELECTRODES:
        if bare in _REFERENCE_SITES:
            return "reference", None, f"reference electrode {bare.upper()} (an ear or mastoid, not in the montage)"
        return "extra_eeg", None, "EEG electrode not in the canonical montage"
    for kind, pat in _NON_EEG_KINDS:
        if pat.search(label):
            return "non_eeg", None, f"non-EEG channel ({kind})"
    return "non_eeg", None, "not a recognised EEG electrode"


def map_channels(labels: Sequence[str], canonical: Sequence[str], annotation: Sequence[bool] | None = None, *,
                 channel_map: "ChannelMap | None" = None) -> ChannelMapping:
    """Map source channel labels onto the canonical montage.

    Parameters
    ----------
    labels : sequence of str
        Source labels in file order.
    canonical : sequence of str
        Canonical channel order of the contract.
    annotation : sequence of bool, optional
        True for annotation channels (skipped silently).
    channel_map : ChannelMap, optional
        A site's aliases; a label it matches is mapped (or excluded) as it says, before
        any rule below.

    Returns
    -------
    ChannelMapping
        Used, missing and excluded channels, aliases applied and the reference of each
        mapped channel. The first occurrence of a canonical electrode wins; later
        duplicates are excluded with a warning. On a dense cap (:func:`detect_dense_cap`)
        only the channel map maps electrodes: names are cap positions there.
    """
    if annotation is None:
        annotation = [False] * len(labels)
    if len(annotation) != len(labels):
        raise ValueError(f"one annotation flag per label expected, found {len(annotation)} for {len(labels)} labels")
    signals = [lab for lab, is_ann in zip(labels, annotation) if not is_ann]
    dense = detect_dense_cap(signals)
    common = common_reference(signals)
    mapped: dict[str, int] = {}
    names: dict[str, str] = {}
    refs: dict[str, str] = {}
    excluded: dict[str, str] = {}
    aliases: dict[str, str] = {}
    bipolar: list[str] = []
    warnings: list[str] = []
    for i, (label, is_ann) in enumerate(zip(labels, annotation)):
        if is_ann:
            continue
        key = _unique_key(label, excluded)
        alias = channel_map.lookup(label) if channel_map is not None else None
        if alias is not None and channel_map is not None:
            aliases[label] = alias.target
            name = None if alias.target == EXCLUDE else _canonical_name(alias.target.lower(), canonical)
            kind = "canonical" if name is not None else "excluded"
            where = channel_map.where(alias)
            reason = (f"excluded by the channel map ({where})" if alias.target == EXCLUDE
                      else f"the channel map ({where}) maps it to {alias.target}, which is not in the contract montage")
        else:
            kind, name, reason = classify_label(label, canonical, common_reference=common)
            if dense is not None and kind in ("canonical", "extra_eeg", "reference", "bipolar"):
                kind, name = "dense", None
                reason = (f"electrode of a {dense.split(' (')[0]}: its name is a cap position, not the 10-20 site "
                          "or ear reference of that name (map it with a channel map)")
        if kind == "canonical" and name is not None:
            if name in mapped:
                excluded[key] = f"duplicate of {name} (kept '{names[name]}')"
                warnings.append(f"channel '{label}' duplicates {name}; kept the first ('{names[name]}')")
                continue
            mapped[name] = i
            names[name] = label
            refs[name] = label_reference(label, common)
            continue
        if kind == "bipolar":
            bipolar.append(label)
        excluded[key] = reason
    ordered = {c: mapped[c] for c in canonical if c in mapped}
    result = ChannelMapping(ordered, {c: names[c] for c in ordered}, [c for c in canonical if c not in mapped],
                            excluded, bipolar, warnings, aliases, {c: refs[c] for c in ordered}, dense)
    counts = result.reference_counts
    if len(counts) > 1:
        warnings.append("channels recorded against several references: "
                        + ", ".join(f"{s} ({n} channel{'s' if n > 1 else ''})" for s, n in counts.items())
                        + "; reference recorded as 'mixed'")
    return result


def _unique_key(label: str, existing: dict[str, str]) -> str:
    key, n = label, 2
    while key in existing:
        key = f"{label} #{n}"
        n += 1
    return key


# -- a site's own aliases ------------------------------------------------------------------
class ChannelMapError(ValueError):
    """A channel map is malformed; the message names the file and the line."""


@dataclass(frozen=True)
class ChannelAlias:
    """One line of a channel map.

    Attributes
    ----------
    label : str
        Local label as written in the map (``EEG X3-REF``, or a bare ``X3``).
    target : str
        Canonical site it stands for (``C3``), or ``"exclude"``.
    line : int
        Line of the map file it comes from (0 when built from a dict).
    """

    label: str
    target: str
    line: int = 0


def _map_key(label: str) -> str:
    """Case and runs of spaces ignored: how map labels and file labels are compared."""
    return " ".join(label.split()).lower()


def _targets(sites: Sequence[str]) -> dict[str, str]:
    """``{lower case: spelling}`` of the valid targets: the sites and their old/new names."""
    spelled = {c.lower(): c for c in sites}
    for group in CANONICAL_ALIASES:
        if group & set(spelled):
            for other in group:
                spelled.setdefault(other, other.upper())
    return spelled


@dataclass(frozen=True)
class ChannelMap:
    """A site's alias table: local channel labels → canonical sites (or ``exclude``).

    A file's channel matches an alias when its label as recorded equals the alias's
    label, or when its bare electrode name (type prefix and reference removed:
    ``EEG X3-REF`` → ``X3``) does; case and runs of spaces are ignored. Aliases come
    before every other rule, dense caps included.

    Parameters
    ----------
    aliases : tuple of ChannelAlias
    source : str
        Where the map was read from (named in errors and reports).
    sites : tuple of str
        Valid targets (default: the 19 canonical 10-20 sites; T7/T8/P7/P8 are accepted
        for T3/T4/T5/T6).

    Raises
    ------
    ChannelMapError
        An empty label, a target that is not a site nor ``exclude``, or a label given twice
        (both lines named).

    Examples
    --------
    >>> m = ChannelMap.from_dict({"EEG X3-REF": "C3", "EEG X9": "exclude"})
    >>> m.lookup("eeg x3-ref").target
    'C3'
    """

    aliases: tuple[ChannelAlias, ...]
    source: str = "<dict>"
    sites: tuple[str, ...] = CANONICAL_CHANNELS
    _index: dict[str, ChannelAlias] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        targets = _targets(self.sites)
        index: dict[str, ChannelAlias] = {}
        fixed = []
        for a in self.aliases:
            at = self.where(a)
            label, target = str(a.label).strip(), str(a.target).strip()
            if not label:
                raise ChannelMapError(f"{at}: a local label expected before '{target}', found an empty one")
            if target.lower() == EXCLUDE:
                target = EXCLUDE
            elif target.lower() in targets:
                target = targets[target.lower()]
            else:
                raise ChannelMapError(
                    f"{at}: target '{target}' of '{label}' is not one of the {len(self.sites)} sites "
                    f"({', '.join(self.sites)}) or 'exclude'")
            key = _map_key(label)
            if key in index:
                first = index[key]
                raise ChannelMapError(f"{at}: label '{label}' given twice (first {self.where(first)}, "
                                      f"as '{first.label}' → {first.target})")
            alias = ChannelAlias(label, target, a.line)
            index[key] = alias
            fixed.append(alias)
        object.__setattr__(self, "aliases", tuple(fixed))
        object.__setattr__(self, "_index", index)

    def where(self, alias: ChannelAlias) -> str:
        """``"FILE line N"`` of an alias (for reports)."""
        return f"{self.source} line {alias.line}" if alias.line else self.source

    def __len__(self) -> int:
        return len(self.aliases)

    def lookup(self, label: str) -> ChannelAlias | None:
        """The alias matching a file's label (as recorded, then its bare electrode), or None."""
        return self._index.get(_map_key(label)) or self._index.get(split_label(label)[0])

    def to_dict(self) -> dict[str, str]:
        """``{label: target}`` in map order."""
        return {a.label: a.target for a in self.aliases}

    def digest(self) -> str:
        """Short SHA-256 of the aliases (case-normalised): part of cache keys."""
        body = json.dumps(sorted((_map_key(a.label), a.target) for a in self.aliases))
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, mapping: Mapping[str, str], *, source: str = "<dict>",
                  sites: Sequence[str] = CANONICAL_CHANNELS) -> "ChannelMap":
        """A map from ``{local label: site or "exclude"}``."""
        if not isinstance(mapping, Mapping):
            raise ChannelMapError(f"{source}: a mapping of local label → site expected, found "
                                  f"{type(mapping).__name__}")
        return cls(tuple(ChannelAlias(str(k), str(v)) for k, v in mapping.items()), source, tuple(sites))

    @classmethod
    def load(cls, path: str | Path, *, sites: Sequence[str] = CANONICAL_CHANNELS) -> "ChannelMap":
        """Read a channel map file.

        Parameters
        ----------
        path : path
            ``.csv`` (or ``.tsv``/``.txt``): two columns ``label,site``, an optional header
            line ``label,site``, ``#`` comments and blank lines allowed. ``.yaml``,
            ``.yml`` or ``.json``: one mapping ``label: site``.
        sites : sequence of str
            Valid targets (besides ``exclude``).

        Raises
        ------
        ChannelMapError
            The file is missing, of another kind, or malformed (file and line named).
        """
        p = Path(path)
        if not p.is_file():
            raise ChannelMapError(f"channel map {p}: expected a CSV, YAML or JSON file, found "
                                  + ("a directory" if p.exists() else "nothing"))
        suffix = p.suffix.lower()
        try:
            text = p.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChannelMapError(f"channel map {p}: cannot be read ({exc})") from None
        if suffix in (".csv", ".tsv", ".txt"):
            rows = _csv_rows(text, str(p), "\t" if suffix == ".tsv" else ",")
        elif suffix in (".yaml", ".yml"):
            rows = _yaml_rows(text, str(p))
        elif suffix == ".json":
            rows = _json_rows(text, str(p))
        else:
            raise ChannelMapError(f"channel map {p}: expected a .csv, .tsv, .yaml, .yml or .json file, "
                                  f"found '{suffix or 'no suffix'}'")
        return cls(tuple(ChannelAlias(k, v, n) for k, v, n in rows), str(p), tuple(sites))


def _csv_rows(text: str, source: str, delimiter: str) -> list[tuple[str, str, int]]:
    rows: list[tuple[str, str, int]] = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    first = True
    for cells in reader:
        n = reader.line_num
        cells = [c.strip() for c in cells]
        while cells and cells[-1] == "":
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        if first and [c.lower() for c in cells] in (["label", "site"], ["label", "target"], ["local", "site"]):
            first = False
            continue  # header line
        first = False
        if len(cells) != 2:
            raise ChannelMapError(f"{source} line {n}: two columns 'label{delimiter}site' expected, found "
                                  f"{len(cells)} ({delimiter.join(cells)!r})")
        rows.append((cells[0], cells[1], n))
    return rows


def _yaml_rows(text: str, source: str) -> list[tuple[str, str, int]]:
    import yaml

    try:
        # The node graph, not constructed objects: duplicate keys stay visible (a dict
        # would keep the last silently), every line is known, and scalars stay strings
        # ('NO' or '1' are labels, not a boolean or a number).
        node = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise ChannelMapError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None
    if node is None:
        return []
    if not isinstance(node, yaml.MappingNode):
        raise ChannelMapError(f"{source} line {node.start_mark.line + 1}: a mapping 'label: site' expected, "
                              f"found a {node.id}")
    rows = []
    for k, v in node.value:
        n = k.start_mark.line + 1
        if not isinstance(k, yaml.ScalarNode) or not isinstance(v, yaml.ScalarNode):
            raise ChannelMapError(f"{source} line {n}: 'label: site' expected, found a nested {v.id}")
        rows.append((k.value, v.value, n))
    return rows


def _json_rows(text: str, source: str) -> list[tuple[str, str, int]]:
    try:
        pairs = json.loads(text, object_pairs_hook=lambda kv: kv) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise ChannelMapError(f"{source} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(pairs, list) or any(not isinstance(v, str) for _, v in pairs):
        raise ChannelMapError(f'{source}: one object {{"label": "site", ...}} of strings expected')
    # json gives no positions: the keys of a flat object appear in order in the text.
    keys = list(re.finditer(r'"((?:[^"\\]|\\.)*)"\s*:', text))
    lines = [text.count("\n", 0, m.start()) + 1 for m in keys] if len(keys) == len(pairs) else [0] * len(pairs)
    return [(k, v, n) for (k, v), n in zip(pairs, lines)]

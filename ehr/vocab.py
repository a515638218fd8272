"""EHR tokens and their vocabulary: the input side of the EHR set encoder.

Tokens
------
:func:`ehr_tokens` turns a :class:`~ehr.record.CodeSet` into strings, demographics first:

* ``age:<bucket>`` with the buckets of :data:`AGE_BUCKETS` (``0-1``, ``2-5``, ``6-12``,
  ``13-17``, ``18-29``, ``30-39`` ... ``80-89``, ``90+``), ``age:U`` when unknown;
* ``sex:F`` / ``sex:M`` / ``sex:U``;
* ``race:<slug>``: the race lower-cased, non-alphanumerics as ``_``
  (``American Indian/Alaska Native → race:american_indian_alaska_native``), ``race:unknown``
  when None;
* ``icd:<dotted ICD-10-CM>`` (at most ``max_icd``) and ``atc:<ATC>`` (at most
  ``max_atc``), in the CodeSet's priority order (most recent onset / start first, see
  :class:`~ehr.record.CodeSet`); when there are more, the *most recent* ones are kept.

Held-out codes
--------------
A task that predicts, say, epilepsy from the EHR embedding must not see the epilepsy
codes. ``held_out`` entries are *prefixes*, canonicalised by :func:`parse_held_out`:

* ``"icd:G40"`` removes every ICD-10 code starting with ``G40`` (dot-insensitive:
  ``"icd:G409"`` means ``G40.9``); ``"atc:N03A"`` every ATC code starting with ``N03A``;
* a bare code (``"G40"``, ``"N03AX14"``) applies to *both* vocabularies (``"N03"`` removes
  ICD N03.x and ATC N03...), so prefer the explicit form;
* demographic tokens cannot be held out (ValueError).

:class:`CodeVocab` stores its ``held_out`` prefixes and applies them again in
:meth:`CodeVocab.encode`, so inference cannot leak what training hid.

Unknown and rare codes
----------------------
Ids: ``PAD = 0``, ``UNK = 1``, then the demographic tokens, then the codes (sorted).
A code seen fewer than ``min_count`` times in the training lists is *rolled up* to its
nearest ancestor in the ICD-10-CM / ATC hierarchy that reaches ``min_count`` when its
rare descendants are pooled (``G40.219 → G40.21 → G40.2 → G40``; ``N03AX23 → N03AX →
N03A → N03 → N``); only when no ancestor qualifies is it UNK. :meth:`CodeVocab.encode`
applies the same rule to codes never seen in training, so an unseen ``G40.119`` at
inference maps to the trained ``icd:G40.1`` or ``icd:G40`` token instead of UNK.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ehr.codes import _dotted, atc_ancestors, icd10_ancestors
from ehr.record import CodeSet

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "AGE_BUCKETS",
    "PAD",
    "RACE_TOKENS",
    "UNK",
    "CodeVocab",
    "age_bucket",
    "ehr_tokens",
    "parse_held_out",
    "race_token",
]

PAD = 0
UNK = 1
_SPECIALS = ("<pad>", "<unk>")

#: Age buckets ``(low, high, label)``: ``low <= age < high`` (years).
AGE_BUCKETS: tuple[tuple[float, float, str], ...] = (
    (0, 2, "0-1"), (2, 6, "2-5"), (6, 13, "6-12"), (13, 18, "13-17"), (18, 30, "18-29"),
    (30, 40, "30-39"), (40, 50, "40-49"), (50, 60, "50-59"), (60, 70, "60-69"), (70, 80, "70-79"),
    (80, 90, "80-89"), (90, float("inf"), "90+"),
)
_SEXES = ("F", "M", "U")
#: Race tokens of CLEF's 8 race classes (always in a vocabulary).
RACE_TOKENS: tuple[str, ...] = (
    "race:white", "race:black", "race:asian", "race:american_indian_alaska_native",
    "race:native_hawaiian_pacific_islander", "race:other", "race:unknown", "race:hispanic_latino",
)
_DEMO_KINDS = ("age", "sex", "race")
_CODE_KINDS = ("icd", "atc")
_FORMAT = "clef-ehr-vocab"
_VERSION = 1


def age_bucket(age: float | None) -> str:
    """Bucket label of an age in years (``"U"`` when None or negative).

    >>> age_bucket(1.9), age_bucket(17.99), age_bucket(95)
    ('0-1', '13-17', '90+')
    """
    if age is None or math.isnan(age) or age < 0:
        return "U"
    for low, high, label in AGE_BUCKETS:
        if low <= age < high:
            return label
    return "U"  # pragma: no cover - the last bucket is open


def race_token(race: str | None) -> str:
    """``race:<slug>`` of a race class (``race:unknown`` for None or empty)."""
    slug = re.sub(r"[^a-z0-9]+", "_", (race or "").lower()).strip("_")
    return f"race:{slug or 'unknown'}"


def parse_held_out(held_out: Iterable[str]) -> tuple[str, ...]:
    """Canonical held-out prefixes (``icd:<dotted>`` / ``atc:<upper>``), sorted and unique.

    Parameters
    ----------
    held_out : iterable of str
        ``"icd:G40"``, ``"atc:N03A"``, or bare codes (applied to both vocabularies).

    Raises
    ------
    ValueError
        For an empty entry or a kind other than ``icd``/``atc`` (``"sex:F"``).
    """
    if isinstance(held_out, str):
        raise TypeError(f"held_out must be an iterable of codes, found a single string {held_out!r}")
    out: set[str] = set()
    for item in held_out:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"held_out entries must be non-empty strings, found {item!r}")
        text = item.strip()
        if ":" in text:
            kind, code = text.split(":", 1)
            kind = kind.strip().lower()
            if kind not in _CODE_KINDS or not code.strip():
                raise ValueError(f"held_out entry {item!r}: expected 'icd:<prefix>', 'atc:<prefix>' or a bare "
                                 f"code, found kind {kind!r}")
            kinds: tuple[str, ...] = (kind,)
        else:
            code, kinds = text, _CODE_KINDS
        for k in kinds:
            out.add(f"icd:{_dotted(code)}" if k == "icd" else f"atc:{''.join(code.split()).upper()}")
    return tuple(sorted(out))


def _held(kind: str, code: str, prefixes: tuple[str, ...]) -> bool:
    head = f"{kind}:"
    return any(p.startswith(head) and code.startswith(p[len(head):]) for p in prefixes)


def ehr_tokens(codes: CodeSet, *, max_icd: int = 30, max_atc: int = 50, held_out: Iterable[str] = ()) -> list[str]:
    """String tokens of a :class:`~ehr.record.CodeSet` (see the module docstring).

    Parameters
    ----------
    codes : CodeSet
    max_icd, max_atc : int
        Most ICD-10 / ATC codes kept (the first ones of the CodeSet's priority order,
        after held-out removal and de-duplication).
    held_out : iterable of str
        Prefixes to remove (:func:`parse_held_out`).

    Returns
    -------
    list of str
        ``[age, sex, race, icd..., atc...]``.
    """
    if not isinstance(codes, CodeSet):
        raise TypeError(f"codes must be an ehr.CodeSet, found {type(codes).__name__}")
    for name, value in (("max_icd", max_icd), ("max_atc", max_atc)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, found {value!r}")
    prefixes = parse_held_out(held_out)
    sex = codes.sex if codes.sex in ("F", "M") else "U"
    out = [f"age:{age_bucket(codes.age)}", f"sex:{sex}", race_token(codes.race)]
    icd = [c for c in dict.fromkeys(_dotted(c) for c in codes.icd10 if c) if not _held("icd", c, prefixes)]
    atc = [c for c in dict.fromkeys("".join(c.split()).upper() for c in codes.atc if c)
           if not _held("atc", c, prefixes)]
    out += [f"icd:{c}" for c in icd[:max_icd]]
    out += [f"atc:{c}" for c in atc[:max_atc]]
    return out


def _ancestor_tokens(token: str) -> list[str]:
    """Nearest-first ancestor tokens of a code token (codes only: no ICD blocks/chapters)."""
    kind, _, code = token.partition(":")
    if kind == "icd":
        try:
            return [f"icd:{a}" for a in icd10_ancestors(code) if "-" not in a and not a.isdigit()]
        except ValueError:  # not ICD-10-CM (e.g. WHO-only): shorten the dotted code
            out: list[str] = []
            c = _dotted(code)
            while len(c.replace(".", "")) > 3:
                c = c[:-1].rstrip(".")
                out.append(f"icd:{c}")
            return out
    if kind == "atc":
        try:
            return [f"atc:{a}" for a in atc_ancestors(code)]
        except ValueError:
            return []
    return []


def _kind(token: str) -> str:
    return token.partition(":")[0] if ":" in token else ""


class CodeVocab:
    """Token ↔ id mapping of EHR tokens, with hierarchical roll-up of rare codes.

    Build it with :meth:`build` from the *training* split only. Ids: ``PAD = 0``,
    ``UNK = 1``, then demographic tokens (ids ``2 .. first_code_id - 1``), then codes.

    Attributes
    ----------
    tokens : tuple of str
        Token of each id.
    held_out : tuple of str
        Canonical held-out prefixes, removed again by :meth:`encode`.
    min_count : int
        The threshold it was built with.
    first_code_id : int
        First id of a code token; ids below are specials and demographics.
    """

    PAD = PAD
    UNK = UNK

    def __init__(self, tokens: Sequence[str], *, held_out: Iterable[str] = (), min_count: int = 1) -> None:
        tokens = tuple(tokens)
        if tokens[:2] != _SPECIALS:
            raise ValueError(f"vocabulary must start with {_SPECIALS}, found {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            dup = [t for t, n in Counter(tokens).items() if n > 1]
            raise ValueError(f"vocabulary holds duplicate tokens: {dup[:5]}")
        kinds = [_kind(t) in _DEMO_KINDS for t in tokens[2:]]
        n_demo = sum(kinds)
        if kinds != [True] * n_demo + [False] * (len(kinds) - n_demo):
            raise ValueError("vocabulary must list demographic tokens (age:/sex:/race:) before code tokens")
        self.tokens: tuple[str, ...] = tokens
        self.held_out: tuple[str, ...] = parse_held_out(held_out)
        self.min_count = int(min_count)
        self.first_code_id = 2 + n_demo
        self._index = {t: i for i, t in enumerate(tokens)}
        self._resolved: dict[str, int | None] = {}

    # ---- construction ----------------------------------------------------------------
    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], *, min_count: int = 1,
              held_out: Iterable[str] = ()) -> CodeVocab:
        """Vocabulary of the tokens of the training split.

        Parameters
        ----------
        token_lists : iterable of list of str
            :func:`ehr_tokens` of the training samples.
        min_count : int
            A code needs this many lists holding it (or, pooled, its rare descendants)
            to get its own id; rarer codes roll up to an ancestor, else UNK.
        held_out : iterable of str
            Prefixes never given an id and removed at encoding (:func:`parse_held_out`).

        Returns
        -------
        CodeVocab
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, found {min_count!r}")
        prefixes = parse_held_out(held_out)
        counts: Counter[str] = Counter()
        for toks in token_lists:
            if isinstance(toks, str):
                raise TypeError(f"token_lists must hold lists of tokens, found a string {toks!r}")
            counts.update(t for t in dict.fromkeys(toks)
                          if t not in _SPECIALS and not (_kind(t) in _CODE_KINDS and _held(_kind(t), t[4:], prefixes)))
        demo = [f"age:{b[2]}" for b in AGE_BUCKETS] + ["age:U"] + [f"sex:{s}" for s in _SEXES] + list(RACE_TOKENS)
        demo += sorted(t for t in counts if _kind(t) in _DEMO_KINDS and t not in demo)
        kept = {t for t, n in counts.items() if n >= min_count and _kind(t) not in _DEMO_KINDS}
        rare = {t: n for t, n in counts.items() if n < min_count and _kind(t) in _CODE_KINDS}
        chains = {t: [a for a in _ancestor_tokens(t) if not _held(_kind(a), a[4:], prefixes)] for t in rare}
        below: dict[str, list[tuple[str, int]]] = {}
        for t, chain in chains.items():
            for depth, a in enumerate(chain):
                below.setdefault(a, []).append((t, depth))
        for anc in sorted(below, key=lambda a: (-len(a), a)):  # deepest first
            if anc in kept:
                continue
            mass = counts.get(anc, 0)
            for t, depth in below[anc]:
                if t not in kept and not any(a in kept for a in chains[t][:depth]):
                    mass += rare[t]
            if mass >= min_count:
                kept.add(anc)
        codes = sorted(kept, key=lambda t: (_CODE_KINDS.index(_kind(t)) if _kind(t) in _CODE_KINDS else 2, t))
        return cls((*_SPECIALS, *demo, *codes), held_out=prefixes, min_count=min_count)

    # ---- lookup ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodeVocab):
            return NotImplemented
        return self.tokens == other.tokens and self.held_out == other.held_out and self.min_count == other.min_count

    def __repr__(self) -> str:
        return (f"CodeVocab({len(self)} tokens, {len(self) - self.first_code_id} codes, "
                f"held_out={list(self.held_out)}, min_count={self.min_count})")

    def token_id(self, token: str) -> int | None:
        """Id a token encodes to (exact, else nearest ancestor, else UNK); None when held out."""
        if token in self._resolved:
            return self._resolved[token]
        kind = _kind(token)
        if kind in _CODE_KINDS and _held(kind, token[4:], self.held_out):
            out: int | None = None
        elif token in self._index:
            out = self._index[token]
        else:
            out = next((self._index[a] for a in _ancestor_tokens(token) if a in self._index), UNK)
        if len(self._resolved) < 1_000_000:
            self._resolved[token] = out
        return out

    def encode(self, tokens: Sequence[str], max_len: int | None = None) -> list[int]:
        """Ids of a token list: held-out codes dropped, unknown codes rolled up, duplicates removed.

        Parameters
        ----------
        tokens : list of str
        max_len : int, optional
            Keep the first ``max_len`` ids (demographics come first in :func:`ehr_tokens`).
        """
        if isinstance(tokens, str):
            raise TypeError(f"tokens must be a list of tokens, found a string {tokens!r}")
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
            raise ValueError(f"max_len must be a positive integer or None, found {max_len!r}")
        out = list(dict.fromkeys(i for i in map(self.token_id, tokens) if i is not None))
        return out[:max_len] if max_len is not None else out

    def encode_batch(self, token_lists: Sequence[Sequence[str]],
                     max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids and mask of a batch.

        Returns
        -------
        ids : torch.LongTensor, shape (B, L)
            ``L`` is the longest encoded row (at least 1); padding is ``PAD``.
        mask : torch.BoolTensor, shape (B, L)
            True at real tokens.
        """
        import torch

        rows = [self.encode(t, max_len) for t in token_lists]
        length = max([len(r) for r in rows] + [1])
        ids = torch.full((len(rows), length), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, ids != PAD

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ids (padding skipped)."""
        return [self.tokens[int(i)] for i in ids if int(i) != PAD]

    # ---- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON.

        Not atomic on its own: the vocabulary is part of an alignment checkpoint, written
        into the checkpoint's staging folder, which is renamed into place as a whole
        (``clef.align.train``). ``ehr`` does not import the repository's atomic writes
        (:mod:`tokenizer.atomic`): the bottom-layer packages stay independent.
        """
        payload = {"format": _FORMAT, "version": _VERSION, "min_count": self.min_count,
                   "held_out": list(self.held_out), "tokens": list(self.tokens)}
        Path(path).write_text(json.dumps(payload, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CodeVocab:
        """Read a vocabulary written by :meth:`save`.

        Raises
        ------
        ValueError
            When the file is not a CLEF EHR vocabulary of a known version.
        """
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"{path}: expected format {_FORMAT!r}, found {found!r}")
        if payload.get("version") != _VERSION:
            raise ValueError(f"{path}: expected vocabulary version {_VERSION}, found {payload.get('version')!r}")
        return cls(payload["tokens"], held_out=payload.get("held_out", ()), min_count=payload.get("min_count", 1))

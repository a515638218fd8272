"""Cohort similarity search: k nearest sessions under metadata filters, optionally one per patient.

Filters are applied inside the search, never by truncating a plain top-k: the allowed
sessions become a FAISS ``IDSelectorBitmap``, and a search that must return one session
per patient widens (4×, 16× ... k) until k distinct patients are found or every allowed
session was seen. When the filters leave few sessions (``IndexConfig.exact_below``), or
an approximate index runs dry before k results, the answer is computed exactly over the
allowed sessions, so k results are returned whenever k sessions satisfy the filters.

Filters (``KEY=VALUE``, combined with AND; string values case-insensitive)::

    site=S01            site=S01,S03         (any of)
    sex=F               setting=emu
    age=40-60           age=40-  age=-18  age=45   (inclusive years; 45 means [45, 46))
    reference=LE        reference=REF,AVG    (the reference scheme the labels name:
                        REF, LE, AVG, MAST, EAR, CZ, bipolar, unknown, mixed)

Sessions of unknown site / sex / age / reference do not pass a filter on that field. The query
session itself is never returned; with ``per_patient``, the query's own patient neither.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from services.config import IndexConfig
from services.index import CohortIndex, ensure_index, new_index, normalise
from services.store import EmbeddingStore, StoreError, vectors_of

log = logging.getLogger(__name__)

FILTER_KEYS = ("site", "sex", "setting", "age", "reference")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*(-)?\s*(\d+(?:\.\d+)?)?\s*$")


class FilterError(ValueError):
    """A filter could not be parsed."""


@dataclass(frozen=True)
class Filter:
    """One metadata filter.

    Attributes
    ----------
    key : str
        ``site``, ``sex``, ``setting``, ``age`` or ``reference``.
    values : tuple of str
        Accepted values (lower case) for string keys.
    low, high : float
        Inclusive age range for ``age`` (``high`` exclusive for a single year).
    """

    key: str
    values: tuple[str, ...] = ()
    low: float = float("-inf")
    high: float = float("inf")
    high_inclusive: bool = True

    def mask(self, meta: pl.DataFrame) -> np.ndarray:
        """Boolean mask of the rows of ``meta`` passing this filter."""
        if self.key == "age":
            age = meta["age_years"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
            upper = age <= self.high if self.high_inclusive else age < self.high
            return (age >= self.low) & upper
        # compared in polars, not as Python objects: a fraction of the time on a large cohort
        return meta[self.key].str.to_lowercase().is_in(list(self.values)).fill_null(False).to_numpy()

    def __str__(self) -> str:
        if self.key == "age":
            return f"age={'' if self.low == float('-inf') else f'{self.low:g}'}-" \
                   f"{'' if self.high == float('inf') else f'{self.high:g}'}"
        return f"{self.key}={','.join(self.values)}"


def parse_filter(text: str) -> Filter:
    """Parse ``KEY=VALUE`` (see the module docstring).

    Raises
    ------
    FilterError
        Unknown key, empty value, or an unreadable age range.
    """
    key, sep, value = text.partition("=")
    key, value = key.strip().lower(), value.strip()
    if not sep or not value:
        raise FilterError(f"filter KEY=VALUE expected (e.g. site=S01, age=40-60), found {text!r}")
    if key not in FILTER_KEYS:
        raise FilterError(f"filter key must be one of {', '.join(FILTER_KEYS)}, found {key!r}")
    if key != "age":
        values = tuple(v.strip().lower() for v in value.split(",") if v.strip())
        if not values:
            raise FilterError(f"filter {key}: at least one value expected, found {value!r}")
        return Filter(key, _references(values) if key == "reference" else values)
    m = _AGE.match(value)
    if not m or (m.group(1) is None and m.group(3) is None) or (m.group(2) is None and m.group(3) is not None):
        raise FilterError(f"filter age: a range in years expected (40-60, 40-, -18 or 45), found {value!r}")
    lo = float(m.group(1)) if m.group(1) is not None else float("-inf")
    if m.group(2) is None:  # a single year: [N, N + 1)
        return Filter("age", low=lo, high=lo + 1, high_inclusive=False)
    hi = float(m.group(3)) if m.group(3) is not None else float("inf")
    if hi < lo:
        raise FilterError(f"filter age: low <= high expected, found {value!r}")
    return Filter("age", low=lo, high=hi)


def _references(values: Sequence[str]) -> tuple[str, ...]:
    """Reference filter values as stored (``LER`` → ``le``); a word naming no scheme is an
    error, not a filter that silently matches nothing."""
    from tokenizer.channels import SCHEMES as REFERENCE_SCHEMES
    from tokenizer.channels import reference_scheme

    out = []
    for v in values:
        scheme = reference_scheme(v)
        if scheme is None:
            raise FilterError(f"filter reference: one of {', '.join(REFERENCE_SCHEMES)} (or a shared reference "
                              f"electrode such as CZ) expected, found {v!r}")
        out.append(scheme.lower())
    return tuple(out)


def parse_filters(texts: Sequence[str]) -> list[Filter]:
    """Parse several filters; a key given twice is an error (use ``site=A,B``)."""
    out = [parse_filter(t) for t in texts]
    keys = [f.key for f in out]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise FilterError(f"filter {dup[0]} given more than once; give several values in one (e.g. site=S01,S02)")
    return out


@dataclass(frozen=True)
class Neighbour:
    """One search result (non-PHI metadata; ``patient_hash`` and ``path`` stay local)."""

    rank: int
    session_id: str
    score: float
    distance: float
    site: str | None
    setting: str | None
    sex: str | None
    age_years: float | None
    n_windows: int | None
    duration_s: float | None
    patient_hash: str | None
    source_sha256: str
    path: str | None
    reference: str | None = None

    def to_dict(self, *, public: bool = False) -> dict[str, Any]:
        """Dict; ``public`` drops the local-only fields (patient hash, path, content hash)."""
        d = asdict(self)
        if public:
            for k in ("patient_hash", "path", "source_sha256"):
                d.pop(k)
        return d


class CohortSearcher:
    """An index with its session metadata aligned to the FAISS rows.

    Parameters
    ----------
    store : EmbeddingStore or path
    model_id : str, optional
    config : IndexConfig, optional
    kind : str, optional
        Index kind when it must be built.
    """

    def __init__(self, store: EmbeddingStore | str, model_id: str | None = None, config: IndexConfig | None = None,
                 kind: str | None = None) -> None:
        self.store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
        self.cfg = config or IndexConfig()
        self.index, self.index_action = ensure_index(self.store, model_id, kind, self.cfg)  # type: ignore[arg-type]
        self.model_id = self.index.model_id
        ids = pl.DataFrame({"source_sha256": self.index.shas, "row": np.arange(self.index.n)})
        sess = self.store.sessions().drop("session_id")
        self.meta = ids.join(sess, on="source_sha256", how="left").sort("row").with_columns(
            pl.Series("session_id", self.index.session_ids))
        self._row_of = {s: i for i, s in enumerate(self.index.session_ids)}
        self._row_of_sha = {s: i for i, s in enumerate(self.index.shas)}
        ph = self.meta["patient_hash"].to_list()
        # Sessions without a patient hash count as their own patient.
        self._patient = np.array([p if p is not None else f"\x00{i}" for i, p in enumerate(ph)], dtype=object)
        self.space = "session"
        self._spaces: dict[str, CohortSearcher] = {}

    def raw_matrix(self) -> np.ndarray:
        """Raw (unnormalised) embeddings of every indexed session, in FAISS row order, (n, dim) float32.

        From memory when the index keeps the norms, else read from the store.

        Raises
        ------
        StoreError
            An indexed session is gone from the store.
        """
        raw = self.index.raw_vectors(np.arange(self.index.n))
        if raw is not None:
            return raw
        df = self.store.embeddings(self.model_id, windows=False).select("source_sha256", "vector")
        row_of = {s: i for i, s in enumerate(df["source_sha256"].to_list())}
        missing = [s for s in self.index.shas if s not in row_of]
        if missing:
            raise StoreError(f"store {self.store.path}: {len(missing)} indexed sessions of model {self.model_id} "
                             "are gone from the store; run 'clef index' to rebuild the index")
        return vectors_of(df)[np.array([row_of[s] for s in self.index.shas], dtype=np.int64)]

    def projected(self, project: Callable[[np.ndarray], np.ndarray], space: str) -> CohortSearcher:
        """A searcher over the same sessions, metadata and filters, in another embedding space.

        ``project`` maps the raw session embeddings (:meth:`raw_matrix`) into the space
        (e.g. an aligned checkpoint's EEG→report projection); the projected vectors are
        L2-normalised and indexed in memory by an exact FAISS inner-product index, so
        :meth:`search` scores cosines in that space. Exact, because the index is rebuilt
        with every state of the store and is never saved: an IVF index would be trained
        again each time (minutes at a million sessions), while a flat one costs a copy and
        answers a million sessions in a fraction of a second (``bench/search.py``). The
        result is cached per ``space`` on this searcher, which stands for one state of the
        store: a service that reloads its searcher projects again.

        Parameters
        ----------
        project : callable
            ``(n, dim) float32 -> (n, dim2)``.
        space : str
            Name of the space, the cache key (e.g. ``report:<checkpoint weights digest>``).

        Returns
        -------
        CohortSearcher
            Shares this searcher's store, metadata and patients; its ``index`` holds the
            projected vectors.
        """
        if not space:
            raise ValueError("space must name the projection, found an empty string")
        if space in self._spaces:
            return self._spaces[space]
        raw = self.raw_matrix()
        y = np.asarray(project(raw), dtype=np.float32)
        if y.ndim != 2 or y.shape[0] != raw.shape[0]:
            raise ValueError(f"projection of {space!r}: ({raw.shape[0]}, dim) expected, found {y.shape}")
        x = normalise(y)
        kind = "flat"
        idx, params = new_index(kind, x, self.cfg)
        idx.add(x)
        norms = np.linalg.norm(y.astype(np.float64), axis=1).astype(np.float32)
        out = copy.copy(self)
        out.index = CohortIndex(idx, kind, "auto", self.model_id, self.index.session_ids, self.index.shas,
                                self.index.digest, params, norms)
        out.index_action = "projected"
        out.space = space
        out._spaces = {}
        self._spaces[space] = out
        log.info("projected %d sessions of model %s into %s (%s index, dim %d)", len(x), self.model_id, space, kind,
                 x.shape[1])
        return out

    def row_of(self, session_id: str) -> int:
        """FAISS row of a stored session.

        Raises
        ------
        KeyError
            Unknown session id.
        """
        if session_id not in self._row_of:
            raise KeyError(f"session {session_id!r} not in the index of model {self.model_id}")
        return self._row_of[session_id]

    def session_vector(self, session_id: str) -> np.ndarray:
        """Stored (normalised) embedding of a session."""
        return self.index.vectors(np.array([self.row_of(session_id)]))[0]

    def raw_vector(self, session_id: str) -> np.ndarray | None:
        """Raw (unnormalised) embedding of a stored session from memory, or None when the
        index keeps no norms (saved by an older version: read it from the store)."""
        raw = self.index.raw_vectors(np.array([self.row_of(session_id)]))
        return None if raw is None else raw[0]

    def session_meta(self, session_id: str) -> dict[str, Any]:
        """Metadata row of a stored session."""
        return self.meta.row(self.row_of(session_id), named=True)

    def row_of_sha(self, sha: str | None) -> int | None:
        """FAISS row of a content hash, if indexed."""
        return self._row_of_sha.get(sha) if sha else None

    # -- searching ------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int = 50, filters: Sequence[Filter] = (), *, per_patient: bool = False,
               exclude_rows: Sequence[int] = (), exclude_patient: str | None = None) -> list[Neighbour]:
        """The ``k`` sessions most similar to ``query`` that pass ``filters``.

        Parameters
        ----------
        query : ndarray, (dim,)
            Session embedding (normalised here).
        k : int
        filters : sequence of Filter
        per_patient : bool
            At most one session (the most similar) per patient.
        exclude_rows : sequence of int
            FAISS rows never returned (the query session).
        exclude_patient : str, optional
            Patient hash never returned (with ``per_patient``: the query's patient).

        Returns
        -------
        list of Neighbour
            Best first; fewer than ``k`` only when fewer sessions qualify.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, found {k}")
        q = normalise(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.index.dim:
            raise ValueError(f"query of dimension {self.index.dim} expected, found {q.shape[1]}")
        n = self.index.n
        allowed = np.ones(n, bool)
        for f in filters:
            allowed &= f.mask(self.meta)
        if len(exclude_rows):
            allowed[np.asarray(exclude_rows, dtype=np.int64)] = False
        if exclude_patient is not None:
            allowed &= self._patient != exclude_patient
        n_allowed = int(allowed.sum())
        if n_allowed == 0:
            return []
        if self.index.kind != "flat" and n_allowed <= self.cfg.exact_below:
            rows, scores = self._exact(q[0], np.flatnonzero(allowed), k, per_patient)
        else:
            rows, scores = self._approximate(q, allowed, n_allowed, k, per_patient)
        return [self._neighbour(i + 1, int(r), float(s)) for i, (r, s) in enumerate(zip(rows, scores))]

    def _pick(self, rows: np.ndarray, scores: np.ndarray, k: int, per_patient: bool) -> tuple[list[int], list[float]]:
        keep_r, keep_s, seen = [], [], set()
        for r, s in zip(rows, scores):
            if r < 0:
                continue
            if per_patient:
                p = self._patient[r]
                if p in seen:
                    continue
                seen.add(p)
            keep_r.append(int(r))
            keep_s.append(float(s))
            if len(keep_r) == k:
                break
        return keep_r, keep_s

    def _approximate(self, q: np.ndarray, allowed: np.ndarray, n_allowed: int, k: int,
                     per_patient: bool) -> tuple[list[int], list[float]]:
        import faiss

        selector = None if n_allowed == self.index.n else faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
        kk = min(n_allowed, 4 * k if per_patient else k)
        while True:
            params = self.index.search_params(kk, selector, n_allowed / self.index.n)
            scores, rows = self.index.index.search(q, kk, params=params)
            rows, scores = rows[0], scores[0]
            picked = self._pick(rows, scores, k, per_patient)
            if len(picked[0]) >= k or self.index.kind == "flat" and kk >= n_allowed:
                return picked
            if int((rows >= 0).sum()) < kk or kk >= n_allowed:
                # The approximate index ran dry (IVF lists not probed, HNSW graph cut by the
                # filter): answer exactly over the allowed sessions.
                log.debug("approximate search found %d of %d; exact over %d allowed", len(picked[0]), k, n_allowed)
                return self._exact(q[0], np.flatnonzero(allowed), k, per_patient)
            kk = min(n_allowed, kk * 4)

    def _exact(self, q: np.ndarray, rows: np.ndarray, k: int, per_patient: bool,
               chunk: int = 65536) -> tuple[list[int], list[float]]:
        scores = np.empty(len(rows), np.float32)
        for a in range(0, len(rows), chunk):
            scores[a:a + chunk] = self.index.vectors(rows[a:a + chunk]) @ q
        if not per_patient and len(rows) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            order = top[np.argsort(-scores[top], kind="stable")]
        else:
            order = np.argsort(-scores, kind="stable")
        return self._pick(rows[order], scores[order], k, per_patient)

    def _neighbour(self, rank: int, row: int, score: float) -> Neighbour:
        m = self.meta.row(row, named=True)
        return Neighbour(rank, m["session_id"], round(score, 6), round(1.0 - score, 6),
                         source_sha256=m["source_sha256"], **{k: m.get(k) for k in (
                             "site", "setting", "sex", "age_years", "n_windows", "duration_s", "patient_hash", "path",
                             "reference")})

    def search_session(self, session_id: str, k: int = 50, filters: Sequence[Filter] = (), *,
                       per_patient: bool = False) -> list[Neighbour]:
        """Neighbours of a stored session (itself excluded; its patient too with ``per_patient``)."""
        row = self.row_of(session_id)
        patient = self.meta["patient_hash"][row] if per_patient else None
        return self.search(self.session_vector(session_id), k, filters, per_patient=per_patient, exclude_rows=[row],
                           exclude_patient=patient)


def search_similar(store: EmbeddingStore | str, *, session_id: str | None = None, vector: np.ndarray | None = None,
                   k: int = 50, filters: Sequence[str] = (), per_patient: bool = False,
                   model_id: str | None = None) -> list[Neighbour]:
    """One-call search of a store by session id or by vector (index built / updated as needed)."""
    if (session_id is None) == (vector is None):
        raise ValueError("give exactly one of session_id and vector")
    s = CohortSearcher(store, model_id)
    fs = parse_filters(filters)
    if session_id is not None:
        return s.search_session(session_id, k, fs, per_patient=per_patient)
    return s.search(vector, k, fs, per_patient=per_patient)  # type: ignore[arg-type]


__all__ = ["CohortSearcher", "Filter", "FilterError", "Neighbour", "StoreError", "parse_filter", "parse_filters",
           "search_similar"]

"""Search sessions by words: a free-text query against the sessions' EEG in the report space.

Stage 2 (:mod:`clef.align`) trains a report tower and an EEG projection into one space:
a report summary goes through the frozen text encoder, ``report_encoder`` and
``report_proj``; a session's pooled encoder output (its session embedding) through
``eeg_to_report``. A query is embedded on the report side exactly as a summary is in
training (:func:`clef.align.data.encode_texts`, then the two trainable layers), and
sessions are scored by the cosine of that vector with their EEG projection.

Design: the store keeps each session's raw embedding, the pooled encoder output of the
checkpoint that embedded it (``clef embed`` with the aligned checkpoint stores the same
vector ``AlignModule.eeg_embedding`` computes), so ``eeg_to_report`` is applied to the
stored vectors when the first text query comes, never to the EEG: nothing is re-read at
query time and the store needs no second column. The projected vectors are indexed in
memory (exact FAISS inner product) and cached per checkpoint on the
:class:`~services.search.CohortSearcher` of the store's current state
(:meth:`~services.search.CohortSearcher.projected`), so filters and one-per-patient
searches are the cohort search's own. ``tests/test_text_search.py`` and
``bench/text_search.py --tokens`` check the equality of the stored and trained vectors.

Zero-shot concept scores (:meth:`TextSearcher.concept_scores`) are the same cosines for
every session (or a given list), as a table.

A checkpoint without a report tower (stage 1 only, or aligned with ``report_weight: 0``)
is refused with :class:`NoReportTowerError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch

from services.config import IndexConfig
from services.index import normalise
from services.search import CohortSearcher, Filter, Neighbour, parse_filters
from services.store import EmbeddingStore, StoreError

log = logging.getLogger(__name__)

#: Longest query accepted, in characters (the text encoder truncates its sub-word tokens anyway).
MAX_QUERY_CHARS = 2000

__all__ = ["MAX_QUERY_CHARS", "NoReportTowerError", "ReportTower", "TextSearcher", "check_query", "search_text"]


class NoReportTowerError(ValueError):
    """The checkpoint has no trained report tower, so text cannot be placed among sessions.

    Parameters
    ----------
    path : path
        The checkpoint.
    reason : str
        Why, without the path (kept as :attr:`reason`; the service answers with it).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"checkpoint {path} has no report tower for text search: {reason}")
        self.reason = reason


def check_query(text: str) -> str:
    """The query stripped of surrounding white space.

    Raises
    ------
    ValueError
        Not a string, empty, or longer than :data:`MAX_QUERY_CHARS`.
    """
    if not isinstance(text, str):
        raise ValueError(f"text query: a string expected, found {type(text).__name__}")
    t = text.strip()
    if not t:
        raise ValueError("text query: some words expected, found an empty text")
    if len(t) > MAX_QUERY_CHARS:
        raise ValueError(f"text query: at most {MAX_QUERY_CHARS} characters expected, found {len(t)}")
    return t


class ReportTower:
    """The report side of an aligned checkpoint and its EEG projection, in eval mode.

    Parameters
    ----------
    checkpoint : path
        An aligned checkpoint (``clef align``): a session-transformer checkpoint with an
        ``align/`` folder.
    device : str
        Torch device of the text encoder and the tower.

    Attributes
    ----------
    model_id : str
        The checkpoint's model id (first 16 hex digits of its weights' SHA-256): the
        store's embeddings of this model are the ones projected.
    space : str
        ``report:<model_id>:<tower weights digest>``, the key of the projected vectors.

    Raises
    ------
    NoReportTowerError
        A stage-1 checkpoint, or an alignment whose report term had weight 0.
    tokenizer.checkpoint_io.CheckpointError
        Not a session-transformer checkpoint, or a damaged one.
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "cpu") -> None:
        from clef.align.train import ALIGN_SUBDIR, load_align_module
        from clef.model import CHECKPOINT_KIND
        from reports.text_encoder import FrozenTextEncoder, TextEncoderConfig
        from tokenizer.checkpoint_io import load_checkpoint

        path = Path(checkpoint)
        main = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location="cpu")
        if not (path / ALIGN_SUBDIR).is_dir():
            raise NoReportTowerError(path, f"no '{ALIGN_SUBDIR}/' inside, a stage-1 (masked-token) checkpoint; text "
                                           "search needs an aligned one ('clef align --init' on it, then 'clef "
                                           "embed' the store with the aligned checkpoint)")
        module, _ = load_align_module(path, map_location="cpu")
        if module.cfg.loss.report_weight == 0:
            raise NoReportTowerError(path, "its alignment had loss.report_weight 0 (EEG-EHR only), so the report "
                                           "tower was never trained; text search needs an EEG-report alignment")
        self.path = path
        self.model_id = str(main.meta["weights_sha256"])[:16]
        align_meta = json.loads((path / ALIGN_SUBDIR / "meta.json").read_text())  # checked by the loader above
        self.space = f"report:{self.model_id}:{str(align_meta['weights_sha256'])[:16]}"
        self.device = torch.device(device)
        # only the three parts text search uses are kept: the session transformer, the EHR
        # tower and the optimiser state the loader brought are dropped with the module
        self.report_encoder = module.report_encoder.to(self.device).eval()
        self.report_proj = module.report_proj.to(self.device).eval()
        self.eeg_to_report = module.eeg_to_report.to(self.device).eval()
        r = module.cfg.report
        self.text_encoder = FrozenTextEncoder(TextEncoderConfig(model_path=r.text_model, max_length=r.max_length,
                                                                device=device))
        if self.text_encoder.dim != self.report_encoder.config.in_dim:
            raise NoReportTowerError(path, f"its report tower takes {self.report_encoder.config.in_dim}-d text "
                                           f"features, the text model {self.text_encoder.path.name} gives "
                                           f"{self.text_encoder.dim}-d (aligned with another text model)")

    @property
    def dim(self) -> int:
        """Width of the shared EEG-report space."""
        return int(self.report_proj.out_features)

    @torch.no_grad()
    def embed_text(self, texts: str | Sequence[str]) -> np.ndarray:
        """Queries in the report space, L2-normalised, ``(n, dim)`` float32 (``(dim,)`` for one string).

        The same path as a report summary in training: frozen token features (float16, as
        :func:`clef.align.data.encode_texts` stores them), ``report_encoder``, ``report_proj``.

        Raises
        ------
        ValueError
            An empty or too long text (:func:`check_query`).
        """
        from clef.align.data import encode_texts

        single = isinstance(texts, str)
        items = [check_query(t) for t in ([texts] if single else list(texts))]  # type: ignore[list-item]
        out = np.zeros((len(items), self.dim), np.float32)
        # one text per pass: no padding, so a query's vector does not depend on its batch
        for i, f in enumerate(encode_texts(self.text_encoder, items, batch_size=1)):
            h = self.report_encoder(f.float()[None].to(self.device))
            out[i] = self.report_proj(h)[0].float().cpu().numpy()
        out = normalise(out)
        return out[0] if single else out

    @torch.no_grad()
    def project_sessions(self, raw: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Session embeddings ``(n, d)`` (the pooled encoder output) → EEG projections ``(n, dim)``."""
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 2 or raw.shape[1] != self.eeg_to_report.in_features:
            raise ValueError(f"session embeddings (n, {self.eeg_to_report.in_features}) expected, found {raw.shape}")
        out = np.empty((len(raw), self.dim), np.float32)
        for a in range(0, len(raw), batch):
            x = torch.from_numpy(raw[a:a + batch]).to(self.device)
            out[a:a + batch] = self.eeg_to_report(x).float().cpu().numpy()
        return out


class TextSearcher:
    """Text → session search and zero-shot concept scores over one store.

    Parameters
    ----------
    store : EmbeddingStore or path
        Embedded with the aligned checkpoint (``clef embed --checkpoint CKPT``).
    checkpoint : path or ReportTower
        The aligned checkpoint (or its loaded tower).
    config : IndexConfig, optional
    searcher : CohortSearcher, optional
        The store's searcher of the checkpoint's model, when one is loaded already (the
        service's); the projected index is cached on it.

    Raises
    ------
    NoReportTowerError
        The checkpoint has no report tower.
    StoreError
        The store holds no embeddings of the checkpoint's model.
    """

    def __init__(self, store: EmbeddingStore | str | Path, checkpoint: str | Path | ReportTower, *,
                 config: IndexConfig | None = None, searcher: CohortSearcher | None = None) -> None:
        self.tower = checkpoint if isinstance(checkpoint, ReportTower) else ReportTower(checkpoint)
        store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
        if searcher is None:
            store.require()
            if self.tower.model_id not in store.models():
                raise StoreError(f"store {store.path}: no embeddings of the checkpoint's model {self.tower.model_id} "
                                 f"(models there: {', '.join(store.models()) or 'none'}); run 'clef embed' with "
                                 "the aligned checkpoint")
            searcher = CohortSearcher(store, self.tower.model_id, config)
        elif searcher.model_id != self.tower.model_id:
            raise StoreError(f"the searcher is of model {searcher.model_id}, the checkpoint's is "
                             f"{self.tower.model_id}")
        self.sessions = searcher
        self.space = searcher.projected(self.tower.project_sessions, self.tower.space)

    @property
    def model_id(self) -> str:
        """The store's model (the checkpoint's)."""
        return self.tower.model_id

    def search(self, text: str, k: int = 50, filters: Sequence[Filter] = (), *,
               per_patient: bool = False) -> list[Neighbour]:
        """The ``k`` sessions whose EEG is closest to ``text`` in the report space, under ``filters``.

        Parameters
        ----------
        text : str
            Free text (``"left temporal slowing"``), at most :data:`MAX_QUERY_CHARS` characters.
        k : int
        filters : sequence of Filter
            As for the cohort search (:func:`services.search.parse_filters`).
        per_patient : bool
            At most one session (the best) per patient.

        Returns
        -------
        list of Neighbour
            Best first; ``score`` is the cosine with the query.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, found {k}")
        return self.space.search(self.tower.embed_text(text), k, filters, per_patient=per_patient)

    def concept_scores(self, text: str, session_ids: Sequence[str] | None = None) -> pl.DataFrame:
        """Zero-shot concept score of sessions: the cosine of each one's EEG projection with ``text``.

        Parameters
        ----------
        text : str
        session_ids : sequence of str, optional
            Sessions to score, in this order (default: every session of the store).

        Returns
        -------
        polars.DataFrame
            ``session_id``, ``score`` (cosine, -1 to 1), ``site``, ``setting``, ``sex``, ``age_years``.

        Raises
        ------
        KeyError
            An unknown session id.
        """
        q = self.tower.embed_text(text)
        rows = (np.arange(self.space.index.n) if session_ids is None
                else np.array([self.space.row_of(s) for s in session_ids], dtype=np.int64))
        scores = self.space.index.vectors(rows) @ q
        meta = self.space.meta[rows.tolist()] if len(rows) else self.space.meta.clear()
        return meta.select("session_id", pl.Series("score", scores.astype(np.float64)), "site", "setting", "sex",
                           "age_years")


def search_text(store: EmbeddingStore | str | Path, checkpoint: str | Path, text: str, *, k: int = 50,
                filters: Sequence[str] = (), per_patient: bool = False) -> list[Neighbour]:
    """One-call text search of a store with an aligned checkpoint (see :class:`TextSearcher`).

    Raises
    ------
    NoReportTowerError, StoreError, services.search.FilterError, ValueError
    """
    fs = parse_filters(filters)
    check_query(text)
    return TextSearcher(store, checkpoint).search(text, k, fs, per_patient=per_patient)

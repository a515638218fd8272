"""Stage-2 training data: each tokenized session with its report summary and EHR code set.

:func:`prepare_align_data` joins a tokens table with an :class:`~clef.align.archive.ArchiveIndex`:
for every session, its windows' rows in the tokens table, the summary of its report
(PHI-scrubbed, electrographic content only, by :mod:`reports`) encoded once by the frozen
text encoder, and the EHR tokens active at the session date (by :mod:`ehr`). Patients are
split by the platform's one patient split (:class:`clef.patients.PatientSplit`): only its
``train`` patients are trained on, the others are held out (the benchmark's test patients
among them); the EHR vocabulary is built from the training patients only, without the
held-out concepts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from reports.text_encoder import FrozenTextEncoder

from clef.align.archive import ArchiveIndex
from clef.align.config import AlignConfig
from clef.pretrain import TokenTable
from ehr import CodeVocab, ehr_tokens
from reports import ReportError, Summariser, process_report, read_report

log = logging.getLogger(__name__)


@dataclass
class AlignExample:
    """One session of stage 2.

    Attributes
    ----------
    session_id : str
    patient : int
        Index of the patient (sessions of one patient share it).
    patient_id : str or None
        The archive's patient id (None when unknown).
    source_sha256 : str
        Content hash of the session's file.
    rows : ndarray of int
        Rows of the tokens table holding this session's windows, in window order.
    summary : str or None
        Report summary (None: no usable report).
    ehr : list of str or None
        EHR tokens at the session date (None: no EHR).
    val : bool
        Held-out patient (not in the ``train`` split).
    """

    session_id: str
    patient: int
    patient_id: str | None
    source_sha256: str
    rows: np.ndarray
    summary: str | None
    ehr: list[str] | None
    val: bool


@dataclass
class AlignData:
    """Everything stage 2 trains and evaluates on.

    Attributes
    ----------
    table : TokenTable
    examples : list of AlignExample
    text_features : list of Tensor or None
        Frozen text-encoder token features of each example's summary, (L_i, D) float16.
    text_dim : int
    vocab : CodeVocab
        Built from the training split only.
    ehr_ids : list of list of int or None
    stats : dict
        Counts (sessions, with report, with EHR, unmatched, train/val).
    """

    table: TokenTable
    examples: list[AlignExample]
    text_features: list[torch.Tensor | None]
    text_dim: int
    vocab: CodeVocab
    ehr_ids: list[list[int] | None]
    stats: dict[str, Any] = field(default_factory=dict)

    def indices(self, val: bool) -> list[int]:
        """Examples of the training (``val=False``) or held-out split."""
        return [i for i, e in enumerate(self.examples) if e.val == val]


def _summaries(index: ArchiveIndex, sessions: Sequence[str], summariser: Summariser | None) -> dict[str, str]:
    out: dict[str, str] = {}
    texts, sids = [], []
    for sid in sessions:
        s = index.sessions[sid]
        if s.report is None:
            continue
        try:
            texts.append(read_report(s.report))
            sids.append(sid)
        except ReportError as exc:
            index.problems.append(f"{s.report}: {exc}")
            log.warning("report of session %s skipped: %s", sid, exc)
    for sid, text in zip(sids, texts):
        summary = process_report(text, summariser).summary.strip()
        if summary:
            out[sid] = summary
        else:
            index.problems.append(f"{index.sessions[sid].report}: no electrographic content to summarise")
    return out


def encode_texts(encoder: FrozenTextEncoder, texts: Sequence[str], batch_size: int = 32) -> list[torch.Tensor]:
    """Frozen token features of each text, trimmed to its tokens, float16 (L_i, D)."""
    feats: list[torch.Tensor] = []
    for a in range(0, len(texts), batch_size):
        h, m = encoder.encode_tokens(list(texts[a:a + batch_size]))
        feats += [row[mask.bool()].to(torch.float16).cpu() for row, mask in zip(h, m)]
    return feats


def prepare_align_data(table: TokenTable, index: ArchiveIndex, cfg: AlignConfig, *,
                       summariser: Summariser | None, text_encoder: FrozenTextEncoder,
                       vocab: CodeVocab | None = None) -> AlignData:
    """Join tokens, reports and EHR into stage-2 examples.

    Parameters
    ----------
    table : TokenTable
        Tokens of the archive (``clef tokenize``).
    index : ArchiveIndex
    cfg : AlignConfig
    summariser : Summariser or None
        None uses the extractive default of :mod:`reports`.
    text_encoder : FrozenTextEncoder
    vocab : CodeVocab, optional
        An existing vocabulary (resuming); built from the training split otherwise.

    Raises
    ------
    ValueError
        No tokenized session could be matched to the archive.
    """
    rows_of: dict[str, list[int]] = {}
    sid_of_sha: dict[str, str | None] = {}
    sha_of_sid: dict[str, str] = {}
    for r, (sha, path) in enumerate(zip(table.session, table.path)):
        if sha not in sid_of_sha:
            s = index.match(str(path))
            sid_of_sha[sha] = s.session_id if s else None
        sid = sid_of_sha[sha]
        if sid is not None:
            rows_of.setdefault(sid, []).append(r)
            sha_of_sid.setdefault(sid, str(sha))
    unmatched = sum(v is None for v in sid_of_sha.values())
    if not rows_of:
        raise ValueError(f"none of the {len(sid_of_sha)} tokenized sessions matches a session of {index.root} "
                         "(matched by file stem; see 'clef align --help' for the archive layout)")
    if unmatched:
        log.warning("%d tokenized sessions have no entry in the archive index and are left out", unmatched)
    sessions = sorted(rows_of)
    summaries = _summaries(index, sessions, summariser)
    patients: dict[str, int] = {}
    examples: list[AlignExample] = []
    for sid in sessions:
        s = index.sessions[sid]
        key = s.patient_id or f"session:{sid}"
        rec = index.record_of(s)
        toks = None
        if rec is not None and s.start is not None:
            c = cfg.ehr
            toks = ehr_tokens(rec.codes_at(s.start), max_icd=c.max_icd, max_atc=c.max_atc, held_out=c.held_out)
        rows = np.asarray(sorted(rows_of[sid], key=lambda r: int(table.window[r])), dtype=np.int64)
        examples.append(AlignExample(sid, patients.setdefault(key, len(patients)), s.patient_id, sha_of_sid[sid], rows,
                                     summaries.get(sid), toks, cfg.split.of(key) != "train"))
    if all(e.val for e in examples):
        raise ValueError(f"the patient split ({cfg.split.fractions}, salt {cfg.split.salt!r}) puts none of the "
                         f"{len(patients)} patients in 'train': use more patients")
    if not any(e.val for e in examples):
        log.warning("the patient split holds out none of the %d patients: no held-out retrieval", len(patients))
    if vocab is None:
        vocab = CodeVocab.build([e.ehr for e in examples if e.ehr is not None and not e.val],
                                min_count=cfg.ehr.min_count, held_out=cfg.ehr.held_out)
    ehr_ids = [vocab.encode(e.ehr) if e.ehr is not None else None for e in examples]
    with_text = [i for i, e in enumerate(examples) if e.summary is not None]
    feats = encode_texts(text_encoder, [examples[i].summary for i in with_text]) if with_text else []  # type: ignore[misc]
    feature_of = dict(zip(with_text, feats))
    text_features: list[torch.Tensor | None] = [feature_of.get(i) for i in range(len(examples))]
    stats = {
        "sessions": len(examples), "patients": len(patients), "unmatched_token_sessions": unmatched,
        "with_report": len(with_text), "with_ehr": sum(e.ehr is not None for e in examples),
        "train_sessions": sum(not e.val for e in examples), "val_sessions": sum(e.val for e in examples),
        "vocab_size": len(vocab),
    }
    log.info("stage-2 data: %s", stats)
    return AlignData(table, examples, text_features, text_encoder.dim, vocab, ehr_ids, stats)


def _padded(rows: list[torch.Tensor], empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows zero-padded to the longest, and the mask of their real entries (``empty`` when there are none)."""
    if not rows:
        return empty, torch.zeros(empty.shape[:2], dtype=torch.bool)
    return (pad_sequence(rows, batch_first=True),
            pad_sequence([torch.ones(len(r), dtype=torch.bool) for r in rows], batch_first=True))


def collate(data: AlignData, idx: Sequence[int], *, max_windows: int | None, train: bool) -> dict[str, torch.Tensor]:
    """A batch of sessions: their windows, summaries' features and EHR ids.

    Returns
    -------
    dict
        ``codes`` (W, N) long and ``valid`` (W, N) bool of all windows, ``owner`` (W,)
        the session of each window; ``text`` (Br, L, D), ``text_mask`` (Br, L),
        ``text_of`` (Br,) the sessions with a report; ``ehr_ids``/``ehr_mask``/``ehr_of``
        likewise; ``patient`` (B,).
    """
    t = data.table
    codes, valid, owner = [], [], []
    for j, i in enumerate(idx):
        rows = data.examples[i].rows
        if max_windows is not None and len(rows) > max_windows:
            if train:
                pick = torch.randperm(len(rows))[:max_windows].sort().values.numpy()
                rows = rows[pick]
            else:
                rows = rows[:max_windows]
        codes.append(t.codes[rows])
        valid.append(t.valid[rows])
        owner += [j] * len(rows)
    batch: dict[str, torch.Tensor] = {
        "codes": torch.from_numpy(np.concatenate(codes).astype(np.int64)),
        "valid": torch.from_numpy(np.concatenate(valid)),
        "owner": torch.tensor(owner, dtype=torch.long),
        "patient": torch.tensor([data.examples[i].patient for i in idx], dtype=torch.long),
    }
    text_of = [j for j, i in enumerate(idx) if data.text_features[i] is not None]
    feats = [data.text_features[idx[j]] for j in text_of]
    text, tmask = _padded([f.float() for f in feats], torch.zeros(0, 1, data.text_dim))  # type: ignore[union-attr]
    batch.update(text=text, text_mask=tmask, text_of=torch.tensor(text_of, dtype=torch.long))
    ehr_of = [j for j, i in enumerate(idx) if data.ehr_ids[i]]
    ids = [data.ehr_ids[idx[j]] for j in ehr_of]
    eids, emask = _padded([torch.tensor(x, dtype=torch.long) for x in ids], torch.zeros(0, 1, dtype=torch.long))
    batch.update(ehr_ids=eids, ehr_mask=emask, ehr_of=torch.tensor(ehr_of, dtype=torch.long))
    return batch

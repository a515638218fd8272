"""Stage 2 end to end: ``clef align --init CKPT --archive DIR --config CFG --out CKPT_DIR``.

:func:`align` loads a stage-1 checkpoint, tokenizes the archive with the tokenizer inside
it (or reads ``tokens``), joins reports and FHIR records (:mod:`clef.align.archive`),
trains :class:`~clef.align.module.AlignModule` with Lightning, measures EEG→report and
EEG→EHR retrieval on held-out patients, and writes an aligned checkpoint::

    CKPT_DIR/               a session_transformer checkpoint (clef.embed works on it)
      config.yaml contract.json model.safetensors meta.json   (meta: stage 2, retrieval)
      tokenizer/            the VQGAN, copied from the stage-1 checkpoint
      align/                kind "clef_alignment": report and EHR towers, projections,
                            vocab.json (EHR codes; no PHI), training_state.safetensors

The whole directory is replaced atomically at each save, and training resumes from it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from clef.align.archive import ArchiveIndex, index_archive
from clef.align.config import AlignConfig
from clef.align.data import AlignData, collate, prepare_align_data
from clef.align.module import AlignModule, retrieval_accuracy
from clef.config import SessionConfig
from clef.model import CHECKPOINT_KIND, TOKENIZER_SUBDIR
from clef.patients import patient_record
from clef.pretrain import load_token_table
from ehr import CodeVocab
from reports import SummariserConfig, make_summariser
from reports.text_encoder import FrozenTextEncoder, TextEncoderConfig
from tokenizer.atomic import replace_dir
from tokenizer.checkpoint_io import CheckpointError, clear_leftovers, load_checkpoint, recover_checkpoint, save_checkpoint
from tokenizer.hashing import session_record
from tokenizer.tokens import tokenize_archive
from tokenizer.trainer import LOCAL_RUN, TrainingState, make_trainer, seed_run

log = logging.getLogger(__name__)

ALIGN_KIND = "clef_alignment"
ALIGN_SUBDIR = "align"
VOCAB_FILE = "vocab.json"
VOCAB_DIGEST = "vocab.sha256"


@dataclass(frozen=True)
class AlignResult:
    """Outcome of :func:`align`.

    Attributes
    ----------
    checkpoint : Path
    steps : int
    retrieval : dict of str to float
        Held-out retrieval (see :func:`evaluate_retrieval`).
    stats : dict
        Data counts (sessions, with report, with EHR, train/val, vocabulary size).
    """

    checkpoint: Path
    steps: int
    retrieval: dict[str, float]
    stats: dict[str, Any]


# --------------------------------------------------------------------------- evaluation


def trained_on(data: AlignData, cfg: AlignConfig, stage1_meta: dict[str, Any]) -> dict[str, Any]:
    """What stage 2 learned from, for ``meta.json`` (see :mod:`clef.patients`).

    ``supervised_patients``: the training patients whose report or EHR was a contrastive
    target; ``sessions``: the training sessions (their tokens also feed the masked-token
    term); ``split``: the patient split; ``stage1``: the record of the checkpoint it
    started from (self-supervised: its sessions may include test patients, which the
    benchmark reports as transductive).
    """
    train = [data.examples[i] for i in data.indices(False)]
    supervised = [e.patient_id for e in train if e.patient_id and (e.summary is not None or e.ehr is not None)]
    return {"split": cfg.split.model_dump(), "supervised_patients": patient_record(supervised),
            "sessions": session_record(e.source_sha256 for e in train), "stage1": stage1_meta.get("trained_on")}


@torch.no_grad()
def project_split(module: AlignModule, data: AlignData, indices: list[int], batch_size: int = 16) -> dict[str, Any]:
    """Projected embeddings of some examples, in eval mode (all windows of every session)."""
    was = module.training
    module.eval()
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("eeg", "eeg_report", "eeg_ehr", "report", "ehr")}
    rep_rows, ehr_rows = [], []
    for a in range(0, len(indices), batch_size):
        b = collate(data, indices[a:a + batch_size], max_windows=None, train=False)
        out = module(b)
        for k, xs in parts.items():
            xs.append(getattr(out, k))
        rep_rows += [a + int(j) for j in b["text_of"]]
        ehr_rows += [a + int(j) for j in b["ehr_of"]]
    module.train(was)
    cat = lambda xs: torch.cat(xs).float().numpy() if xs else np.zeros((0, 0), np.float32)
    return {**{k: cat(xs) for k, xs in parts.items()}, "report_rows": np.asarray(rep_rows, dtype=np.int64),
            "ehr_rows": np.asarray(ehr_rows, dtype=np.int64)}


def evaluate_retrieval(module: AlignModule, data: AlignData, *, val: bool = True, k: int = 10) -> dict[str, float]:
    """EEG→report and EEG→EHR top-1 / top-k accuracy among the sessions of one split.

    For each session with a report, its EEG embedding ranks the reports of all sessions
    of the split; a hit is its own report within the first ``k``. Chance is ``k / n``.
    Same for the EHR.

    Returns
    -------
    dict
        ``report_top1``, ``report_top{k}``, ``report_chance{k}``, ``report_n`` and the same
        with ``ehr_``.
    """
    idx = data.indices(val)
    p = project_split(module, data, idx)
    out: dict[str, float] = {}
    for name, rows_key, q_key in (("report", "report_rows", "eeg_report"), ("ehr", "ehr_rows", "eeg_ehr")):
        rows = p[rows_key]
        n = len(rows)
        out[f"{name}_n"] = float(n)
        if n < 2:
            continue
        q, keys = p[q_key][rows], p[name]
        out[f"{name}_top1"] = retrieval_accuracy(q, keys, 1)
        out[f"{name}_top{k}"] = retrieval_accuracy(q, keys, k)
        out[f"{name}_chance{k}"] = min(k, n) / n
    module.last_metrics.update({f"val/{key}": v for key, v in out.items()})
    return out


# --------------------------------------------------------------------------- checkpoints


def save_aligned_checkpoint(module: AlignModule, out: str | Path, *, vocab: CodeVocab, tokenizer_dir: Path | None,
                            data_digest: str = "", optimizer: torch.optim.Optimizer | None = None,
                            extra_meta: dict[str, Any] | None = None) -> Path:
    """Write the aligned checkpoint directory (layout in the module docstring), atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(out)
    clear_leftovers(out)
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}-{time.time_ns()}")
    try:
        meta = {"step": module.g_step, "stage": 2, "config_name": module.session_cfg.name,
                "align_config": module.cfg.name, "grid": list(module.session_cfg.model.grid or ()),
                "vocab_size": module.session_cfg.model.vocab_size,
                "metrics": {k: round(v, 6) for k, v in module.last_metrics.items() if np.isfinite(v)},
                **(extra_meta or {})}
        save_checkpoint(staging, kind=CHECKPOINT_KIND, config=module.session_cfg.model_dump(mode="json"),
                        contract=module.contract, state_dict=module.encoder.state_dict(), data_digest=data_digest,
                        extra_meta=meta)
        state = TrainingState.of(module.g_step, optimizer, head=module.head)
        (staging / ALIGN_SUBDIR).mkdir(parents=True, exist_ok=True)
        align_cfg = {"align": module.cfg.model_dump(mode="json"), "text_dim": int(module.report_encoder.config.in_dim),
                     "ehr_vocab_size": len(vocab)}
        save_checkpoint(staging / ALIGN_SUBDIR, kind=ALIGN_KIND, config=align_cfg, contract=module.contract,
                        state_dict=module.tower_state(), data_digest=data_digest,
                        extra_meta={"step": module.g_step}, training_state=state.tensors, training_meta=state.meta)
        # the vocabulary beside the weights, its digest in a small sidecar checked on load
        vocab.save(staging / ALIGN_SUBDIR / VOCAB_FILE)
        digest = hashlib.sha256((staging / ALIGN_SUBDIR / VOCAB_FILE).read_bytes()).hexdigest()
        (staging / ALIGN_SUBDIR / VOCAB_DIGEST).write_text(digest + "\n")
        if tokenizer_dir is not None and tokenizer_dir.is_dir():
            shutil.copytree(tokenizer_dir, staging / TOKENIZER_SUBDIR)
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def load_align_module(path: str | Path, map_location: str = "cpu") -> tuple[AlignModule, CodeVocab]:
    """Rebuild the stage-2 module (all towers) and its EHR vocabulary from an aligned checkpoint.

    Raises
    ------
    CheckpointError
        Not an aligned checkpoint, or its vocabulary does not match the recorded digest.
    """
    path = Path(path)
    main = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
    sub = path / ALIGN_SUBDIR
    if not sub.is_dir():
        raise CheckpointError(path, f"no '{ALIGN_SUBDIR}/' inside: a stage-1 checkpoint, not an aligned one "
                                    "(run 'clef align --init' on it)")
    ck = load_checkpoint(sub, kind=ALIGN_KIND, map_location=map_location)
    vocab_bytes = (sub / VOCAB_FILE).read_bytes() if (sub / VOCAB_FILE).is_file() else b""
    recorded = (sub / VOCAB_DIGEST).read_text().strip() if (sub / VOCAB_DIGEST).is_file() else ""
    if not vocab_bytes or hashlib.sha256(vocab_bytes).hexdigest() != recorded:
        raise CheckpointError(sub, f"{VOCAB_FILE} is missing or does not match {VOCAB_DIGEST} (tampered with?)")
    vocab = CodeVocab.load(sub / VOCAB_FILE)
    module = AlignModule(SessionConfig.model_validate(main.config), AlignConfig.model_validate(ck.config["align"]),
                         main.contract, text_dim=int(ck.config["text_dim"]), vocab_size=len(vocab),
                         first_code_id=vocab.first_code_id,
                         step_offset=int(main.meta.get("step", 0)))
    module.encoder.load_state_dict(main.state_dict)
    missing, unexpected = module.load_state_dict(ck.state_dict, strict=False)
    bad = [k for k in missing if not k.startswith(("encoder.", "head."))] + list(unexpected)
    if bad:
        raise CheckpointError(sub, f"weights do not fit the configuration: {bad[:5]}")
    ts = TrainingState.load(sub, map_location)
    if ts is not None:
        module.head.load_state_dict(ts.part("head"))
        module._optimizer_state = ts.optimizer()
    return module, vocab


def init_from_stage1(module: AlignModule, init: Path) -> None:
    """Load a stage-1 checkpoint's encoder (and its masked-token head, when saved) into ``module``.

    The alignment towers keep their initial weights: the module is what stage 2 starts from.

    Parameters
    ----------
    module : AlignModule
        A freshly built module of the checkpoint's session configuration.
    init : Path
        The stage-1 (masked-token) checkpoint folder.
    """
    ck = load_checkpoint(init, kind=CHECKPOINT_KIND)
    module.encoder.load_state_dict(ck.state_dict)
    ts = TrainingState.load(init)
    head = ts.part("head") if ts is not None else {}
    if head:
        module.head.load_state_dict(head)


# --------------------------------------------------------------------------- entry point


def align(
    init: str | Path,
    archive: str | Path | ArchiveIndex,
    cfg: AlignConfig,
    out: str | Path,
    *,
    tokens: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    cache_dir: str | Path | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    on_tokenize_start: Callable[[int], None] | None = None,
    on_tokenize_file: Callable[[str, str], None] | None = None,
) -> AlignResult:
    """Stage-2 contrastive alignment of a stage-1 checkpoint with an archive's reports and EHR.

    Parameters
    ----------
    init : path
        Stage-1 session-transformer checkpoint (``clef pretrain``), with its tokenizer.
    archive : path or ArchiveIndex
        Archive root (layout in :mod:`clef.align.archive`), or an index of it.
    cfg : AlignConfig
    out : path
        Aligned checkpoint directory (written every ``train.checkpoint_every`` steps and
        at the end).
    tokens : path, optional
        Tokens of the archive; by default the archive is tokenized (resumably) with the
        checkpoint's tokenizer into ``<out>_tokens`` next to ``out``.
    max_steps : int, optional
        Overrides ``cfg.train.max_steps``.
    resume : bool
        Continue from the checkpoint in ``out`` (weights, optimiser, step, vocabulary).
    cache_dir : path, optional
        Spectrogram cache used when tokenizing.
    trainer_kwargs : dict, optional
        Passed to ``lightning.Trainer`` (accelerator, devices, precision, strategy ...).
    progress : bool
        Progress bar while reading FHIR.
    on_tokenize_start, on_tokenize_file : callable, optional
        Progress callbacks of :func:`tokenizer.tokens.tokenize_archive`.
    """
    init, out = Path(init), Path(out)
    if max_steps is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": max_steps})})
    stage1 = load_checkpoint(init, kind=CHECKPOINT_KIND)
    session_cfg = SessionConfig.model_validate(stage1.config)
    tok_ck = init / TOKENIZER_SUBDIR
    if tokens is None:
        if not tok_ck.is_dir():
            raise CheckpointError(init, f"no '{TOKENIZER_SUBDIR}/' inside to tokenize the archive; pass tokens=")
        root = archive.root if isinstance(archive, ArchiveIndex) else Path(archive)
        tokens = out.with_name(out.name + "_tokens")
        tokenize_archive(root, tok_ck, tokens, cache_dir=cache_dir, on_start=on_tokenize_start,
                         on_file=on_tokenize_file)
    table = load_token_table(tokens)
    if table.grid != tuple(session_cfg.model.grid or ()) or table.vocab_size != session_cfg.model.vocab_size:
        raise ValueError(f"tokens {tokens} (grid {table.grid}, {table.vocab_size} codes) do not fit the stage-1 "
                         f"model (grid {session_cfg.model.grid}, {session_cfg.model.vocab_size} codes)")
    index = archive if isinstance(archive, ArchiveIndex) else index_archive(archive, progress=progress)
    for p in index.problems[:20]:
        log.warning("archive: %s", p)
    summariser = make_summariser(SummariserConfig(backend=cfg.report.summariser, model_dir=cfg.report.summariser_model))
    text_encoder = FrozenTextEncoder(TextEncoderConfig(model_path=cfg.report.text_model,
                                                       max_length=cfg.report.max_length))
    module: AlignModule | None = None
    vocab: CodeVocab | None = None
    if resume:
        recover_checkpoint(out)  # a run killed while replacing its checkpoint left the previous one aside
    if resume and (out / ALIGN_SUBDIR / "meta.json").is_file():
        module, vocab = load_align_module(out)
        if module.session_cfg.model != session_cfg.model or module.cfg.model_dump(exclude={"train"}) != \
                cfg.model_dump(exclude={"train"}):
            raise ValueError(f"{out} holds an aligned checkpoint of another configuration; cannot resume")
        module.cfg = cfg
        log.info("resuming stage 2 from %s at step %d", out, module.g_step)
    data = prepare_align_data(table, index, cfg, summariser=summariser, text_encoder=text_encoder, vocab=vocab)
    if module is None:
        seed_run(cfg.train.seed)  # the towers' initial weights too
        module = AlignModule(session_cfg, cfg, stage1.contract, text_dim=data.text_dim, vocab_size=len(data.vocab),
                             first_code_id=data.vocab.first_code_id)
        init_from_stage1(module, init)
    digest = table.digest()
    extra = {"init_weights_sha256": stage1.meta.get("weights_sha256"), "data": data.stats,
             "held_out_concepts": list(cfg.ehr.held_out), "trained_on": trained_on(data, cfg, stage1.meta)}
    tok_dir = tok_ck if tok_ck.is_dir() else None

    def save(m: AlignModule, optimizer: torch.optim.Optimizer | None) -> None:
        save_aligned_checkpoint(m, out, vocab=data.vocab, tokenizer_dir=tok_dir, data_digest=digest,
                                optimizer=optimizer, extra_meta=extra)

    remaining = cfg.train.max_steps - module.g_step
    train_idx = data.indices(False)
    if remaining > 0:
        seed_run(cfg.train.seed, module.g_step)
        trainer = make_trainer(remaining, cfg.train.checkpoint_every, save,
                               **{**LOCAL_RUN, "log_every_n_steps": cfg.train.log_every, **(trainer_kwargs or {})})
        bs = min(cfg.train.batch_size, len(train_idx))
        dl = DataLoader(train_idx, batch_size=bs, shuffle=True, drop_last=len(train_idx) > bs,
                        collate_fn=partial(collate, data, max_windows=cfg.max_windows, train=True))
        trainer.fit(module, train_dataloaders=dl)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
    else:
        optimizer = None
    retrieval = evaluate_retrieval(module, data, val=True) if data.indices(True) else {}
    for k, v in retrieval.items():
        log.info("held-out retrieval %s: %.3f", k, v)
    save(module, optimizer)
    return AlignResult(out, module.g_step, retrieval, data.stats)

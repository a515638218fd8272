"""Stage 1: masked-token pretraining of the session transformer (MAGE-style), with Lightning.

Per window: a mask ratio drawn per sample from a truncated normal, the masked tokens
replaced by ``[MASK]``, cross-entropy over the codebook on masked positions only, with
label smoothing. AdamW, linear warm-up + cosine decay, gradient clipping, an EMA of the
encoder weights (the EMA weights are what the checkpoint deploys). An optional DARE-EEG
mask-alignment term (InfoNCE between two masked views of the same window) is off by
default (``mask_align.weight``).

A session-transformer checkpoint is self-contained: it holds a copy of the tokenizer
checkpoint it was trained on (``CKPT/tokenizer/``), so ``clef.embed`` can run from an
EDF file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from clef.config import OptimConfig, SessionConfig
from clef.factory import create_model
from clef.masking import random_token_mask, sample_mask_ratios
from clef.model import (
    CHECKPOINT_KIND,
    TOKENIZER_SUBDIR,
    MaskedTokenHead,
    SessionTransformer,
    column_crops,
    context_columns,
    count_parameters,
)
from clef.patients import PatientSplit, patient_record
from tokenizer.checkpoint_io import load_checkpoint, recover_checkpoint, save_checkpoint
from tokenizer.contract import SignalContract
from tokenizer.hashing import session_record
from tokenizer.tokens import read_tokens
from tokenizer.trainer import LOCAL_RUN, TrainingState, make_trainer, seed_run

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data


@dataclass
class TokenTable:
    """Windows of a tokens folder as arrays.

    Attributes
    ----------
    codes : ndarray, (W, N) int16
    valid : ndarray, (W, N) bool
    session : ndarray, (W,) str
        ``source_sha256`` of each window's file.
    path : ndarray, (W,) str
    window : ndarray, (W,) int
    grid : tuple of int
    vocab_size : int
    manifest : dict
        The tokens folder's ``manifest.json``.
    """

    codes: np.ndarray
    valid: np.ndarray
    session: np.ndarray
    path: np.ndarray
    window: np.ndarray
    grid: tuple[int, int]
    vocab_size: int
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def subset(self, rows: np.ndarray) -> "TokenTable":
        """Rows ``rows`` only."""
        return TokenTable(self.codes[rows], self.valid[rows], self.session[rows], self.path[rows],
                          self.window[rows], self.grid, self.vocab_size, self.manifest)

    def split_by_session(self, val_fraction: float, salt: str = "val") -> tuple["TokenTable", "TokenTable"]:
        """Deterministic split by session (file hash), so no session is in both parts."""
        h = np.array([int(hashlib.sha256(f"{salt}{s}".encode()).hexdigest()[:8], 16) / 2**32 for s in self.session])
        val = h < val_fraction
        if val.all() or not val.any():
            val = np.zeros(len(self), bool)
            val[-max(1, len(self) // 10):] = True
        return self.subset(np.flatnonzero(~val)), self.subset(np.flatnonzero(val))

    def most_common_code_frequency(self) -> float:
        """Share of valid tokens equal to the most common code (the trivial predictor's accuracy)."""
        counts = np.bincount(self.codes[self.valid].astype(np.int64), minlength=self.vocab_size)
        return float(counts.max() / max(1, counts.sum()))

    def digest(self) -> str:
        """Digest of the sessions used (sorted file hashes)."""
        return hashlib.sha256("\n".join(sorted(set(self.session.tolist()))).encode()).hexdigest()[:16]


def load_token_table(tokens_dir: str | Path) -> TokenTable:
    """Read a tokens folder written by ``clef tokenize``.

    Raises
    ------
    FileNotFoundError
        No manifest or no token rows.
    """
    d = Path(tokens_dir)
    mpath = d / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{d}: expected a tokens folder written by 'clef tokenize' (no manifest.json)")
    manifest = json.loads(mpath.read_text())
    df: pl.DataFrame = read_tokens(d)
    if df.height == 0:
        raise FileNotFoundError(f"{d}: the tokens folder holds no token rows")
    grid = (int(df["grid_freq"][0]), int(df["grid_time"][0]))
    n = grid[0] * grid[1]
    codes = np.asarray(df["codes"].to_list(), dtype=np.int16).reshape(-1, n)
    valid = np.asarray(df["token_mask"].to_list(), dtype=bool).reshape(-1, n)
    return TokenTable(codes, valid, df["source_sha256"].to_numpy(), df["path"].to_numpy(),
                      df["window"].to_numpy(), grid, int(manifest["n_codes"]), manifest)


class _Windows(Dataset):
    """Training windows; with a short context (``columns``), one random crop of each window
    per draw, starting at a column no later than the window's last valid one (the padded end
    of a session's last window never yields a crop without tokens)."""

    def __init__(self, table: TokenTable, columns: int | None = None) -> None:
        self.t = table
        self.columns = columns

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        codes, valid = self.t.codes[i], self.t.valid[i]
        if self.columns is not None:
            gf, gt = self.t.grid
            codes, valid = codes.reshape(gf, gt), valid.reshape(gf, gt)
            cols = np.flatnonzero(valid.any(0))
            last = min(gt - self.columns, int(cols[-1]) if cols.size else 0)
            s = int(torch.randint(0, last + 1, ()).item())
            codes, valid = codes[:, s:s + self.columns].reshape(-1), valid[:, s:s + self.columns].reshape(-1)
        return {"codes": torch.from_numpy(codes.astype(np.int64)), "valid": torch.from_numpy(np.ascontiguousarray(valid))}


# --------------------------------------------------------------------------- module


def warmup_cosine_lr(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Learning rate at ``step``: linear warm-up, then cosine decay to ``min_lr_ratio``."""
    o = optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / max(1, o.warmup_steps)
    t = min(1.0, (step - o.warmup_steps) / max(1, total_steps - o.warmup_steps))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor,
                     exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between matched rows of ``a`` and ``b`` (cosine similarity).

    Parameters
    ----------
    a, b : Tensor, (n, d)
        Row ``i`` of ``a`` matches row ``i`` of ``b``.
    temperature : float or Tensor
    exclude : Tensor, (n, n) bool, optional
        Off-diagonal pairs not to use as negatives (e.g. two sessions of one patient).
    """
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    if exclude is not None:
        eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
        logits = logits.masked_fill(exclude & ~eye, float("-inf"))
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class MaskedTokenModule(L.LightningModule):
    """Encoder + masked-token head + EMA encoder, trained with masked-token modelling."""

    def __init__(self, cfg: SessionConfig, contract: SignalContract, *, step_offset: int = 0,
                 baseline_acc: float | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.contract = contract
        self.encoder = create_model(cfg)
        #: token columns one forward pass sees (None: whole windows; ``model.context_s``)
        self.context = context_columns(cfg.model, contract.window_s)
        self.head = MaskedTokenHead(cfg.model.dim, cfg.model.vocab_size)  # type: ignore[arg-type]
        self.ema = copy.deepcopy(self.encoder).requires_grad_(False)
        self.step_offset = step_offset
        self.baseline_acc = baseline_acc
        self._optimizer_state: dict[str, Any] | None = None
        self.last_metrics: dict[str, float] = {}

    @property
    def g_step(self) -> int:
        """Optimiser steps including those before a resume."""
        return self.step_offset + int(self.global_step)

    def lr_at(self, step: int) -> float:
        """Linear warm-up then cosine decay to ``min_lr_ratio``."""
        return warmup_cosine_lr(step, self.cfg.optim, self.cfg.train.max_steps)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, p in list(self.encoder.named_parameters()) + list(self.head.named_parameters()):
            (decay if p.ndim >= 2 and "tok." not in name and "pos_" not in name else no_decay).append(p)
        o = self.cfg.optim
        return torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=o.lr, betas=o.betas)

    def on_train_start(self) -> None:
        if self._optimizer_state is not None:
            self.optimizers().optimizer.load_state_dict(self._optimizer_state)  # type: ignore[union-attr]
            self._optimizer_state = None

    def masked_loss(self, codes: torch.Tensor, valid: torch.Tensor, generator: torch.Generator | None = None,
                    ratio: float | None = None, encoder: SessionTransformer | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy on masked positions; also returns window embeddings."""
        enc = encoder or self.encoder
        b = codes.shape[0]
        ratios = torch.full((b,), ratio) if ratio is not None else sample_mask_ratios(b, self.cfg.masking, generator)
        masked = random_token_mask(valid, ratios, generator)
        out = enc(self._grid_view(codes), valid, masked)
        logits = self.head(out.token_features)[masked]
        target = codes[masked].long()
        loss = F.cross_entropy(logits, target, label_smoothing=self.cfg.masking.label_smoothing)
        acc = (logits.argmax(-1) == target).float().mean()
        return loss, acc, out.window_embedding

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        opt = self.optimizers()
        for g in opt.optimizer.param_groups:  # type: ignore[union-attr]
            g["lr"] = self.lr_at(self.g_step)
        loss, acc, _ = self.masked_loss(batch["codes"], batch["valid"])
        metrics = {"train/mtm_loss": loss.detach(), "train/masked_acc": acc.detach()}
        ma = self.cfg.mask_align
        if ma.weight > 0 and batch["codes"].shape[0] > 1:
            r = torch.full((batch["codes"].shape[0],), ma.mask_ratio)
            codes = self._grid_view(batch["codes"])
            v1 = self.encoder(codes, batch["valid"], random_token_mask(batch["valid"], r)).window_embedding
            v2 = self.encoder(codes, batch["valid"], random_token_mask(batch["valid"], r)).window_embedding
            align = contrastive_loss(v1, v2, ma.temperature)
            loss = loss + ma.weight * align
            metrics["train/mask_align"] = align.detach()
        self.log_dict(metrics, prog_bar=True, on_step=True, batch_size=batch["codes"].shape[0])
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        torch.nn.utils.clip_grad_norm_(list(self.encoder.parameters()) + list(self.head.parameters()),
                                       self.cfg.optim.grad_clip)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        d = self.cfg.optim.ema_decay
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.encoder.parameters()):
                e.lerp_(p.detach(), 1 - d)

    def _grid_view(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` codes of windows or crops as ``(B, grid_f, columns)`` (the encoder tells crops by shape)."""
        return codes.reshape(codes.shape[0], self.cfg.model.grid[0], -1)  # type: ignore[index]

    @torch.no_grad()
    def evaluate(self, table: "TokenTable", batch_size: int = 32, ratio: float | None = None) -> dict[str, float]:
        """Masked-token loss and accuracy on held-out windows, at a fixed ratio and seed.

        The head is trained with the raw encoder, so accuracy is measured with it.
        """
        was = self.training
        self.eval()
        g = torch.Generator().manual_seed(1234)
        r = self.cfg.masking.mean if ratio is None else ratio
        losses, correct, total = [], 0.0, 0
        all_codes, all_valid = torch.from_numpy(table.codes.astype(np.int64)), torch.from_numpy(table.valid)
        if self.context is not None:  # short context: every crop of the held-out windows
            gf, gt = table.grid
            c, v, _ = column_crops(all_codes.view(-1, gf, gt), all_valid.view(-1, gf, gt), self.context)
            all_codes, all_valid = c.reshape(c.shape[0], -1), v.reshape(v.shape[0], -1)
        for a in range(0, all_codes.shape[0], batch_size):
            codes, valid = all_codes[a:a + batch_size], all_valid[a:a + batch_size]
            loss, acc, _ = self.masked_loss(codes, valid, generator=g, ratio=r)
            n = int(random_token_mask(valid, torch.full((codes.shape[0],), r)).sum())
            losses.append(float(loss) * n)
            correct += float(acc) * n
            total += n
        self.train(was)
        metrics = {"val/mtm_loss": sum(losses) / max(1, total), "val/masked_acc": correct / max(1, total)}
        self.last_metrics.update(metrics)
        return metrics


# --------------------------------------------------------------------------- checkpoints


def save_session_checkpoint(module: MaskedTokenModule, out: str | Path, *, tokenizer_dir: str | Path | None,
                            data_digest: str = "", optimizer: torch.optim.Optimizer | None = None,
                            extra_meta: dict[str, Any] | None = None) -> Path:
    """Write a session-transformer checkpoint: EMA encoder weights + training state + tokenizer copy."""
    state = TrainingState.of(module.g_step, optimizer, encoder=module.encoder, head=module.head)
    meta = {"step": module.g_step, "config_name": module.cfg.name, "parameters": count_parameters(module.encoder),
            "grid": list(module.cfg.model.grid or ()), "vocab_size": module.cfg.model.vocab_size,
            "metrics": {k: round(v, 6) for k, v in module.last_metrics.items()},
            "baseline_most_common_code": module.baseline_acc, **(extra_meta or {})}
    # the tokenizer copy goes in with the same atomic rename: a run killed while saving never
    # leaves a checkpoint whose tokenizer is half-copied
    copy = {TOKENIZER_SUBDIR: tokenizer_dir} if tokenizer_dir is not None and Path(tokenizer_dir).is_dir() else None
    return save_checkpoint(out, kind=CHECKPOINT_KIND, config=module.cfg.model_dump(mode="json"),
                           contract=module.contract, state_dict=module.ema.state_dict(), data_digest=data_digest,
                           extra_meta=meta, training_state=state.tensors, training_meta=state.meta,
                           copy_dirs=copy)


def load_session_module(path: str | Path, map_location: str = "cpu") -> MaskedTokenModule:
    """Rebuild the training module from a checkpoint (EMA, raw weights, head, optimiser)."""
    ck = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
    cfg = SessionConfig.model_validate(ck.config)
    module = MaskedTokenModule(cfg, ck.contract, step_offset=int(ck.meta.get("step", 0)),
                               baseline_acc=ck.meta.get("baseline_most_common_code"))
    module.ema.load_state_dict(ck.state_dict)
    ts = TrainingState.load(path, map_location)
    if ts is None:
        module.encoder.load_state_dict(ck.state_dict)
        return module
    module.encoder.load_state_dict(ts.part("encoder"))
    module.head.load_state_dict(ts.part("head"))
    module._optimizer_state = ts.optimizer()
    return module


# --------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class PretrainResult:
    """Outcome of :func:`pretrain`."""

    checkpoint: Path
    steps: int
    val_masked_acc: float | None
    baseline_acc: float
    parameters: int


def pretrain(
    tokens_dir: str | Path,
    cfg: SessionConfig,
    out: str | Path,
    *,
    max_steps: int | None = None,
    resume: bool = False,
    val_fraction: float = 0.1,
    archive: str | Path | None = None,
    exclude_test_patients: bool = False,
    split: PatientSplit | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> PretrainResult:
    """Masked-token pretraining on a tokens folder; writes a checkpoint directory.

    Parameters
    ----------
    tokens_dir : path
        Output of ``clef tokenize``.
    cfg : SessionConfig
        Model and training configuration (vocab and grid are filled from the tokens).
    out : path
        Checkpoint directory (written every ``train.checkpoint_every`` steps and at the end).
    max_steps : int, optional
        Overrides ``cfg.train.max_steps``.
    resume : bool
        Continue from the checkpoint in ``out`` (weights, EMA, optimiser, step).
    val_fraction : float
        Sessions held out (by file hash) to measure masked-token accuracy.
    archive : path, optional
        The archive the tokens come from (:mod:`clef.align.archive` layout): names each
        session's patient, so that the checkpoint records the patients it saw and
        ``exclude_test_patients`` can leave some out.
    exclude_test_patients : bool
        Leave out the sessions of the ``test`` patients of ``split`` (needs ``archive``).
        Stage 1 is self-supervised (no label is used), so training on the benchmark's test
        sessions is allowed and reported as transductive; this makes it inductive.
    split : PatientSplit, optional
        The patient split (default: the platform's, :class:`clef.patients.PatientSplit`).
    trainer_kwargs : dict, optional
        Passed to ``lightning.Trainer`` (accelerator, devices, precision, num_nodes,
        strategy ...): distribution is Lightning's, not ours.
    """
    out = Path(out)
    if exclude_test_patients and archive is None:
        raise ValueError("exclude_test_patients needs the archive that names each session's patient")
    split = split or PatientSplit()
    table = load_token_table(tokens_dir)
    patient_of = _patients_of(table, archive) if archive is not None else None
    if exclude_test_patients and patient_of is not None:
        keep = np.array([split.of(patient_of.get(str(sha)) or f"session:{sha}") != "test" for sha in table.session])
        log.info("stage 1 leaves out %d windows of test patients (%d kept)", int((~keep).sum()), int(keep.sum()))
        if not keep.any():
            raise ValueError("every session belongs to a test patient: nothing left to pretrain on")
        table = table.subset(np.flatnonzero(keep))
    if max_steps is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": max_steps})})
    cfg = cfg.with_data(table.vocab_size, table.grid)
    train_t, val_t = table.split_by_session(val_fraction)
    trained = {"sessions": session_record(train_t.session.tolist()), "split": split.model_dump(),
               "excluded": "test patients" if exclude_test_patients else None,
               "patients": None if patient_of is None else
               patient_record(p for p in {patient_of.get(str(sha)) for sha in train_t.session} if p)}
    baseline = val_t.most_common_code_frequency()
    contract = SignalContract.model_validate_json(json.dumps(_contract_of(table.manifest)))
    if resume:
        recover_checkpoint(out)  # a run killed while replacing its checkpoint left the previous one aside
    if resume and (out / "meta.json").is_file():
        module = load_session_module(out)
        if module.cfg.model != cfg.model:
            raise ValueError(f"{out} holds a checkpoint of another model configuration; cannot resume")
        module.cfg = cfg
        log.info("resuming from %s at step %d", out, module.g_step)
    else:
        seed_run(cfg.train.seed)  # the initial weights too
        module = MaskedTokenModule(cfg, contract, baseline_acc=baseline)
    remaining = cfg.train.max_steps - module.g_step
    tok_dir = Path(table.manifest.get("checkpoint", "")) if table.manifest.get("checkpoint") else None
    digest = table.digest()

    def save(m: MaskedTokenModule, optimizer: torch.optim.Optimizer | None) -> None:
        save_session_checkpoint(m, out, tokenizer_dir=tok_dir, data_digest=digest, optimizer=optimizer,
                                extra_meta={"trained_on": trained})

    if remaining > 0:
        seed_run(cfg.train.seed, module.g_step)
        trainer = make_trainer(remaining, cfg.train.checkpoint_every, save,
                               **{**LOCAL_RUN, "log_every_n_steps": cfg.train.log_every, **(trainer_kwargs or {})})
        # a short context sees the same tokens per step as the full one: batch_size windows' worth of crops
        bs = cfg.train.batch_size * (table.grid[1] // module.context if module.context else 1)
        train_dl = DataLoader(_Windows(train_t, module.context), batch_size=bs, shuffle=True, drop_last=len(train_t) > bs)
        trainer.fit(module, train_dataloaders=train_dl)
        module.evaluate(val_t)
        save(module, trainer.optimizers[0] if trainer.optimizers else None)
    return PretrainResult(out, module.g_step, module.last_metrics.get("val/masked_acc"), baseline,
                          count_parameters(module.encoder))


def _patients_of(table: TokenTable, archive: str | Path) -> dict[str, str | None]:
    """Patient id of each tokenized session (by file hash), from the archive's index."""
    from clef.align.archive import index_archive  # the archive reader pulls in FHIR parsing

    index = index_archive(archive)
    out: dict[str, str | None] = {}
    for sha, path in zip(table.session, table.path):
        if str(sha) not in out:
            s = index.match(str(path))
            out[str(sha)] = s.patient_id if s else None
    unknown = sum(v is None for v in out.values())
    if unknown:
        log.warning("%d of %d tokenized sessions have no patient in %s", unknown, len(out), archive)
    return out


def _contract_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The tokenizer's contract, from its checkpoint (the tokens manifest points to it)."""
    ck = manifest.get("checkpoint")
    if ck and (Path(ck) / "contract.json").is_file():
        return json.loads((Path(ck) / "contract.json").read_text())
    log.warning("tokenizer checkpoint %s not found: assuming the base contract; the session checkpoint "
                "will not embed EDF files directly", ck)
    return SignalContract().model_dump(mode="json")

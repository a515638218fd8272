"""The stage-2 Lightning module: session transformer aligned with reports and EHR.

Three towers meet in two shared spaces (separate projections, as in the paper):

* EEG: the stage-1 session transformer (initialised from its checkpoint); windows are
  encoded unmasked and aggregated into the session embedding by
  :func:`clef.model.aggregate_windows`, the pooling inference uses;
* report: frozen sentence-encoder token features of the summary → the trainable
  4-layer transformer of :class:`reports.text_encoder.ReportEncoder` → masked mean pool;
* EHR: the code set at the session date → :class:`ehr.encoder.EHREncoder` (a set
  transformer; codes shuffled and randomly dropped in training).

Loss: ``report_weight · InfoNCE(EEG, report) + ehr_weight · InfoNCE(EEG, EHR) +
mtm_weight · masked-token loss``. Each InfoNCE term is symmetric, uses only the sessions of
the batch that have a report (an EHR), and by default does not use other sessions of the
same patient as negatives.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from reports.text_encoder import ReportEncoder, ReportEncoderConfig
from torch import nn

from clef.align.config import AlignConfig
from clef.config import SessionConfig
from clef.factory import create_model
from clef.masking import random_token_mask, sample_mask_ratios
from clef.model import MaskedTokenHead, aggregate_windows
from clef.pretrain import contrastive_loss, warmup_cosine_lr
from ehr.encoder import EHREncoder, EHREncoderConfig
from tokenizer.contract import SignalContract

log = logging.getLogger(__name__)


@dataclass
class AlignedOutput:
    """Projected embeddings of a batch (rows of ``report``/``ehr`` follow ``text_of``/``ehr_of``)."""

    eeg: torch.Tensor
    eeg_report: torch.Tensor
    eeg_ehr: torch.Tensor
    report: torch.Tensor
    ehr: torch.Tensor


class AlignModule(L.LightningModule):
    """Stage 2: contrastive EEG↔report and EEG↔EHR alignment, masked-token loss kept.

    Parameters
    ----------
    session_cfg : SessionConfig
        Of the stage-1 checkpoint (vocab and grid set).
    cfg : AlignConfig
    contract : SignalContract
    text_dim : int
        Width of the frozen text encoder's token features.
    vocab_size : int
        Size of the EHR code vocabulary.
    first_code_id : int
        Vocabulary ids below it (padding, unknown, demographics) are never dropped.
    step_offset : int
        Steps done before a resume.
    """

    def __init__(self, session_cfg: SessionConfig, cfg: AlignConfig, contract: SignalContract, *, text_dim: int,
                 vocab_size: int, first_code_id: int = 2, step_offset: int = 0) -> None:
        super().__init__()
        if session_cfg.model.context_s is not None:
            # alignment encodes whole windows; a short-context encoder would see positions it never learned
            raise ValueError(f"stage-1 checkpoint with a short context (context_s {session_cfg.model.context_s:g} s): "
                             "alignment encodes whole windows; align a full-context stage-1 checkpoint")
        self.session_cfg = session_cfg
        self.cfg = cfg
        self.contract = contract
        self.step_offset = step_offset
        d, e = session_cfg.model.dim, cfg.loss.embed_dim
        self.encoder = create_model(session_cfg)
        self.head = MaskedTokenHead(d, session_cfg.model.vocab_size)  # type: ignore[arg-type]
        r = cfg.report
        self.report_encoder = ReportEncoder(ReportEncoderConfig(in_dim=text_dim, dim=r.dim, depth=r.depth,
                                                                heads=r.heads, dropout=r.dropout))
        h = cfg.ehr
        self.ehr_encoder = EHREncoder(vocab_size, EHREncoderConfig(dim=h.dim, depth=h.depth, heads=h.heads,
                                                                   dropout=h.dropout, drop_prob=h.drop_prob,
                                                                   max_len=h.max_icd + h.max_atc + 4),
                                      first_code_id=first_code_id)
        self.eeg_to_report = nn.Linear(d, e)
        self.eeg_to_ehr = nn.Linear(d, e)
        self.report_proj = nn.Linear(r.dim, e)
        self.ehr_proj = nn.Linear(h.dim, e)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(cfg.loss.temperature)),
                                            requires_grad=cfg.loss.learn_temperature)
        self._optimizer_state: dict[str, Any] | None = None
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ helpers

    @property
    def g_step(self) -> int:
        """Optimiser steps including those before a resume."""
        return self.step_offset + int(self.global_step)

    @property
    def temperature(self) -> torch.Tensor:
        """Current InfoNCE temperature (clamped to [0.01, 1])."""
        return self.log_temperature.exp().clamp(0.01, 1.0)

    def tower_parameters(self) -> list[nn.Parameter]:
        """Parameters of the report/EHR towers and the projections."""
        mods = [self.report_encoder, self.ehr_encoder, self.eeg_to_report, self.eeg_to_ehr, self.report_proj,
                self.ehr_proj]
        return [p for m in mods for p in m.parameters()] + [self.log_temperature]

    def eeg_embedding(self, codes: torch.Tensor, valid: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
        """Session embeddings (n, dim) of a batch of windows (unmasked)."""
        out = self.encoder(codes, valid)
        return aggregate_windows(out.window_embedding, valid.reshape(valid.shape[0], -1).sum(1), owner, n)

    def forward(self, batch: dict[str, torch.Tensor]) -> AlignedOutput:
        """Project every tower of a batch into the shared spaces."""
        n = int(batch["patient"].shape[0])
        eeg = self.eeg_embedding(batch["codes"], batch["valid"], batch["owner"], n)
        rep = self.report_proj(self.report_encoder(batch["text"], batch["text_mask"])) if batch["text"].shape[0] \
            else eeg.new_zeros(0, self.cfg.loss.embed_dim)
        ids, mask = batch["ehr_ids"], batch["ehr_mask"]  # shuffled + dropped inside the encoder in training
        ehr = self.ehr_proj(self.ehr_encoder(ids, mask)) if ids.shape[0] else eeg.new_zeros(0, self.cfg.loss.embed_dim)
        return AlignedOutput(eeg, self.eeg_to_report(eeg), self.eeg_to_ehr(eeg), rep, ehr)

    def _term(self, eeg: torch.Tensor, other: torch.Tensor, rows: torch.Tensor, patient: torch.Tensor) -> torch.Tensor | None:
        if rows.numel() < 2:
            return None
        exclude = None
        if not self.cfg.loss.same_patient_negatives:
            p = patient[rows]
            exclude = p[:, None] == p[None, :]
        return contrastive_loss(eeg[rows], other, self.temperature, exclude)

    # ------------------------------------------------------------------ training

    def configure_optimizers(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        enc = list(self.encoder.parameters()) + list(self.head.parameters())
        towers = [p for p in self.tower_parameters() if p.requires_grad]
        groups = []
        for params, scale in ((enc, self.cfg.encoder_lr_scale), (towers, 1.0)):
            decay = [p for p in params if p.ndim >= 2]
            rest = [p for p in params if p.ndim < 2]
            groups += [{"params": decay, "weight_decay": o.weight_decay, "lr_scale": scale},
                       {"params": rest, "weight_decay": 0.0, "lr_scale": scale}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=o.lr, betas=o.betas)

    def on_train_start(self) -> None:
        if self._optimizer_state is not None:
            self.optimizers().optimizer.load_state_dict(self._optimizer_state)  # type: ignore[union-attr]
            self._optimizer_state = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        opt = self.optimizers()
        lr = warmup_cosine_lr(self.g_step, self.cfg.optim, self.cfg.train.max_steps)
        for g in opt.optimizer.param_groups:  # type: ignore[union-attr]
            g["lr"] = lr * g.get("lr_scale", 1.0)
        out = self(batch)
        c = self.cfg.loss
        loss = out.eeg.new_zeros(())
        metrics: dict[str, torch.Tensor] = {}
        rep = self._term(out.eeg_report, out.report, batch["text_of"], batch["patient"])
        if rep is not None and c.report_weight > 0:
            loss = loss + c.report_weight * rep
            metrics["train/nce_report"] = rep.detach()
        ehr = self._term(out.eeg_ehr, out.ehr, batch["ehr_of"], batch["patient"])
        if ehr is not None and c.ehr_weight > 0:
            loss = loss + c.ehr_weight * ehr
            metrics["train/nce_ehr"] = ehr.detach()
        if c.mtm_weight > 0:
            codes, valid = batch["codes"][: c.mtm_max_windows], batch["valid"][: c.mtm_max_windows]
            ratios = sample_mask_ratios(codes.shape[0], self.session_cfg.masking)
            masked = random_token_mask(valid, ratios)
            feats = self.encoder(codes, valid, masked).token_features
            logits = self.head(feats)[masked]
            target = codes.reshape(codes.shape[0], -1)[masked.reshape(codes.shape[0], -1)]
            mtm = F.cross_entropy(logits, target, label_smoothing=self.session_cfg.masking.label_smoothing)
            loss = loss + c.mtm_weight * mtm
            metrics["train/mtm_loss"] = mtm.detach()
        metrics["train/loss"] = loss.detach()
        self.log_dict(metrics, prog_bar=True, on_step=True, batch_size=int(batch["patient"].shape[0]))
        self.last_metrics.update({k: float(v) for k, v in metrics.items()})
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                       self.cfg.optim.grad_clip)

    # ------------------------------------------------------------------ state

    def tower_state(self) -> dict[str, torch.Tensor]:
        """Weights of everything but the session transformer and the masked-token head."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("encoder.", "head."))}


def retrieval_accuracy(query: np.ndarray, keys: np.ndarray, k: int = 10) -> float:
    """Share of queries whose own key (same row) is among the ``k`` nearest keys (cosine)."""
    if len(query) == 0:
        return float("nan")
    q = query / np.linalg.norm(query, axis=1, keepdims=True).clip(1e-12)
    kk = keys / np.linalg.norm(keys, axis=1, keepdims=True).clip(1e-12)
    sims = q @ kk.T
    own = np.diag(sims)
    rank = (sims > own[:, None]).sum(1)
    return float(np.mean(rank < k))

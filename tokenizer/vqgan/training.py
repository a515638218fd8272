"""Training the VQGAN with PyTorch Lightning: data module, LightningModule, checkpoints.

Optimisation (taming-transformers semantics, one backward per step)
    One Adam optimiser with two parameter groups (generator, discriminator) and manual
    optimisation. Each step computes the generator loss (reconstruction + commitment, plus
    the adaptive-weighted adversarial term once ``discriminator.start_step`` is reached;
    the discriminator's parameters are detached inside that term) and the hinge loss of
    the discriminator on the detached reconstruction, backpropagates their sum once and
    steps once. This gives the same updates as alternating G and D steps, keeps
    ``trainer.global_step`` equal to the generator step (so ``max_steps`` means what it
    says) and runs one backward per forward under DDP. Before ``start_step`` the
    discriminator is skipped on one device; with several devices it runs with weight 0 so
    that every parameter takes part in every backward.
Distribution
    Whatever Lightning's ``Trainer`` does with ``accelerator``, ``devices``,
    ``num_nodes``, ``strategy`` and ``precision`` (``32`` or ``bf16-mixed`` recommended;
    fp16 with a gradient scaler is refused because gradients are clipped per group).
    The quantiser all-reduces its EMA statistics itself.
Metrics
    Every ``train.log_every`` steps (rank 0) to ``<log_dir>/from_step_<N>/metrics.csv``:
    ``loss`` (generator), ``rec`` (inter-channel reconstruction), ``mean_l1``,
    ``residual_l1``, ``commit``, ``perplexity`` and ``batch_usage_pct`` (this batch),
    ``codebook_usage_pct`` (% of codes used in the last ``quantizer.usage_window``
    steps), ``l1_db`` and ``err_{delta,theta,alpha,beta}_db`` (mean absolute error per
    band in dB over valid positions), ``d_loss``, ``g_adv``, ``adaptive_weight``, ``lr``.
    The progress bar shows loss, rec, ppl and usage%.
Checkpoints (our format, never Lightning's pickled ``.ckpt``)
    The ``--out`` directory *is* the latest checkpoint, replaced atomically every
    ``train.checkpoint_every`` steps and at the end: ``config.yaml`` (the VQGAN config),
    ``contract.json``, ``model.safetensors`` (the generator: encoder, quantiser buffers,
    decoder), ``meta.json`` (``step``, data digest, token grid, metrics) and
    ``training_state.safetensors`` (discriminator weights ``discriminator.*`` and Adam
    state ``optimizer.state.<param>.<name>``, with the parameter groups as JSON in the
    safetensors metadata). ``resume`` reloads all of it; the data order after a resume is
    a fresh shuffle (seeded by ``seed + step``), not a replay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from torch.func import functional_call
from torch.utils.data import DataLoader, Dataset

from tokenizer.atomic import write_json_atomic
from tokenizer.checkpoint_io import TRAINING_STATE, CheckpointError, load_checkpoint, recover_checkpoint, save_checkpoint
from tokenizer.contract import SignalContract
from tokenizer.hashing import session_record
from tokenizer.spectrogram_cache import CacheResult, SpectrogramCache, cache_archive, find_recordings
from tokenizer.trainer import TrainingState, make_trainer, seed_run
from tokenizer.vqgan.config import BuildContext, VQGANConfig, build_context
from tokenizer.vqgan.discriminator import PatchDiscriminator, logit_mask
from tokenizer.vqgan.losses import (
    adaptive_weight,
    band_errors_db,
    generator_adv_loss,
    hinge_d_loss,
    interchannel_l1,
    masked_l1,
    pooled_losses,
)
from tokenizer.vqgan.model import CHECKPOINT_KIND, VQGAN, count_parameters
from tokenizer.windows import WindowSpec, n_windows, window_input

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class IndexedSession:
    """One cached session of the training archive."""

    path: str
    source_sha256: str
    cache_file: str
    n_frames: int
    windows: tuple[int, ...]  # windows holding at least one valid frame


def _index_file(cache: SpectrogramCache, archive: Path) -> Path:
    tag = hashlib.sha256(f"{archive.resolve()}|{cache.contract.digest()}".encode()).hexdigest()[:16]
    return cache.root / "archives" / f"{tag}.json"


def index_archive(
    archive: str | Path, cache: SpectrogramCache, *, on_file: Callable[[CacheResult], None] | None = None,
) -> list[IndexedSession]:
    """Cache every recording of ``archive`` and index its windows (failures are logged and skipped).

    The index is stored next to the cache (``<cache>/archives/<tag>.json``) with each
    file's size and mtime, so files unchanged since the last run are not hashed again.
    Windows without any valid frame are left out.
    """
    archive = Path(archive)
    files = find_recordings(archive)
    index_path = _index_file(cache, archive)
    known: dict[str, str] = {}
    if index_path.is_file():
        try:
            for e in json.loads(index_path.read_text())["files"]:
                st = Path(e["path"]).stat() if Path(e["path"]).is_file() else None
                if st is not None and st.st_size == e["size"] and st.st_mtime_ns == e["mtime_ns"]:
                    known[e["path"]] = e["sha256"]
        except (ValueError, KeyError, TypeError):
            known = {}
    spec = WindowSpec.from_contract(cache.contract)
    sessions: list[IndexedSession] = []
    records = []
    for res in cache_archive(files, cache, on_file=on_file, known=known):
        if res.error is not None or res.cache_file is None or res.source_sha256 is None:
            continue
        with np.load(res.cache_file, allow_pickle=False) as z:
            fm = z["frame_mask"].astype(bool)
        w = spec.window_frames
        wins = tuple(i for i in range(n_windows(len(fm), w)) if fm[i * w:(i + 1) * w].any())
        sessions.append(IndexedSession(res.path, res.source_sha256, res.cache_file, len(fm), wins))
        st = Path(res.path).stat()
        records.append({"path": res.path, "sha256": res.source_sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    write_json_atomic({"archive": str(archive.resolve()), "files": records}, index_path)
    return sessions


def data_digest(sessions: list[IndexedSession]) -> str:
    """Digest of the training data: SHA-256 of the sorted file hashes."""
    return hashlib.sha256("\n".join(sorted(s.source_sha256 for s in sessions)).encode()).hexdigest()


class ArchiveWindowDataset(Dataset):
    """Windows of cached session spectrograms as model input.

    Items are dicts: ``x`` ``(channels, bins, window_frames)`` float32 (clipped dB /
    ``scale_db``, zero where masked), ``frame_mask`` ``(window_frames,)`` bool,
    ``channel_mask`` ``(channels,)`` bool.
    """

    def __init__(self, sessions: list[IndexedSession], spec: WindowSpec, *, crop_frames: int | None = None,
                 crop_step: int = 1, keep_sessions: int = 0) -> None:
        self.sessions = sessions
        self.spec = spec
        self.crop_frames = crop_frames
        self.crop_step = crop_step
        self.keep_sessions = keep_sessions
        self._kept: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self.items = [(k, w) for k, s in enumerate(sessions) for w in s.windows]

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if k in self._kept:
            self._kept.move_to_end(k)
            return self._kept[k]
        with np.load(self.sessions[k].cache_file, allow_pickle=False) as z:
            arrays = (z["values"], z["frame_mask"].astype(bool), z["channel_mask"].astype(bool))
        if self.keep_sessions:
            self._kept[k] = arrays
            while len(self._kept) > self.keep_sessions:
                self._kept.popitem(last=False)
        return arrays

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        k, w = self.items[i]
        values, fm, cm = self._load(k)
        if self.crop_frames is None:
            x, mask = window_input(values, fm, cm, w, self.spec)
        else:  # a random crop (on the token-column grid) holding valid frames, converted alone
            c, step, wf = self.crop_frames, self.crop_step, self.spec.window_frames
            lo = w * wf
            wmask = np.zeros(wf, dtype=bool)
            wmask[: min(wf, fm.shape[0] - lo)] = fm[lo:lo + wf]
            starts = [a for a in range(0, wf - c + 1, step) if wmask[a:a + c].any()]
            a = starts[int(torch.randint(len(starts), ()))] if starts else 0
            # the crop as window 0 of a c-frame spec (same clipping, scaling and masking)
            x, mask = window_input(values[:, :, lo + a:lo + a + c], fm[lo + a:lo + a + c], cm, 0,
                                   replace(self.spec, window_frames=c))
        return {"x": torch.from_numpy(x), "frame_mask": torch.from_numpy(mask), "channel_mask": torch.from_numpy(cm)}


class ArchiveDataModule(L.LightningDataModule):
    """Training windows of an archive (spectrograms cached once in ``prepare_data``).

    Parameters
    ----------
    archive : path
        Directory searched recursively for EDF/BDF files.
    contract : SignalContract
    cache_dir : path, optional
        Spectrogram cache (default ``$CLEF_HOME/cache/spectrograms``).
    batch_size, num_workers : int
    scale_db : float
        Input scaling (the model's ``input.scale_db``).
    on_file : callable, optional
        Progress callback while spectrograms are computed.
    """

    def __init__(self, archive: str | Path, contract: SignalContract, *, cache_dir: str | Path | None = None,
                 batch_size: int = 8, num_workers: int = 0, scale_db: float = 40.0,
                 on_file: Callable[[CacheResult], None] | None = None, crop_frames: int | None = None,
                 crop_step: int = 1, keep_sessions: int = 0) -> None:
        super().__init__()
        self.crop_frames = crop_frames
        self.crop_step = crop_step
        self.keep_sessions = keep_sessions
        self.on_file = on_file
        self.archive = Path(archive)
        self.cache = SpectrogramCache(cache_dir, contract)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.spec = WindowSpec.from_contract(contract, scale_db)
        self.sessions: list[IndexedSession] = []

    def prepare_data(self) -> None:
        """Compute missing spectrograms (rank 0 of each node)."""
        index_archive(self.archive, self.cache, on_file=self.on_file)

    def setup(self, stage: str | None = None) -> None:
        """Index the cached windows (every rank; all files are cache hits by now)."""
        self.sessions = index_archive(self.archive, self.cache)
        if not self.sessions:
            raise ValueError(f"archive {self.archive}: no readable EDF/BDF recording found")
        log.info("training on %d windows of %d sessions", sum(len(s.windows) for s in self.sessions), len(self.sessions))

    @property
    def digest(self) -> str:
        """Training data digest (after :meth:`setup`)."""
        return data_digest(self.sessions)

    def train_dataloader(self) -> DataLoader:
        ds = ArchiveWindowDataset(self.sessions, self.spec, crop_frames=self.crop_frames, crop_step=self.crop_step,
                                  keep_sessions=self.keep_sessions)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                          drop_last=len(ds) >= self.batch_size, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())


# --------------------------------------------------------------------------- model


class VQGANModule(L.LightningModule):
    """Generator (:class:`~tokenizer.vqgan.model.VQGAN`) + PatchGAN discriminator, manual optimisation.

    Parameters
    ----------
    config : VQGANConfig
    contract : SignalContract
    step_offset : int
        Generator steps already taken (set when resuming).
    """

    def __init__(self, config: VQGANConfig, contract: SignalContract, *, step_offset: int = 0) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.ctx: BuildContext = build_context(config, contract)
        self.model = VQGAN(self.ctx)
        self.disc = PatchDiscriminator(self.ctx)
        self.step_offset = step_offset
        self._optimizer_state: dict[str, Any] | None = None
        self._metrics: dict[str, torch.Tensor | float] = {}

    @property
    def config(self) -> VQGANConfig:
        """The configuration."""
        return self.ctx.config

    @property
    def last_metrics(self) -> dict[str, float]:
        """Metrics of the latest training step, as floats."""
        return {k: float(v) for k, v in self._metrics.items()}

    @property
    def g_step(self) -> int:
        """Generator steps taken so far (resumed steps included)."""
        return self.step_offset + self.global_step

    def configure_optimizers(self) -> torch.optim.Optimizer:
        o = self.config.optim
        groups = [{"params": list(self.model.parameters()), "lr": o.lr, "name": "generator"},
                  {"params": list(self.disc.parameters()), "lr": o.disc_lr or o.lr, "name": "discriminator"}]
        return torch.optim.Adam(groups, betas=o.betas, weight_decay=o.weight_decay)

    def on_fit_start(self) -> None:
        if str(self.trainer.precision) in ("16-mixed", "16", "16-true"):
            raise ValueError("precision 16 is not supported (per-group clipping of scaled gradients); "
                             "use bf16-mixed or 32")

    def on_train_start(self) -> None:
        if self._optimizer_state is not None:
            self.optimizers().optimizer.load_state_dict(self._optimizer_state)
            self._optimizer_state = None
            log.info("optimizer state restored at step %d", self.g_step)

    def _set_lr(self, opt: torch.optim.Optimizer) -> float:
        o = self.config.optim
        factor = min(1.0, (self.g_step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
        if o.schedule == "cosine":
            total = self.step_offset + self.trainer.max_steps
            span = max(1, total - o.warmup_steps)
            done = min(1.0, max(0.0, (self.g_step - o.warmup_steps) / span))
            factor *= o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * done))
        base = (o.lr, o.disc_lr or o.lr)
        for group, lr in zip(opt.param_groups, base):
            group["lr"] = lr * factor
        return o.lr * factor

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        cfg = self.config
        x, fm, cm = batch["x"], batch["frame_mask"], batch["channel_mask"]
        opt = self.optimizers()
        lr = self._set_lr(opt)
        step = self.g_step
        gan_on = step >= cfg.discriminator.start_step
        run_d = gan_on or self.trainer.world_size > 1

        x_rec, q = self.model(x, fm)
        rec, parts = interchannel_l1(x, x_rec, cm, fm, cfg.loss.residual_weight)
        if cfg.loss.pooled_weight or cfg.loss.freq_grad_weight:
            pooled = pooled_losses(x, x_rec, cm, fm, pool=cfg.loss.pool, residual_weight=cfg.loss.residual_weight)
            rec = rec + cfg.loss.pooled_weight * pooled["pooled_l1"] + cfg.loss.freq_grad_weight * pooled["freq_grad_l1"]
            parts = {**parts, **pooled}
        rec = cfg.loss.rec_weight * rec
        g_total = rec + q.commit_loss
        metrics: dict[str, torch.Tensor | float] = {"rec": rec.detach(), **{k: v.detach() for k, v in parts.items()},
                                                    "commit": q.commit_loss.detach(), "perplexity": q.perplexity,
                                                    "batch_usage_pct": 100 * q.batch_usage, "lr": lr}
        valid = (cm[:, :, None, None] & fm[:, None, None, :]).to(x.dtype)
        fake = x_rec * valid
        d_loss = torch.zeros((), device=x.device)
        if gan_on:
            frozen = {n: p.detach() for n, p in self.disc.named_parameters()}
            logits_g = functional_call(self.disc, frozen, (fake,))
            lmask = logit_mask(fm, logits_g.shape[-1])
            g_adv = generator_adv_loss(logits_g, lmask)
            w = adaptive_weight(rec, g_adv, self.model.last_layer, scale=cfg.discriminator.weight,
                                max_weight=cfg.discriminator.max_adaptive_weight)
            g_total = g_total + w * g_adv
            metrics.update(g_adv=g_adv.detach(), adaptive_weight=w)
        if run_d:
            logits_real = self.disc((x * valid).detach())
            logits_fake = self.disc(fake.detach())
            lmask = logit_mask(fm, logits_real.shape[-1])
            d_loss = hinge_d_loss(logits_real, logits_fake, lmask) * (1.0 if gan_on else 0.0)
            metrics["d_loss"] = d_loss.detach()
        loss = g_total + d_loss
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if cfg.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.optim.grad_clip)
        opt.step()

        metrics["loss"] = g_total.detach()
        bs = x.shape[0]
        for name, key in (("loss", "loss"), ("rec", "rec"), ("ppl", "perplexity")):
            self.log(name, metrics[key], prog_bar=True, logger=False, on_step=True, on_epoch=False, batch_size=bs)
        self._metrics = metrics  # tensors: converted (a device sync) only when logged or checkpointed
        if step % cfg.train.log_every == 0 or step + 1 == self.trainer.max_steps + self.step_offset:
            metrics["codebook_usage_pct"] = 100 * self.model.quantizer.recent_usage()
            metrics["l1_db"] = masked_l1(x, x_rec.detach(), cm, fm) * cfg.input.scale_db
            bands = band_errors_db(x, x_rec, cm, fm, self.ctx.freqs, cfg.input.scale_db)
            metrics.update({f"err_{k}_db": v for k, v in bands.items()})
            self.log("usage%", metrics["codebook_usage_pct"], prog_bar=True, logger=False, on_step=True, on_epoch=False,
                     batch_size=bs)
            if self.logger is not None:  # rank 0's values, at our own step count
                self.logger.log_metrics({f"train/{k}": v for k, v in self.last_metrics.items()}, step=step)
        return loss.detach()


# --------------------------------------------------------------------------- checkpoints


def save_training_checkpoint(module: VQGANModule, out: str | Path, *, digest: str = "",
                             optimizer: torch.optim.Optimizer | None = None, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write the generator checkpoint plus ``training_state.safetensors`` atomically to ``out``.

    The directory is assembled under a temporary name and renamed into place, so ``out``
    is always either the previous or the new complete checkpoint.
    """
    ctx = module.ctx
    meta = {"step": module.g_step, "config_name": ctx.config.name, "grid": list(ctx.grid),
            "n_tokens": ctx.n_tokens, "generator_parameters": count_parameters(module.model),
            "discriminator_parameters": count_parameters(module.disc),
            "metrics": {k: round(v, 6) for k, v in module.last_metrics.items()}, **(extra_meta or {})}
    state = TrainingState.of(module.g_step, optimizer, discriminator=module.disc)
    out = save_checkpoint(out, kind=CHECKPOINT_KIND, config=ctx.config.to_dict(), contract=ctx.contract,
                          state_dict=module.model.state_dict(), data_digest=digest, extra_meta=meta,
                          training_state=state.tensors, training_meta=state.meta)
    log.info("checkpoint written: %s (step %d)", out, module.g_step)
    return out


def load_training_checkpoint(path: str | Path, map_location: str = "cpu") -> VQGANModule:
    """Rebuild a :class:`VQGANModule` from a training checkpoint (generator, discriminator, optimiser state)."""
    ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
    config = VQGANConfig.model_validate(ckpt.config)
    step = int(ckpt.meta.get("step", 0))
    module = VQGANModule(config, ckpt.contract, step_offset=step)
    module.model.load_state_dict(ckpt.state_dict, strict=True)
    ts = TrainingState.load(path, map_location)
    if ts is not None:
        module.disc.load_state_dict(ts.part("discriminator"), strict=True)
        if ts.step == step:
            module._optimizer_state = ts.optimizer()
    else:
        log.warning("%s has no %s: discriminator and optimiser start afresh", path, TRAINING_STATE)
    return module


# --------------------------------------------------------------------------- entry point


def train_tokenizer(
    archive: str | Path,
    config: VQGANConfig,
    out: str | Path,
    *,
    contract: SignalContract | None = None,
    cache_dir: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    log_dir: str | Path | None = None,
    on_file: Callable[[CacheResult], None] | None = None,
    **trainer_kwargs: Any,
) -> Path:
    """Train (or resume) a VQGAN tokenizer on an archive; returns the checkpoint directory.

    Parameters
    ----------
    archive : path
        Directory of EDF/BDF files (recursive).
    config : VQGANConfig
        Configuration (ignored when resuming: the checkpoint's own is used).
    out : path
        Checkpoint directory (the latest state; see the module docstring). Must not hold
        a checkpoint unless ``resume``.
    contract : SignalContract, optional
        Signal contract (default: base). When resuming, the checkpoint's.
    cache_dir : path, optional
        Spectrogram cache.
    max_steps : int, optional
        Total generator steps (default ``config.train.max_steps``), resumed steps included.
    resume : bool
        Continue from the checkpoint in ``out``.
    log_dir : path, optional
        Lightning CSV logs (default ``<out>.logs`` next to ``out``); each run (or resume)
        writes ``<log_dir>/from_step_<N>/metrics.csv``.
    on_file : callable, optional
        Progress callback while spectrograms are cached.
    **trainer_kwargs
        Passed to :class:`lightning.Trainer` (``accelerator``, ``devices``, ``precision``,
        ``num_nodes``, ``strategy``, ``enable_progress_bar`` ...).

    Raises
    ------
    FileExistsError
        ``out`` holds a checkpoint and ``resume`` is False.
    CheckpointError
        ``resume`` without a readable checkpoint in ``out``.
    """
    out = Path(out)
    if resume:
        recover_checkpoint(out)  # a run killed while replacing its checkpoint left the previous one aside
        if not (out / "meta.json").is_file():
            raise CheckpointError(out, "nothing to resume: no checkpoint in this directory")
        module = load_training_checkpoint(out)
        if module.config.model_dump(exclude={"train", "name"}) != config.model_dump(exclude={"train", "name"}):
            log.warning("resuming with the checkpoint's configuration (%s), not the one given", module.config.name)
        config = module.config
        contract = module.ctx.contract
    else:
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} already exists and is not empty; pass resume=True (--resume) or another --out")
        contract = contract or SignalContract()
        seed_run(config.train.seed)  # the initial weights too
        module = VQGANModule(config, contract)
    total = max_steps if max_steps is not None else config.train.max_steps
    remaining = total - module.step_offset
    seed_run(config.train.seed, module.step_offset)
    if remaining <= 0:
        log.info("checkpoint already at step %d >= max_steps %d; nothing to do", module.step_offset, total)
        return out
    dm = ArchiveDataModule(archive, contract, cache_dir=cache_dir, batch_size=config.data.batch_size,
                           num_workers=config.data.num_workers, scale_db=config.input.scale_db,
                           crop_frames=config.data.crop_frames, crop_step=module.ctx.frames_per_token,
                           keep_sessions=config.data.keep_sessions)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        index_archive(archive, dm.cache, on_file=on_file)  # spectrograms first, with the caller's progress
    log_dir = Path(log_dir) if log_dir is not None else out.with_name(out.name + ".logs")
    logger = L.pytorch.loggers.CSVLogger(str(log_dir), name="", version=f"from_step_{module.step_offset}")

    def save(m: VQGANModule, optimizer: torch.optim.Optimizer | None) -> None:
        # what the tokenizer learned from, so a benchmark can report it as transductive
        trained = {"sessions": session_record(s.source_sha256 for s in dm.sessions)}
        save_training_checkpoint(m, out, digest=dm.digest, optimizer=optimizer, extra_meta={"trained_on": trained})

    # every step goes to the logger: the module decides what it logs, every ``train.log_every`` steps
    trainer = make_trainer(remaining, config.train.checkpoint_every, save,
                           **{"logger": logger, "log_every_n_steps": 1, **trainer_kwargs})
    log.info("training %s (%d generator + %d discriminator parameters, %d tokens per window) for %d steps",
             config.name, count_parameters(module.model), count_parameters(module.disc), module.ctx.n_tokens,
             remaining)
    trainer.fit(module, datamodule=dm)
    return out


"""What every trainer shares: seeding, the Lightning trainer, our checkpoints while it runs, the training state.

The VQGAN (:mod:`tokenizer.vqgan.training`), the session transformer (:mod:`clef.pretrain`)
and the alignment (:mod:`clef.align.train`) train with Lightning and save our checkpoint
format (:mod:`tokenizer.checkpoint_io`), never Lightning's, so that a run resumes from
the checkpoint it deploys. It lives in ``tokenizer``, the lowest layer that trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tokenizer.checkpoint_io import load_training_state, optimizer_from_tensors, optimizer_to_tensors

#: Lightning options of a run on one CPU without a logger or a validation loop (the
#: session transformer's and the alignment's defaults; a caller's own options override them).
LOCAL_RUN: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "logger": False, "val_check_interval": None,
                             "check_val_every_n_epoch": None}


def seed_run(seed: int, step: int = 0) -> None:
    """Seed every generator for a run that starts at ``step``: a resumed run draws afresh, it does not replay."""
    L.seed_everything(seed + step, workers=True, verbose=False)


def make_trainer(max_steps: int, every: int, save: Callable[[Any, torch.optim.Optimizer | None], None],
                 **options: Any) -> L.Trainer:
    """A Lightning trainer for ``max_steps`` steps that saves our checkpoints only.

    Parameters
    ----------
    max_steps : int
        Steps of this run (the configuration's total less the steps already done).
    every : int
        ``save(module, optimizer)`` is called on rank 0 every ``every`` steps and when
        training ends, at most once per step.
    **options
        Passed to :class:`lightning.Trainer` (accelerator, devices, precision, logger ...).
    """
    options = {"enable_checkpointing": False, "enable_model_summary": False, **options}
    return L.Trainer(max_steps=max_steps, callbacks=[_SaveEvery(every, save)], **options)


class _SaveEvery(L.Callback):
    def __init__(self, every: int, save: Callable[[Any, torch.optim.Optimizer | None], None]) -> None:
        self.every, self.save = every, save
        self._last = -1

    def _save(self, trainer: L.Trainer, module: Any) -> None:
        if module.g_step != self._last and trainer.is_global_zero:
            self.save(module, trainer.optimizers[0] if trainer.optimizers else None)
        self._last = module.g_step

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if module.g_step % self.every == 0:
            self._save(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        self._save(trainer, module)


@dataclass(frozen=True)
class TrainingState:
    """What a resumed run needs beside the deployed weights (a checkpoint's ``training_state.safetensors``).

    Attributes
    ----------
    tensors : dict of str to Tensor
        Weights of the parts the checkpoint does not deploy, under ``NAME.``, and the
        optimiser's state (:func:`~tokenizer.checkpoint_io.optimizer_to_tensors`).
    meta : dict of str to str
        The step it was saved at and the optimiser's parameter groups.
    """

    tensors: dict[str, torch.Tensor]
    meta: dict[str, str]

    @classmethod
    def of(cls, step: int, optimizer: torch.optim.Optimizer | None, **parts: torch.nn.Module) -> TrainingState:
        """The state of a run at ``step``: ``parts``' weights under their names, and the optimiser's."""
        tensors = {f"{name}.{k}": v for name, part in parts.items() for k, v in part.state_dict().items()}
        meta = {"step": str(step)}
        if optimizer is not None:
            t, m = optimizer_to_tensors(optimizer.state_dict())
            tensors.update(t)
            meta.update(m)
        return cls(tensors, meta)

    @classmethod
    def load(cls, path: str | Path, map_location: str = "cpu") -> TrainingState | None:
        """The state saved in checkpoint ``path``; None when it holds none."""
        found = load_training_state(path, map_location)
        return None if found is None else cls(*found)

    @property
    def step(self) -> int:
        """The step it was saved at (-1 when not recorded)."""
        return int(self.meta.get("step", -1))

    def part(self, name: str) -> dict[str, torch.Tensor]:
        """The weights of part ``name`` (empty when it was not saved)."""
        return {k[len(name) + 1:]: v for k, v in self.tensors.items() if k.startswith(f"{name}.")}

    def optimizer(self) -> dict[str, Any] | None:
        """The optimiser's state dict (None when none was saved)."""
        return optimizer_from_tensors(self.tensors, self.meta)

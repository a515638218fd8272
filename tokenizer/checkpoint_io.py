"""The checkpoint format of every model (VQGAN tokenizer, session transformer, aligned
model): a directory of config.yaml, contract.json, model.safetensors and meta.json
(ARCHITECTURE.md, "Contracts").

Loading never unpickles: weights are safetensors, everything else is YAML/JSON. The
SHA-256 of the weights file (and of ``training_state.safetensors``) is recorded in
``meta.json`` and checked on load, so a tampered or half-copied checkpoint fails with a
clear error. Writes go to a temporary directory renamed into place, so a crash never
leaves a half checkpoint. Replacing an existing checkpoint takes two renames (the old one
aside, the new one in); a process killed between them leaves the previous checkpoint
under ``.<name>.old-*``, which :func:`recover_checkpoint` (called on save, load and
resume) puts back. Leftovers of killed writers are removed by the next save.

It lives in ``tokenizer``, the bottom layer, because the VQGAN is saved with it; the
models of ``clef`` import it from here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from tokenizer.atomic import remove_stale_temps, replace_dir
from tokenizer.contract import SignalContract
from tokenizer.hashing import file_sha256

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILES = ("config.yaml", "contract.json", "model.safetensors", "meta.json")
#: Optional file with what resuming training needs (never needed to use the model).
TRAINING_STATE = "training_state.safetensors"


class CheckpointError(Exception):
    """A checkpoint directory is missing, incomplete, of another kind, or tampered with."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: config dict, contract, weights, metadata."""

    path: Path
    kind: str
    config: dict[str, Any]
    contract: SignalContract
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]


def recover_checkpoint(path: str | Path) -> bool:
    """Put back the checkpoint a writer killed mid-replace left under ``.<name>.old-*``.

    Replacing a checkpoint directory renames the previous one aside, then the new one
    in; a process killed between the two renames leaves ``path`` missing. The most
    recent complete previous checkpoint is renamed back. Nothing happens when ``path``
    exists.

    Returns
    -------
    bool
        True when a checkpoint was put back.
    """
    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return False
    olds = [p for p in path.parent.glob(f".{path.name}.old-*")
            if p.is_dir() and all((p / f).is_file() for f in FILES)]
    if not olds:
        return False
    best = max(olds, key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else 0)
    try:
        os.replace(best, path)
    except OSError as exc:  # e.g. a read-only folder: leave it to the caller's "not found"
        log.warning("checkpoint %s is missing; could not restore the previous one from %s (%s)", path, best, exc)
        return False
    log.warning("checkpoint %s was missing (a writer was killed while replacing it); restored the previous one "
                "(step %s)", path, json.loads((path / "meta.json").read_text()).get("step", "?"))
    return True


def clear_leftovers(path: str | Path) -> None:
    """Remove what killed writers left next to checkpoint ``path``.

    Previous checkpoints set aside (``.<name>.old-*``; call :func:`recover_checkpoint`
    first) and the temporary / staging directories of dead processes.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    for old in path.parent.glob(f".{path.name}.old-*"):
        shutil.rmtree(old, ignore_errors=True)
    for pattern in (f".{path.name}.tmp-*", f".{path.name}.staging-*"):
        remove_stale_temps(path.parent, pattern)


def code_version() -> str:
    """Version of the installed ``clef-eeg`` distribution (or ``unknown``)."""
    try:
        from importlib.metadata import version

        return version("clef-eeg")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


def save_checkpoint(path: str | Path, *, kind: str, config: dict[str, Any], contract: SignalContract,
                    state_dict: dict[str, torch.Tensor], data_digest: str = "",
                    extra_meta: dict[str, Any] | None = None, training_state: dict[str, torch.Tensor] | None = None,
                    training_meta: dict[str, str] | None = None, copy_dirs: dict[str, str | Path] | None = None) -> Path:
    """Write a checkpoint directory atomically.

    Parameters
    ----------
    path : str or Path
        Target directory (replaced if it exists).
    kind : str
        What the weights are (``vqgan``, ``session_transformer``, ``aligned`` ...);
        checked on load.
    config : dict
        Model configuration (plain data, written as YAML).
    contract : SignalContract
        Signal contract the model was trained under.
    state_dict : dict of str to Tensor
        Weights (contiguous CPU copies are written).
    data_digest : str
        Digest of the training data (e.g. of the manifest of files used).
    extra_meta : dict, optional
        More metadata (step, epoch, metrics ...), JSON-serialisable.
    training_state : dict of str to Tensor, optional
        What resuming needs beyond the weights (optimiser moments, EMA, discriminator),
        written as ``training_state.safetensors`` inside the same atomic directory.
    training_meta : dict of str to str, optional
        String metadata of the training state (e.g. optimiser parameter groups as JSON).
    copy_dirs : dict of str to path, optional
        ``{subfolder: source}``: directories copied into the checkpoint (e.g. the
        tokenizer it was trained on) inside the same atomic rename.

    Returns
    -------
    Path
        The checkpoint directory.
    """
    path = Path(path)
    recover_checkpoint(path)
    clear_leftovers(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
        (tmp / "contract.json").write_text(contract.to_json() + "\n")
        meta = {"format_version": FORMAT_VERSION, "kind": kind, "code_version": code_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "training_data_digest": data_digest,
                "weights_sha256": file_sha256(tmp / "model.safetensors"), "contract_digest": contract.digest(),
                **(extra_meta or {})}
        if training_state is not None:
            save_file({k: v.detach().to("cpu").contiguous() for k, v in training_state.items()},
                      str(tmp / TRAINING_STATE), metadata=training_meta or {})
            meta["training_state_sha256"] = file_sha256(tmp / TRAINING_STATE)
        for sub, src in (copy_dirs or {}).items():
            shutil.copytree(src, tmp / sub)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")  # last: marks it whole
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_checkpoint(path: str | Path, *, kind: str | None = None, map_location: str = "cpu") -> Checkpoint:
    """Load and verify a checkpoint directory (never unpickles).

    Parameters
    ----------
    path : str or Path
        Checkpoint directory.
    kind : str, optional
        Expected kind; a different one is an error.
    map_location : str
        Device for the tensors.

    Raises
    ------
    CheckpointError
        Missing files, a kind mismatch, an unknown format version, or weights whose
        SHA-256 differs from the one recorded (tampered or corrupted).
    """
    path = Path(path)
    recover_checkpoint(path)
    if not path.is_dir():
        raise CheckpointError(path, "expected a checkpoint directory, found " + ("a file" if path.exists() else "nothing"))
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(path, f"incomplete checkpoint: missing {', '.join(missing)}")
    try:
        meta = json.loads((path / "meta.json").read_text())
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        contract = SignalContract.load(path / "contract.json")
    except Exception as exc:  # JSON/YAML/validation errors
        raise CheckpointError(path, f"unreadable metadata: {exc}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, f"format version {FORMAT_VERSION} expected, found {meta.get('format_version')}")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(path, f"a '{kind}' checkpoint expected, found '{meta.get('kind')}'")
    if file_sha256(path / "model.safetensors") != meta.get("weights_sha256"):
        raise CheckpointError(path, "model.safetensors does not match the SHA-256 recorded in meta.json "
                                    "(tampered with or corrupted); refusing to load")
    if contract.digest() != meta.get("contract_digest", contract.digest()):
        raise CheckpointError(path, "contract.json does not match the contract digest recorded in meta.json")
    state = load_file(str(path / "model.safetensors"), device=map_location)
    return Checkpoint(path=path, kind=meta["kind"], config=config, contract=contract, state_dict=state, meta=meta)


def load_training_state(path: str | Path, map_location: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """Tensors and string metadata of a checkpoint's ``training_state.safetensors``, or None.

    Raises
    ------
    CheckpointError
        The file's SHA-256 differs from the one recorded in ``meta.json`` (tampered or
        corrupted; checkpoints written before the digest was recorded are not checked).
    """
    f = Path(path) / TRAINING_STATE
    if not f.is_file():
        return None
    meta_file = Path(path) / "meta.json"
    recorded = json.loads(meta_file.read_text()).get("training_state_sha256") if meta_file.is_file() else None
    if recorded is not None and file_sha256(f) != recorded:
        raise CheckpointError(path, f"{TRAINING_STATE} does not match the SHA-256 recorded in meta.json "
                                    "(tampered with or corrupted); refusing to resume from it")
    from safetensors import safe_open

    with safe_open(str(f), framework="pt") as h:
        meta = dict(h.metadata() or {})
    return load_file(str(f), device=map_location), meta


def optimizer_to_tensors(state: dict[str, Any], prefix: str = "optimizer") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split a ``torch.optim`` state dict into safetensors-storable tensors and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    meta = {f"{prefix}.param_groups": json.dumps(state["param_groups"]), f"{prefix}.scalars": json.dumps(scalars)}
    return tensors, meta


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, str], prefix: str = "optimizer") -> dict[str, Any] | None:
    """Inverse of :func:`optimizer_to_tensors`; None when the metadata holds no optimiser."""
    if f"{prefix}.param_groups" not in meta:
        return None
    groups = json.loads(meta[f"{prefix}.param_groups"])
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    state: dict[int, dict[str, Any]] = {}
    head = f"{prefix}.state."
    for key, value in tensors.items():
        if key.startswith(head):
            pid, name = key[len(head):].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    for pid, extra in json.loads(meta.get(f"{prefix}.scalars", "{}")).items():
        state.setdefault(int(pid), {}).update(extra)
    return {"state": state, "param_groups": groups}

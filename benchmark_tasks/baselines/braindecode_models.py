"""Adapter for braindecode's EEG foundation models (LaBraM, CBraMod, REVE) as session baselines.

The model is built by braindecode with the canonical 19 channels at 200 Hz and one
window length, its pretrained weights are read from a **local** file (safetensors, or a
torch state dict loaded with ``weights_only=True``: nothing is unpickled, nothing is
downloaded), its classification head is replaced by the identity, and each session is
embedded with :func:`benchmark_tasks.baselines.windowed.windowed_embeddings` (sliding
windows + mean), as the CLEF paper does for its baselines.

braindecode is imported only here, on first use: it needs ``torchaudio``, which has no
CPU build on some machines; there :func:`load_braindecode_model` raises ``ImportError``
with the reason, and the tests of this module skip.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["BRAINDECODE_MODELS", "BraindecodeSpec", "load_braindecode_model", "parse_braindecode_option"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BraindecodeSpec:
    """How one braindecode model is applied.

    Attributes
    ----------
    class_name : str
        Class in ``braindecode.models``.
    window_s : float
        Window the model embeds (LaBraM: 256 patches of 1 s over all channels, so 10 s
        of 19 channels; CBraMod and REVE: 30 s).
    input_scale : float
        µV → model units (LaBraM and CBraMod were pretrained on 100 µV units).
    """

    class_name: str
    window_s: float
    input_scale: float


#: Supported models and their defaults (override window and scale on the command line).
BRAINDECODE_MODELS: dict[str, BraindecodeSpec] = {
    "labram": BraindecodeSpec("Labram", 10.0, 0.01),
    "cbramod": BraindecodeSpec("CBraMod", 30.0, 0.01),
    "reve": BraindecodeSpec("REVE", 30.0, 0.01),
}


def parse_braindecode_option(text: str) -> tuple[str, Path]:
    """``NAME=WEIGHTS`` (``labram=/models/labram-base.safetensors``) → (name, path).

    Raises
    ------
    ValueError
        Not ``NAME=PATH`` or an unknown model name.
    """
    name, sep, path = text.partition("=")
    name = name.strip().lower()
    if not sep or not path.strip():
        raise ValueError(f"--braindecode {text!r}: expected NAME=WEIGHTS_PATH, e.g. labram=/models/labram.safetensors")
    if name not in BRAINDECODE_MODELS:
        raise ValueError(f"--braindecode {text!r}: unknown model {name!r}; expected one of "
                         f"{sorted(BRAINDECODE_MODELS)}")
    return name, Path(path.strip())


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file (braindecode weights are read from a local path)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


class _Features(nn.Module):
    """A braindecode model with its head replaced by the identity; outputs ``(B, dim)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if hasattr(model, "final_layer"):
            model.final_layer = nn.Identity()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim > 2:
            out = out.flatten(2).mean(2) if out.ndim == 3 else out.flatten(1)
        return out


def load_braindecode_model(name: str, weights: str | os.PathLike[str] | None, *, channels: tuple[str, ...],
                           sfreq: float = 200.0, window_s: float | None = None) -> nn.Module:
    """A pretrained braindecode model as a feature extractor ``(B, 19, n) → (B, dim)``.

    Parameters
    ----------
    name : {"labram", "cbramod", "reve"}
    weights : path or None
        Local weights file (None: random weights, for cost measurements only).
    channels : tuple of str
        Channel names of the input (canonical order).
    sfreq : float
    window_s : float, optional
        Default: the model's (:data:`BRAINDECODE_MODELS`).

    Raises
    ------
    ImportError
        braindecode (or its torchaudio dependency) cannot be imported here.
    ValueError
        Unknown model, or weights that fit none of the model's parameters.
    """
    spec = BRAINDECODE_MODELS.get(name.lower())
    if spec is None:
        raise ValueError(f"unknown braindecode model {name!r}; expected one of {sorted(BRAINDECODE_MODELS)}")
    try:
        import braindecode.models as bm
    except Exception as exc:  # ImportError, or torchaudio's OSError on a missing CPU build
        raise ImportError(f"braindecode cannot be imported here ({type(exc).__name__}: {exc}); it needs torchaudio. "
                          "Run this baseline on a machine where 'import braindecode' works") from exc
    cls = getattr(bm, spec.class_name, None)
    if cls is None:
        raise ImportError(f"braindecode {getattr(bm, '__version__', '?')} has no models.{spec.class_name}; "
                          "upgrade braindecode")
    n_times = int(round((window_s or spec.window_s) * sfreq))
    chs_info = [{"ch_name": c} for c in channels]
    try:
        model = cls(n_chans=len(channels), n_outputs=1, n_times=n_times, sfreq=sfreq, chs_info=chs_info)
    except TypeError:
        model = cls(n_chans=len(channels), n_outputs=1, n_times=n_times, sfreq=sfreq)
    if weights is not None:
        state = _state_dict(Path(weights))
        result = model.load_state_dict(state, strict=False)
        loaded = len(state) - len(result.unexpected_keys)
        if loaded == 0:
            raise ValueError(f"{weights}: none of its {len(state)} tensors fits {spec.class_name}; wrong model?")
        log.info("%s: %d tensors loaded, %d model tensors not in the file (head: expected), %d file tensors unused",
                 spec.class_name, loaded, len(result.missing_keys), len(result.unexpected_keys))
    return _Features(model).eval()

"""Configuration presets: a shipped YAML file by name, or any YAML file, into a pydantic model.

The one preset loader of the repository. A configuration class with presets names their
folder in its ``preset_dir`` class variable (:class:`tokenizer.vqgan.config.VQGANConfig`,
:class:`clef.config.SessionConfig`, :class:`clef.align.config.AlignConfig`), and code loads
one as ``load_preset(SessionConfig, "tiny", overrides)``. It lives in ``tokenizer``, the
lowest layer that loads configurations, so that ``clef`` can use it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

__all__ = ["load_preset", "preset_files"]

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def preset_files(model: type[BaseModel]) -> list[Path]:
    """The presets shipped for ``model`` (the ``*.yaml`` files of its ``preset_dir``), sorted by name."""
    return sorted(Path(model.preset_dir).glob("*.yaml"))  # type: ignore[attr-defined]


def load_preset(model: type[ConfigT], name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> ConfigT:
    """Load a YAML file, or the preset of that name shipped for ``model``, validated by ``model``.

    Parameters
    ----------
    model : type of pydantic.BaseModel
        The configuration's model (``extra="forbid"``: unknown keys are errors); its class
        variable ``preset_dir`` is the folder of shipped presets (``NAME.yaml``). Where its
        class variable ``name_from_file`` is true, a file without ``name`` takes its stem.
    name_or_path : str or Path
        A YAML file; otherwise a preset name (``tiny``; ``tiny.yaml`` resolves to it too).
    overrides : dict, optional
        Values merged on top, one level deep (``{"train": {"max_steps": 10}}`` replaces
        ``train.max_steps`` only).

    Returns
    -------
    ConfigT

    Raises
    ------
    FileNotFoundError
        Neither a file nor a shipped preset (the message lists the presets).
    pydantic.ValidationError
        Unknown keys or invalid values.
    """
    path = Path(name_or_path)
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    if not path.is_file():
        path = Path(model.preset_dir) / f"{stem}.yaml"  # type: ignore[attr-defined]
        if not path.is_file():
            names = ", ".join(p.stem for p in preset_files(model))
            raise FileNotFoundError(f"no config file {str(name_or_path)!r} and not a preset ({names})")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if getattr(model, "name_from_file", False):
        data.setdefault("name", stem)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return model.model_validate(data)

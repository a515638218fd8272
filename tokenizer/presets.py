"""Configuration presets: a shipped YAML file by name, or any YAML file, into a pydantic model.

The one preset loader of the repository: the tokenizer's (:func:`tokenizer.vqgan.config.load_tokenizer_config`),
the session transformer's (:func:`clef.config.load_session_config`) and the alignment's
(:func:`clef.align.config.load_align_config`) configurations are thin wrappers that name
their model and their folder of presets. It lives in ``tokenizer``, the lowest layer
that loads configurations, so that ``clef`` can use it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

__all__ = ["load_preset", "preset_files"]

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def preset_files(folder: str | Path) -> list[Path]:
    """The presets shipped in ``folder`` (its ``*.yaml`` files), sorted by name."""
    return sorted(Path(folder).glob("*.yaml"))


def load_preset(name_or_path: str | Path, model: type[ConfigT], folder: str | Path, *,
                overrides: dict[str, Any] | None = None, name_from_file: bool = False) -> ConfigT:
    """Load a YAML file, or the preset of that name shipped in ``folder``, validated by ``model``.

    Parameters
    ----------
    name_or_path : str or Path
        A YAML file; otherwise a preset name (``tiny``; ``tiny.yaml`` resolves to it too).
    model : type of pydantic.BaseModel
        The configuration's model (``extra="forbid"``: unknown keys are errors).
    folder : path
        The folder of shipped presets (``NAME.yaml``).
    overrides : dict, optional
        Values merged on top, one level deep (``{"train": {"max_steps": 10}}`` replaces
        ``train.max_steps`` only).
    name_from_file : bool
        Set a missing ``name`` field to the file's stem.

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
        path = Path(folder) / f"{stem}.yaml"
        if not path.is_file():
            names = ", ".join(p.stem for p in preset_files(folder))
            raise FileNotFoundError(f"no config file {str(name_or_path)!r} and not a preset ({names})")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if name_from_file:
        data.setdefault("name", stem)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return model.model_validate(data)

"""Models by name: the session transformer and its tokenizer from a preset, a YAML file or a configuration.

In the spirit of open_clip's ``create_model``: one call turns a preset name (``tiny``,
``base``, ``large``), a YAML file or a validated configuration into a model, so that
training (:class:`clef.pretrain.MaskedTokenModule`, :class:`clef.align.module.AlignModule`),
inference (:class:`clef.embedding.Embedder`), the tests and ``bench/`` build models
one way instead of wiring configurations, build contexts and model classes by hand.

>>> tokenizer = create_tokenizer("tiny")
>>> model = create_model("tiny", tokenizer=tokenizer)  # sized to the tokenizer's codes and grid
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clef.config import SessionConfig
from clef.model import SessionTransformer
from tokenizer.contract import SignalContract
from tokenizer.presets import load_preset
from tokenizer.vqgan.config import VQGANConfig, build_context
from tokenizer.vqgan.model import VQGAN

__all__ = ["create_model", "create_tokenizer", "save_random_checkpoint", "session_config"]


def session_config(name_or_config: str | Path | SessionConfig, *, tokenizer: VQGAN | None = None,
                   vocab_size: int | None = None, grid: tuple[int, int] | None = None,
                   overrides: dict[str, Any] | None = None) -> SessionConfig:
    """The configuration :func:`create_model` builds, sized to a tokenizer's vocabulary and grid.

    Parameters
    ----------
    name_or_config : str, Path or SessionConfig
        Preset name, YAML file (:func:`tokenizer.presets.load_preset`) or configuration.
    tokenizer : VQGAN, optional
        Sets ``vocab_size`` and ``grid`` (its codebook and token grid).
    vocab_size, grid : optional
        Set them directly (both, when the configuration does not hold them yet).
    overrides : dict, optional
        Nested values merged on top of a preset or file (not allowed with a configuration).
    """
    if isinstance(name_or_config, SessionConfig):
        if overrides:
            raise ValueError("overrides apply to a preset or a YAML file, not to a SessionConfig")
        cfg = name_or_config
    else:
        cfg = load_preset(SessionConfig, name_or_config, overrides)
    if tokenizer is not None:
        vocab_size, grid = tokenizer.config.quantizer.n_codes, tuple(tokenizer.ctx.grid)  # type: ignore[assignment]
    if vocab_size is not None or grid is not None:
        m = cfg.model
        cfg = cfg.with_data(m.vocab_size if vocab_size is None else vocab_size,
                            tuple(m.grid or ()) if grid is None else tuple(grid))
    return cfg


def create_model(name_or_config: str | Path | SessionConfig, *, tokenizer: VQGAN | None = None,
                 vocab_size: int | None = None, grid: tuple[int, int] | None = None,
                 overrides: dict[str, Any] | None = None) -> SessionTransformer:
    """A session transformer (random weights) of a preset, a YAML file or a configuration.

    Parameters are those of :func:`session_config`; the configuration must end up with
    ``vocab_size`` and ``grid`` set (from the tokenizer the model reads).

    Returns
    -------
    SessionTransformer
    """
    cfg = session_config(name_or_config, tokenizer=tokenizer, vocab_size=vocab_size, grid=grid, overrides=overrides)
    return SessionTransformer(cfg.model)


def create_tokenizer(name_or_config: str | Path | VQGANConfig, contract: SignalContract | None = None) -> VQGAN:
    """A VQGAN tokenizer (random weights) of a shipped configuration, a YAML file or a configuration.

    Parameters
    ----------
    name_or_config : str, Path or VQGANConfig
        :func:`tokenizer.presets.load_preset` resolves names and files.
    contract : SignalContract, optional
        The signal contract of its spectrograms (default: the contract's defaults).
    """
    cfg = name_or_config if isinstance(name_or_config, VQGANConfig) else load_preset(VQGANConfig, name_or_config)
    return VQGAN(build_context(cfg, contract))


def save_random_checkpoint(name: str | Path | SessionConfig, out: str | Path, *,
                           tokenizer: str | Path | VQGANConfig | None = None, contract: SignalContract | None = None,
                           overrides: dict[str, Any] | None = None) -> Path:
    """Write a random-weight checkpoint of a preset, tokenizer included, that the embedders load.

    What costs are measured on (cost does not depend on training) and what tests embed
    with when they do not need trained weights.

    Parameters
    ----------
    name : str, Path or SessionConfig
        Session transformer preset, file or configuration.
    out : path
        The session-transformer checkpoint folder; the tokenizer is written beside it
        (``<out>.tokenizer``) and copied inside it, as training does.
    tokenizer : str, Path or VQGANConfig, optional
        The tokenizer's configuration; default: the preset of the same name as ``name``
        (``tiny`` with a configuration).
    contract : SignalContract, optional
    overrides : dict, optional
        Nested values merged on top of the session preset (``{"model": {"context_s": 80}}``).

    Returns
    -------
    Path
        The checkpoint folder (``out``).
    """
    # the training module holds the encoder, head and EMA a checkpoint stores; importing it
    # here keeps Lightning out of the inference path that imports this module
    from clef.pretrain import MaskedTokenModule, save_session_checkpoint
    from tokenizer.checkpoint_io import save_checkpoint
    from tokenizer.vqgan.model import CHECKPOINT_KIND as TOKENIZER_KIND

    contract = contract or SignalContract()
    if tokenizer is None:
        tokenizer = "tiny" if isinstance(name, SessionConfig) else Path(name).name.removesuffix(".yaml")
    vq = create_tokenizer(tokenizer, contract)
    out = Path(out)
    vq_dir = save_checkpoint(out.with_name(f"{out.name}.tokenizer"), kind=TOKENIZER_KIND, config=vq.config.to_dict(),
                             contract=contract, state_dict=vq.state_dict())
    module = MaskedTokenModule(session_config(name, tokenizer=vq, overrides=overrides), contract)
    return save_session_checkpoint(module, out, tokenizer_dir=vq_dir)

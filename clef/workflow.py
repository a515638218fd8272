"""The training workflow on one archive, as the CLI runs it step by step.

``clef train tokenizer`` → ``clef tokenize`` → ``clef pretrain``: :func:`train_all` runs the
three in order (used by ``clef demo``, the benchmarks and the test suite), writing::

    OUT/tokenizer/   VQGAN checkpoint
    OUT/tokens/      tokens table (Parquet parts + manifest)
    OUT/pretrain/    session-transformer checkpoint (with a copy of the tokenizer)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from clef.config import SessionConfig
from clef.pretrain import PretrainResult, pretrain
from tokenizer.contract import SignalContract
from tokenizer.presets import load_preset
from tokenizer.tokens import TokenizeSummary, tokenize_archive
from tokenizer.vqgan.config import VQGANConfig
from tokenizer.vqgan.training import train_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedPipeline:
    """Paths and outcomes of :func:`train_all`.

    Attributes
    ----------
    tokenizer, tokens, checkpoint : Path
        The VQGAN checkpoint, the tokens table and the session-transformer checkpoint.
    tokenize : TokenizeSummary
    pretrain : PretrainResult
    """

    tokenizer: Path
    tokens: Path
    checkpoint: Path
    tokenize: TokenizeSummary
    pretrain: PretrainResult


def train_all(
    archive: str | Path,
    out: str | Path,
    *,
    tokenizer_config: str = "tiny",
    session_config: str | SessionConfig = "tiny",
    tokenizer_steps: int | None = None,
    pretrain_steps: int | None = None,
    contract: SignalContract | None = None,
    cache_dir: str | Path | None = None,
    on_stage: Callable[[str], None] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> TrainedPipeline:
    """Train the tokenizer, tokenize the archive, pretrain the session transformer.

    Parameters
    ----------
    archive : path
        Directory of EDF/BDF files (recursive).
    out : path
        Output folder (see module docstring); existing checkpoints are resumed / reused.
    tokenizer_config, session_config : str or config
        Presets or YAML files (``tiny`` by default).
    tokenizer_steps, pretrain_steps : int, optional
        Override the configs' step counts.
    contract : SignalContract, optional
        Signal contract (default base: 60 Hz notch).
    cache_dir : path, optional
        Spectrogram cache (default ``$CLEF_HOME/cache/spectrograms``).
    on_stage : callable, optional
        Called with a stage name before each stage (progress reporting).
    trainer_kwargs : dict, optional
        Lightning Trainer options for both trainings.
    """
    out = Path(out)
    note = on_stage or (lambda s: log.info("%s", s))
    kw = {"enable_progress_bar": False, **(trainer_kwargs or {})}
    tok_dir, tokens_dir, ck_dir = out / "tokenizer", out / "tokens", out / "pretrain"
    if not (tok_dir / "meta.json").is_file():
        note("train tokenizer")
        train_tokenizer(archive, load_preset(VQGANConfig, tokenizer_config), tok_dir, contract=contract, cache_dir=cache_dir,
                        max_steps=tokenizer_steps, **kw)
    note("tokenize")
    summary = tokenize_archive(archive, tok_dir, tokens_dir, cache_dir=cache_dir)
    note("pretrain")
    cfg = session_config if isinstance(session_config, SessionConfig) else load_preset(SessionConfig, session_config)
    result = pretrain(tokens_dir, cfg, ck_dir, max_steps=pretrain_steps, resume=(ck_dir / "meta.json").is_file(),
                      trainer_kwargs=kw)
    return TrainedPipeline(tok_dir, tokens_dir, ck_dir, summary, result)

"""Stage 2 of CLEF: contrastive alignment of session embeddings with reports and EHR.

* :mod:`clef.align.archive`: which report and EHR belong to which EEG session;
* :mod:`clef.align.data`: tokens + report summaries + EHR codes → training examples;
* :mod:`clef.align.module`: the Lightning module (symmetric InfoNCE EEG↔report and
  EEG↔EHR, separate projections, masked-token loss kept);
* :mod:`clef.align.train`: :func:`align` end to end, retrieval evaluation, checkpoints.

The training names are imported on first use, so ``from clef.align import index_archive``
does not load Lightning.
"""

from __future__ import annotations

from typing import Any

from clef.align.archive import ArchiveIndex, ArchiveSession, index_archive
from clef.align.config import AlignConfig, load_align_config

_TRAIN_NAMES = ("AlignResult", "align", "evaluate_retrieval", "load_align_module", "save_aligned_checkpoint")

__all__ = [
    "AlignConfig",
    "AlignResult",
    "ArchiveIndex",
    "ArchiveSession",
    "align",
    "evaluate_retrieval",
    "index_archive",
    "load_align_config",
    "load_align_module",
    "save_aligned_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name in _TRAIN_NAMES:
        from clef.align import train

        return getattr(train, name)
    raise AttributeError(f"module 'clef.align' has no attribute {name!r}")

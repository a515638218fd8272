"""Stage 2 of CLEF: contrastive alignment of session embeddings with reports and EHR.

* :mod:`clef.align.archive`: which report and EHR belong to which EEG session;
* :mod:`clef.align.data`: tokens + report summaries + EHR codes → training examples;
* :mod:`clef.align.module`: the Lightning module (symmetric InfoNCE EEG↔report and
  EEG↔EHR, separate projections, masked-token loss kept);
* :mod:`clef.align.train`: :func:`align` end to end, retrieval evaluation, checkpoints.

The package exports the archive index and the configuration; the training names
(:func:`~clef.align.train.align` ...) are imported from :mod:`clef.align.train`, so
``from clef.align import index_archive`` does not load Lightning.
"""

from __future__ import annotations

from clef.align.archive import ArchiveIndex, ArchiveSession, index_archive
from clef.align.config import AlignConfig

__all__ = ["AlignConfig", "ArchiveIndex", "ArchiveSession", "index_archive"]


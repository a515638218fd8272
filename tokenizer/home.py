"""The per-installation home directory of CLEF: ``$CLEF_HOME``, default ``~/.clef``.

It holds what one installation keeps between runs: the de-identification salt
(``deid_salt``) and the default spectrogram cache (``cache/spectrograms``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["clef_home"]


def clef_home() -> Path:
    """Directory for per-installation state (``$CLEF_HOME`` or ``~/.clef``)."""
    return Path(os.environ.get("CLEF_HOME", Path.home() / ".clef"))

"""Schemathesis hooks for ``clef serve``: uploads that are real EDF/BDF recordings.

The upload endpoints take a multipart part ``file`` sent as ``application/octet-stream``
(declared in the OpenAPI schema). JSON Schema cannot say "an EDF/BDF recording", so
schemathesis would only ever send random bytes, which the service rightly refuses (422,
kind ``not_edf``), and the success path of the uploads would go untested. Loaded as hooks
(``SCHEMATHESIS_HOOKS=services.schemathesis_hooks schemathesis run ...``) or through
:func:`register` (the in-suite test, tests/test_services_openapi.py), this module makes
the positive test cases upload small synthetic recordings (19 referential 10-20 channels,
8-40 s, 128-256 Hz, EDF+ or BDF+, written by :func:`tokenizer.edf_writer.write_edf`;
no patient identity). Negative test cases keep sending whatever schemathesis generates.

Needs ``schemathesis`` and ``hypothesis`` (the ``dev`` extra).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

UPLOAD_MEDIA_TYPE = "application/octet-stream"


def edf_bytes(seconds: int, sfreq: int, *, bdf: bool = False, seed: int = 0) -> bytes:
    """A small synthetic EEG recording (alpha-band sines plus noise) as EDF+ or BDF+ bytes.

    Parameters
    ----------
    seconds : int
        Duration (whole 1 s data records).
    sfreq : int
        Sampling rate of every channel (Hz).
    bdf : bool
        BDF+ (24-bit) instead of EDF+ (16-bit).
    seed : int
        Noise seed.
    """
    from tokenizer.edf_writer import EDFSignal, write_edf
    from tokenizer import CANONICAL_CHANNELS

    rng = np.random.default_rng(seed)
    t = np.arange(seconds * sfreq) / sfreq
    signals = [EDFSignal(f"EEG {c.upper()}-REF", 30 * np.sin(2 * np.pi * 10 * t + k) + rng.normal(0, 5, t.size),
                         float(sfreq), unit="uV") for k, c in enumerate(CANONICAL_CHANNELS)]
    with tempfile.TemporaryDirectory(prefix="clef-schemathesis-") as folder:
        path = Path(folder) / ("upload.bdf" if bdf else "upload.edf")
        write_edf(path, signals, fmt="BDF+C" if bdf else "EDF+C")
        return path.read_bytes()


def edf_uploads() -> st.SearchStrategy[bytes]:
    """Hypothesis strategy of :func:`edf_bytes` recordings."""
    return st.builds(edf_bytes, st.integers(8, 40), st.sampled_from([128, 200, 250, 256]), bdf=st.booleans(),
                     seed=st.integers(0, 2**16))


def register() -> None:
    """Make schemathesis generate :func:`edf_uploads` for the upload part (process-wide)."""
    import schemathesis

    schemathesis.openapi.media_type(UPLOAD_MEDIA_TYPE, edf_uploads())


def unregister() -> None:
    """Undo :func:`register` (schemathesis's own binary generation applies again)."""
    from schemathesis.core.media_types import MEDIA_TYPE_STRATEGIES

    MEDIA_TYPE_STRATEGIES.pop(UPLOAD_MEDIA_TYPE, None)


register()  # loaded as SCHEMATHESIS_HOOKS

__all__ = ["UPLOAD_MEDIA_TYPE", "edf_bytes", "edf_uploads", "register", "unregister"]

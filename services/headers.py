"""Header facts of an EDF/BDF file, read without loading any signal.

Only de-identified facts leave this module: format, nominal duration, sex, age at
recording (90 means 90 or older) and the salted patient hash. The raw header fields
(names, patient ids, birthdates, recording dates) are never returned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class HeaderFacts:
    """De-identified facts from a file's header.

    Attributes
    ----------
    format : str
        ``EDF``, ``EDF+C``, ``EDF+D``, ``BDF`` ...
    duration_s : float
        Records × record duration.
    sex : str or None
    age_years : float or None
    patient_hash : str or None
    """

    format: str
    duration_s: float
    sex: str | None
    age_years: float | None
    patient_hash: str | None

    def to_dict(self) -> dict[str, object]:
        """Plain dict."""
        return asdict(self)


class HeaderError(Exception):
    """A header could not be read; ``kind`` is the ingest error kind (``not_edf`` ...)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def read_header_facts(path: str | Path) -> HeaderFacts:
    """Read and de-identify the header of ``path`` (no signal is loaded).

    Raises
    ------
    HeaderError
        The file is not a readable EDF/BDF file; ``kind`` names why (``not_edf``,
        ``empty_file``, ``truncated``, ``corrupt_header`` ...).
    """
    from clef.signal import IngestError, deidentify, read_header

    try:
        h = read_header(path)
    except IngestError as exc:
        raise HeaderError(exc.kind, str(exc)) from None
    deid, _ = deidentify(h.patient, h.recording, h.startdate)
    return HeaderFacts(format=h.format, duration_s=float(h.duration_s), sex=deid.sex, age_years=deid.age_years,
                       patient_hash=deid.patient_hash)

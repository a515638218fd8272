"""Header facts of an EDF/BDF file, read without loading any signal.

Only de-identified facts leave this module: format, nominal duration, sex, age at
recording (90 means 90 or older), the salted patient hash and the reference scheme the
channel labels name. The raw header fields
(names, patient ids, birthdates, recording dates) are never returned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from tokenizer.channels import ChannelMap, map_channels
from tokenizer.contract import CANONICAL_CHANNELS
from tokenizer.deid import deidentify
from tokenizer.edf_header import read_header

__all__ = ["HeaderFacts", "read_header_facts"]


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
    reference : str or None
        Reference scheme of the channels mapped onto the montage, from their labels as
        recorded (``REF``, ``LE``, ``AVG``, ``MAST``, ``EAR``, ``CZ``, ``bipolar``,
        ``unknown``, ``mixed``: ``tokenizer.channels.SCHEMES``).
    """

    format: str
    duration_s: float
    sex: str | None
    age_years: float | None
    patient_hash: str | None
    reference: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict."""
        return asdict(self)


def read_header_facts(path: str | Path, *, channels: Sequence[str] | None = None,
                      channel_map: ChannelMap | None = None) -> HeaderFacts:
    """Read and de-identify the header of ``path`` (no signal is loaded).

    Parameters
    ----------
    path : path
    channels : sequence of str, optional
        Montage the reference is detected on (default: the 19 canonical channels).
    channel_map : ChannelMap, optional
        A site's channel aliases (as the file is read with).

    Raises
    ------
    tokenizer.errors.IngestError
        The file is not a readable EDF/BDF file; its subclass and ``kind`` say why
        (``not_edf``, ``empty_file``, ``truncated``, ``corrupt_header`` ...).
    """
    h = read_header(path)
    deid, _ = deidentify(h.patient, h.recording, h.startdate)
    mapping = map_channels([s.label for s in h.signals], tuple(channels or CANONICAL_CHANNELS),
                           [s.is_annotation for s in h.signals], channel_map=channel_map)
    return HeaderFacts(format=h.format, duration_s=float(h.duration_s), sex=deid.sex, age_years=deid.age_years,
                       patient_hash=deid.patient_hash, reference=mapping.reference)

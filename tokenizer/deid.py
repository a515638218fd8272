"""De-identification of EDF header fields.

Only derived facts ever leave the reader: sex, age at recording (from a birthdate, in
years, 90 and over reported as 90 as in the HIPAA Safe Harbor rule) and a salted hash
of the patient ID. Names, IDs, birthdates, technicians, equipment and the recording
date never appear in any output.

The salt comes from, in order: the ``salt`` argument, the ``CLEF_DEID_SALT``
environment variable, or a random per-installation salt created on first use in
``$CLEF_HOME/deid_salt`` (default ``~/.clef``). Use the same salt on every machine
that embeds one archive, or the hashes of one patient will differ.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Literal

from tokenizer.atomic import atomic_path
from tokenizer.home import clef_home

log = logging.getLogger(__name__)

_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_EDFPLUS_DATE = re.compile(r"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$")
_AGE_CAP = 90.0


@dataclass(frozen=True)
class Deidentified:
    """De-identified facts derived from a header.

    Attributes
    ----------
    sex : {"M", "F"} or None
    age_years : float or None
        Age at recording, 2 decimals; 90.0 means 90 or older.
    patient_hash : str or None
        Salted SHA-256 (16 hex digits) of the patient ID; None when the file has none or
        only a placeholder (``0``, ``X``, ``No_Name`` ...: see :func:`is_placeholder_id`).
    """

    sex: Literal["M", "F"] | None
    age_years: float | None
    patient_hash: str | None

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return {"sex": self.sex, "age_years": self.age_years, "patient_hash": self.patient_hash}


def get_salt(salt: str | None = None) -> str:
    """Return the de-identification salt (argument, environment, or installation file)."""
    salt = salt or os.environ.get("CLEF_DEID_SALT")
    if salt:
        return salt
    path = clef_home() / "deid_salt"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(16)
    with atomic_path(path) as tmp:
        tmp.write_text(value + "\n")
        os.chmod(tmp, 0o600)  # private before it is visible under its name
    log.warning("created a new de-identification salt in %s; set CLEF_DEID_SALT to share one across machines", path)
    return value


def patient_hash(patient_id: str, salt: str | None = None) -> str:
    """Salted SHA-256 of a patient ID (16 hex digits); case and whitespace normalised.

    Hashes whatever it is given: use :func:`known_patient_hash` for IDs read from files
    or tables, where placeholders must not become a patient.
    """
    key = " ".join(patient_id.split()).upper()
    return hashlib.sha256(f"{get_salt(salt)}\x00{key}".encode()).hexdigest()[:16]


#: Normalised words that stand for "no patient ID" (case, spaces, ``_ - . /`` ignored).
#: Devices write these when no ID was entered (Nihon Kohden ``No_Name``, anonymisers
#: ``Anonymous``); hashed, they would make strangers one patient.
PLACEHOLDER_IDS: frozenset[str] = frozenset({
    "", "NONAME", "ANONYMOUS", "ANON", "ANONYMIZED", "ANONYMISED", "DEIDENTIFIED", "REDACTED", "UNKNOWN", "UNK",
    "NONE", "NULL", "NIL", "NA", "NOTAVAILABLE", "NOTSPECIFIED", "NOID", "PATIENT", "PATIENTID", "ID",
})
_PLACEHOLDER_RUNS = re.compile(r"^(?:0+|X+|\?+)$")  # 0, 00000000 (NeuroCom, Nihon Kohden), X (EDF+), ???


def is_placeholder_id(text: str) -> bool:
    """True when a patient ID is blank or a placeholder (``0``, ``000``, ``X``, ``No_Name``,
    ``Anonymous``, ``unknown``, ``N/A`` ...), in every whitespace-separated part.

    Parameters
    ----------
    text : str
        A patient ID as written (PHI; never logged).
    """
    keys = (re.sub(r"[\s_\-./]", "", part).upper() for part in text.split() or [""])
    return all(key in PLACEHOLDER_IDS or _PLACEHOLDER_RUNS.match(key) for key in keys)


def known_patient_hash(patient_id: str | None, salt: str | None = None) -> str | None:
    """Salted hash of a patient ID, or None when the ID is missing, blank or a placeholder.

    The one rule for every source of patient identity (EDF header, ``sessions.csv``,
    FHIR): a session whose patient is unknown gets no hash, so it is never merged with
    another unknown patient's session.
    """
    if patient_id is None or is_placeholder_id(patient_id):
        return None
    return patient_hash(patient_id, salt)


def anonymous_id(text: str, kind: str, salt: str | None = None) -> str:
    """Salted SHA-256 (16 hex digits) of a session id, path or other local name.

    ``kind`` (``"session"``, ``"path"`` ...) separates the name spaces, so a path and a
    session id that are the same text do not get the same hash. Unlike
    :func:`patient_hash` the text is hashed exactly (paths are case-sensitive). Whoever
    holds the salt can recompute the id of a known name; nobody else can invert it.
    """
    if not kind or "\x00" in kind:
        raise ValueError(f"kind must be a non-empty name without NUL, found {kind!r}")
    return hashlib.sha256(f"{get_salt(salt)}\x00{kind}\x00{text}".encode()).hexdigest()[:16]


def parse_edfplus_date(text: str) -> date | None:
    """Parse an EDF+ ``dd-MMM-yyyy`` date; None for ``X`` or anything unparseable."""
    m = _EDFPLUS_DATE.match(text.strip())
    if not m or m.group(2).upper() not in _MONTHS:
        return None
    try:
        return date(int(m.group(3)), _MONTHS[m.group(2).upper()], int(m.group(1)))
    except ValueError:
        return None


def recording_date(recording_field: str, startdate: str) -> date | None:
    """Date of the recording: the EDF+ ``Startdate dd-MMM-yyyy`` subfield, else the
    header's ``dd.mm.yy`` (years 85–99 → 19xx, 00–84 → 20xx, as the EDF spec says)."""
    parts = recording_field.split()
    if len(parts) >= 2 and parts[0].lower() == "startdate":
        d = parse_edfplus_date(parts[1])
        if d is not None:
            return d
    m = re.match(r"^(\d{2})\.(\d{2})\.(\d{2})$", startdate.strip())
    if not m:
        return None
    yy = int(m.group(3))
    try:
        return date(1900 + yy if yy >= 85 else 2000 + yy, int(m.group(2)), int(m.group(1)))
    except ValueError:
        return None


def deidentify(patient_field: str, recording_field: str, startdate: str, *, salt: str | None = None) -> tuple[Deidentified, list[str]]:
    """Derive de-identified facts from the raw header fields.

    Parameters
    ----------
    patient_field, recording_field, startdate : str
        Raw header fields (PHI; never stored).
    salt : str, optional
        Salt for the patient hash (see module docstring).

    Returns
    -------
    Deidentified
        Sex, age at recording and patient hash.
    list of str
        Warnings (e.g. implausible age), free of PHI.
    """
    warnings: list[str] = []
    parts = patient_field.split()
    sex: Literal["M", "F"] | None = None
    birth: date | None = None
    pid: str | None = None
    if len(parts) >= 3 and parts[1].upper() in ("M", "F", "X") and (
            parts[2].upper() == "X" or parse_edfplus_date(parts[2]) is not None):
        pid = parts[0]  # EDF+ subfields: code sex birthdate name; only the code identifies
        s = parts[1].upper()
        sex = s if s in ("M", "F") else None  # type: ignore[assignment]
        birth = parse_edfplus_date(parts[2])
    else:
        pid = patient_field.strip()  # plain EDF: the whole field is the local identification
    if is_placeholder_id(pid):
        # The value is one of PLACEHOLDER_IDS (not PHI), so it may be shown.
        shown = " ".join(pid.split())
        warnings.append(
            (f"patient ID in the header is a placeholder ({shown!r})" if shown else "no patient ID in the header")
            + ": no patient hash; this session counts as its own patient"
        )
        pid = None
    age: float | None = None
    if birth is not None:
        rec = recording_date(recording_field, startdate)
        if rec is None:
            warnings.append("birthdate present but recording date unreadable: age unknown")
        else:
            years = (rec - birth).days / 365.2425
            if years < 0 or years > 125:
                warnings.append("implausible age from header dates: age left unknown")
            else:
                age = min(round(years, 2), _AGE_CAP)
    return Deidentified(sex, age, known_patient_hash(pid, salt)), warnings

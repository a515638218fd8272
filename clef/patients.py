"""The platform's one patient split, and the record of whom a model was trained on.

One split for every stage
    A patient's split (``train``, ``val`` or ``test``) is a function of
    ``sha256(salt + ":" + patient_id)`` alone (:class:`PatientSplit`). ``clef align`` trains
    only on ``train`` patients (the others are its held-out retrieval set), and
    ``clef tasks generate`` puts the same patients in the same splits, so that with the
    default split no patient of a benchmark's test split was ever an alignment target:
    their reports and EHR codes (the labels of the benchmark's finding, phenotype and
    medication tasks) never reach a contrastive loss.

Training records
    Every checkpoint says which data it learned from, in ``meta.json`` under
    ``trained_on``: the patients whose reports and EHR were supervised targets
    (``supervised_patients``), and, for the self-supervised stages, the sessions
    (``sessions``, by file content, :func:`tokenizer.hashing.session_record`) and their
    patients where the archive names them. A record holds the count, a digest and the
    compact set of 16-hex keys. Patient keys are
    :func:`tokenizer.deid.patient_hash` values (salted with the installation's
    de-identification salt, never the raw id); ``salt_id`` fingerprints that salt so that a
    comparison made under another salt is refused instead of silently finding no overlap.
    :func:`overlap` is what ``clef benchmark run`` uses to refuse a leaking checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenizer.deid import get_salt, patient_hash
from tokenizer.hashing import key_record

__all__ = ["PATIENT_SPLIT_SALT", "SPLITS", "PatientSplit", "RecordMismatchError", "overlap", "patient_record",
           "salt_id"]

#: Salt of the platform's patient split (the benchmark suites' historical salt, kept so that
#: existing suites and the shipped example keep their splits).
PATIENT_SPLIT_SALT = "clef-benchmark-v1"

#: Split names, in order.
SPLITS: tuple[str, ...] = ("train", "val", "test")


class PatientSplit(BaseModel):
    """Patient-level split from a salted hash of the patient id, shared by every stage.

    Attributes
    ----------
    salt : str
        Changing it redraws the splits; the same salt always gives the same splits.
    train, val, test : float
        Fractions of patients (they must sum to 1; ``val`` may be 0). Alignment trains on
        ``train`` only; the benchmark's probes are fitted on ``train`` + ``val`` and
        scored on ``test``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    salt: str = PATIENT_SPLIT_SALT
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.0, ge=0, lt=1)
    test: float = Field(0.3, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum(self) -> PatientSplit:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, found train {self.train} + val {self.val} + "
                             f"test {self.test} = {total:g}")
        return self

    @property
    def fractions(self) -> dict[str, float]:
        """Non-empty splits and their fractions, in order."""
        return {k: v for k, v in (("train", self.train), ("val", self.val), ("test", self.test)) if v > 0}

    def of(self, patient_id: str) -> str:
        """The split of one patient (``train``, ``val`` or ``test``)."""
        digest = hashlib.sha256(f"{self.salt}:{patient_id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        edge = 0.0
        for name, frac in self.fractions.items():
            edge += frac
            if u < edge:
                return name
        return list(self.fractions)[-1]


def salt_id(salt: str | None = None) -> str:
    """Fingerprint (12 hex) of the de-identification salt the patient keys were made with."""
    return hashlib.sha256(f"clef-salt-id\x00{get_salt(salt)}".encode()).hexdigest()[:12]


def patient_record(patient_ids: Iterable[str], *, salt: str | None = None) -> dict[str, Any]:
    """Record of a set of patients: count, digest, salted 16-hex keys and the salt's fingerprint.

    Parameters
    ----------
    patient_ids : iterable of str
        Raw patient ids (as in the archive's ``sessions.csv`` / FHIR ``Patient.id``);
        empty ids are ignored. They are never written: only their salted hashes.
    salt : str, optional
        De-identification salt (default: the installation's, see :mod:`tokenizer.deid`).
    """
    return key_record((patient_hash(p, salt) for p in patient_ids if p), kind="patients", salt_id=salt_id(salt))


class RecordMismatchError(ValueError):
    """A record cannot be compared with the given ids (made under another salt)."""


def overlap(record: Mapping[str, Any], *, patient_ids: Iterable[str] = (), source_sha256: Iterable[str] = (),
            salt: str | None = None) -> tuple[int, str | None]:
    """How many of the given patients (or sessions) a record holds, and one example key.

    Parameters
    ----------
    record : mapping
        A :func:`patient_record` or a :func:`tokenizer.hashing.session_record`.
    patient_ids, source_sha256 : iterable of str
        What to look for (raw patient ids for a patient record, file SHA-256 for a
        session record).
    salt : str, optional
        De-identification salt of the ids (default: the installation's).

    Raises
    ------
    RecordMismatchError
        A patient record made under another de-identification salt.
    """
    held = set(record.get("keys", ()))
    if record.get("kind") == "patients":
        if record.get("salt_id") != salt_id(salt):
            raise RecordMismatchError(
                "the checkpoint's patient record was made under another de-identification salt (salt id "
                f"{record.get('salt_id')}, here {salt_id(salt)}): set CLEF_DEID_SALT to the salt used in training")
        mine = {patient_hash(p, salt) for p in patient_ids if p}
    else:
        mine = {s[:16] for s in source_sha256 if s}
    common = sorted(held & mine)
    return len(common), (common[0] if common else None)

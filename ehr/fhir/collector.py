"""What a FHIR load has read so far, per patient and across files, and the problems it met.

The resource readers (:mod:`ehr.fhir.patient`, :mod:`~ehr.fhir.encounter`,
:mod:`~ehr.fhir.condition`, :mod:`~ehr.fhir.medication`, :mod:`~ehr.fhir.procedure`)
add to one :class:`Collector`; :func:`ehr.fhir.load.load_fhir` turns it into records
once every file is read, because references may point forward (to a patient, an
organisation or a ``Medication`` in a later file).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ehr.record import ConditionEntry, MedicationEntry, PatientRecord, SessionEntry

if TYPE_CHECKING:
    from ehr.fhir.encounter import PendingEncounter
    from ehr.fhir.medication import PendingMedication

__all__ = ["Collector", "Demographics", "FhirLoadResult", "FhirProblem", "Urls"]

log = logging.getLogger(__name__)

#: A bundle's ``fullUrl`` → (resource type, id), to resolve references within it.
Urls = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class FhirProblem:
    """Something in the input that could not be read as it stands.

    Attributes
    ----------
    source : str
        Where: the file, ``file:LINE`` for an NDJSON line, ``file#entry[i]`` for a
        bundle entry.
    resource_type, resource_id : str or None
        The resource concerned, when known.
    reason : str
        Short explanation (what was expected, what was found).
    """

    source: str
    resource_type: str | None
    resource_id: str | None
    reason: str


@dataclass
class FhirLoadResult:
    """Output of :func:`~ehr.fhir.load.load_fhir`.

    Attributes
    ----------
    records : dict
        Patient id → :class:`~ehr.record.PatientRecord`, sorted by id.
    problems : list of FhirProblem
        Everything skipped or read with a caveat, in input order.
    ignored : dict
        Resource type → count of valid FHIR resources of types CLEF does not read.
    n_files, n_resources : int
        Files read and resources seen (bundles not counted, their entries are).
    """

    records: dict[str, PatientRecord] = field(default_factory=dict)
    problems: list[FhirProblem] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    n_files: int = 0
    n_resources: int = 0


@dataclass
class Demographics:
    """What a ``Patient`` resource says about its patient."""

    sex: str | None = None
    birth_date: dt.date | None = None
    race: str | None = None
    ethnicity: str | None = None


class Collector:
    """Entries per patient, pending references, and the load's problems.

    Parameters
    ----------
    now : datetime.date
        Start-like dates after this day are problems (:meth:`check_past`).
    """

    def __init__(self, now: dt.date) -> None:
        self.now = now
        self.result = FhirLoadResult()
        self.demo: dict[str, Demographics] = {}
        self.bad_patients: set[str] = set()
        self.conditions: dict[str, list[ConditionEntry]] = {}
        self.medications: dict[str, list[MedicationEntry]] = {}
        self.sessions: dict[str, list[SessionEntry]] = {}
        self.encounters: list[PendingEncounter] = []
        self.pending_meds: list[PendingMedication] = []
        self.organizations: dict[str, str] = {}
        self.medication_codes: dict[str, Any] = {}
        self.seen: dict[tuple[str, str], int] = {}  # (type, id) -> hash of the content
        self.referenced: dict[str, str] = {}  # patient id -> first source referencing it

    def problem(self, source: str, rtype: str | None, rid: str | None, reason: str) -> None:
        """Record a problem (and log it at debug level)."""
        self.result.problems.append(FhirProblem(source, rtype, rid, reason))
        log.debug("FHIR problem at %s (%s/%s): %s", source, rtype, rid, reason)

    @staticmethod
    def ref_id(ref: Any, rtype: str, urls: Urls) -> str | None:
        """The id a ``Reference`` points to, when it points to a resource of type ``rtype``."""
        text = getattr(ref, "reference", None) if ref is not None else None
        if not text:
            return None
        if text in urls:
            t, i = urls[text]
            return i if t == rtype else None
        if text.startswith("urn:uuid:"):
            return text[len("urn:uuid:"):]
        if text.startswith("#"):
            return None
        parts = text.split("/")
        for k in range(len(parts) - 1):
            if parts[k] == rtype and parts[k + 1]:
                return parts[k + 1]
        return None

    def subject(self, model: Any, src: str, urls: Urls, field_name: str = "subject") -> str | None:
        """The patient a resource belongs to; a problem (and None) when it names none."""
        pid = self.ref_id(getattr(model, field_name, None), "Patient", urls)
        if pid is None:
            self.problem(src, model.get_resource_type(), model.id,
                         f"no patient reference in {field_name} (expected 'Patient/<id>'); skipped")
            return None
        self.referenced.setdefault(pid, src)
        return pid

    def check_past(self, value: Any, day: dt.date | None, what: str, src: str, model: Any) -> dt.date | None:
        """``day``, or None with a problem when it lies after :attr:`now`."""
        if day is not None and day > self.now:
            self.problem(src, model.get_resource_type(), model.id,
                         f"{what} {value} is in the future (after {self.now.isoformat()}); treated as unknown")
            return None
        return day

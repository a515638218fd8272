"""Read FHIR R4 exports into de-identified :class:`~ehr.record.PatientRecord` objects.

:func:`load_fhir` reads a ``Bundle`` JSON file (any bundle type: collection, searchset,
transaction ...), a single-resource JSON file, an NDJSON bulk-data file (one resource a
line, types mixed or one type per file as ``Patient.ndjson``, optionally ``.gz``), or a
directory of such files (searched recursively for ``*.json``, ``*.ndjson``,
``*.jsonl`` and their ``.gz`` forms; dot-files are skipped).

Every resource is validated on its own with the ``fhir.resources.R4B`` model of its type
(hospital exports are R4; the package default is R5), so one invalid resource is
reported as a :class:`FhirProblem` with its id and a short reason and skipped, while the
rest of its bundle is kept. Broken JSON (a whole file, or one NDJSON line, reported with
its line number) is reported the same way. Nothing raises for bad *data*; a missing path
raises :class:`FileNotFoundError`.

What is read
------------
``Patient``
    gender (``male``/``female`` → ``M``/``F``; ``other``/``unknown`` → None), birth date,
    race and ethnicity from the US Core extensions. No name, MRN or address is kept.
``Organization``
    names the site of encounters (first identifier value, else name).
``Encounter``
    period, ``class`` code, care setting from a ``type`` coding whose system ends with
    ``eeg-care-setting``, ``serviceProvider`` site.
``Condition``
    ICD-10-CM coding (system ``http://hl7.org/fhir/sid/icd-10-cm``; ``icd-10`` variants
    and the ICD-10-CM OID accepted), normalised to the dotted form and validated with
    ``simple_icd_10_cm``; onset (``onsetDateTime`` / ``onsetPeriod.start``), abatement
    (``abatementDateTime`` / ``abatementPeriod.start``). ``entered-in-error`` and
    ``refuted`` conditions are dropped.
``MedicationStatement`` / ``MedicationRequest`` / ``MedicationAdministration`` (+ ``Medication``)
    ATC coding (``http://www.whocc.no/atc``), else RxNorm mapped with
    :func:`ehr.atc.atc_for_rxnorm`, else the drug name (coding display or text, also
    with trailing strength/form words removed) mapped with :func:`ehr.atc.atc_for_name`.
    RxNorm is kept when given or derivable (:func:`ehr.atc.rxnorm_for_atc`). Dates:
    statement/administration ``effectivePeriod`` or ``effectiveDateTime``; request
    ``dispenseRequest.validityPeriod``, else ``authoredOn`` as start (open-ended).
    ``medicationReference`` to a ``Medication`` (contained or anywhere in the input) is
    resolved. ``entered-in-error``/``not-taken``/``cancelled`` ones are dropped.
``Procedure``
    an EEG session when it has an identifier whose system ends with ``eeg-session``
    (its value is the session id) or is coded SNOMED CT 54550000 (Electroencephalogram;
    the Procedure id is the session id). Other procedures are ignored.

Decisions
---------
* **Other resource types.** A resource type that FHIR R4 defines but CLEF does not read
  (``Observation``, ``Practitioner``, ``Location``, ``Provenance`` ...) is skipped
  silently and counted in :attr:`FhirLoadResult.ignored`; a ``resourceType`` that is not
  a FHIR R4 resource at all (``"Banana"``) is a problem (``"unsupported resource
  type ..."``).
* **Unknown patients.** Resources referencing a ``Patient`` that never appears still
  give a record (sex, birth date, race unknown) and one problem per such patient, so no
  diagnosis is lost. A resource with no patient reference at all is a problem.
* **Future dates.** A *start-like* date (birth, onset, drug start, encounter / session
  start) after ``now`` (default: today) is a problem and is treated as unknown, which
  for an onset or start means "active since ever" (a recording error, not a cancelled
  fact). End-like dates (abatement, drug end, validity period end) in the future are
  legitimate (a planned stop) and are kept.
* **Partial dates** (``2015``, ``2015-03``) are read as the first day of the period for
  start-like dates and the last day for end-like ones.
* **Values the models do not check**: a ``gender`` outside the FHIR value set is a
  problem and the sex is unknown; the rest of the Patient is kept.
* **Codes**: conditions without a valid ICD-10-CM code are problems (``"no ICD-10-CM
  code ..."``) and skipped; medications with neither an ATC code nor a mappable
  RxNorm code or name are problems and skipped; an RxNorm code the curated ATC table
  cannot map is kept with ``atc=None`` and reported.
* **Duplicates** (same type and id seen twice): the first is kept; a later copy that
  differs is a problem.
* A ``dateTime`` with a time but no time zone (``2015-01-01T10:00:00``) is invalid FHIR,
  yet common in real exports. It is read as the local wall-clock time it states (the
  calendar day, which is all CLEF uses, is kept as written) and reported as a caveat
  with the resource id and field; the resource is kept.

Speed: validating every resource with the R4B models costs 1-3 ms per synthetic patient
(one bundle of ~10 resources; 1000 patients in ~1.2 s), after a one-time ~3 s import of
the models and of the ICD-10-CM table. NDJSON is streamed line by line.
"""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import importlib
import importlib.util
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ehr.atc import atc_for_name, atc_for_rxnorm, atc_name, is_atc_code, rxnorm_for_atc
from ehr.codes import icd10_description, icd10_normalise
from ehr.record import (
    ConditionEntry,
    EncounterEntry,
    MedicationEntry,
    PatientRecord,
    SessionEntry,
)

__all__ = [
    "ATC_SYSTEMS",
    "ICD10_SYSTEMS",
    "RXNORM_SYSTEMS",
    "SUPPORTED_RESOURCE_TYPES",
    "FhirLoadResult",
    "FhirProblem",
    "load_fhir",
]

log = logging.getLogger(__name__)

#: Coding systems read as ICD-10-CM (also any system whose URI contains ``icd-10`` / ``icd10``).
ICD10_SYSTEMS: frozenset[str] = frozenset({
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10",
    "urn:oid:2.16.840.1.113883.6.90",  # ICD-10-CM
    "urn:oid:2.16.840.1.113883.6.3",  # ICD-10 (WHO)
})
#: Coding systems read as ATC.
ATC_SYSTEMS: frozenset[str] = frozenset({"http://www.whocc.no/atc", "urn:oid:2.16.840.1.113883.6.73"})
#: Coding systems read as RxNorm.
RXNORM_SYSTEMS: frozenset[str] = frozenset({"http://www.nlm.nih.gov/research/umls/rxnorm",
                                            "urn:oid:2.16.840.1.113883.6.88"})
SNOMED_SYSTEM = "http://snomed.info/sct"
SNOMED_EEG = "54550000"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"

#: Resource types read, and the ``fhir.resources.R4B`` module holding each model.
SUPPORTED_RESOURCE_TYPES: dict[str, str] = {
    "Patient": "patient",
    "Organization": "organization",
    "Encounter": "encounter",
    "Condition": "condition",
    "MedicationStatement": "medicationstatement",
    "MedicationRequest": "medicationrequest",
    "MedicationAdministration": "medicationadministration",
    "Medication": "medication",
    "Procedure": "procedure",
}

_FILE_SUFFIXES = (".json", ".ndjson", ".jsonl", ".json.gz", ".ndjson.gz", ".jsonl.gz")
_NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")

_OMB_RACE = {
    "2106-3": "White",
    "2054-5": "Black",
    "2028-9": "Asian",
    "1002-5": "American Indian/Alaska Native",
    "2076-8": "Native Hawaiian/Pacific Islander",
    "2131-1": "Other",
}
_RACE_TEXT = {
    "white": "White",
    "caucasian": "White",
    "black": "Black",
    "black or african american": "Black",
    "african american": "Black",
    "asian": "Asian",
    "american indian/alaska native": "American Indian/Alaska Native",
    "american indian or alaska native": "American Indian/Alaska Native",
    "native hawaiian/pacific islander": "Native Hawaiian/Pacific Islander",
    "native hawaiian or other pacific islander": "Native Hawaiian/Pacific Islander",
    "other": "Other",
    "other race": "Other",
    "unknown": "Unknown",
    "asked but unknown": "Unknown",
    "declined": "Unknown",
    "patient declined": "Unknown",
    "hispanic/latino": "Hispanic/Latino",
    "hispanic or latino": "Hispanic/Latino",
    "hispanic": "Hispanic/Latino",
    "latino": "Hispanic/Latino",
}
_UNKNOWN_CODES = {"UNK", "ASKU", "NI", "NASK", "NAVU", "PREFUS", "ASKED-DECLINED"}
_ETHNICITY = {"2135-2": "Hispanic or Latino", "2186-5": "Not Hispanic or Latino"}
_SEX = {"female": "F", "male": "M", "other": None, "unknown": None}
_DROP_STATUS = {"entered-in-error", "not-taken", "cancelled", "refuted", "not-done"}


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
    """Output of :func:`load_fhir`.

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

    def problems_for(self, resource_id: str) -> list[FhirProblem]:
        """Problems concerning the resource (or patient) with this id."""
        return [p for p in self.problems if p.resource_id == resource_id]


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


@cache
def _model(rtype: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{SUPPORTED_RESOURCE_TYPES[rtype]}")
    return getattr(module, rtype)


@cache
def _is_fhir_type(rtype: str) -> bool:
    """True when R4B defines a resource (model module) of this name."""
    if not rtype.isascii() or not rtype.isalpha() or not rtype[:1].isupper():
        return False
    try:
        return importlib.util.find_spec(f"fhir.resources.R4B.{rtype.lower()}") is not None
    except (ImportError, ValueError):
        return False


def _short_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc).splitlines()[0]
    first = errors[0]
    loc = ".".join(str(x) for x in first.get("loc", ())) or "(resource)"
    msg = " ".join(str(first.get("msg", "")).split())
    if len(msg) > 160:
        msg = msg[:157] + "..."
    value = first.get("input")
    shown = f" (found {value!r})" if isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 60 else ""
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid: {loc}: {msg}{shown}{more}"


_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
_NAIVE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")


def repair_naive_datetimes(data: Any, path: str = "") -> list[str]:
    """Give zone-less ``dateTime`` strings an explicit ``+00:00``, in place; return where.

    FHIR requires a zone on a dateTime with a time; many hospital exports omit it. The
    wall-clock time (and so the calendar day CLEF uses) is kept as written.

    Parameters
    ----------
    data : dict or list
        A resource's JSON (modified in place).
    path : str
        Prefix of the reported locations.

    Returns
    -------
    list of str
        Dotted locations of the repaired values (``onsetDateTime``, ``effectivePeriod.start``).
    """
    fixed: list[str] = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in list(items):
        where = f"{path}.{key}" if path else str(key)
        if isinstance(value, str) and _NAIVE_DATETIME.match(value):
            data[key] = value + "+00:00"
            fixed.append(where)
        elif isinstance(value, (dict, list)):
            fixed += repair_naive_datetimes(value, where)
    return fixed


def _as_date(value: Any, *, end: bool = False) -> dt.date | None:
    """A FHIR date/dateTime (model value) as a calendar day; partial dates expand per ``end``."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    m = _PARTIAL.match(str(value).strip())
    if not m:
        return None
    year = int(m.group(1))
    if m.group(2) is None:
        return dt.date(year, 12, 31) if end else dt.date(year, 1, 1)
    month = int(m.group(2))
    if not 1 <= month <= 12:
        return None
    return dt.date(year, month, calendar.monthrange(year, month)[1]) if end else dt.date(year, month, 1)


def _as_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    day = _as_date(value)
    return dt.datetime.combine(day, dt.time()) if day is not None else None


def _norm_system(system: str | None) -> str:
    return (system or "").strip().rstrip("/").lower()


_ICD_LOWER = frozenset(s.lower() for s in ICD10_SYSTEMS)
_ATC_LOWER = frozenset(s.lower() for s in ATC_SYSTEMS)
_RX_LOWER = frozenset(s.lower() for s in RXNORM_SYSTEMS)


def _is_icd_system(system: str | None) -> bool:
    s = _norm_system(system)
    return s in _ICD_LOWER or "icd-10" in s or "icd10" in s


def _codings(concept: Any) -> list[Any]:
    return list(getattr(concept, "coding", None) or []) if concept is not None else []


def _drug_name_candidates(name: str) -> list[str]:
    """``"Levetiracetam 500 MG Oral Tablet"`` → full name, then the words before the first number."""
    name = " ".join(name.split())
    out = [name]
    words = name.split(" ")
    for i, w in enumerate(words):
        if any(ch.isdigit() for ch in w):
            if i > 0:
                out.append(" ".join(words[:i]))
            break
    first = re.split(r"[\s,(\[]", name, maxsplit=1)[0]
    if first and first not in out:
        out.append(first)
    return out


# --------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------


@dataclass
class _Demo:
    sex: str | None = None
    birth_date: dt.date | None = None
    race: str | None = None
    ethnicity: str | None = None


@dataclass
class _PendingEncounter:
    patient_id: str
    encounter_id: str
    start: dt.datetime | None
    end: dt.datetime | None
    org_id: str | None
    org_display: str | None
    setting: str | None
    care_class: str | None


@dataclass
class _PendingMedication:
    patient_id: str
    medication_id: str
    start: dt.date | None
    end: dt.date | None
    resource_id: str
    resource_type: str
    source: str


class _Loader:
    """Collects entries per patient across files; :meth:`finish` builds the records."""

    def __init__(self, now: dt.date) -> None:
        self.now = now
        self.result = FhirLoadResult()
        self.demo: dict[str, _Demo] = {}
        self.bad_patients: set[str] = set()
        self.conditions: dict[str, list[ConditionEntry]] = {}
        self.medications: dict[str, list[MedicationEntry]] = {}
        self.sessions: dict[str, list[SessionEntry]] = {}
        self.encounters: list[_PendingEncounter] = []
        self.pending_meds: list[_PendingMedication] = []
        self.organizations: dict[str, str] = {}
        self.medication_codes: dict[str, Any] = {}
        self.seen: dict[tuple[str, str], int] = {}  # (type, id) -> hash of the content
        self.referenced: dict[str, str] = {}  # patient id -> first source referencing it
        self.handlers: dict[str, Callable[[Any, str, dict[str, tuple[str, str]]], None]] = {
            "Patient": self._patient,
            "Organization": self._organization,
            "Encounter": self._encounter,
            "Condition": self._condition,
            "MedicationStatement": self._medication,
            "MedicationRequest": self._medication,
            "MedicationAdministration": self._medication,
            "Medication": self._medication_resource,
            "Procedure": self._procedure,
        }

    # ---- problems ----------------------------------------------------------------
    def problem(self, source: str, rtype: str | None, rid: str | None, reason: str) -> None:
        self.result.problems.append(FhirProblem(source, rtype, rid, reason))
        log.debug("FHIR problem at %s (%s/%s): %s", source, rtype, rid, reason)

    # ---- files ---------------------------------------------------------------------
    def load_file(self, path: Path) -> None:
        self.result.n_files += 1
        name = path.name.lower()
        src = str(path)
        try:
            if path.stat().st_size == 0:
                self.problem(src, None, None, "empty file (expected a FHIR JSON resource or NDJSON lines)")
                return
            if name.endswith(_NDJSON_SUFFIXES):
                self._load_ndjson(path)
                return
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8-sig") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            self.problem(src, None, None, f"cannot read file: {exc}")
            return
        if not text.strip():
            self.problem(src, None, None, "empty file (expected a FHIR JSON resource or NDJSON lines)")
            return
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and text.lstrip().startswith("{"):
                # several JSON objects one per line in a .json file: read it as NDJSON
                self._ndjson_lines(io.StringIO(text), src)
                return
            self.problem(src, None, None, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
            return
        except RecursionError:
            self.problem(src, None, None, "invalid JSON: nested too deeply to be a FHIR resource")
            return
        self.resource(data, src, {})

    def _load_ndjson(self, path: Path) -> None:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            self._ndjson_lines(fh, str(path))

    def _ndjson_lines(self, lines: Any, src: str) -> None:
        n_good = 0
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                self.problem(f"{src}:{lineno}", None, None, f"invalid JSON on NDJSON line {lineno}: {exc.msg} "
                                                            f"(column {exc.colno})")
                continue
            except RecursionError:
                self.problem(f"{src}:{lineno}", None, None, f"invalid JSON on NDJSON line {lineno}: nested too deeply "
                                                            "to be a FHIR resource")
                continue
            n_good += 1
            self.resource(data, f"{src}:{lineno}", {})
        if n_good == 0 and not any(p.source.startswith(f"{src}:") for p in self.result.problems):
            self.problem(src, None, None, "empty file (expected a FHIR JSON resource or NDJSON lines)")

    # ---- resources -----------------------------------------------------------------
    def resource(self, data: Any, src: str, urls: dict[str, tuple[str, str]]) -> None:
        if not isinstance(data, dict):
            self.problem(src, None, None, f"expected a FHIR resource (JSON object), found {type(data).__name__}")
            return
        rtype = data.get("resourceType")
        rid = data.get("id") if isinstance(data.get("id"), str) else None
        if rtype == "Bundle":
            self._bundle(data, src)
            return
        self.result.n_resources += 1
        if not isinstance(rtype, str) or not rtype:
            self.problem(src, None, rid, "not a FHIR resource: no 'resourceType'")
            return
        handler = self.handlers.get(rtype)
        if handler is None:
            if _is_fhir_type(rtype):
                self.result.ignored[rtype] = self.result.ignored.get(rtype, 0) + 1
            else:
                self.problem(src, rtype, rid, f"unsupported resource type {rtype!r} (not a FHIR R4 resource "
                                              f"type; CLEF reads {', '.join(SUPPORTED_RESOURCE_TYPES)})")
            return
        if rid is not None:
            key = (rtype, rid)
            digest = hash(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str))
            if key in self.seen:
                if self.seen[key] != digest:
                    self.problem(src, rtype, rid, "duplicate resource id with different content; kept the first")
                return
            self.seen[key] = digest
        naive = repair_naive_datetimes(data)
        if naive:
            self.problem(src, rtype, rid, f"dateTime without a time zone at {', '.join(naive[:3])}"
                                          f"{' ...' if len(naive) > 3 else ''}: read as the local time it states "
                                          "(FHIR requires a zone); resource kept")
        try:
            model = _model(rtype).model_validate(data)
        except ValidationError as exc:
            self.problem(src, rtype, rid, _short_error(exc))
            if rtype == "Patient" and rid:
                self.bad_patients.add(rid)
            return
        except Exception as exc:  # noqa: BLE001 - a model bug must not lose the rest of the input
            self.problem(src, rtype, rid, f"invalid: {type(exc).__name__}: {exc}"[:200])
            return
        handler(model, src, urls)

    def _bundle(self, data: dict[str, Any], src: str) -> None:
        entries = data.get("entry") or []
        if not isinstance(entries, list):
            self.problem(src, "Bundle", data.get("id"), f"Bundle.entry must be a list, found {type(entries).__name__}")
            return
        urls: dict[str, tuple[str, str]] = {}
        resources: list[tuple[int, dict[str, Any]]] = []
        for i, entry in enumerate(entries):
            where = f"{src}#entry[{i}]"
            if not isinstance(entry, dict):
                self.problem(where, None, None, f"bundle entry must be an object, found {type(entry).__name__}")
                continue
            res = entry.get("resource")
            if res is None:
                method = str((entry.get("request") or {}).get("method", "")).upper()
                if method != "DELETE":
                    self.problem(where, None, None, "bundle entry has no resource"
                                 + (f" (fullUrl {entry['fullUrl']})" if entry.get("fullUrl") else ""))
                continue
            full_url = entry.get("fullUrl")
            if isinstance(res, dict) and isinstance(full_url, str):
                rtype = res.get("resourceType")
                if not res.get("id") and full_url.startswith("urn:uuid:"):
                    res = {**res, "id": full_url[len("urn:uuid:"):]}
                if isinstance(rtype, str) and isinstance(res.get("id"), str):
                    urls[full_url] = (rtype, res["id"])
            resources.append((i, res))
        for i, res in resources:
            self.resource(res, f"{src}#entry[{i}]", urls)

    # ---- references and dates ------------------------------------------------------
    @staticmethod
    def ref_id(ref: Any, rtype: str, urls: dict[str, tuple[str, str]]) -> str | None:
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

    def subject(self, model: Any, src: str, urls: dict[str, tuple[str, str]], field_name: str = "subject") -> str | None:
        pid = self.ref_id(getattr(model, field_name, None), "Patient", urls)
        if pid is None:
            self.problem(src, model.get_resource_type(), model.id,
                         f"no patient reference in {field_name} (expected 'Patient/<id>'); skipped")
            return None
        self.referenced.setdefault(pid, src)
        return pid

    def check_past(self, value: Any, day: dt.date | None, what: str, src: str, model: Any) -> dt.date | None:
        if day is not None and day > self.now:
            self.problem(src, model.get_resource_type(), model.id,
                         f"{what} {value} is in the future (after {self.now.isoformat()}); treated as unknown")
            return None
        return day

    # ---- handlers ------------------------------------------------------------------
    def _patient(self, p: Any, src: str, urls: dict[str, tuple[str, str]]) -> None:
        pid = p.id
        if not pid:
            self.problem(src, "Patient", None, "Patient has no id; skipped")
            return
        demo = _Demo()
        if p.gender is not None:
            if p.gender in _SEX:
                demo.sex = _SEX[p.gender]
            else:
                self.problem(src, "Patient", pid, f"invalid gender {p.gender!r} (expected male, female, other or "
                                                  "unknown); sex treated as unknown")
        demo.birth_date = self.check_past(p.birthDate, _as_date(p.birthDate), "birthDate", src, p)
        for ext in p.extension or []:
            if ext.url == US_CORE_RACE:
                demo.race = _race(ext)
            elif ext.url == US_CORE_ETHNICITY:
                demo.ethnicity = _ethnicity(ext)
        self.demo[pid] = demo

    def _organization(self, o: Any, src: str, urls: dict[str, tuple[str, str]]) -> None:
        if not o.id:
            return
        ident = next((i.value for i in o.identifier or [] if i.value), None)
        self.organizations[o.id] = ident or o.name or o.id

    def _encounter(self, e: Any, src: str, urls: dict[str, tuple[str, str]]) -> None:
        pid = self.subject(e, src, urls)
        if pid is None or not e.id:
            if pid is not None:
                self.problem(src, "Encounter", None, "Encounter has no id; skipped")
            return
        period = e.period
        start = _as_datetime(period.start) if period else None
        if start is not None and self.check_past(period.start, start.date(), "Encounter.period.start", src, e) is None:
            start = None
        end = _as_datetime(period.end) if period else None
        setting = None
        for concept in e.type or []:
            for c in _codings(concept):
                if _norm_system(c.system).endswith("eeg-care-setting") and c.code:
                    setting = c.code
                    break
            if setting:
                break
        care_class = getattr(e.class_fhir, "code", None) if e.class_fhir is not None else None
        sp = e.serviceProvider
        self.encounters.append(_PendingEncounter(
            pid, e.id, start, end, self.ref_id(sp, "Organization", urls),
            getattr(sp, "display", None) if sp is not None else None, setting, care_class))

    def _condition(self, c: Any, src: str, urls: dict[str, tuple[str, str]]) -> None:
        ver = {x.code for x in _codings(c.verificationStatus)}
        if ver & _DROP_STATUS:
            log.debug("dropping %s condition %s", ver, c.id)
            return
        pid = self.subject(c, src, urls)
        if pid is None:
            return
        rid = c.id or src
        found: list[str] = []
        chosen: tuple[str, str, str] | None = None
        for coding in _codings(c.code):
            found.append(f"{coding.system or '?'}|{coding.code or '?'}")
            if chosen is None and _is_icd_system(coding.system) and coding.code:
                try:
                    code = icd10_normalise(coding.code)
                except ValueError:
                    continue
                chosen = (code, coding.system, coding.display or "")
        if chosen is None:
            what = f"found codings {found}" if found else "Condition has no coding"
            self.problem(src, "Condition", c.id, f"no ICD-10-CM code ({what}); skipped")
            return
        code, system, display = chosen
        if not display:
            display = (c.code.text if c.code is not None else None) or icd10_description(code)
        onset_raw = c.onsetDateTime if c.onsetDateTime is not None else (c.onsetPeriod.start if c.onsetPeriod else None)
        onset = self.check_past(onset_raw, _as_date(onset_raw), "Condition onset", src, c)
        abate_raw = (c.abatementDateTime if c.abatementDateTime is not None
                     else (c.abatementPeriod.start if c.abatementPeriod else None))
        abatement = _as_date(abate_raw, end=False)
        self.conditions.setdefault(pid, []).append(ConditionEntry(code, system, display, onset, abatement, rid))

    def _medication_resource(self, m: Any, src: str, urls: dict[str, tuple[str, str]]) -> None:
        if m.id:
            self.medication_codes[m.id] = m.code

    def _medication(self, m: Any, src: str, urls: dict[str, tuple[str, str]]) -> None:
        rtype = m.get_resource_type()
        if m.status in _DROP_STATUS:
            log.debug("dropping %s %s with status %s", rtype, m.id, m.status)
            return
        pid = self.subject(m, src, urls)
        if pid is None:
            return
        rid = m.id or src
        if rtype == "MedicationRequest":
            vp = m.dispenseRequest.validityPeriod if m.dispenseRequest is not None else None
            start_raw = (vp.start if vp is not None and vp.start is not None else m.authoredOn)
            end_raw = vp.end if vp is not None else None
        else:
            ep = m.effectivePeriod
            if ep is not None:
                start_raw, end_raw = ep.start, ep.end
            else:
                start_raw = end_raw = m.effectiveDateTime
        start = self.check_past(start_raw, _as_date(start_raw), f"{rtype} start", src, m)
        end = _as_date(end_raw, end=True)
        concept = m.medicationCodeableConcept
        if concept is None and m.medicationReference is not None:
            ref = m.medicationReference.reference or ""
            if ref.startswith("#"):
                concept = next((r.code for r in m.contained or []
                                if r.get_resource_type() == "Medication" and r.id == ref[1:]), None)
                if concept is None:
                    self.problem(src, rtype, m.id, f"contained Medication {ref} not found; skipped")
                    return
            else:
                med_id = self.ref_id(m.medicationReference, "Medication", urls)
                if med_id is None:
                    self.problem(src, rtype, m.id, f"cannot resolve medicationReference {ref!r}; skipped")
                    return
                self.pending_meds.append(_PendingMedication(pid, med_id, start, end, rid, rtype, src))
                return
        self._add_medication(pid, concept, start, end, rid, rtype, m.id, src)

    def _add_medication(self, pid: str, concept: Any, start: dt.date | None, end: dt.date | None, rid: str,
                        rtype: str, model_id: str | None, src: str) -> None:
        mapped = _map_medication(concept)
        if isinstance(mapped, str):
            self.problem(src, rtype, model_id, mapped)
            return
        atc, rx, name, note = mapped
        if note:
            self.problem(src, rtype, model_id, note)
        self.medications.setdefault(pid, []).append(MedicationEntry(atc, rx, name, start, end, rid))

    def _procedure(self, p: Any, src: str, urls: dict[str, tuple[str, str]]) -> None:
        if p.status in _DROP_STATUS:
            return
        session_id = next((i.value for i in p.identifier or []
                           if i.value and _norm_system(i.system).endswith("eeg-session")), None)
        if session_id is None:
            is_eeg = any(_norm_system(c.system) == SNOMED_SYSTEM and c.code == SNOMED_EEG for c in _codings(p.code))
            if not is_eeg:
                return  # not an EEG session
            session_id = p.id or src
        pid = self.subject(p, src, urls)
        if pid is None:
            return
        start_raw = p.performedPeriod.start if p.performedPeriod is not None else p.performedDateTime
        start = _as_datetime(start_raw)
        if start is not None and self.check_past(start_raw, start.date(), "Procedure performed start", src, p) is None:
            start = None
        enc = self.ref_id(p.encounter, "Encounter", urls)
        self.sessions.setdefault(pid, []).append(SessionEntry(session_id, start, enc))

    # ---- records -------------------------------------------------------------------
    def finish(self) -> FhirLoadResult:
        for pm in self.pending_meds:
            concept = self.medication_codes.get(pm.medication_id)
            if concept is None:
                self.problem(pm.source, pm.resource_type, pm.resource_id.split("#")[0],
                             f"medicationReference Medication/{pm.medication_id} not found in the input; skipped")
                continue
            self._add_medication(pm.patient_id, concept, pm.start, pm.end, pm.resource_id, pm.resource_type,
                                 pm.resource_id, pm.source)
        encounters: dict[str, list[EncounterEntry]] = {}
        for pe in self.encounters:
            site = self.organizations.get(pe.org_id or "") or pe.org_display or pe.org_id
            encounters.setdefault(pe.patient_id, []).append(
                EncounterEntry(pe.encounter_id, pe.start, pe.end, site, pe.setting, pe.care_class))
        ids = set(self.demo) | set(self.conditions) | set(self.medications) | set(encounters) | set(self.sessions)
        for pid in sorted(ids - set(self.demo) - self.bad_patients):
            self.problem(self.referenced.get(pid, "?"), "Patient", pid,
                         "patient referenced but never defined; record built with unknown demographics")
        records: dict[str, PatientRecord] = {}
        for pid in sorted(ids):
            d = self.demo.get(pid, _Demo())
            records[pid] = PatientRecord(
                patient_id=pid, sex=d.sex, birth_date=d.birth_date, race=d.race, ethnicity=d.ethnicity,  # type: ignore[arg-type]
                conditions=tuple(sorted(self.conditions.get(pid, []),
                                        key=lambda c: (c.onset or dt.date.min, c.code, c.resource_id))),
                medications=tuple(sorted(self.medications.get(pid, []),
                                         key=lambda m: (m.start or dt.date.min, m.atc or "", m.resource_id))),
                encounters=tuple(sorted(encounters.get(pid, []), key=lambda e: (_sort_dt(e.start), e.encounter_id))),
                sessions=tuple(sorted(self.sessions.get(pid, []), key=lambda s: (_sort_dt(s.start), s.session_id))),
            )
        self.result.records = records
        return self.result


def _sort_dt(value: dt.datetime | None) -> tuple[int, float]:
    if value is None:
        return (0, 0.0)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (1, value.timestamp())


def _race(ext: Any) -> str | None:
    omb: set[str] = set()
    unknown = False
    text: str | None = None
    detailed = False
    for sub in ext.extension or []:
        coding = sub.valueCoding
        if sub.url == "ombCategory" and coding is not None:
            if coding.code in _OMB_RACE:
                omb.add(_OMB_RACE[coding.code])
            elif coding.code in _UNKNOWN_CODES:
                unknown = True
        elif sub.url == "detailed" and coding is not None:
            if coding.code in _OMB_RACE:
                omb.add(_OMB_RACE[coding.code])
            else:
                detailed = True
        elif sub.url == "text" and sub.valueString:
            text = sub.valueString
    if len(omb) == 1:
        return omb.pop()
    if len(omb) > 1:
        return "Other"  # more than one race: CLEF's 8 classes have no "multiple"
    if text:
        return _RACE_TEXT.get(" ".join(text.lower().split()), "Unknown" if unknown else "Other")
    if unknown:
        return "Unknown"
    return "Other" if detailed else None


def _ethnicity(ext: Any) -> str | None:
    text: str | None = None
    for sub in ext.extension or []:
        if sub.url == "ombCategory" and sub.valueCoding is not None and sub.valueCoding.code in _ETHNICITY:
            return _ETHNICITY[sub.valueCoding.code]
        if sub.url == "text" and sub.valueString:
            text = sub.valueString
    if text:
        t = text.strip().lower()
        if t.startswith(("not ", "non")):
            return "Not Hispanic or Latino"
        if "hispanic" in t or "latino" in t:
            return "Hispanic or Latino"
    return None


def _map_medication(concept: Any) -> tuple[str | None, str | None, str, str | None] | str:
    """(atc, rxnorm, name, note) for a medication concept, or the reason it cannot be mapped."""
    if concept is None:
        return "no medication code (no medicationCodeableConcept or medicationReference); skipped"
    atc: str | None = None
    rxnorms: list[str] = []
    names: list[str] = []
    for c in _codings(concept):
        system = _norm_system(c.system)
        code = (c.code or "").strip()
        if system in _ATC_LOWER and code and atc is None and is_atc_code(code.upper()):
            atc = code.upper()
        elif system in _RX_LOWER and code:
            rxnorms.append(code)
        if c.display:
            names.append(c.display)
    if concept.text:
        names.insert(0, concept.text)
    if atc is None:
        atc = next((a for a in (atc_for_rxnorm(r) for r in rxnorms) if a), None)
    if atc is None:
        atc = next((a for n in names for a in (atc_for_name(x) for x in _drug_name_candidates(n)) if a), None)
    rx = rxnorms[0] if rxnorms else (rxnorm_for_atc(atc) if atc else None)
    name = names[0] if names else (atc_name(atc) if atc else None) or atc or rx or ""
    if atc is None:
        if rx is not None:
            return None, rx, name, f"RxNorm {rx} ({name or 'no name'}) is not in the ATC table; kept without ATC"
        return (f"no mappable medication code: no ATC coding, RxNorm {rxnorms or 'none'}, names {names or 'none'} "
                "not in the ATC table; skipped")
    return atc, rx, name, None


def _iter_files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts) \
                and p.name.lower().endswith(_FILE_SUFFIXES):
            yield p


def load_fhir(path: str | Path, *, now: dt.date | dt.datetime | None = None, progress: bool = False) -> FhirLoadResult:
    """Read FHIR R4 resources into one de-identified record per patient.

    Parameters
    ----------
    path : str or Path
        A Bundle or single-resource JSON file, an NDJSON file (``.ndjson``, ``.jsonl``,
        optionally ``.gz``), or a directory searched recursively for such files.
    now : datetime.date or datetime.datetime, optional
        Start-like dates after this day are problems and read as unknown (default: today).
    progress : bool
        Show a ``rich`` progress bar over the files of a directory.

    Returns
    -------
    FhirLoadResult
        ``records`` (patient id → :class:`~ehr.record.PatientRecord`), ``problems``
        (one :class:`FhirProblem` per skipped or doubtful item), ``ignored`` counts.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    TypeError
        When ``now`` is not a date.

    Examples
    --------
    >>> res = load_fhir("hospital/fhir")                          # doctest: +SKIP
    >>> rec = res.records["P000001"]                              # doctest: +SKIP
    >>> rec.codes_at(rec.sessions[0].start).icd10                 # doctest: +SKIP
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"FHIR input not found: {root} (expected a .json/.ndjson file or a directory)")
    if now is None:
        today = dt.date.today()
    elif isinstance(now, dt.datetime):
        today = now.date()
    elif isinstance(now, dt.date):
        today = now
    else:
        raise TypeError(f"now must be a datetime.date or datetime.datetime, found {type(now).__name__}")
    loader = _Loader(today)
    if root.is_dir():
        files = list(_iter_files(root))
        if not files:
            log.warning("no *.json / *.ndjson files under %s", root)
        if progress and files:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"reading FHIR ({len(files)} files)", total=len(files))
                for f in files:
                    loader.load_file(f)
                    bar.advance(task)
        else:
            for f in files:
                loader.load_file(f)
    else:
        loader.load_file(root)
    result = loader.finish()
    if result.problems:
        log.warning("FHIR %s: %d patients from %d files, %d problems (first: %s: %s)", root, len(result.records),
                    result.n_files, len(result.problems), result.problems[0].source, result.problems[0].reason)
    else:
        log.info("FHIR %s: %d patients from %d files", root, len(result.records), result.n_files)
    if result.ignored:
        log.info("ignored resource types CLEF does not read: %s", result.ignored)
    return result

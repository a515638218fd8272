"""Reading FHIR input: files, NDJSON lines and bundles, each resource validated and read by its type.

:func:`load_fhir` is the entry point (the package docstring, :mod:`ehr.fhir`, says what
is read and how problems are reported).
"""

from __future__ import annotations

import datetime as dt
import gzip
import importlib
import importlib.util
import io
import json
import logging
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ehr.fhir.collector import Collector, Demographics, FhirLoadResult, Urls
from ehr.fhir.condition import read_condition
from ehr.fhir.encounter import encounter_entries, read_encounter, read_organization
from ehr.fhir.medication import read_medication, read_medication_resource, resolve_medication_references
from ehr.fhir.patient import read_patient
from ehr.fhir.procedure import read_procedure
from ehr.fhir.values import repair_naive_datetimes
from ehr.record import PatientRecord

__all__ = ["SUPPORTED_RESOURCE_TYPES", "load_fhir"]

log = logging.getLogger(__name__)

#: The reader of each resource type read (its model is in the ``fhir.resources.R4B`` module of its lower-case name).
_READERS: dict[str, Callable[[Collector, Any, str, Urls], None]] = {
    "Patient": read_patient,
    "Organization": read_organization,
    "Encounter": read_encounter,
    "Condition": read_condition,
    "MedicationStatement": read_medication,
    "MedicationRequest": read_medication,
    "MedicationAdministration": read_medication,
    "Medication": read_medication_resource,
    "Procedure": read_procedure,
}

#: Resource types read.
SUPPORTED_RESOURCE_TYPES: tuple[str, ...] = tuple(_READERS)

_FILE_SUFFIXES = (".json", ".ndjson", ".jsonl", ".json.gz", ".ndjson.gz", ".jsonl.gz")
_NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")


@cache
def _model(rtype: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}")
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


class _Reader:
    """Reads files, NDJSON lines and bundles, validates each resource and hands it to its reader."""

    def __init__(self, col: Collector) -> None:
        self.col = col
        self.result = col.result

    def problem(self, source: str, rtype: str | None, rid: str | None, reason: str) -> None:
        self.col.problem(source, rtype, rid, reason)

    # ---- files ---------------------------------------------------------------------
    def load_file(self, path: Path) -> None:
        self.result.n_files += 1
        name = path.name.lower()
        src = str(path)
        try:
            if path.stat().st_size == 0:
                self.problem(src, None, None, "empty file (expected a FHIR JSON resource or NDJSON lines)")
                return
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8-sig") as fh:
                if name.endswith(_NDJSON_SUFFIXES):
                    self._ndjson_lines(fh, src)
                    return
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
    def resource(self, data: Any, src: str, urls: Urls) -> None:
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
        handler = _READERS.get(rtype)
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
            if key in self.col.seen:
                if self.col.seen[key] != digest:
                    self.problem(src, rtype, rid, "duplicate resource id with different content; kept the first")
                return
            self.col.seen[key] = digest
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
                self.col.bad_patients.add(rid)
            return
        except Exception as exc:  # noqa: BLE001 - a model bug must not lose the rest of the input
            self.problem(src, rtype, rid, f"invalid: {type(exc).__name__}: {exc}"[:200])
            return
        handler(self.col, model, src, urls)

    def _bundle(self, data: dict[str, Any], src: str) -> None:
        entries = data.get("entry") or []
        if not isinstance(entries, list):
            self.problem(src, "Bundle", data.get("id"), f"Bundle.entry must be a list, found {type(entries).__name__}")
            return
        urls: Urls = {}
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
    # ---- the whole input ----------------------------------------------------------
    def finish(self) -> FhirLoadResult:
        resolve_medication_references(self.col)
        self.result.records = _records(self.col)
        return self.result


def _records(col: Collector) -> dict[str, PatientRecord]:
    """One record per patient met anywhere in the input, its entries in time order."""
    encounters = encounter_entries(col)
    ids = set(col.demo) | set(col.conditions) | set(col.medications) | set(encounters) | set(col.sessions)
    for pid in sorted(ids - set(col.demo) - col.bad_patients):
        col.problem(col.referenced.get(pid, "?"), "Patient", pid,
                    "patient referenced but never defined; record built with unknown demographics")
    records: dict[str, PatientRecord] = {}
    for pid in sorted(ids):
        d = col.demo.get(pid, Demographics())
        records[pid] = PatientRecord(
            patient_id=pid, sex=d.sex, birth_date=d.birth_date, race=d.race, ethnicity=d.ethnicity,  # type: ignore[arg-type]
            conditions=tuple(sorted(col.conditions.get(pid, []),
                                    key=lambda c: (c.onset or dt.date.min, c.code, c.resource_id))),
            medications=tuple(sorted(col.medications.get(pid, []),
                                     key=lambda m: (m.start or dt.date.min, m.atc or "", m.resource_id))),
            encounters=tuple(sorted(encounters.get(pid, []), key=lambda e: (_sort_dt(e.start), e.encounter_id))),
            sessions=tuple(sorted(col.sessions.get(pid, []), key=lambda s: (_sort_dt(s.start), s.session_id))),
        )
    return records


def _sort_dt(value: dt.datetime | None) -> tuple[int, float]:
    if value is None:
        return (0, 0.0)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (1, value.timestamp())


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
    loader = _Reader(Collector(today))
    if root.is_dir():
        files = list(_iter_files(root))
        if not files:
            log.warning("no *.json / *.ndjson files under %s", root)
        if progress and files:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                for f in bar.track(files, description=f"reading FHIR ({len(files)} files)"):
                    loader.load_file(f)
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

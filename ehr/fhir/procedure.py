"""FHIR ``Procedure``: the EEG sessions (other procedures are ignored)."""

from __future__ import annotations

from typing import Any

from ehr.fhir.collector import Collector, Urls
from ehr.fhir.values import DROP_STATUS, SNOMED_EEG, SNOMED_SYSTEM, as_datetime, codings, norm_system
from ehr.record import SessionEntry

__all__ = ["read_procedure"]


def read_procedure(col: Collector, p: Any, src: str, urls: Urls) -> None:
    """An EEG session: a ``Procedure`` with an ``eeg-session`` identifier or coded SNOMED CT 54550000."""
    if p.status in DROP_STATUS:
        return
    session_id = next((i.value for i in p.identifier or []
                       if i.value and norm_system(i.system).endswith("eeg-session")), None)
    if session_id is None:
        is_eeg = any(norm_system(c.system) == SNOMED_SYSTEM and c.code == SNOMED_EEG for c in codings(p.code))
        if not is_eeg:
            return  # not an EEG session
        session_id = p.id or src
    pid = col.subject(p, src, urls)
    if pid is None:
        return
    start_raw = p.performedPeriod.start if p.performedPeriod is not None else p.performedDateTime
    start = as_datetime(start_raw)
    if start is not None and col.check_past(start_raw, start.date(), "Procedure performed start", src, p) is None:
        start = None
    enc = col.ref_id(p.encounter, "Encounter", urls)
    col.sessions.setdefault(pid, []).append(SessionEntry(session_id, start, enc))

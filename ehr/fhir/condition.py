"""FHIR ``Condition``: an ICD-10-CM code with onset and abatement dates."""

from __future__ import annotations

import logging
from typing import Any

from ehr.codes import icd10_description, icd10_normalise
from ehr.fhir.collector import Collector, Urls
from ehr.fhir.values import DROP_STATUS, as_date, codings, is_icd_system
from ehr.record import ConditionEntry

__all__ = ["read_condition"]

log = logging.getLogger(__name__)


def read_condition(col: Collector, c: Any, src: str, urls: Urls) -> None:
    """A ``Condition``: its ICD-10-CM code (normalised, validated), onset and abatement."""
    ver = {x.code for x in codings(c.verificationStatus)}
    if ver & DROP_STATUS:
        log.debug("dropping %s condition %s", ver, c.id)
        return
    pid = col.subject(c, src, urls)
    if pid is None:
        return
    rid = c.id or src
    found: list[str] = []
    chosen: tuple[str, str, str] | None = None
    for coding in codings(c.code):
        found.append(f"{coding.system or '?'}|{coding.code or '?'}")
        if chosen is None and is_icd_system(coding.system) and coding.code:
            try:
                code = icd10_normalise(coding.code)
            except ValueError:
                continue
            chosen = (code, coding.system, coding.display or "")
    if chosen is None:
        what = f"found codings {found}" if found else "Condition has no coding"
        col.problem(src, "Condition", c.id, f"no ICD-10-CM code ({what}); skipped")
        return
    code, system, display = chosen
    if not display:
        display = (c.code.text if c.code is not None else None) or icd10_description(code)
    onset_raw = c.onsetDateTime if c.onsetDateTime is not None else (c.onsetPeriod.start if c.onsetPeriod else None)
    onset = col.check_past(onset_raw, as_date(onset_raw), "Condition onset", src, c)
    abate_raw = (c.abatementDateTime if c.abatementDateTime is not None
                 else (c.abatementPeriod.start if c.abatementPeriod else None))
    abatement = as_date(abate_raw, end=False)
    col.conditions.setdefault(pid, []).append(ConditionEntry(code, system, display, onset, abatement, rid))

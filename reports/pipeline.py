"""Report files to processed reports: read safely, split, scrub, summarise, extract findings.

Order of :func:`process_report`: parse sections → scrub PHI (whole text and the
electrographic text) → summarise the scrubbed electrographic text → extract findings
from the scrubbed text. Nothing downstream ever sees unscrubbed text except the
sections, which are kept for inspection.

:func:`read_report` refuses what is not a report with a :class:`~reports.errors.ReportError`
whose ``kind`` says why (``not_found``, ``not_a_file``, ``empty``, ``binary``,
``too_large``, ``unreadable``); :func:`process_reports` runs a batch, skipping (and
recording) or raising on such files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from reports.errors import ReportError
from reports.findings import FindingMention, extract_findings, labels_from_mentions
from reports.phi import PhiConfig, scrub_phi
from reports.sections import ReportSections, parse_sections
from reports.summarise import ExtractiveSummariser, Summariser

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ProcessedReport",
    "process_report",
    "process_reports",
    "read_report",
]

logger = logging.getLogger(__name__)

#: Largest report file read by default (1 MB; a long EMU report is ~20 kB).
DEFAULT_MAX_BYTES = 1_000_000
_NONPRINTABLE_MAX = 0.30
#: Least fraction of ASCII letters, digits and spaces in a report that is not UTF-8 (cp1252 /
#: latin-1 decode any bytes: random binary holds about a quarter).
_PLAIN_MIN = 0.5


@dataclass(frozen=True)
class ProcessedReport:
    """One report after :func:`process_report`.

    Attributes
    ----------
    sections : ReportSections
        Sections of the *raw* text (may hold PHI; for inspection only).
    scrubbed : str
        The whole text, PHI replaced by placeholders.
    electrographic : str
        Scrubbed electrographic text (description, impression, correlation).
    summary : str
        Summary of ``electrographic`` by the summariser.
    findings : list of FindingMention
        Findings read from the scrubbed text.
    labels : dict of str to int
        Binary labels over :data:`reports.findings.REPORT_FINDINGS` (present only).
    """

    sections: ReportSections
    scrubbed: str
    electrographic: str
    summary: str
    findings: list[FindingMention] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _default_summariser() -> ExtractiveSummariser:
    return ExtractiveSummariser()


def process_report(text: str, summariser: Summariser | None = None, *,
                   phi_config: PhiConfig | None = None) -> ProcessedReport:
    """Process one report text.

    Parameters
    ----------
    text : str
        Raw report text.
    summariser : Summariser, optional
        Default: an :class:`~reports.summarise.ExtractiveSummariser` with keyword ranking.
    phi_config : PhiConfig, optional
        Options of :func:`reports.phi.scrub_phi`.

    Returns
    -------
    ProcessedReport
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, found {type(text).__name__}")
    summariser = summariser or _default_summariser()
    sections = parse_sections(text)
    scrubbed = scrub_phi(text, config=phi_config).text
    electrographic = parse_sections(scrubbed).electrographic_text()
    summary = summariser.summarise(electrographic)
    findings = extract_findings(scrubbed)
    return ProcessedReport(sections=sections, scrubbed=scrubbed, electrographic=electrographic, summary=summary,
                           findings=findings, labels=labels_from_mentions(findings))


def _decode(raw: bytes, path: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte-order mark (some Windows exports)
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as e:
            raise ReportError(f"{path}: has a UTF-16 byte-order mark but does not decode as UTF-16 ({e})",
                              kind="unreadable", path=path) from e
    if b"\x00" in raw:
        raise ReportError(f"{path}: expected a text report, found binary content (NUL bytes)", kind="binary",
                          path=path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    for enc in ("cp1252", "latin-1"):
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        stripped = text.strip()
        plain = sum(1 for c in stripped if c.isascii() and (c.isalnum() or c.isspace()))
        if stripped and plain / len(stripped) < _PLAIN_MIN:
            # cp1252 / latin-1 decode any bytes; Western text in them is mostly ASCII letters
            raise ReportError(f"{path}: expected a text report, found binary content (not UTF-8, and only "
                              f"{plain / len(stripped):.0%} ASCII letters, digits and spaces as {enc})",
                              kind="binary", path=path)
        logger.warning("%s: not valid UTF-8; decoded as %s", path, enc)
        return text
    raise ReportError(f"{path}: could not be decoded as UTF-8, cp1252 or latin-1", kind="unreadable",
                      path=path)  # pragma: no cover - latin-1 decodes any bytes


def read_report(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Read a report file as text.

    Parameters
    ----------
    path : str or path-like
    max_bytes : int
        Larger files are refused (default :data:`DEFAULT_MAX_BYTES`).

    Returns
    -------
    str
        The text (UTF-8, else cp1252, else latin-1, with a logged warning; UTF-16 with a
        byte-order mark is accepted).

    Raises
    ------
    ReportError
        ``kind`` "not_found", "not_a_file", "too_large", "binary" (NUL bytes, or more
        than 30% non-printable characters), "empty" (nothing but whitespace) or
        "unreadable".
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, found {max_bytes}")
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise ReportError(f"{name}: no such report file", kind="not_found", path=name)
    if not p.is_file():
        raise ReportError(f"{name}: expected a report file, found a directory or special file", kind="not_a_file",
                          path=name)
    size = p.stat().st_size
    if size > max_bytes:
        raise ReportError(f"{name}: {size} bytes, larger than the {max_bytes}-byte limit for a report",
                          kind="too_large", path=name)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ReportError(f"{name}: cannot be read ({e})", kind="unreadable", path=name) from e
    text = _decode(raw, name)
    stripped = text.strip()
    if not stripped:
        raise ReportError(f"{name}: expected report text, found an empty or whitespace-only file", kind="empty",
                          path=name)
    bad = sum(1 for c in stripped if not (c.isprintable() or c in "\n\r\t\f\v"))
    if bad / len(stripped) > _NONPRINTABLE_MAX:
        raise ReportError(f"{name}: expected text, found {bad / len(stripped):.0%} non-printable characters "
                          f"(binary content)", kind="binary", path=name)
    return text


def process_reports(
    paths: Iterable[str | os.PathLike[str]],
    summariser: Summariser | None = None,
    *,
    on_error: Literal["skip", "raise"] = "skip",
    progress: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    phi_config: PhiConfig | None = None,
) -> tuple[dict[str, ProcessedReport], list[tuple[str, str]]]:
    """Read and process many report files.

    Parameters
    ----------
    paths : iterable of str or path-like
    summariser : Summariser, optional
        As in :func:`process_report`.
    on_error : {"skip", "raise"}
        ``skip`` (default) logs a warning, records the file and goes on; ``raise``
        re-raises the first error.
    progress : bool
        Show a progress bar (``rich``).
    max_bytes : int
        As in :func:`read_report`.
    phi_config : PhiConfig, optional

    Returns
    -------
    processed : dict of str to ProcessedReport
        By path (as given, converted to str), in input order.
    skipped : list of (str, str)
        ``(path, reason)`` for every file not processed; ``len(processed) +
        len(skipped)`` equals the number of paths.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', found {on_error!r}")
    items = [str(p) for p in paths]
    summariser = summariser or _default_summariser()
    done: dict[str, ProcessedReport] = {}
    skipped: list[tuple[str, str]] = []

    def one(path: str) -> None:
        if path in done:
            skipped.append((path, "duplicate path (already processed)"))
            return
        try:
            done[path] = process_report(read_report(path, max_bytes=max_bytes), summariser, phi_config=phi_config)
        except ReportError as e:
            if on_error == "raise":
                raise
            logger.warning("skipped report %s: %s", path, e)
            skipped.append((path, f"{e.kind}: {e}"))
        except Exception as e:
            if on_error == "raise":
                raise
            logger.exception("failed to process report %s", path)
            skipped.append((path, f"error: {type(e).__name__}: {e}"))

    if progress and items:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("reports"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=True) as bar:
            for path in bar.track(items, description="reports"):
                one(path)
    else:
        for path in items:
            one(path)
    if skipped:
        logger.info("processed %d reports, skipped %d", len(done), len(skipped))
    return done, skipped

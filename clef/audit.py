"""Archive audit: what an archive holds and what will be embedded, in one table.

``clef audit ARCHIVE`` indexes every EDF/BDF file under a folder from its header alone
(as braindecode indexes a dataset): format, EEG rate, label style, reference scheme,
montage, duration, the patient field (known ID or placeholder: counted, never shown), and
the reader's verdict where the header decides it (not EDF, truncated, corrupt header, no
signals, no EEG channels, bipolar montage that cannot be converted, dense cap, too few
channels, unit, rate, too short). ``data=True`` (``--data``) reads every file as
``clef embed`` will: flat and railed channels, EDF+D segments, and the mains frequency in
the signal need the samples. The result counts files per value and per refusal reason
(the :class:`tokenizer.IngestError` kind), as JSON or Markdown.

The checks a recording needs beyond reading it (:func:`recording_checks`: long enough for
one spectrogram window, mains against the contract's notch) are shared with
``clef inspect``.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tokenizer import IngestError, Recording, SignalContract, read_header, read_recording
from tokenizer.channels import KNOWN_ELECTRODES, ChannelMapping, map_channels
from tokenizer.deid import deidentify
from tokenizer.edf_header import EDFHeader
from tokenizer.errors import TooShortError
from tokenizer.ingest import check_signals, plan_channels
from tokenizer.mains import MainsEstimate, detect_mains
from tokenizer.spectrogram_cache import find_recordings

log = logging.getLogger(__name__)

#: Shown where a file's value cannot be known (failed before that point).
UNKNOWN = "—"
#: Ear and mastoid names stay in a label style: they name the reference, not the electrode.
_REFERENCE_SITES = frozenset({"a1", "a2", "m1", "m2"})


def label_style(labels: Iterable[str]) -> str:
    """The label style of a file: its EEG labels with every 10-20 electrode name written X.

    ``EEG FP1-REF`` → ``EEG X-REF``, ``EEG Fp1-Ref`` → ``EEG X-Ref``, ``Fc5.`` / ``Cz..``
    (BCI2000) → ``X.``, ``FP1-F7`` → ``X-X`` (bipolar); ear and mastoid references stay
    (``EEG X-A2``). Several styles in one file are joined with ``|``, most common first.
    """
    def one(label: str) -> str:
        s = re.sub(r"[A-Za-z]+\d*[A-Za-z]?", lambda m: "X" if m.group(0).lower() in KNOWN_ELECTRODES
                   and m.group(0).lower() not in _REFERENCE_SITES else m.group(0), label.strip())
        return re.sub(r"X\.+$", "X.", s)

    counts = Counter(one(x) for x in labels)
    if not counts:
        return UNKNOWN
    top = [s for s, _ in counts.most_common(3)]
    return " | ".join(top) + (" | …" if len(counts) > 3 else "")


def _montage(mapping: ChannelMapping, contract: SignalContract) -> str:
    if getattr(mapping, "dense_cap", None):
        return "dense cap"
    if mapping.bipolar and len(mapping.mapped) < contract.min_channels:
        return "bipolar"
    return "referential" if mapping.mapped else "none"


def recording_checks(rec: Recording, contract: SignalContract,
                     header: EDFHeader | None = None) -> tuple[MainsEstimate, list[str], IngestError | None]:
    """What a read recording still needs checked before it is embedded.

    Parameters
    ----------
    rec : Recording
    contract : SignalContract
        The contract it was read under (its notch and spectrogram window).
    header : EDFHeader, optional
        The file's header when already read.

    Returns
    -------
    mains : MainsEstimate
        Line-noise peak of the raw EEG (before the notch).
    warnings : list of str
        The mains differs from the contract's notch.
    problem : IngestError or None
        :class:`tokenizer.TooShortError` when no continuous segment holds one
        spectrogram window: such a file is not ``ok`` (nothing to embed).
    """
    header = header or read_header(rec.source_path)
    labels = set(rec.channel_report.mapped.values())
    if not any(s.label in labels for s in header.data_signals):
        labels = None  # converted or aliased channels: every signal (the median is robust)
    mains = detect_mains(header, labels)
    note = mains.mismatch(contract.filters.notch_freq)
    try:
        rec.check_long_enough(contract)
        problem = None
    except IngestError as exc:
        problem = exc
    return mains, [note] if note else [], problem


@dataclass
class FileAudit:
    """One file of an audit (free of PHI: no names, IDs or dates).

    ``ok`` means it will be embedded; otherwise ``error_kind`` is the reason (an
    :class:`tokenizer.IngestError` kind) and ``error`` the reader's message.
    """

    path: str
    ok: bool
    error_kind: str | None = None
    error: str | None = None
    format: str | None = None
    sfreq_in: float | None = None
    duration_s: float | None = None
    label_style: str = UNKNOWN
    reference: str = UNKNOWN
    montage: str = UNKNOWN
    patient_id: str = UNKNOWN  # "known" or "placeholder/none"
    truncated_tail_s: float = 0.0
    mains_hz: float | None = None
    mains_mismatch: bool = False
    warnings: list[str] = field(default_factory=list)


def audit_file(path: str | Path, contract: SignalContract | None = None, *, data: bool = False,
               strict: bool = False, root: str | Path | None = None) -> FileAudit:
    """Audit one file (header only unless ``data``); never raises for a bad file.

    Parameters
    ----------
    path : path
    contract : SignalContract, optional
    data : bool
        Read the signal too (as ``clef embed`` will), and detect the mains frequency.
    strict : bool
        Refuse files cut short (see :func:`tokenizer.read_header`).
    root : path, optional
        Paths are reported relative to it.
    """
    contract = contract or SignalContract()
    p = Path(path)
    rel = p.relative_to(root).as_posix() if root is not None else str(p)
    fa = FileAudit(path=rel, ok=False)

    def refuse(exc: IngestError) -> FileAudit:
        fa.error_kind, fa.error = exc.kind, " ".join(str(exc).replace(str(p), rel).split())
        return fa

    try:
        header = read_header(p, strict=strict)
    except IngestError as exc:
        return refuse(exc)
    fa.format, fa.duration_s = header.format, round(header.duration_s, 3)
    fa.truncated_tail_s = header.truncated_tail_s
    fa.warnings += list(header.warnings)
    deid, _ = deidentify(header.patient, header.recording, header.startdate)
    fa.patient_id = "known" if deid.patient_hash else "placeholder/none"
    labels = [s.label for s in header.signals]
    mapping = map_channels(labels, contract.channels, [s.is_annotation for s in header.signals])
    used = list(mapping.labels.values()) or list(mapping.bipolar)
    fa.label_style = getattr(mapping, "dense_cap", None) or label_style(used)
    fa.reference = str(getattr(mapping, "reference", "unknown"))
    fa.montage = _montage(mapping, contract)
    sigs = [header.signals[i] for i in mapping.mapped.values()] or list(header.data_signals)
    if sigs:
        fa.sfreq_in = Counter(header.sfreq_of(s) for s in sigs).most_common(1)[0][0]
    if not data:
        try:
            planned = plan_channels(header, contract)
            check_signals(header, {c: header.signals[i] for c, i in planned.mapped.items()}, contract)
        except IngestError as exc:
            return refuse(exc)
        if header.duration_s < contract.spectrogram.window_s:
            return refuse(TooShortError(
                p, f"expected at least one {contract.spectrogram.window_s:g} s spectrogram window, found "
                f"{header.duration_s:g} s of records: too short to embed"))
        fa.ok = True
        return fa
    try:
        rec = read_recording(p, contract, strict=strict)
    except IngestError as exc:
        return refuse(exc)
    fa.warnings = list(rec.warnings)
    mains, notes, problem = recording_checks(rec, contract, header)
    fa.mains_hz, fa.mains_mismatch = mains.freq, bool(notes)
    fa.warnings += notes
    if problem is not None:
        return refuse(problem)
    fa.ok = True
    return fa


@dataclass
class ArchiveAudit:
    """An archive audit: one :class:`FileAudit` per file and the counts over them."""

    root: str
    mode: str  # "headers" or "data"
    files: list[FileAudit]
    seconds: float
    contract_notch: float | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """``{dimension: {value: files}}`` for format, rate, label style, reference,
        montage, patient ID, outcome (and mains in data mode)."""
        def tally(values: Iterable[Any]) -> dict[str, int]:
            return dict(Counter(values).most_common())

        read = [f for f in self.files if f.format is not None]
        out = {
            "format": tally(f.format for f in read),
            "EEG rate": tally(f"{f.sfreq_in:g} Hz" if f.sfreq_in else UNKNOWN for f in read),
            "label style": tally(f.label_style for f in read),
            "reference": tally(f.reference for f in read),
            "montage": tally(f.montage for f in read),
            "patient ID": tally(f.patient_id for f in read),
        }
        if self.mode == "data":
            notch = f"{self.contract_notch:g} Hz notch" if self.contract_notch else "no notch"
            out["mains (detected)"] = tally(
                (f"{f.mains_hz:g} Hz" + (f" (≠ the {notch})" if f.mains_mismatch else "")) if f.mains_hz else "none"
                for f in self.files if f.ok)
        cut = [f for f in self.files if f.truncated_tail_s > 0]
        if cut:
            out["truncated tail"] = {f"{len(cut)} files, {sum(f.truncated_tail_s for f in cut):g} s lost": len(cut)}
        out["outcome"] = tally("embedded" if f.ok else f"not embedded: {f.error_kind}" for f in self.files)
        return out

    def reasons(self) -> dict[str, dict[str, Any]]:
        """``{error kind: {"files": n, "example": first message}}`` of the files not embedded."""
        out: dict[str, dict[str, Any]] = {}
        for f in self.files:
            if not f.ok:
                r = out.setdefault(str(f.error_kind), {"files": 0, "example": f.error})
                r["files"] += 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["files"]))

    @property
    def n_ok(self) -> int:
        """Files that will be embedded."""
        return sum(f.ok for f in self.files)

    def to_dict(self, *, files: bool = True) -> dict[str, Any]:
        """JSON-ready audit (``files``: include the per-file rows)."""
        d: dict[str, Any] = {"root": self.root, "mode": self.mode, "files_total": len(self.files),
                             "embedded": self.n_ok, "not_embedded": len(self.files) - self.n_ok,
                             "seconds": round(self.seconds, 3), "contract_notch_hz": self.contract_notch,
                             "counts": self.counts(), "reasons": self.reasons()}
        if self.mode == "data":
            d["mains_mismatch"] = sum(f.mains_mismatch for f in self.files)
        if files:
            d["files"] = [asdict(f) for f in self.files]
        return d

    def to_markdown(self, *, title: str | None = None, examples: bool = True) -> str:
        """The audit as one Markdown table (dimension, value, files), plus one example
        message per refusal reason when ``examples``."""
        n = len(self.files)
        lines = [f"**{title or self.root}**: {n} files, {self.n_ok} will be embedded, {n - self.n_ok} not; "
                 f"read from {'headers only' if self.mode == 'headers' else 'headers and data'} in "
                 f"{self.seconds:.2f} s.", "", "| | value | files |", "|---|---|---:|"]
        for dim, values in self.counts().items():
            for k, (value, count) in enumerate(values.items()):
                cell = str(value).replace("|", "\\|")
                lines.append(f"| {dim if k == 0 else ''} | {cell} | {count} |")
        if examples and self.reasons():
            lines += ["", "Why the rest will not be embedded (one example each):", ""]
            for kind, r in self.reasons().items():
                lines.append(f"- `{kind}` ({r['files']}): {r['example']}")
        return "\n".join(lines) + "\n"


def audit_archive(root: str | Path, contract: SignalContract | None = None, *, data: bool = False,
                  strict: bool = False, threads: int | None = None,
                  on_file: Callable[[FileAudit], None] | None = None) -> ArchiveAudit:
    """Audit every EDF/BDF file under ``root`` (recursive, suffix in any case).

    Parameters
    ----------
    root : path
        Archive folder.
    contract : SignalContract, optional
        Contract the files would be embedded under (default: base).
    data : bool
        Read every file's signal too (slower: as long as reading the archive once).
    strict : bool
        Refuse files cut short instead of reading their complete records.
    threads : int, optional
        Threads (default 8 from headers, I/O bound; 1 with ``data``, whose reader uses
        two threads per file already).
    on_file : callable, optional
        Called with each :class:`FileAudit` as it is done (a progress bar).

    Raises
    ------
    FileNotFoundError
        ``root`` is not a directory.
    """
    contract = contract or SignalContract()
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, found {threads}")
    t0 = time.perf_counter()
    paths = find_recordings(root)
    n = threads or (1 if data else 8)

    def one(p: Path) -> FileAudit:
        fa = audit_file(p, contract, data=data, strict=strict, root=root)
        if on_file is not None:
            on_file(fa)
        return fa

    with ThreadPoolExecutor(n) as pool:
        files = list(pool.map(one, paths))
    return ArchiveAudit(root=str(root), mode="data" if data else "headers", files=files,
                        seconds=time.perf_counter() - t0, contract_notch=contract.filters.notch_freq)


__all__ = ["ArchiveAudit", "FileAudit", "audit_archive", "audit_file", "label_style", "recording_checks"]

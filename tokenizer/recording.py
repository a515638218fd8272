"""The ``Recording``: one session in canonical form (ARCHITECTURE.md, "Contracts")."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokenizer.contract import SignalContract
from tokenizer.deid import Deidentified
from tokenizer.edf_data import Annotation
from tokenizer.errors import ContractMismatchError, TooShortError
from tokenizer.header_facts import HeaderFacts


@dataclass(frozen=True)
class ChannelReport:
    """How the source channels were used.

    Attributes
    ----------
    mapped : dict
        ``{canonical name: source label}``.
    missing : list of str
        Canonical electrodes absent from the file (masked, zero-filled, never invented).
    excluded : dict
        ``{source label: reason}`` for every channel not used.
    units : dict
        ``{canonical name: unit as written in the header}``.
    aliases : dict
        ``{source label: target}`` applied from a channel map (empty without one).
    reference : str
        Reference scheme of the mapped channels, from their labels as recorded
        (:data:`tokenizer.channels.SCHEMES`: ``REF``, ``LE``, ``AVG``, ``MAST``, ``EAR``,
        ``CZ``, ``bipolar``, ``unknown`` or ``mixed``).
    reference_counts : dict
        ``{scheme: number of mapped channels}`` (several when ``reference`` is ``mixed``).
    """

    mapped: dict[str, str]
    missing: list[str]
    excluded: dict[str, str]
    units: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)
    reference: str = "unknown"
    reference_counts: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False, kw_only=True)
class RecordingInfo:
    """What reading a file decided about a session, without its samples.

    A long recording is streamed (:class:`tokenizer.ingest.RecordingStream`): its
    samples pass block by block and only this summary remains; a :class:`Recording`
    adds the samples.

    Attributes
    ----------
    channel_mask : ndarray, shape (n_channels,), bool
        True for electrodes present in the file.
    sfreq : float
        Sampling rate (Hz) of the signal (the contract rate).
    channels : tuple of str
        Canonical channel names.
    source_path : str
        File it was read from.
    source_sha256 : str
        SHA-256 of the file's bytes.
    format : str
        ``EDF``, ``EDF+C``, ``EDF+D``, ``BDF``, ``BDF+C`` or ``BDF+D``.
    sfreq_in : float
        EEG sampling rate found in the file.
    annotations : tuple of Annotation
        Onsets relative to the first sample.
    deid : Deidentified
        Sex, age at recording, salted patient hash.
    channel_report : ChannelReport
        Mapping, missing and excluded channels, units.
    segments : tuple of (float, float)
        Continuous segments as (start, stop) seconds; one for continuous files.
    n_samples : int
        Samples per channel (gaps of discontinuous files included).
    recorded_samples : int
        Samples actually recorded (gaps excluded).
    warnings : tuple of str
        Everything the reader had to decide (free of PHI).
    contract_digest : str
        Digest of the contract the data satisfies.
    truncated_tail_s : float
        Seconds the header announced but the file did not hold (an incomplete last
        record: a crashed or half-copied recording); 0 for a complete file.
    montage : dict or None
        For a file converted from a bipolar montage (:mod:`tokenizer.montage`): derivations
        found and used, electrodes recovered and masked, repeats dropped, loop residual;
        None for a referential file.
    nominal_duration_s : float
        Data records × record duration, as the header gives them (gaps of EDF+D not
        included; complete records only).
    """

    channel_mask: np.ndarray
    sfreq: float
    channels: tuple[str, ...]
    source_path: str
    source_sha256: str
    format: str
    sfreq_in: float
    annotations: tuple[Annotation, ...]
    deid: Deidentified
    channel_report: ChannelReport
    segments: tuple[tuple[float, float], ...]
    n_samples: int
    recorded_samples: int
    warnings: tuple[str, ...] = field(default_factory=tuple)
    contract_digest: str = ""
    truncated_tail_s: float = 0.0
    montage: dict[str, object] | None = None
    nominal_duration_s: float = 0.0

    @property
    def duration_s(self) -> float:
        """Duration in seconds (gaps of discontinuous files included)."""
        return self.n_samples / self.sfreq

    @property
    def recorded_s(self) -> float:
        """Seconds of actually recorded signal (gaps excluded)."""
        return self.recorded_samples / self.sfreq

    @property
    def longest_segment_s(self) -> float:
        """Length (s) of the longest continuous segment (the whole file when continuous)."""
        return max((b - a for a, b in self.segments), default=0.0)

    def check_long_enough(self, contract: SignalContract) -> None:
        """Raise :class:`~tokenizer.TooShortError` unless a continuous segment holds one
        spectrogram window of ``contract`` (4 s in base): shorter recordings have no
        spectrogram frame, so nothing to tokenize or embed.
        """
        need = contract.spectrogram.window_s
        have = self.longest_segment_s
        if have < need:
            where = "recording" if len(self.segments) <= 1 else f"longest of its {len(self.segments)} segments"
            raise TooShortError(
                self.source_path, f"expected at least one {need:g} s spectrogram window of continuous signal, "
                f"found {have:g} s (the {where}): too short to embed"
            )

    @property
    def facts(self) -> HeaderFacts:
        """The de-identified header facts of the source file (what a store keeps of it)."""
        return HeaderFacts(format=self.format, duration_s=self.nominal_duration_s, sex=self.deid.sex,
                           age_years=self.deid.age_years, patient_hash=self.deid.patient_hash,
                           reference=self.channel_report.reference)

    def summary(self) -> dict[str, object]:
        """JSON-ready description (the ``clef inspect --json`` record), free of PHI."""
        return {
            "path": self.source_path,
            "ok": True,
            "error": None,
            "format": self.format,
            "duration_s": round(self.duration_s, 3),
            "recorded_s": round(self.recorded_s, 3),
            "sfreq_in": self.sfreq_in,
            "sfreq_out": self.sfreq,
            "sha256": self.source_sha256,
            "channels": {
                "mapped": dict(self.channel_report.mapped),
                "missing": list(self.channel_report.missing),
                "excluded": list(self.channel_report.excluded),
                "excluded_reasons": dict(self.channel_report.excluded),
                "aliases": dict(self.channel_report.aliases),
            },
            "units": dict(self.channel_report.units),
            "reference": self.channel_report.reference,
            "reference_counts": dict(self.channel_report.reference_counts),
            "segments": [list(s) for s in self.segments],
            "annotations": len(self.annotations),
            "deid": self.deid.to_dict(),
            "truncated_tail_s": round(self.truncated_tail_s, 3),
            "montage": dict(self.montage) if self.montage else {"kind": "referential"},
            "warnings": list(self.warnings),
        }


@dataclass(eq=False, kw_only=True)
class Recording(RecordingInfo):
    """One EEG session in canonical form: :class:`RecordingInfo` and its samples.

    Attributes
    ----------
    data : ndarray, shape (n_channels, n_samples), float32
        Signal in µV, canonical channel order; zeros where ``channel_mask`` or
        ``sample_mask`` is False.
    sample_mask : ndarray, shape (n_samples,), bool
        True for recorded samples; False in the gaps of a discontinuous (EDF+D) file.
    """

    data: np.ndarray
    sample_mask: np.ndarray

    def check(self, contract: SignalContract) -> None:
        """Raise :class:`~tokenizer.ContractMismatchError` unless this recording satisfies ``contract``.

        Checks channel order, sampling rate, array shape and dtype; never reshapes.
        """
        problems = []
        if tuple(self.channels) != tuple(contract.channels):
            problems.append(f"channels {list(contract.channels)} expected, found {list(self.channels)}")
        if abs(self.sfreq - contract.sfreq) > 1e-9:
            problems.append(f"sfreq {contract.sfreq} Hz expected, found {self.sfreq} Hz")
        if self.data.ndim != 2 or self.data.shape[0] != contract.n_channels:
            problems.append(f"data of shape ({contract.n_channels}, n) expected, found {self.data.shape}")
        if self.data.dtype != np.float32:
            problems.append(f"float32 data expected, found {self.data.dtype}")
        if self.channel_mask.shape != (contract.n_channels,):
            problems.append(f"channel_mask of shape ({contract.n_channels},) expected, found {self.channel_mask.shape}")
        if self.sample_mask.shape != (self.data.shape[-1],):
            problems.append("sample_mask length differs from the data")
        if problems:
            raise ContractMismatchError(self.source_path, "; ".join(problems))

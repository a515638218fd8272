"""Shared vocabulary of the synthetic hospital: planted EEG findings and session specs.

The population model (``population.py``) decides who is ill with what and which EEG
findings each session carries; the EEG simulator (``eeg.py``) turns a
:class:`SessionSpec` into signals; the report writer (``reports.py``) describes what the
simulator actually produced. This module is the contract between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: Planted EEG findings the simulator knows how to draw.
FINDINGS: tuple[str, ...] = (
    "ied_focal",            # focal interictal epileptiform discharges (side L/R)
    "ied_generalized",      # generalised spike-and-wave discharges
    "seizure",              # electrographic seizure(s) (EMU sessions)
    "generalized_slowing",  # diffuse theta/delta slowing (encephalopathy)
    "pdr_slowing",          # slowed or absent posterior dominant rhythm
    "focal_slowing",        # lateralised polymorphic delta (side L/R)
    "asymmetry",            # amplitude asymmetry, attenuated side (side L/R)
    "burst_suppression",    # bursts alternating with suppression
    "low_voltage",          # diffusely low-voltage background
    "excess_beta",          # excess diffuse beta (benzodiazepines)
    "mild_slowing",         # mild diffuse slowing (antiseizure drugs)
    "lpd",                  # lateralised periodic discharges (side L/R)
    "gpd",                  # generalised periodic discharges
)

Setting = Literal["routine", "emu", "icu"]
Side = Literal["L", "R"]


@dataclass(frozen=True)
class PlantedFinding:
    """One planted EEG finding in one session.

    Attributes
    ----------
    name : str
        One of :data:`FINDINGS`.
    severity : float
        0 (absent) to 1 (florid); the simulator scales the effect with it.
    side : {"L", "R"} or None
        Hemisphere for lateralised findings.
    cause : str
        Code (ICD-10-CM or ATC) that caused it, for the hidden truth.
    """

    name: str
    severity: float
    side: Side | None = None
    cause: str = ""

    def __post_init__(self) -> None:
        if self.name not in FINDINGS:
            raise ValueError(f"unknown finding {self.name!r}; expected one of {FINDINGS}")
        if not 0.0 <= self.severity <= 1.0:
            raise ValueError(f"severity must be in [0, 1], found {self.severity}")


@dataclass(frozen=True)
class SessionSpec:
    """What the EEG of one session should contain.

    Attributes
    ----------
    session_id : str
    duration_s : float
    age_years : float
    setting : {"routine", "emu", "icu"}
    findings : tuple of PlantedFinding
    mains_hz : float
        Mains frequency of the site (50 or 60).
    seed : int
        Seed of this session's random stream (sessions are independent).
    trait_seed : int or None
        Seed of the person's traits (PDR frequency, sides and loci of lesions, mains and
        ECG pick-up), so that they stay the same across sessions simulated apart, as the
        consecutive segments of one long recording (:mod:`clef.synthetic.long`); None:
        drawn from ``seed`` with everything else.
    """

    session_id: str
    duration_s: float
    age_years: float
    setting: Setting
    findings: tuple[PlantedFinding, ...] = field(default_factory=tuple)
    mains_hz: float = 60.0
    seed: int = 0
    trait_seed: int | None = None


@dataclass(frozen=True)
class StateSpan:
    """A span of one vigilance state: ``awake``, ``drowsy``, ``n2`` (or ``n3``)."""

    start_s: float
    stop_s: float
    state: str


@dataclass(frozen=True)
class EEGEvent:
    """A discrete simulated event (IED, seizure, artefact ...), for the hidden truth."""

    onset_s: float
    duration_s: float
    kind: str
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class EEGSummary:
    """What the simulated EEG actually contains, for the report writer and the truth.

    Attributes
    ----------
    pdr_hz : float or None
        Posterior dominant rhythm frequency when awake; None when absent.
    states : tuple of StateSpan
    events : tuple of EEGEvent
    findings : tuple of PlantedFinding
        Findings actually drawn (same as the spec's, severity > 0).
    """

    pdr_hz: float | None
    states: tuple[StateSpan, ...]
    events: tuple[EEGEvent, ...]
    findings: tuple[PlantedFinding, ...]

    @property
    def reached_sleep(self) -> bool:
        """True when any N2/N3 span exists."""
        return any(s.state in ("n2", "n3") for s in self.states)

    def count(self, kind: str) -> int:
        """Number of events of one kind."""
        return sum(1 for e in self.events if e.kind == kind)

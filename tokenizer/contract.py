"""The signal contract: what every recording must look like before it reaches a model.

The contract is frozen and validated on construction. It is stored in every checkpoint
and checked against every recording, so channel-order, unit and sampling-rate mismatches
fail loudly instead of silently. It lives in ``tokenizer``, the first stage of the flow,
which every later stage imports.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Canonical 19-channel referential 10-20 montage, in the order used everywhere.
#: Old temporal names (T3, T4, T5, T6) are canonical; T7, T8, P7, P8 are aliases.
CANONICAL_CHANNELS: tuple[str, ...] = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8",
    "T3", "C3", "Cz", "C4", "T4",
    "T5", "P3", "Pz", "P4", "T6",
    "O1", "O2",
)


class FilterParams(BaseModel):
    """Preprocessing applied to every recording (zero-phase).

    Parameters
    ----------
    l_freq : float
        High-pass edge in Hz (default 0.1).
    h_freq : float
        Low-pass edge in Hz (default 75). Capped below the input Nyquist frequency for
        low-rate files, with a recorded warning.
    notch_freq : float or None
        Mains frequency in Hz (60 default, 50 in Europe); harmonics below the output
        Nyquist frequency are notched too. ``None`` disables the notch.
    notch_q : float
        Quality factor of each notch.
    order : int
        Butterworth order of the band-pass design (applied forward and backward, so the
        magnitude response is squared: order 2 gives -24 dB/octave at each edge).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    l_freq: float = Field(0.1, gt=0)
    h_freq: float = Field(75.0, gt=0)
    notch_freq: float | None = Field(60.0, gt=0)
    notch_q: float = Field(30.0, gt=0)
    order: int = Field(2, ge=1, le=8)

    @model_validator(mode="after")
    def _edges(self) -> "FilterParams":
        if self.l_freq >= self.h_freq:
            raise ValueError(f"filter l_freq must be below h_freq, found l_freq={self.l_freq} h_freq={self.h_freq}")
        return self


class SpectrogramParams(BaseModel):
    """Multitaper spectrogram parameters (ARCHITECTURE.md, "Reference parameters").

    Parameters
    ----------
    window_s, step_s : float
        Taper window and hop in seconds (4 s, 1 s).
    bandwidth : float
        Full multitaper bandwidth in Hz (1 Hz: NW = bandwidth * window_s / 2 = 2).
    fmin, fmax : float
        Frequency range kept, in Hz; with 4 s windows the resolution is 0.25 Hz, so
        0–32 Hz gives 128 bins.
    n_freqs : int
        Number of frequency bins expected (checked against the other values).
    clip_db : tuple of float
        dB range the model input is clipped to.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(4.0, gt=0)
    step_s: float = Field(1.0, gt=0)
    bandwidth: float = Field(1.0, gt=0)
    fmin: float = Field(0.0, ge=0)
    fmax: float = Field(32.0, gt=0)
    n_freqs: int = Field(128, gt=0)
    clip_db: tuple[float, float] = (-40.0, 40.0)

    @model_validator(mode="after")
    def _bins(self) -> "SpectrogramParams":
        if self.fmax <= self.fmin:
            raise ValueError(f"fmax must exceed fmin, found {self.fmin}..{self.fmax}")
        expected = round((self.fmax - self.fmin) * self.window_s)
        if expected != self.n_freqs:
            raise ValueError(f"n_freqs must equal (fmax - fmin) * window_s = {expected}, found {self.n_freqs}")
        if self.clip_db[0] >= self.clip_db[1]:
            raise ValueError(f"clip_db must be (low, high), found {self.clip_db}")
        return self


class SignalContract(BaseModel):
    """Frozen description of the model input: channels, rate, units, window, filters.

    Parameters
    ----------
    channels : tuple of str
        Canonical channel order (default: the 19 referential 10-20 electrodes).
    sfreq : float
        Sampling rate every recording is resampled to, in Hz (200).
    units : {"uV"}
        Units of the data arrays (microvolts).
    window_s : float
        Session window of the tokenizer and transformer, in seconds (1280).
    min_channels : int
        Fewest canonical electrodes a recording may have; fewer is an error.
    filters : FilterParams
        Band-pass and notch parameters.
    spectrogram : SpectrogramParams
        Multitaper parameters.

    Examples
    --------
    >>> c = SignalContract()
    >>> SignalContract.from_json(c.to_json()) == c
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    channels: tuple[str, ...] = CANONICAL_CHANNELS
    sfreq: float = Field(200.0, gt=0)
    units: Literal["uV"] = "uV"
    window_s: float = Field(1280.0, gt=0)
    min_channels: int = Field(10, ge=1)
    filters: FilterParams = FilterParams()
    spectrogram: SpectrogramParams = SpectrogramParams()

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) == 0:
            raise ValueError("channels must not be empty")
        lowered = [c.lower() for c in v]
        if len(set(lowered)) != len(lowered):
            raise ValueError(f"channels must be unique (case-insensitive), found {list(v)}")
        return tuple(v)

    @model_validator(mode="after")
    def _consistent(self) -> "SignalContract":
        if self.min_channels > len(self.channels):
            raise ValueError(f"min_channels ({self.min_channels}) exceeds the number of channels "
                             f"({len(self.channels)})")
        nyq = self.sfreq / 2
        if self.filters.h_freq >= nyq:
            raise ValueError(f"filters.h_freq ({self.filters.h_freq} Hz) must be below the contract "
                             f"Nyquist frequency ({nyq} Hz)")
        if self.spectrogram.fmax > nyq:
            raise ValueError(f"spectrogram.fmax ({self.spectrogram.fmax} Hz) exceeds Nyquist ({nyq} Hz)")
        if self.window_s < self.spectrogram.window_s:
            raise ValueError("window_s must be at least one spectrogram window long")
        return self

    @property
    def n_channels(self) -> int:
        """Number of canonical channels."""
        return len(self.channels)

    @property
    def window_samples(self) -> int:
        """Samples per session window at the contract rate."""
        return int(round(self.window_s * self.sfreq))

    def to_json(self) -> str:
        """Serialise to a stable JSON string (sorted keys)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SignalContract":
        """Parse and validate a contract from JSON text."""
        return cls.model_validate(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write the contract as JSON to ``path``."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "SignalContract":
        """Read and validate a contract from a JSON file."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def digest(self) -> str:
        """Short SHA-256 of the canonical JSON form (used in cache keys)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def diff(self, other: "SignalContract") -> dict[str, tuple[object, object]]:
        """Fields that differ between two contracts, as ``{field: (self, other)}``."""
        a = _flatten(self.model_dump(mode="json"))
        b = _flatten(other.model_dump(mode="json"))
        return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out

"""Approximate 10-20 electrode positions and the spatial mixing of simulated sources.

The simulator (:mod:`clef.synthetic.eeg`) draws a few latent source time series and mixes
them to the 19 canonical scalp electrodes with a ``(19, k)`` matrix. Each column of that
matrix is a smooth *topography*: a Gaussian kernel of the great-circle distance between a
source centre and every electrode on a unit sphere. Neighbouring electrodes therefore
share most of their signal and distant ones little, as with volume conduction on a real
scalp.

Positions follow the idealised spherical 10-20 layout used by EEGLAB's
``Standard-10-20-Cap19``: colatitude measured from Cz, azimuth from the nose, positive to
the right. Two ear (earlobe) points are included so that recordings can be simulated as
referenced to linked ears, the most common clinical referential montage.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

from tokenizer.contract import CANONICAL_CHANNELS

#: Spherical coordinates (colatitude from Cz, azimuth from the nose, degrees; negative
#: azimuth is the left hemisphere) of the 19 canonical electrodes.
ELECTRODE_SPHERICAL: dict[str, tuple[float, float]] = {
    "Fp1": (92.0, -18.0), "Fp2": (92.0, 18.0),
    "F7": (92.0, -54.0), "F3": (60.0, -39.0), "Fz": (46.0, 0.0), "F4": (60.0, 39.0),
    "F8": (92.0, 54.0),
    "T3": (92.0, -90.0), "C3": (46.0, -90.0), "Cz": (0.0, 0.0), "C4": (46.0, 90.0),
    "T4": (92.0, 90.0),
    "T5": (92.0, -126.0), "P3": (60.0, -141.0), "Pz": (46.0, 180.0), "P4": (60.0, 141.0),
    "T6": (92.0, 126.0),
    "O1": (92.0, -162.0), "O2": (92.0, 162.0),
}

#: Reference and extra-cerebral points: earlobes (A1 left, A2 right) and the eyes.
EXTRA_SPHERICAL: dict[str, tuple[float, float]] = {
    "A1": (130.0, -100.0), "A2": (130.0, 100.0),
    "eye_L": (118.0, -28.0), "eye_R": (118.0, 28.0),
}

#: Fraction of the potential at an earlobe's position that the earlobe electrode sees: the
#: lobe hangs off the skull, so temporal fields contaminate a linked-ears reference less
#: than a scalp electrode at the same place would.
EAR_PICKUP = 0.5

Reference = Literal["linked_ears", "average", "none"]
Side = Literal["L", "R"]


def unit_vector(colatitude_deg: float, azimuth_deg: float) -> np.ndarray:
    """Cartesian unit vector (x right, y anterior, z up) of a spherical position."""
    col, az = np.deg2rad(colatitude_deg), np.deg2rad(azimuth_deg)
    return np.array([np.sin(col) * np.sin(az), np.sin(col) * np.cos(az), np.cos(col)])


def position(*names: str) -> np.ndarray:
    """Unit vector of an electrode, or of the normalised mean of several.

    ``position("F7", "T3")`` is the anterior-temporal point between F7 and T3.
    """
    if not names:
        raise ValueError("position() needs at least one electrode name")
    table = {**ELECTRODE_SPHERICAL, **EXTRA_SPHERICAL}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown position(s) {unknown}; expected names from {sorted(table)}")
    v = np.sum([unit_vector(*table[n]) for n in names], axis=0)
    return v / np.linalg.norm(v)


def mirror(point: np.ndarray) -> np.ndarray:
    """The homologous point in the other hemisphere (x negated)."""
    return point * np.array([-1.0, 1.0, 1.0])


class Montage:
    """The 19 canonical electrodes plus the two ears, with topography helpers.

    Attributes
    ----------
    channels : tuple of str
        The canonical channel order.
    xyz : ndarray, shape (21, 3)
        Unit vectors of the 19 electrodes followed by A1 and A2.
    """

    n_ears = 2

    def __init__(self, channels: tuple[str, ...] = CANONICAL_CHANNELS) -> None:
        missing = [c for c in channels if c not in ELECTRODE_SPHERICAL]
        if missing:
            raise ValueError(f"no position for channel(s) {missing}")
        self.channels = tuple(channels)
        pts = [unit_vector(*ELECTRODE_SPHERICAL[c]) for c in channels]
        pts += [unit_vector(*EXTRA_SPHERICAL[e]) for e in ("A1", "A2")]
        self.xyz = np.asarray(pts)
        self.index = {c: i for i, c in enumerate(self.channels)}

    @property
    def n_channels(self) -> int:
        """Number of scalp electrodes (19)."""
        return len(self.channels)

    def distances(self, center: np.ndarray) -> np.ndarray:
        """Great-circle distance (rad) from ``center`` to the 19 electrodes and 2 ears."""
        return np.arccos(np.clip(self.xyz @ center, -1.0, 1.0))

    def topography(self, center: np.ndarray, width_rad: float) -> np.ndarray:
        """Gaussian-kernel topography of a source at ``center``, shape (21,).

        The value is 1 at the centre and ``exp(-d**2 / (2 * width_rad**2))`` at angular
        distance ``d``; the last two entries are the ears (scaled by :data:`EAR_PICKUP`).
        """
        if width_rad <= 0:
            raise ValueError(f"width_rad must be positive, found {width_rad}")
        d = self.distances(center)
        topo = np.exp(-0.5 * (d / width_rad) ** 2)
        topo[self.n_channels:] *= EAR_PICKUP
        return topo

    def lateral_weight(self, side: Side) -> np.ndarray:
        """Weight in [0, 1] of each point (21,) toward one hemisphere; 0 on the midline."""
        if side not in ("L", "R"):
            raise ValueError(f"side must be 'L' or 'R', found {side!r}")
        x = self.xyz[:, 0] * (-1.0 if side == "L" else 1.0)
        return np.clip(x / np.abs(self.xyz[:, 0]).max(), 0.0, 1.0)

    def reference(self, topo: np.ndarray, kind: Reference) -> np.ndarray:
        """Re-reference topographies given at the 21 points; returns the 19 electrodes.

        Parameters
        ----------
        topo : ndarray, shape (21,) or (21, k)
            Potentials at the 19 electrodes then A1, A2, against an ideal distant
            reference.
        kind : {"linked_ears", "average", "none"}
            ``linked_ears`` subtracts the mean of A1 and A2, ``average`` the mean of the
            19 electrodes, ``none`` keeps the ideal reference.
        """
        topo = np.asarray(topo, dtype=float)
        if topo.shape[0] != self.n_channels + self.n_ears:
            raise ValueError(
                f"expected {self.n_channels + self.n_ears} rows (electrodes + ears), "
                f"found {topo.shape[0]}"
            )
        scalp = topo[: self.n_channels]
        if kind == "linked_ears":
            return scalp - topo[self.n_channels:].mean(axis=0)
        if kind == "average":
            return scalp - scalp.mean(axis=0)
        if kind == "none":
            return scalp.copy()
        raise ValueError(f"reference must be 'linked_ears', 'average' or 'none', found {kind!r}")

    def channels_above(self, topo: np.ndarray, fraction: float = 0.5) -> tuple[str, ...]:
        """Channels whose |weight| reaches ``fraction`` of the largest (event channels)."""
        w = np.abs(np.asarray(topo)[: self.n_channels])
        if w.max() <= 0:
            return ()
        return tuple(c for c, v in zip(self.channels, w) if v >= fraction * w.max())


@lru_cache(maxsize=4)
def default_montage(channels: tuple[str, ...] = CANONICAL_CHANNELS) -> Montage:
    """Cached :class:`Montage` for a channel tuple."""
    return Montage(channels)

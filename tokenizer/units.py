"""Physical units of EEG channels: everything becomes microvolts."""

from __future__ import annotations

#: Scale factors from a header unit (lower case, spaces removed) to microvolts.
TO_MICROVOLTS: dict[str, float] = {
    "uv": 1.0, "µv": 1.0, "μv": 1.0, "microv": 1.0, "microvolt": 1.0, "microvolts": 1.0,
    "mv": 1e3, "millivolt": 1e3, "millivolts": 1e3,
    "v": 1e6, "volt": 1e6, "volts": 1e6,
    "nv": 1e-3, "nanovolt": 1e-3, "nanovolts": 1e-3,
}


def unit_scale(unit: str) -> float | None:
    """Factor converting ``unit`` to µV, or None if ``unit`` is not a voltage.

    A blank unit returns 1.0 (taken as µV); the caller records a warning.
    """
    key = unit.strip().replace(" ", "").lower()
    if key == "":
        return 1.0
    return TO_MICROVOLTS.get(key)

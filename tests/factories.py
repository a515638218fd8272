"""Builders of generated EDF/BDF files for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from tokenizer import CANONICAL_CHANNELS
from tokenizer.edf_writer import EDFSignal, write_edf

STYLES = {
    "ref": lambda c: f"EEG {c.upper()}-REF",
    "Ref": lambda c: f"EEG {c}-Ref",
    "le": lambda c: f"EEG {c.upper()}-LE",
    "eeg": lambda c: f"EEG {c}",
    "bare": lambda c: c,
    "pol": lambda c: f"POL {c}",
    "bci": lambda c: (c + "..")[:4] if len(c) == 2 else (c + ".")[:4],
}
NEW_NAMES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}


def eeg_signals(
    seconds: float = 20,
    sfreq: float = 256,
    *,
    style: str = "ref",
    new_names: bool = False,
    channels: Sequence[str] = CANONICAL_CHANNELS,
    unit: str = "uV",
    scale: float = 1.0,
    freq: float = 10.0,
    amp: float = 30.0,
    seed: int = 0,
) -> list[EDFSignal]:
    """19 (or fewer) EEG channels: a sine of ``freq`` Hz + noise, in ``unit`` (× ``scale``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sfreq)) / sfreq
    sigs = []
    for k, c in enumerate(channels):
        name = NEW_NAMES.get(c, c) if new_names else c
        x = amp * np.sin(2 * np.pi * freq * t + k) + rng.normal(0, 3, t.size)
        sigs.append(EDFSignal(STYLES[style](name), x * scale, sfreq, unit=unit))
    return sigs


def make_edf(path: Path, signals: Sequence[EDFSignal] | None = None, **kw) -> Path:
    """Write ``signals`` (default: 19 referential channels, 20 s, 256 Hz) to ``path``."""
    return write_edf(path, signals if signals is not None else eeg_signals(), **kw)


#: CHB-MIT's double banana on the 19 10-20 electrodes, labelled as CHB-MIT labels it (T7/P7
#: for T3/T5): the four temporal and parasagittal chains, the midline chain (connected to
#: nothing else, so masked), the repeats ``P7-T7`` (``T7-P7`` reversed) and a second
#: ``T8-P8``, and the bridge between the temporal chains, CHB-MIT's ``T7-FT9``,
#: ``FT9-FT10``, ``FT10-T8`` taken as one ``T7-T8`` (a 10-20 file has no FT9/FT10). Without
#: that bridge a double banana is three unconnected groups and cannot be converted.
DOUBLE_BANANA: tuple[str, ...] = (
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1",
    "FP2-F4", "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
    "FZ-CZ", "CZ-PZ", "P7-T7", "T7-T8", "T8-P8",
)
#: The central transverse chain of TUH's TCP montage that links the midline to both sides.
CENTRAL_CHAIN: tuple[str, ...] = ("T7-C3", "C3-CZ", "CZ-C4", "C4-T8")


def write_bipolar_edf(path: Path, source: Path, derivations: Sequence[str] = DOUBLE_BANANA, *,
                      flip: Sequence[str] = (), flat: Sequence[str] = ()) -> Path:
    """Re-montage a referential EDF as bipolar derivations, written with pyedflib.

    Each derivation ``A-B`` is the source's physical ``A`` minus ``B`` at the source rate
    (channels found by their canonical 10-20 name; T7/T8/P7/P8 are T3/T4/T5/T6). A label
    in ``flip`` is written with the opposite polarity (a mislabelled derivation), one in
    ``flat`` as zeros (a disconnected input).
    """
    import pyedflib

    from tokenizer.channels import classify_label

    with pyedflib.EdfReader(str(source)) as f:
        by_name = {}
        for i, label in enumerate(f.getSignalLabels()):
            kind, name, _ = classify_label(label, CANONICAL_CHANNELS)
            if kind == "canonical" and name not in by_name:
                by_name[name] = (f.readSignal(i), f.getSampleFrequency(i))
    headers, samples = [], []
    for label in derivations:
        a, b = (classify_label(side, CANONICAL_CHANNELS)[1] for side in label.split("-"))
        (xa, fs), (xb, _) = by_name[a], by_name[b]
        x = (xb - xa) if label in flip else (xa - xb)
        if label in flat:
            x = np.zeros_like(x)
        top = float(np.ceil(np.abs(x).max() * 1.05 + 1.0))
        headers.append({"label": label, "dimension": "uV", "sample_frequency": fs, "physical_max": top,
                        "physical_min": -top, "digital_max": 32767, "digital_min": -32768,
                        "transducer": "", "prefilter": ""})
        samples.append(x)
    with pyedflib.EdfWriter(str(path), len(headers), file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders(headers)
        w.writeSamples(samples)
    return path


# -- real files damaged the way archives damage them (issue 17) ----------------------------

def copy_real(src: Path, dst: Path) -> Path:
    """A writable copy of a (read-only) real file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(Path(src).read_bytes())
    return dst


def set_patient_field(path: Path, text: str) -> Path:
    """Rewrite the 80-byte patient field (EDF+: ``code sex birthdate name``), as a device
    that was given no ID writes it (Nihon Kohden ``0 X 01-JAN-2019 No_Name``, NeuroCom ``0``)."""
    raw = bytearray(path.read_bytes())
    raw[8:88] = text.encode("latin-1").ljust(80)[:80]
    path.write_bytes(bytes(raw))
    return path


def set_record_count(path: Path, n: int) -> Path:
    """Write ``n`` (e.g. -1, "unknown" while recording) into the header's record count."""
    raw = bytearray(path.read_bytes())
    raw[236:244] = str(n).encode().ljust(8)
    path.write_bytes(bytes(raw))
    return path


def cut_mid_record(path: Path, complete: int, fraction: float = 0.5) -> Path:
    """Cut a file after ``complete`` whole data records and ``fraction`` of the next, as a
    crashed recorder or a half-finished copy leaves it (the header still announces all)."""
    from tokenizer import read_header

    h = read_header(path)
    path.write_bytes(path.read_bytes()[: h.header_bytes + complete * h.record_bytes + int(fraction * h.record_bytes)])
    return path


def keep_records(path: Path, n: int) -> Path:
    """Keep only the first ``n`` data records and say so in the header: a complete file of
    ``n`` records (a recording stopped after a few seconds)."""
    from tokenizer import read_header

    h = read_header(path)
    path.write_bytes(path.read_bytes()[: h.header_bytes + n * h.record_bytes])
    return set_record_count(path, n)


# -- labels as other systems write them (issue 17) ------------------------------------------

def relabel(src: Path, dst: Path, labels: Mapping[str, str] | Callable[[str], str] | Sequence[str]) -> Path:
    """Copy an EDF/BDF file with its channel labels rewritten in the header bytes (data untouched).

    ``labels`` is ``{old: new}`` (others kept), a function of the old label, or the new
    labels of the signals in file order (annotation channels always keep theirs).
    """
    raw = bytearray(Path(src).read_bytes())
    n = int(raw[252:256].decode("ascii").strip())
    signals = 0
    for i in range(n):
        at = 256 + 16 * i
        old = raw[at:at + 16].decode("latin-1").strip()
        if old.lower() in ("edf annotations", "bdf annotations"):
            continue
        if callable(labels):
            new = labels(old)
        elif isinstance(labels, Mapping):
            new = labels.get(old, old)
        else:
            new = labels[signals]
        signals += 1
        if len(new) > 16:
            raise ValueError(f"an EDF label holds 16 characters, found {new!r}")
        raw[at:at + 16] = new.encode("latin-1").ljust(16)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(bytes(raw))
    return Path(dst)


def biosemi_abc_labels(groups: str = "ABCDEFGH") -> list[str]:
    """Electrode names of a BioSemi ABC cap: ``A1``..``A32``, ``B1``.. for each group
    (``ABCD``: the 128 cap, ``ABCDEFGH``: the 256 cap)."""
    return [f"{g}{k}" for g in groups for k in range(1, 33)]

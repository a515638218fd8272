"""Bounded fuzzing of the EDF/BDF header parser with Hypothesis.

Usage::

    python bench/fuzz_edf_header.py [--examples 20000] [--seed 0] [--ingest] [--out DIR]

Starts from valid files written by the project's EDF writer (EDF+C, BDF+C, plain EDF
with half-second records, EDF+D with a gap, an annotation-only EDF+C) and mutates them:
random byte flips (mostly inside the header), rewrites of header fields with random
ASCII / Latin-1 text, numbers (negative, huge, fractional, exponents, ``nan``, ``inf``)
or raw bytes, a consistent rewrite of the signal count with its header length (so the
per-signal fields of garbage are parsed), truncations and appended bytes.

Property: :func:`tokenizer.read_header` either returns a header that is self-consistent
(header length, record count and samples per record agree with the file size; finite,
non-degenerate ranges) or raises a :class:`tokenizer.IngestError`. Anything else (an
``IndexError``, ``struct.error``, ``UnicodeDecodeError``, ``OverflowError``, a numpy
``RuntimeWarning`` ... or an accepted header that breaks an invariant) is a crash: it is
counted, its bytes are saved under ``--out`` for a regression test, and the exit status
is 1. With ``--ingest`` every accepted file is also read with
:func:`tokenizer.read_recording` (about twice as slow) under the same property, its
samples required to be finite.

Prints a summary: examples run, accepted, rejected by error kind, crashes.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "fuzz_edf_header"

#: Fixed header fields: name, offset, width (EDF specification).
FIXED_FIELDS = (("version", 0, 8), ("patient", 8, 80), ("recording", 88, 80), ("startdate", 168, 8),
                ("starttime", 176, 8), ("header_bytes", 184, 8), ("reserved", 192, 44), ("n_records", 236, 8),
                ("record_duration", 244, 8), ("n_signals", 252, 4))
#: Per-signal fields in file order: name, width.
SIGNAL_FIELDS = (("label", 16), ("transducer", 80), ("unit", 8), ("physical_min", 8), ("physical_max", 8),
                 ("digital_min", 8), ("digital_max", 8), ("prefilter", 80), ("samples_per_record", 8),
                 ("reserved", 32))
NUMBER_WORDS = ("0", "-0", "-1", "1", "+5", " 5", "5 ", "1e3", "1E3", "1e308", "1e309", "-1e309", "1e-320", "nan",
                "NaN", "inf", "-inf", "Infinity", "0x10", "1_000", "\u0661\u0662", "", " ", "-", ".", "1.", ".5",
                "1e", "99999999", "-9999999", "32767", "32768", "-32768", "-32769", "8388607", "8388608",
                "-8388608", "-8388609", "2147483648", "0.0000001", "12345678")


def seed_files(tmp: Path) -> dict[str, bytes]:
    """Valid files to mutate, written by the project's EDF writer."""
    from tokenizer.edf_writer import EDFSignal, write_edf
    from tokenizer import CANONICAL_CHANNELS

    rng = np.random.default_rng(0)

    def sigs(seconds: float, sfreq: float, channels: tuple[str, ...] = CANONICAL_CHANNELS) -> list[EDFSignal]:
        n = int(seconds * sfreq)
        return [EDFSignal(f"EEG {c.upper()}-REF", 30 * rng.standard_normal(n), sfreq) for c in channels]

    files = {
        "edf_plus_c": write_edf(tmp / "c.edf", sigs(3, 200), fmt="EDF+C", annotations=[(0.5, 1.0, "eyes closed")]),
        "bdf_plus_c": write_edf(tmp / "b.bdf", sigs(2, 256), fmt="BDF+C"),
        "edf_half_second_records": write_edf(tmp / "e.edf", sigs(2, 256, CANONICAL_CHANNELS[:12]), fmt="EDF",
                                             record_duration=0.5),
        "edf_plus_d": write_edf(tmp / "d.edf", sigs(3, 200), fmt="EDF+D", record_onsets=[0.0, 1.0, 5.0]),
        "annotations_only": write_edf(tmp / "a.edf", [], fmt="EDF+C", annotations=[(1.0, None, "W"), (31.0, 2.0, "N1")]),
    }
    return {name: path.read_bytes() for name, path in files.items()}


def header_length(raw: bytes) -> int:
    """Header length of a valid seed (from its signal count)."""
    return 256 * (int(raw[252:256].decode().strip()) + 1)


@dataclass
class Tally:
    """What the run found."""

    examples: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    ingested: int = 0
    refused: Counter = field(default_factory=Counter)
    crashes: Counter = field(default_factory=Counter)
    first: dict[str, tuple[str, str, Path]] = field(default_factory=dict)


def check_header(h: object) -> None:
    """Invariants of an accepted header; an AssertionError is a crash."""
    sigs = h.signals  # type: ignore[attr-defined]
    assert h.header_bytes == 256 * (len(sigs) + 1), "header length disagrees with the signal count"
    assert h.n_records >= 1, f"accepted {h.n_records} records"
    assert h.file_size >= h.header_bytes + h.n_records * h.record_bytes, "accepted a file shorter than announced"
    assert h.bytes_per_sample in (2, 3)
    assert math.isfinite(h.record_duration) and h.record_duration >= 0
    for s in sigs:
        assert s.samples_per_record > 0, "accepted samples per record <= 0"
        assert math.isfinite(s.physical_min) and math.isfinite(s.physical_max), "accepted a non-finite range"
        if not s.is_annotation:
            assert s.digital_max > s.digital_min, "accepted an empty digital range"
            assert s.physical_max != s.physical_min, "accepted an empty physical range"
            assert h.record_duration > 0, "accepted a 0-s record with ordinary signals"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=20000, help="examples to generate (default 20000)")
    ap.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    ap.add_argument("--ingest", action="store_true", help="also read every accepted file with read_recording")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where crashing inputs are saved (default {OUT})")
    args = ap.parse_args()
    if args.examples < 1:
        ap.error(f"--examples must be >= 1, found {args.examples}")

    import logging

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from tokenizer import IngestError, read_header, read_recording

    logging.disable(logging.WARNING)  # the reader logs a line per warning; thousands here
    warnings.simplefilter("error", RuntimeWarning)  # an overflow / invalid value is silent garbage: a crash
    tmp = Path(tempfile.mkdtemp(prefix="fuzz_edf_"))
    seeds = seed_files(tmp)
    names = sorted(seeds)
    target = tmp / "fuzz.edf"
    tally = Tally()

    ascii_num = st.one_of(st.sampled_from(NUMBER_WORDS), st.integers(-(10**12), 10**12).map(str),
                          st.floats(allow_nan=True, allow_infinity=True).map(repr))

    def field_value(width: int) -> st.SearchStrategy[bytes]:
        return st.one_of(
            ascii_num.map(lambda s: s.encode("utf-8")),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=width).map(str.encode),
            st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=width).map(lambda s: s.encode("latin-1")),
            st.binary(max_size=width),
        ).map(lambda b: b[:width].ljust(width, b" "))

    values = {w: field_value(w) for w in {w for _, _, w in FIXED_FIELDS} | {w for _, w in SIGNAL_FIELDS}}
    kinds = st.sampled_from(["flip", "flip", "field", "field", "signal_field", "signal_field", "n_signals",
                             "truncate", "extend"])
    regions = st.sampled_from(["fixed header", "signal headers", "data"])
    fixed = st.sampled_from(FIXED_FIELDS)
    field_index = st.integers(0, len(SIGNAL_FIELDS) - 1)
    byte = st.integers(0, 255)
    tails = st.binary(min_size=1, max_size=600)

    seeds32 = st.integers(0, 2**32 - 1)

    def position(data: st.DataObject, n: int, hlen: int) -> int:
        """A uniform position in a region chosen at random (Hypothesis' integers cluster near the
        bounds: near 0 every mutation would break the magic bytes)."""
        lo, hi = {"fixed header": (0, 256), "signal headers": (256, hlen), "data": (hlen, n)}[data.draw(regions)]
        hi = min(hi, n)
        return random.Random(data.draw(seeds32)).randrange(lo, hi) if hi > lo else max(0, n - 1)

    def mutate(data: st.DataObject, raw: bytearray, hlen: int) -> str:
        kind = data.draw(kinds)
        ns = max(0, hlen // 256 - 1)
        if kind == "flip":
            pos = position(data, len(raw), hlen)
            if raw:
                raw[pos] = data.draw(byte)
            return f"flip@{pos}"
        if kind == "field":
            name, off, width = data.draw(fixed)
            raw[off : off + width] = data.draw(values[width])
            return f"field:{name}"
        if kind == "signal_field" and ns:
            i = data.draw(st.integers(0, ns - 1))
            j = data.draw(field_index)
            name, width = SIGNAL_FIELDS[j]
            off = 256 + ns * sum(w for _, w in SIGNAL_FIELDS[:j]) + i * width
            raw[off : off + width] = data.draw(values[width])
            return f"signal_field:{name}[{i}]"
        if kind == "n_signals":
            k = data.draw(st.integers(0, 400))
            raw[252:256] = str(k).encode().ljust(4)
            raw[184:192] = str(256 * (k + 1)).encode().ljust(8)
            return f"n_signals={k}"
        if kind == "truncate":
            n = position(data, len(raw), hlen)
            del raw[n:]
            return f"truncate@{n}"
        tail = data.draw(tails)
        raw.extend(tail)
        return f"extend+{len(tail)}"

    @settings(max_examples=args.examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @hseed(args.seed)
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(names))
        raw = bytearray(seeds[name])
        hlen = header_length(seeds[name])
        steps = [mutate(data, raw, hlen) for _ in range(data.draw(st.integers(1, 4)))]
        target.write_bytes(bytes(raw))
        tally.examples += 1
        stage = "read_header"
        try:
            h = read_header(target)
            check_header(h)
            if args.ingest:
                stage = "read_recording"
                rec = read_recording(target, threads=1)
                assert np.isfinite(rec.data).all(), "read_recording returned non-finite samples"
        except IngestError as exc:
            if stage == "read_header":
                tally.rejected[exc.kind] += 1
            else:
                tally.accepted += 1
                tally.refused[exc.kind] += 1
            return
        except Exception as exc:  # noqa: BLE001 - anything else is what we are looking for
            key = f"{stage}: {type(exc).__name__}"
            tally.crashes[key] += 1
            if key not in tally.first:
                args.out.mkdir(parents=True, exist_ok=True)
                saved = args.out / f"crash_{len(tally.first):03d}_{type(exc).__name__}.edf"
                saved.write_bytes(bytes(raw))
                where = traceback.extract_tb(exc.__traceback__)[-1]
                how = f"seed {name}, {' + '.join(steps)}; at {where.filename}:{where.lineno}"
                tally.first[key] = (f"{exc}"[:300], how, saved)
            return
        tally.accepted += 1
        tally.ingested += args.ingest

    t0 = time.perf_counter()
    fuzz()
    seconds = time.perf_counter() - t0

    print(f"fuzz_edf_header: {tally.examples} examples in {seconds:.1f} s (seed {args.seed}; "
          f"{'read_header + read_recording' if args.ingest else 'read_header'}; seeds: {', '.join(names)})")
    print(f"accepted by read_header: {tally.accepted}")
    print(f"rejected by read_header with an IngestError: {sum(tally.rejected.values())}")
    for kind, n in tally.rejected.most_common():
        print(f"  {kind:28s} {n}")
    if args.ingest:
        print(f"of the accepted, read by read_recording: {tally.ingested}; refused with an IngestError: "
              f"{sum(tally.refused.values())}")
        for kind, n in tally.refused.most_common():
            print(f"  {kind:28s} {n}")
    print(f"crashes (other exceptions or broken invariants): {sum(tally.crashes.values())}")
    for key, n in tally.crashes.most_common():
        message, how, saved = tally.first[key]
        print(f"  {key}: {n}\n    first: {message}\n    input: {how}\n    saved: {saved}")
    return 1 if tally.crashes else 0


if __name__ == "__main__":
    sys.exit(main())

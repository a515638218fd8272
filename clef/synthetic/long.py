"""Long ICU and EMU recordings with a change at a known time, for trends over hours.

``synthesize_long_recordings`` writes, deterministically per seed::

    OUT/edf/L000.edf ...      EDF+ recordings of hours (names say nothing of their truth)
    OUT/sessions.csv          session_id, path, setting (an archive for ``clef embed``)
    OUT/truth.parquet         the hidden truth: kind, onset, seizures, segments (validation code only)
    OUT/long.json             seed, sizes, configuration digest

Each recording is one patient monitored for hours, of one kind:

``seizure_cluster`` (EMU)
    A patient with focal epilepsy (focal IEDs on one side throughout), in whom several
    seizures of that side come within ``cluster_window_s`` (30-60 minutes by default);
    the onset is the first seizure's.
``burst_suppression_onset`` (ICU)
    A comatose patient with severe diffuse slowing who goes into burst suppression (a
    sedation bolus, or anoxic deterioration) at the onset, until the end.
``evolving_encephalopathy`` (ICU)
    A patient whose background slows progressively from the onset on, over ``ramp_s``
    (an hour by default): diffuse theta and delta grow, the posterior dominant rhythm
    slows and is lost, and the patient becomes comatose; the state is then kept.
``no_change``
    The background of one of the three above (drawn), unchanged for the whole recording:
    what the false-flag rate per 24 hours is counted on. Its onset is null.

The signal is made by the synthetic hospital's simulator (:func:`clef.synthetic.eeg.simulate_eeg`)
in consecutive segments of ``segment_s`` seconds, each simulated with the findings of its
time and the person's traits kept (``SessionSpec.trait_seed``), joined by an equal-power
cross-fade of ``crossfade_s`` seconds (the segments' activity is independent, so the
power is kept across a join), and written to the EDF file segment by segment
(:class:`tokenizer.edf_writer.EDFStreamWriter`): memory is one segment, however many
hours the recording lasts. A change (the onset, each step of a ramp) falls on a segment
boundary; vigilance states are drawn per segment.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from clef.config import FrozenConfig
from clef.synthetic.eeg import EEGSimConfig, simulate_eeg
from clef.synthetic.hospital import DEFAULT_STYLES, VendorStyle, _extra_signal, _label, _write_csv
from clef.synthetic.spec import PlantedFinding, SessionSpec, Setting
from tokenizer.atomic import write_json_atomic, write_parquet_atomic
from tokenizer.contract import CANONICAL_CHANNELS
from tokenizer.edf_writer import EDFSignal, EDFStreamWriter

__all__ = ["KINDS", "LongKind", "LongRecordingConfig", "LongSummary", "plan_recording", "synthesize_long_recordings"]

LongKind = Literal["seizure_cluster", "burst_suppression_onset", "evolving_encephalopathy", "no_change"]
#: The kinds of long recording, in the order they are assigned (cycled).
KINDS: tuple[str, ...] = ("seizure_cluster", "burst_suppression_onset", "evolving_encephalopathy", "no_change")
#: The background each changing kind starts from; ``no_change`` keeps one of them throughout.
BASELINES: dict[str, str] = {"seizure_cluster": "emu_focal", "burst_suppression_onset": "icu_coma",
                             "evolving_encephalopathy": "icu_mild"}


class LongRecordingConfig(FrozenConfig):
    """Everything that shapes the long recordings (all strengths are config values).

    Attributes
    ----------
    style : VendorStyle
        How the files are written (labels, rate, extra channels, physical range).
    eeg : EEGSimConfig
        The simulator's strengths; activation procedures are off by default (no
        hyperventilation or photic stimulation in monitoring).
    segment_s : float
        Seconds simulated at a time, whole seconds (the step of an evolving change).
    crossfade_s : float
        Seconds over which two consecutive segments are cross-faded.
    onset_fraction : (float, float)
        The onset is drawn uniformly in this fraction of the recording.
    cluster_window_s : (float, float)
        Range of the span that a seizure cluster's seizures start in.
    cluster_segments : (int, int)
        Range of the number of segments of the cluster's span given a seizure (each
        gives one or two, as the simulator draws), the first always one.
    seizure_severity : (float, float)
        Range of the severity of a cluster's seizures (above 0.6 they generalise).
    ied_severity : (float, float)
        Range of the severity of the focal IEDs of an EMU patient.
    coma_slowing : (float, float)
        Range of the diffuse slowing of a comatose ICU patient (at least
        ``eeg.coma_slowing_severity``).
    mild_slowing : (float, float)
        Range of the diffuse slowing of an ICU patient before an encephalopathy evolves.
    burst_suppression_severity : (float, float)
        Range of the severity of burst suppression (longer suppressions when higher).
    ramp_s : float
        Seconds over which an encephalopathy evolves (cut short by the recording's end).
    final_slowing : float
        Diffuse slowing reached at the end of the ramp (PDR slowing reaches 1: absent).
    age_range : (float, float)
        Range of the patients' ages (adults).
    start : datetime
        Start of the first recording (each next one starts a day later).
    """

    style: VendorStyle = DEFAULT_STYLES[0]
    eeg: EEGSimConfig = Field(default_factory=lambda: EEGSimConfig(procedures=False))
    segment_s: float = Field(300.0, ge=30.0)
    crossfade_s: float = Field(5.0, gt=0.0)
    onset_fraction: tuple[float, float] = (0.3, 0.5)
    cluster_window_s: tuple[float, float] = (1800.0, 3600.0)
    cluster_segments: tuple[int, int] = (3, 5)
    seizure_severity: tuple[float, float] = (0.5, 0.9)
    ied_severity: tuple[float, float] = (0.4, 0.7)
    coma_slowing: tuple[float, float] = (0.8, 0.9)
    mild_slowing: tuple[float, float] = (0.05, 0.2)
    burst_suppression_severity: tuple[float, float] = (0.6, 1.0)
    ramp_s: float = Field(3600.0, gt=0.0)
    final_slowing: float = Field(0.9, ge=0.0, le=1.0)
    age_range: tuple[float, float] = (25.0, 80.0)
    start: datetime = datetime(2024, 3, 1, 20, 0, 0)

    @model_validator(mode="after")
    def _check(self) -> "LongRecordingConfig":
        if self.segment_s != int(self.segment_s):
            raise ValueError(f"segment_s must be whole seconds (whole data records), found {self.segment_s}")
        if self.crossfade_s >= self.segment_s / 2:
            raise ValueError(f"crossfade_s must be under half of segment_s ({self.segment_s:g}), found "
                             f"{self.crossfade_s:g}")
        for name in ("onset_fraction", "seizure_severity", "ied_severity", "coma_slowing", "mild_slowing",
                     "burst_suppression_severity"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"{name} must satisfy 0 <= lo <= hi <= 1, found {lo, hi}")
        for name in ("cluster_window_s", "cluster_segments", "age_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < lo <= hi, found {lo, hi}")
        if self.coma_slowing[0] < self.eeg.coma_slowing_severity:
            raise ValueError(f"coma_slowing must start at eeg.coma_slowing_severity "
                             f"({self.eeg.coma_slowing_severity:g}) or above, found {self.coma_slowing}")
        return self


@dataclass(frozen=True)
class Segment:
    """A span of a long recording simulated at once: ``[start_s, stop_s)`` with these findings."""

    start_s: int
    stop_s: int
    setting: Setting
    findings: tuple[PlantedFinding, ...]


@dataclass(frozen=True)
class RecordingPlan:
    """What one long recording holds, before any sample is simulated."""

    recording_id: str
    kind: str
    baseline: str
    setting: Setting
    duration_s: int
    onset_s: int | None
    ramp_s: int
    age_years: float
    sex: str
    side: str
    seed: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class LongSummary:
    """What ``synthesize_long_recordings`` wrote."""

    out: Path
    n_recordings: int
    hours_of_eeg: float
    seconds: float


def _grid(start: int, stop: int, step: int) -> list[tuple[int, int]]:
    """``[start, stop)`` cut into spans of ``step`` seconds (the last one shorter, merged when tiny)."""
    cuts = list(range(start, stop, step)) + [stop]
    spans = list(zip(cuts[:-1], cuts[1:]))
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < step // 2:
        spans[-2:] = [(spans[-2][0], stop)]
    return spans


def plan_recording(index: int, kind: str, hours: float, seed: int,
                   config: LongRecordingConfig | None = None) -> RecordingPlan:
    """Plan the ``index``-th long recording of a set: its kind's background, onset and segments.

    Parameters
    ----------
    index : int
        Position in the set (names the file ``L<index>`` and seeds the recording).
    kind : str
        One of :data:`KINDS`.
    hours : float
        Duration (rounded down to whole seconds).
    seed : int
        Seed of the set.
    config : LongRecordingConfig, optional

    Returns
    -------
    RecordingPlan
    """
    cfg = config or LongRecordingConfig()
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 19]))
    duration = int(hours * 3600)
    step = int(cfg.segment_s)
    if duration < 2 * step:
        raise ValueError(f"a long recording must last at least two segments ({2 * step} s), found {duration} s")
    baseline = BASELINES.get(kind) or str(rng.choice(sorted(set(BASELINES.values()))))
    setting: Setting = "emu" if baseline == "emu_focal" else "icu"
    side = "L" if rng.random() < 0.5 else "R"
    age = float(rng.uniform(*cfg.age_range))
    sex = "F" if rng.random() < 0.5 else "M"
    base: tuple[PlantedFinding, ...] = {
        "emu_focal": (PlantedFinding("ied_focal", round(float(rng.uniform(*cfg.ied_severity)), 3), side, "G40.209"),),
        "icu_coma": (PlantedFinding("generalized_slowing", round(float(rng.uniform(*cfg.coma_slowing)), 3),
                                    cause="G93.40"),),
        "icu_mild": (PlantedFinding("generalized_slowing", round(float(rng.uniform(*cfg.mild_slowing)), 3),
                                    cause="G93.40"),),
    }[baseline]
    lo, hi = cfg.onset_fraction
    onset = int(round(duration * rng.uniform(lo, hi) / step)) * step if kind != "no_change" else None
    if onset is not None:
        onset = min(max(onset, step), duration - step)  # a whole segment before and after
    segments: list[Segment] = []
    ramp = 0
    if kind in ("no_change", "burst_suppression_onset"):
        cut = duration if onset is None else onset
        segments = [Segment(a, b, setting, base) for a, b in _grid(0, cut, step)]
        if onset is not None:
            bs = PlantedFinding("burst_suppression", round(float(rng.uniform(*cfg.burst_suppression_severity)), 3),
                                cause="G93.1")
            segments += [Segment(a, b, setting, base + (bs,)) for a, b in _grid(onset, duration, step)]
    elif kind == "seizure_cluster":
        window = int(min(rng.uniform(*cfg.cluster_window_s), duration - onset))
        spans = _grid(onset, onset + max(window, step), step)
        k = min(len(spans), int(rng.integers(cfg.cluster_segments[0], cfg.cluster_segments[1] + 1)))
        ictal = {0, *(int(i) for i in rng.choice(np.arange(1, len(spans)), size=k - 1, replace=False))}
        segments = [Segment(a, b, setting, base) for a, b in _grid(0, onset, step)]
        for i, (a, b) in enumerate(spans):
            sz = (PlantedFinding("seizure", round(float(rng.uniform(*cfg.seizure_severity)), 3), side, "G40.209"),)
            segments.append(Segment(a, b, setting, base + sz if i in ictal else base))
        if spans[-1][1] < duration:
            segments += [Segment(a, b, setting, base) for a, b in _grid(spans[-1][1], duration, step)]
    else:  # evolving encephalopathy: severities at each ramp segment's middle, then kept
        ramp = int(min(cfg.ramp_s, duration - onset))
        g0 = base[0].severity
        segments = [Segment(a, b, setting, base) for a, b in _grid(0, onset, step)]
        for a, b in _grid(onset, duration, step):
            u = min(1.0, ((a + b) / 2 - onset) / ramp)
            g = round(g0 + (cfg.final_slowing - g0) * u, 3)
            segments.append(Segment(a, b, setting, (PlantedFinding("generalized_slowing", g, cause="G93.40"),
                                                    PlantedFinding("pdr_slowing", round(u, 3), cause="G93.40"))))
    return RecordingPlan(recording_id=f"L{index:03d}", kind=kind, baseline=baseline, setting=setting,
                         duration_s=duration, onset_s=onset, ramp_s=ramp, age_years=round(age, 1), sex=sex,
                         side=side, seed=int(rng.integers(2**31)), segments=tuple(segments))


def _write_recording(args: tuple[Path, RecordingPlan, LongRecordingConfig, datetime]) -> dict:
    """Simulate and write one planned recording, segment by segment; return its truth row."""
    out, plan, cfg, start = args
    style, sf = cfg.style, cfg.style.sfreq
    fade = int(round(cfg.crossfade_s * sf))
    ramp_up = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade).astype(np.float32)
    ramp_down = np.sqrt(1 - ramp_up ** 2)
    r = style.physical_range_uv
    keep = [k for k, ch in enumerate(CANONICAL_CHANNELS) if ch not in style.missing]
    signals = [EDFSignal(_label(style, CANONICAL_CHANNELS[k]), np.zeros(0), sf, physical_min=-r, physical_max=r,
                         prefilter="HP:0.1Hz LP:100Hz") for k in keep]
    extra_rng = np.random.default_rng(np.random.SeedSequence([plan.seed, 7]))
    extras = [_extra_signal(label, int(10 * sf), sf, extra_rng) for label in style.extras]
    for e in extras:  # a range fixed from ten seconds of each, with room
        lo, hi = float(e.data.min()), float(e.data.max())
        pad = 0.5 * (hi - lo) + 1.0
        signals.append(EDFSignal(e.label, np.zeros(0), sf, unit=e.unit, physical_min=lo - pad, physical_max=hi + pad))
    birth = (start - timedelta(days=round(plan.age_years * 365.25))).strftime("%d-%b-%Y").upper()
    patient = f"{plan.recording_id} {plan.sex} {birth} X"
    recording = f"Startdate {start.strftime('%d-%b-%Y').upper()} {plan.recording_id} X LONG-{plan.setting.upper()}"
    seizures: list[dict] = []
    tail: np.ndarray | None = None
    path = out / "edf" / f"{plan.recording_id}.edf"
    with EDFStreamWriter(path, signals, fmt=style.fmt, start=start, patient=patient, recording=recording) as w:
        for i, seg in enumerate(plan.segments):
            n = int(round((seg.stop_s - seg.start_s) * sf))
            spec = SessionSpec(session_id=f"{plan.recording_id}-{i}", duration_s=seg.stop_s - seg.start_s
                               + cfg.crossfade_s, age_years=plan.age_years, setting=seg.setting,
                               findings=seg.findings, seed=int(plan.seed + 1 + i), trait_seed=plan.seed)
            data, summary = simulate_eeg(spec, sf, cfg.eeg)
            body = data[:, :n]
            if tail is not None:
                body[:, :fade] = tail * ramp_down + body[:, :fade] * ramp_up
            tail = data[:, n : n + fade].copy()
            seizures += [{"onset_s": round(seg.start_s + e.onset_s, 2), "duration_s": e.duration_s}
                         for e in summary.events if e.kind == "seizure"]
            w.write([body[k] for k in keep] + [_extra_signal(e.label, n, sf, extra_rng).data for e in extras])
    onset = plan.onset_s
    if plan.kind == "seizure_cluster" and seizures:
        onset = seizures[0]["onset_s"]  # the first seizure, to the simulator's placement
    return {
        "session_id": plan.recording_id,
        "path": f"edf/{plan.recording_id}.edf",
        "kind": plan.kind,
        "baseline": plan.baseline,
        "setting": plan.setting,
        "onset_s": None if onset is None else float(onset),
        "ramp_s": float(plan.ramp_s),
        "hours": plan.duration_s / 3600,
        "duration_s": float(plan.duration_s),
        "seed": plan.seed,
        "age_years": plan.age_years,
        "sex": plan.sex,
        "side": plan.side if plan.baseline == "emu_focal" else None,
        "start": start.isoformat(),
        "seizures": seizures,
        "segments": [{"start_s": float(s.start_s), "stop_s": float(s.stop_s),
                      "findings": ",".join(f"{f.name}={f.severity:g}" for f in s.findings)} for s in plan.segments],
    }


def synthesize_long_recordings(
    out: str | Path,
    n: int,
    *,
    hours: float = 6.0,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    config: LongRecordingConfig | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> LongSummary:
    """Write ``n`` long recordings with a state change at a known time, and their truth.

    Parameters
    ----------
    out : str or Path
        Output folder; must be empty or absent unless ``overwrite``.
    n : int
        Recordings; their kinds cycle through ``kinds`` in order.
    hours : float
        Duration of each recording (at least two segments).
    seed : int
        Seed: the same seed, kinds and config give the same files.
    kinds : sequence of str
        Kinds of :data:`KINDS` to write.
    config : LongRecordingConfig, optional
    workers : int, optional
        Processes writing recordings in parallel (default: all cores, at most ``n``).
    progress : callable, optional
        Called as ``progress(done, total)`` after each recording.
    overwrite : bool
        Allow writing into a non-empty folder.

    Returns
    -------
    LongSummary

    Raises
    ------
    ValueError
        ``n`` below 1, an unknown kind, or recordings shorter than two segments.
    FileExistsError
        ``out`` is not empty and ``overwrite`` is not set.
    """
    t0 = time.perf_counter()
    cfg = config or LongRecordingConfig()
    if n < 1:
        raise ValueError(f"n must be at least 1, found {n}")
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise ValueError(f"kinds must be some of {', '.join(KINDS)}, found {', '.join(map(str, bad)) or 'none'}")
    if not (np.isfinite(hours) and hours * 3600 >= 2 * cfg.segment_s):
        raise ValueError(f"hours must give at least two segments of {cfg.segment_s:g} s, found {hours}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; choose a new folder or overwrite (--overwrite)")
    plans = [plan_recording(i, kinds[i % len(kinds)], hours, seed, cfg) for i in range(n)]
    jobs = [(out, p, cfg, cfg.start + timedelta(days=i)) for i, p in enumerate(plans)]
    workers = min(workers or os.cpu_count() or 1, n)
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as ex:
        for row in ex.map(_write_recording, jobs) if ex else map(_write_recording, jobs):
            rows.append(row)
            if progress:
                progress(len(rows), n)
    _write_csv(out / "sessions.csv", rows, ("session_id", "path", "setting"))
    write_parquet_atomic(pl.DataFrame(rows), out / "truth.parquet")
    total_h = float(sum(r["duration_s"] for r in rows) / 3600)
    write_json_atomic({
        "generator": "clef.synthetic.long",
        "seed": seed,
        "n_recordings": n,
        "hours": hours,
        "kinds": list(kinds),
        "hours_of_eeg": round(total_h, 2),
        "config_sha256": hashlib.sha256(cfg.model_dump_json().encode()).hexdigest(),
        "style": json.loads(cfg.style.model_dump_json()),
    }, out / "long.json")
    return LongSummary(out, n, total_h, time.perf_counter() - t0)

"""Trends of long recordings (hours to days): strided embeddings, probe scores, hemisphere CSA, changes.

``clef trend FILE --checkpoint CKPT`` and :func:`trend` stream a recording once, in memory
that does not grow with its length (:class:`tokenizer.ingest.RecordingStream` →
:func:`tokenizer.spectrogram_cache.checked_frames`), and give the frames to a
:class:`TrendBuilder`, which is incremental: it takes frame blocks as they come, so a
follower of a growing file can feed it the frames of new records: :func:`follow_trend`
(``clef trend --follow``) does, rewriting the outputs at each new stride point of a
recording that a recorder is still writing.

Per stride point (every ``stride_s`` from the start of the recording, once one context is
available):

* the **embedding** of the session model over its context ending at that time: the last
  ``window_s`` (1280 s) of spectrogram frames are tokenized as one window (the
  tokenizer's own window input, :func:`tokenizer.windows.window_input`), and the
  model's context (``context_s`` of its configuration; the whole window when unset)
  ending at that time is encoded; the embedding is the window embedding of that context;
* the **score** of each probe given (``{task: callable}``, e.g. the benchmark's
  :func:`benchmark_tasks.probes.load_probes`), applied to that embedding;
* the **change distance** of the embedding and of each score (below).

Per CSA step (``csa_step_s``, 60 s by default, finer than the stride), the left and
right **compressed spectral array**: the mean dB over the present lateral electrodes of
each side (10-20 sides as :class:`tokenizer.vqgan.layout.HemisphereLayout` groups them),
per frequency bin, over the valid frames of the step; plus the power of each canonical
band per side (:data:`tokenizer.multitaper.CANONICAL_BANDS`, cut by
:func:`tokenizer.multitaper.band_power_from_psd`, dB of the mean linear power).

Change rule (causal: every quantity at a stride point uses the points up to ``k`` strides
after it, so the same rule runs live with a delay of ``k`` strides). For the boundary
before point ``i``, the distance ``d_i`` between the mean of points ``i-k .. i-1`` and the
mean of points ``i .. i+k-1``: the cosine distance of the mean embeddings, or the absolute
difference of the mean scores. The threshold at ``i`` is ``median + max(z * 1.4826 * MAD,
min_delta)`` of the distances ``d_k .. d_i`` computed so far (the MAD scaled to a standard
deviation; ``min_delta`` keeps a very steady recording from flagging its own noise);
boundaries are judged once ``min_history`` distances exist; a point whose context is less
than ``min_valid`` (half) valid frames (a gap) is left out of the means. A run of
consecutive boundaries above their thresholds is one change, placed at the run's largest
distance (its onset) and reported when the run ends (a boundary below its threshold). An
embedding over a context of ``C`` seconds sees a step change at ``c`` until ``c + C``,
when it leaves the context's start and may move the embedding again: after a change, the
boundaries up to ``C`` plus ``k`` strides after its onset are not flagged (one flag per
change, not an echo one context later). Defaults (:class:`TrendConfig`): ``k = 3``,
``z = 5``, ``min_history = 6``, ``min_valid = 0.5``, ``min_delta`` 0.01 (cosine distance)
for the embedding and 0.1 for a probability.

Drift rule (``TrendConfig.drift``, on by default): a slow change (an hour-long ramp)
barely separates the step rule's two sides of ``k`` points, so beside it runs a one-sided
CUSUM of the distance of the last ``k`` points' mean from the patient's baseline (the mean
of the first ``drift_baseline`` usable points, again after each change), in robust
standard deviations of the baseline's own distances (:class:`DriftDetector`). A change
seen by both rules is reported once (:class:`ChangeRule`).

Outputs (:meth:`TrendResult.write`): ``trend.parquet`` (one row per stride point),
``csa.parquet`` (one row per CSA step), ``changes.parquet`` (one row per flagged change),
each with the schema tag and the run's parameters in its Parquet metadata; the figure is
:func:`clef.viz.plot_trend`. Annotation text is never written to a table (it may hold
PHI); the figure draws it scrubbed. The wall clock is the time of day of the header's
start time; the date is never read.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl
import torch
from pydantic import BaseModel, ConfigDict, Field

from clef.embedding import Embedder
from tokenizer import Annotation
from tokenizer.atomic import write_parquet_atomic
from tokenizer.contract import SignalContract
from tokenizer.edf_header import EDFHeader, read_header
from tokenizer.errors import TooShortError
from tokenizer.ingest import BLOCK_S, Follow, RecordingStream
from tokenizer.multitaper import CANONICAL_BANDS, band_power_from_psd
from tokenizer.spectrogram_cache import checked_frames
from tokenizer.spectrogram_stream import FrameBlock
from tokenizer.tokens import Tokenizer
from tokenizer.vqgan.layout import HemisphereLayout
from tokenizer.windows import token_mask_np, window_input

__all__ = [
    "SCHEMA",
    "Change",
    "ChangeDetector",
    "ChangeRule",
    "DriftDetector",
    "TrendBuilder",
    "TrendConfig",
    "TrendResult",
    "FOLLOW_BLOCK_S",
    "LIVE_LOOKAHEAD_S",
    "LIVE_POLL_S",
    "REUSE_MARGIN_S",
    "change_refractory",
    "check_probes",
    "follow_trend",
    "parse_duration",
    "trend",
]

log = logging.getLogger(__name__)

#: Schema tag written into the Parquet metadata of the trend tables.
SCHEMA = "clef.trend/1"
#: A score function: embeddings ``(n, dim)`` → scores ``(n,)`` (a probe).
Scorer = Callable[[np.ndarray], np.ndarray]

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "m": 60.0, "min": 60.0,
          "mins": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0,
          "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")
#: MAD × this is a standard deviation for normal data.
_MAD_TO_SD = 1.4826
#: Seconds of signal after a block that a live trend's filters see (``Follow.lookahead_s``).
#: A stride point needs its last frame's window (1.5 s past the point) plus this: with 1-s
#: records the point is computable 4 s of signal after the record that completes its
#: minute, which leaves a poll and the computation inside the 5 s the issue asks for (4 s
#: would need 6 s). The price is the zero-phase filters' edge transient on every sample,
#: mostly below 4 Hz (README, live mode, measures it).
LIVE_LOOKAHEAD_S = 2.5
#: Seconds between looks at a followed file: half of the latency budget left by the lookahead.
LIVE_POLL_S = 0.5
#: Longest block a live trend reads at a time: live records come a few at a time whatever
#: it is; a backlog (a follower started hours into a recording) comes in blocks this long,
#: short enough for prompt points, long enough not to copy the builder's window per second.
FOLLOW_BLOCK_S = 60.0
#: Signal before a point's newest stride tokenized with it under ``reuse_tokens``: more than
#: the tokenizer convolutions' reach in time, so that only the group norms and the attention
#: see a shorter stretch than the whole window.
REUSE_MARGIN_S = 320.0


def parse_duration(text: str | float) -> float:
    """Seconds of a duration written ``30s``, ``5min``, ``1.5h``, ``2d`` or a bare number of seconds.

    Raises
    ------
    ValueError
        Not a positive number with one of the units s, min (m), h, d.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _DURATION.match(str(text))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"a duration like 30s, 5min, 1h or 2d expected, found {text!r}")
        value = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"a positive duration expected, found {text!r}")
    return value


class TrendConfig(BaseModel):
    """Parameters of a trend (see the module docstring for the change rule).

    Attributes
    ----------
    stride_s : float
        Seconds between stride points (at least the spectrogram step; rounded to whole frames).
    csa_step_s : float
        Seconds per CSA row (rounded to whole frames).
    change_k : int
        Stride points averaged on each side of a boundary.
    change_z : float
        Robust z (MADs as standard deviations) above the median distance.
    min_history : int
        Distances computed before any boundary is judged.
    embedding_min_delta : float
        Least margin of a flag over the median cosine distance.
    score_min_delta : float
        Least margin of a flag over the median score difference.
    min_valid : float
        Least fraction of valid frames in a point's context for the change rule to use
        the point (an embedding of a context mostly in a gap describes the gap's edge).
    reuse_tokens : bool
        An approximation, off by default: a point's window keeps the codes of the
        previous point's window for the columns they share and tokenizes only its newest
        ``stride`` plus :data:`REUSE_MARGIN_S` of signal before them (a stride shorter
        than the window and a whole number of token columns; other points are tokenized
        whole). The tokenizer's group norms and attention see the whole input, so a
        column's code depends on the stretch it was tokenized in: the codes and
        embeddings differ from the exact ones (bench/RESULTS.md measures by how much and
        what it saves).
    drift : bool
        Run the drift rule (:class:`DriftDetector`, a one-sided CUSUM of the distance from
        the patient's baseline) beside the step rule; a slow change that the step rule's
        ``k`` points on each side barely separate is flagged once it has moved far enough
        for long enough.
    drift_baseline : int
        Usable points averaged as the baseline (at the start, and again after each change
        and its refractory period).
    drift_slack : float
        Allowance per point, in robust standard deviations of the baseline's own distances
        (Page's reference value): a distance less than this above the baseline's median
        adds nothing to the sum.
    drift_h : float
        Decision limit of the sum, in the same standard deviations.
    embedding_drift_min_sd, score_drift_min_sd : float
        Least standard deviation of the baseline's distances (cosine distance, score
        difference): a very steady baseline would otherwise make noise look like drift.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stride_s: float = Field(300.0, gt=0)
    csa_step_s: float = Field(60.0, gt=0)
    change_k: int = Field(3, ge=1)
    change_z: float = Field(5.0, gt=0)
    min_history: int = Field(6, ge=1)
    embedding_min_delta: float = Field(0.01, ge=0)
    score_min_delta: float = Field(0.1, ge=0)
    min_valid: float = Field(0.5, ge=0, le=1)
    reuse_tokens: bool = False
    drift: bool = True
    drift_baseline: int = Field(15, ge=2)
    drift_slack: float = Field(2.0, ge=0)
    drift_h: float = Field(80.0, gt=0)
    embedding_drift_min_sd: float = Field(0.01, gt=0)
    score_drift_min_sd: float = Field(0.05, gt=0)


@dataclass(frozen=True)
class Change:
    """A flagged change.

    Attributes
    ----------
    signal : str
        ``embedding`` or ``score:<task>``.
    index : int
        Stride point after the onset boundary (row of ``trend.parquet`` flagged).
    onset_s : float
        The boundary of the run's largest distance (s from the start): midway between
        points ``index - 1`` and ``index``.
    first_s : float
        The run's first boundary.
    detected_s : float
        When the rule flagged it: the stride point that ended the run (or the last one).
    distance, threshold : float
        At the onset (step rule); the sum and its decision limit, in standard deviations
        of the baseline, when flagged (drift rule).
    rule : str
        ``step`` (:class:`ChangeDetector`) or ``drift`` (:class:`DriftDetector`).
    """

    signal: str
    index: int
    onset_s: float
    first_s: float
    detected_s: float
    distance: float
    threshold: float
    rule: str = "step"


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return float("nan")
    return float(1.0 - np.dot(a, b) / (na * nb))


def _abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(float(a) - float(b)))


def change_refractory(context_s: float, stride_s: float, k: int) -> int:
    """Points after a change's onset that are not flagged again: the contexts that still hold
    the onset, plus ``k`` (the echo of a step, when it leaves a context's start, is not a change)."""
    if not (context_s > 0 and stride_s > 0 and k >= 1):
        raise ValueError(f"a positive context and stride and k >= 1 expected, found {context_s}, {stride_s}, {k}")
    return math.ceil(context_s / stride_s - 1e-9) + k


class ChangeDetector:
    """The causal change rule on one series (embeddings or one score), fed a point at a time.

    Parameters
    ----------
    k, z, min_history, min_delta
        As in :class:`TrendConfig`.
    refractory : int
        Points after a change's onset that are not flagged again.
    metric : {"cosine", "absolute"}
        Distance between the means of the two sides.

    Attributes
    ----------
    distance, threshold : list of float
        Per point, of the boundary before it (NaN where not computed or not computable).
    flags : list of bool
        True at each change's onset point.
    """

    def __init__(self, *, k: int, z: float, min_history: int, min_delta: float, refractory: int = 0,
                 metric: str = "cosine") -> None:
        if metric not in ("cosine", "absolute"):
            raise ValueError(f"metric 'cosine' or 'absolute' expected, found {metric!r}")
        self.k, self.z, self.min_history, self.min_delta = k, z, min_history, min_delta
        self.refractory = refractory
        self._metric = _cosine_distance if metric == "cosine" else _abs_difference
        self._values: list[np.ndarray] = []
        self._history: list[float] = []
        self._run: list[int] = []  # boundaries of the open run above threshold
        self._quiet_until = -1  # last boundary of the refractory period of the last change
        self.distance: list[float] = []
        self.threshold: list[float] = []
        self.flags: list[bool] = []

    def push(self, value: np.ndarray | float) -> list[tuple[int, int]]:
        """Add the next point; returns ``(onset, first)`` points of the changes it closes (a run that ended)."""
        self._values.append(np.asarray(value, dtype=np.float64))
        self.distance.append(float("nan"))
        self.threshold.append(float("nan"))
        self.flags.append(False)
        n, k = len(self._values), self.k
        if n < 2 * k:
            return []
        i = n - k  # the boundary before point i now has k points on each side
        before = np.stack(self._values[i - k:i])
        after = np.stack(self._values[i:n])
        d = float("nan")
        if np.isfinite(before).any() and np.isfinite(after).any():
            with np.errstate(invalid="ignore"):
                d = self._metric(np.nanmean(before, axis=0), np.nanmean(after, axis=0))
        if not math.isfinite(d):
            return self._close()
        self._history.append(d)
        self.distance[i] = d
        if len(self._history) < self.min_history:
            return []
        h = np.asarray(self._history)
        med = float(np.median(h))
        mad = float(np.median(np.abs(h - med)))
        thr = med + max(self.z * _MAD_TO_SD * mad, self.min_delta)
        self.threshold[i] = thr
        if d > thr and i > self._quiet_until:
            self._run.append(i)
            return []
        return self._close()

    def finish(self) -> list[tuple[int, int]]:
        """End of the series: the open run, if any, is a change."""
        return self._close()

    def quiet(self, until: int) -> None:
        """Flag no boundary up to point ``until`` (a change was reported there by another rule)."""
        self._quiet_until = max(self._quiet_until, until)

    def _close(self) -> list[tuple[int, int]]:
        if not self._run:
            return []
        first, onset = self._run[0], max(self._run, key=lambda j: self.distance[j])
        self._run = []
        self._quiet_until = onset + self.refractory
        self.flags[onset] = True
        return [(onset, first)]


class DriftDetector:
    """The causal drift rule on one series: a one-sided CUSUM of the distance from a baseline.

    A change that comes over an hour (an evolving encephalopathy) moves each stride point
    only a little from the one before: the step rule's two sides of ``k`` points barely
    differ. What a clinician asks of such a trend is whether the patient is still where
    they were: this rule keeps the patient's **baseline**, the mean of the first
    ``baseline`` usable points (at the start, and again after each change and its
    refractory period), and at each later point the distance ``x`` between the mean of
    the last ``k`` points and the baseline. Its null spread comes from the baseline
    itself: the median ``m`` and robust standard deviation ``s`` (MAD × 1.4826, at least
    ``min_sd``) of the distances of the baseline's own ``k``-point means. Page's
    one-sided CUSUM ``S = max(0, S + (x - m) / s - slack)`` sums the excess; when ``S``
    exceeds ``h`` a change is flagged, its onset at the point where this excursion of
    ``S`` began (the CUSUM's estimate of the change point), and the baseline starts
    again after the refractory period. A gap (a non-finite point) adds nothing.

    Parameters
    ----------
    k : int
        Points averaged for each distance (the step rule's ``k``).
    baseline : int
        Usable points averaged as the baseline.
    slack, h : float
        Allowance per point and decision limit, in standard deviations.
    min_sd : float
        Least standard deviation of the baseline's distances.
    refractory : int
        Points after a change's onset before a new baseline is collected.
    metric : {"cosine", "absolute"}
        Distance between a mean and the baseline.

    Attributes
    ----------
    statistic : list of float
        Per point, the sum ``S`` (NaN while there is no baseline or at a gap).
    flags : list of bool
        True at each change's onset point.
    """

    def __init__(self, *, k: int, baseline: int, slack: float, h: float, min_sd: float, refractory: int = 0,
                 metric: str = "cosine") -> None:
        if metric not in ("cosine", "absolute"):
            raise ValueError(f"metric 'cosine' or 'absolute' expected, found {metric!r}")
        if k < 1 or baseline < 2 or slack < 0 or not h > 0 or not min_sd > 0 or refractory < 0:
            raise ValueError(f"k >= 1, baseline >= 2, slack >= 0, h > 0, min_sd > 0 and refractory >= 0 expected, "
                             f"found k={k}, baseline={baseline}, slack={slack}, h={h}, min_sd={min_sd}, "
                             f"refractory={refractory}")
        self.k, self.baseline, self.slack, self.h, self.min_sd = k, baseline, slack, h, min_sd
        self.refractory = refractory
        self._metric = _cosine_distance if metric == "cosine" else _abs_difference
        self._values: list[np.ndarray] = []
        self._resume_at = 0  # first point that may join a new baseline
        self._base_points: list[int] = []
        self._base: np.ndarray | None = None
        self._median = 0.0
        self._sd = min_sd
        self._sum = 0.0
        self._start = -1  # point where the open excursion of the sum began
        self.statistic: list[float] = []
        self.flags: list[bool] = []

    def _recent_mean(self, i: int, since: int) -> np.ndarray | None:
        """Mean of the usable points among the ``k`` ending at ``i`` (none before ``since``)."""
        window = [v for v in self._values[max(since, i - self.k + 1):i + 1] if np.isfinite(v).all()]
        return np.mean(np.stack(window), axis=0) if window else None

    def push(self, value: np.ndarray | float) -> list[tuple[int, int]]:
        """Add the next point; returns ``(onset, first)`` of the change it flags (both the excursion's start)."""
        v = np.asarray(value, dtype=np.float64)
        self._values.append(v)
        self.statistic.append(float("nan"))
        self.flags.append(False)
        i = len(self._values) - 1
        if i < self._resume_at or not np.isfinite(v).all():
            return []
        if self._base is None:
            self._base_points.append(i)
            if len(self._base_points) == self.baseline:
                self._set_baseline()
            return []
        mean = self._recent_mean(i, self._base_points[0])
        x = self._metric(cast(np.ndarray, mean), self._base)
        if not math.isfinite(x):
            return []
        grown = max(0.0, self._sum + (x - self._median) / self._sd - self.slack)
        if self._sum == 0.0 and grown > 0.0:
            self._start = i
        self._sum = grown
        self.statistic[i] = grown
        if grown <= self.h:
            return []
        onset = self._start
        self.flags[onset] = True
        self.restart(onset)
        return [(onset, onset)]

    def _set_baseline(self) -> None:
        pts = self._base_points
        self._base = np.mean(np.stack([self._values[j] for j in pts]), axis=0)
        own = [self._metric(cast(np.ndarray, self._recent_mean(j, pts[0])), self._base) for j in pts[self.k - 1:]]
        own = [d for d in own if math.isfinite(d)] or [0.0]
        h = np.asarray(own)
        self._median = float(np.median(h))
        self._sd = max(_MAD_TO_SD * float(np.median(np.abs(h - self._median))), self.min_sd)
        self._sum, self._start = 0.0, -1

    def restart(self, onset: int) -> None:
        """A change was flagged at point ``onset``: drop the baseline, collect a new one after the refractory period."""
        self._resume_at = max(len(self._values), onset + self.refractory + 1)
        self._base_points, self._base = [], None
        self._sum, self._start = 0.0, -1

    def finish(self) -> list[tuple[int, int]]:
        """End of the series: a sum below the limit is not a change."""
        return []


class ChangeRule:
    """The change rules of one series together: the step rule and, optionally, the drift rule.

    Both are fed every point; a change flagged by either is reported once: a flag whose
    onset falls within the refractory period after the last reported onset (the other
    rule seeing the same change, often later) is dropped, and each reported change
    restarts the drift rule's baseline and quiets the step rule for the refractory period.

    Parameters
    ----------
    step : ChangeDetector
    drift : DriftDetector, optional

    Attributes
    ----------
    flags : list of bool
        True at each reported change's onset point (either rule).
    """

    def __init__(self, step: ChangeDetector, drift: DriftDetector | None = None) -> None:
        self.step, self.drift = step, drift
        self.refractory = step.refractory
        self._last: int | None = None
        self.flags: list[bool] = []

    @classmethod
    def from_config(cls, config: TrendConfig, *, refractory: int, metric: str = "cosine") -> ChangeRule:
        """The rules of ``config`` for embeddings (``metric="cosine"``) or a score (``"absolute"``)."""
        cosine = metric == "cosine"
        step = ChangeDetector(k=config.change_k, z=config.change_z, min_history=config.min_history,
                              min_delta=config.embedding_min_delta if cosine else config.score_min_delta,
                              refractory=refractory, metric=metric)
        drift = None
        if config.drift:
            drift = DriftDetector(k=config.change_k, baseline=config.drift_baseline, slack=config.drift_slack,
                                  h=config.drift_h, refractory=refractory, metric=metric,
                                  min_sd=config.embedding_drift_min_sd if cosine else config.score_drift_min_sd)
        return cls(step, drift)

    @property
    def distance(self) -> list[float]:
        """The step rule's distance per point."""
        return self.step.distance

    @property
    def threshold(self) -> list[float]:
        """The step rule's threshold per point."""
        return self.step.threshold

    @property
    def statistic(self) -> list[float] | None:
        """The drift rule's sum per point (None without the drift rule)."""
        return self.drift.statistic if self.drift is not None else None

    def push(self, value: np.ndarray | float) -> list[tuple[str, int, int]]:
        """Add the next point; returns ``(rule, onset, first)`` of the changes reported now."""
        self.flags.append(False)
        found = [("step", o, f) for o, f in self.step.push(value)]
        if self.drift is not None:
            found += [("drift", o, f) for o, f in self.drift.push(value)]
        return self._report(found)

    def finish(self) -> list[tuple[str, int, int]]:
        """End of the series: the step rule's open run, if any."""
        found = [("step", o, f) for o, f in self.step.finish()]
        if self.drift is not None:
            found += [("drift", o, f) for o, f in self.drift.finish()]
        return self._report(found)

    def _report(self, found: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        kept = []
        for rule, onset, first in sorted(found, key=lambda c: c[1]):
            if self._last is not None and onset <= self._last + self.refractory:
                continue  # the same change, seen by the other rule
            kept.append((rule, onset, first))
            self._last = onset
            self.flags[onset] = True
            self.step.quiet(onset + self.refractory)
            if self.drift is not None and rule == "step":
                self.drift.restart(onset)
        return kept


@dataclass
class TrendResult:
    """The trend of one recording.

    Attributes
    ----------
    t_s : ndarray, (n,)
        Stride points: end of each context (s from the start).
    embeddings : ndarray, (n, dim) float32
        NaN rows where the context held no valid frame.
    valid_fraction : ndarray, (n,)
        Valid frames in each context.
    scores : dict of str to ndarray (n,)
    embedding_change : ChangeRule
    score_changes : dict of str to ChangeRule
    changes : list of Change
    csa_t_s : ndarray, (m,)
        End of each CSA step (s).
    csa_left, csa_right : ndarray, (m, n_freqs) float32
        Mean dB per bin over each side's present lateral electrodes (NaN: no valid frame).
    bands : dict of str to ndarray (m,)
        ``left_<band>_db`` and ``right_<band>_db``.
    freqs : ndarray, (n_freqs,)
        Bin frequencies (Hz).
    context_s : float
        Seconds of signal each embedding sees.
    start_clock_s : float or None
        Time of day of the first sample (s after midnight), from the header.
    annotations : tuple of Annotation
        Of the file (drawn scrubbed, never written to a table).
    source_path, source_sha256, model_id : str
    duration_s : float
    config : TrendConfig
    """

    t_s: np.ndarray
    embeddings: np.ndarray
    valid_fraction: np.ndarray
    scores: dict[str, np.ndarray]
    embedding_change: ChangeRule
    score_changes: dict[str, ChangeRule]
    changes: list[Change]
    csa_t_s: np.ndarray
    csa_left: np.ndarray
    csa_right: np.ndarray
    bands: dict[str, np.ndarray]
    freqs: np.ndarray
    context_s: float
    start_clock_s: float | None
    annotations: tuple[Annotation, ...]
    source_path: str
    source_sha256: str
    model_id: str
    duration_s: float
    config: TrendConfig

    @property
    def n_points(self) -> int:
        """Stride points."""
        return int(self.t_s.shape[0])

    def clock(self, t_s: np.ndarray) -> list[str] | None:
        """Wall-clock time of day ``HH:MM:SS`` of times from the start (None without a start time)."""
        if self.start_clock_s is None:
            return None
        return [_hms((self.start_clock_s + float(t)) % 86400.0) for t in t_s]

    def table(self) -> pl.DataFrame:
        """``trend.parquet``: one row per stride point.

        Columns: ``t_s``, ``clock`` (time of day, when the header has a start time),
        ``context_start_s``, ``valid_fraction``, ``embedding`` (list of float32),
        ``embedding_change``, ``embedding_threshold``, (with the drift rule)
        ``embedding_drift``, ``embedding_flag`` (a change of either rule), and per task
        ``score_<task>``, ``score_<task>_change``, ``score_<task>_threshold``,
        (``score_<task>_drift``), ``score_<task>_flag``. A change distance sits on the point
        after its boundary; the drift rule's sum on its point.
        """
        cols: dict[str, pl.Series] = {"t_s": pl.Series(self.t_s, dtype=pl.Float64)}
        clock = self.clock(self.t_s)
        if clock is not None:
            cols["clock"] = pl.Series(clock, dtype=pl.String)
        cols["context_start_s"] = pl.Series(self.t_s - self.context_s, dtype=pl.Float64)
        cols["valid_fraction"] = pl.Series(self.valid_fraction, dtype=pl.Float32)
        cols["embedding"] = pl.Series(self.embeddings.astype(np.float32).tolist(), dtype=pl.List(pl.Float32))
        for name, det in [("embedding", self.embedding_change),
                          *((f"score_{t}", d) for t, d in self.score_changes.items())]:
            if name != "embedding":
                cols[name] = pl.Series(self.scores[name[len("score_"):]], dtype=pl.Float64)
            cols[f"{name}_change"] = pl.Series(det.distance, dtype=pl.Float64)
            cols[f"{name}_threshold"] = pl.Series(det.threshold, dtype=pl.Float64)
            if det.statistic is not None:
                cols[f"{name}_drift"] = pl.Series(det.statistic, dtype=pl.Float64)
            cols[f"{name}_flag"] = pl.Series(det.flags, dtype=pl.Boolean)
        return pl.DataFrame(cols)

    def csa_table(self) -> pl.DataFrame:
        """``csa.parquet``: one row per CSA step: ``t_s`` (end of the step), ``clock``,
        ``left_db`` and ``right_db`` (lists of float32, one per bin of :attr:`freqs`), and
        ``<side>_<band>_db``."""
        cols: dict[str, pl.Series] = {"t_s": pl.Series(self.csa_t_s, dtype=pl.Float64)}
        clock = self.clock(self.csa_t_s)
        if clock is not None:
            cols["clock"] = pl.Series(clock, dtype=pl.String)
        cols["left_db"] = pl.Series(self.csa_left.astype(np.float32).tolist(), dtype=pl.List(pl.Float32))
        cols["right_db"] = pl.Series(self.csa_right.astype(np.float32).tolist(), dtype=pl.List(pl.Float32))
        for name, v in self.bands.items():
            cols[name] = pl.Series(v, dtype=pl.Float32)
        return pl.DataFrame(cols)

    def changes_table(self) -> pl.DataFrame:
        """``changes.parquet``: one row per flagged change (the fields of :class:`Change`)."""
        schema = {"signal": pl.String, "index": pl.Int32, "onset_s": pl.Float64, "first_s": pl.Float64,
                  "detected_s": pl.Float64, "distance": pl.Float64, "threshold": pl.Float64, "rule": pl.String}
        rows = [{k: getattr(c, k) for k in schema} for c in self.changes]
        return pl.DataFrame(rows, schema=schema)

    def metadata(self) -> dict[str, str]:
        """Parquet metadata of the tables: schema tag and the run's parameters."""
        return {"clef.schema": SCHEMA, "clef.trend.model_id": self.model_id,
                "clef.trend.source_sha256": self.source_sha256, "clef.trend.context_s": f"{self.context_s:g}",
                "clef.trend.duration_s": f"{self.duration_s:g}", "clef.trend.config": self.config.model_dump_json(),
                "clef.trend.freqs_hz": json.dumps([round(float(f), 6) for f in self.freqs])}

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the three tables into ``out_dir`` (atomically); returns ``{name: path}``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = self.metadata()
        return {name: write_parquet_atomic(df, out / f"{name}.parquet", metadata=meta)
                for name, df in (("trend", self.table()), ("csa", self.csa_table()), ("changes", self.changes_table()))}


def _hms(seconds: float) -> str:
    s = int(round(seconds)) % 86400
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _clock_of(starttime: str) -> float | None:
    """Seconds after midnight of an EDF ``hh.mm.ss`` start time (None when unreadable)."""
    m = re.match(r"^\s*(\d{1,2})[.:](\d{1,2})[.:](\d{1,2})\s*$", starttime or "")
    if not m:
        return None
    h, mi, s = (int(g) for g in m.groups())
    if h > 23 or mi > 59 or s > 59:
        return None
    return float(h * 3600 + mi * 60 + s)


def check_probes(probes: Mapping[str, Scorer], model_id: str, dim: int) -> None:
    """Refuse probes fitted on another checkpoint or width.

    A probe may carry ``model_id`` and ``dim`` attributes (the benchmark's
    :class:`benchmark_tasks.probes.TaskProbe` does); a probe without them is trusted.

    Raises
    ------
    ValueError
        Naming the first probe of another model or width.
    """
    for task, p in probes.items():
        pid = getattr(p, "model_id", None)
        if pid is not None and pid != model_id:
            raise ValueError(f"probe {task!r} was fitted on model {pid}, the checkpoint is model {model_id}: "
                             "probes for another checkpoint")
        pdim = getattr(p, "dim", None)
        if pdim is not None and int(pdim) != dim:
            raise ValueError(f"probe {task!r} scores embeddings of width {pdim}, the checkpoint's are {dim}")


class TrendBuilder:
    """The incremental trend: give it frame blocks (:meth:`add`), then :meth:`result`.

    Nothing in it reads a file: a batch run feeds it a recording's frames
    (:func:`trend`); a follower of a growing file can feed it new frames as they come,
    each :meth:`add` computing the stride points and CSA steps they complete (changes
    are flagged ``k`` strides after their boundary).

    Parameters
    ----------
    embedder : Embedder
        The session model (and its tokenizer).
    probes : mapping of str to callable, optional
        ``{task: scorer}``, each scoring ``(n, dim)`` embeddings (checked by :func:`check_probes`).
    config : TrendConfig
    """

    def __init__(self, embedder: Embedder, probes: Mapping[str, Scorer] | None = None,
                 config: TrendConfig | None = None) -> None:
        self.config = config or TrendConfig()
        self.embedder = embedder
        self.tokenizer: Tokenizer = embedder.tokenizer
        self.contract: SignalContract = embedder.contract
        self.probes = dict(probes or {})
        check_probes(self.probes, embedder.model_id, int(embedder.cfg.model.dim))
        sp = self.contract.spectrogram
        self.step_s = float(sp.step_s)
        if self.config.stride_s < self.step_s:
            raise ValueError(f"a stride of at least the spectrogram step ({self.step_s:g} s) expected, "
                             f"found {self.config.stride_s:g} s")
        if self.config.csa_step_s < self.step_s:
            raise ValueError(f"a CSA step of at least the spectrogram step ({self.step_s:g} s) expected, "
                             f"found {self.config.csa_step_s:g} s")
        self.stride = int(round(self.config.stride_s / self.step_s))
        self.csa_step = int(round(self.config.csa_step_s / self.step_s))
        for name, frames, asked in (("stride", self.stride, self.config.stride_s),
                                    ("CSA step", self.csa_step, self.config.csa_step_s)):
            if abs(frames * self.step_s - asked) > 1e-9:
                log.info("%s of %g s rounded to %g s (whole spectrogram frames)", name, asked, frames * self.step_s)
        self.window = self.tokenizer.spec.window_frames
        gf, gt = self.tokenizer.grid
        self.grid = (gf, gt)
        self.column_frames = self.window // gt
        self.context_columns = embedder.context_columns or gt
        self.context = self.context_columns * self.column_frames  # frames
        self.freqs = sp.fmin + np.arange(sp.n_freqs) / sp.window_s
        # reuse_tokens: columns tokenized per point (the newest stride plus a margin)
        self._reuse = (self.config.reuse_tokens and self.stride < self.window
                       and self.stride % self.column_frames == 0)
        if self.config.reuse_tokens and not self._reuse:
            log.info("reuse_tokens: a stride of %g s is not a whole number of token columns shorter than the "
                     "window: every window tokenized whole", self.stride * self.step_s)
        margin = -(-int(round(REUSE_MARGIN_S / self.step_s)) // self.column_frames) * self.column_frames
        self._crop = min(self.window, self.stride + margin)  # frames tokenized per reused point
        self._prev: tuple[int, torch.Tensor] | None = None  # the last point and its window's codes (gf, gt)
        layout = HemisphereLayout.from_channels(self.contract.channels)
        self._left = np.array(layout.left[:layout.n_lateral])
        self._right = np.array(layout.right[:layout.n_lateral])
        c = self.config
        quiet = change_refractory(self.context_s, self.stride * self.step_s, c.change_k)
        self.embedding_change = ChangeRule.from_config(c, refractory=quiet, metric="cosine")
        self.score_changes = {t: ChangeRule.from_config(c, refractory=quiet, metric="absolute") for t in self.probes}
        self.changes: list[Change] = []
        self.frames = 0  # frames received
        self._buf: np.ndarray | None = None  # the last frames (channels, bins, ≤ window + block)
        self._buf_mask: np.ndarray | None = None
        self._buf_start = 0
        self._t: list[float] = []
        self._emb: list[np.ndarray] = []
        self._valid: list[float] = []
        self._scores: dict[str, list[float]] = {t: [] for t in self.probes}
        # CSA of the open step: sums of dB and of linear power per side and bin, valid frames
        self._csa_acc = np.zeros((2, 2, len(self.freqs)), dtype=np.float64)
        self._csa_n = 0
        self._csa_t: list[float] = []
        self._csa_rows: list[np.ndarray] = []  # (2, n_freqs) mean dB
        self._csa_lin: list[np.ndarray] = []  # (2, n_freqs) mean linear power

    @property
    def context_s(self) -> float:
        """Seconds of signal one embedding sees."""
        return self.context * self.step_s

    @property
    def n_points(self) -> int:
        """Stride points computed so far."""
        return len(self._t)

    @property
    def next_point_s(self) -> float:
        """The next stride point (s from the start): the end of the first context, or one stride after the last."""
        if self._t:
            return self._t[-1] + self.stride * self.step_s
        return -(-self.context // self.stride) * self.stride * self.step_s

    def add(self, block: FrameBlock) -> int:
        """Take the next frames; returns the stride points they completed."""
        n = block.values.shape[2]
        if n == 0:
            return 0
        self._add_csa(block)
        if self._buf is None:
            self._buf, self._buf_mask = block.values, block.frame_mask.astype(bool)
        else:
            self._buf = np.concatenate([self._buf, block.values], axis=2)
            self._buf_mask = np.concatenate([self._buf_mask, block.frame_mask.astype(bool)])
        end = self.frames + n
        first = max(self.frames + 1, self.context)
        points = [t for t in range(-(-first // self.stride) * self.stride, end + 1, self.stride)]
        self.frames = end
        self._embed_points(points, block.channel_mask)
        keep = min(self._buf.shape[2], self.window)
        self._buf_start = end - keep
        self._buf, self._buf_mask = self._buf[:, :, -keep:].copy(), self._buf_mask[-keep:].copy()
        return len(points)

    def finish(self) -> None:
        """End of the recording: close the open runs of the change rule."""
        for rule, onset, first in self.embedding_change.finish():
            self._change("embedding", rule, onset, first)
        for task, det in self.score_changes.items():
            for rule, onset, first in det.finish():
                self._change(f"score:{task}", rule, onset, first)

    def _add_csa(self, block: FrameBlock) -> None:
        cm = block.channel_mask.astype(bool)
        sides = [s[cm[s]] for s in (self._left, self._right)]
        n = block.values.shape[2]
        # per side: mean over its electrodes of the dB and of the linear power, (bins, frames)
        means = np.full((2, 2, len(self.freqs), n), np.nan, dtype=np.float32)
        for k, chans in enumerate(sides):
            if chans.size:
                db = block.values[chans].astype(np.float32)
                means[k, 0] = db.mean(0)
                means[k, 1] = np.power(np.float32(10.0), db / np.float32(10.0)).mean(0)
        fm = block.frame_mask.astype(bool)
        pos = 0
        while pos < n:
            take = min(n - pos, self.csa_step - (self.frames + pos) % self.csa_step)
            sel = np.flatnonzero(fm[pos:pos + take]) + pos
            if sel.size:
                self._csa_acc += means[:, :, :, sel].sum(-1, dtype=np.float64)
                self._csa_n += sel.size
            pos += take
            if (self.frames + pos) % self.csa_step == 0:
                mean = self._csa_acc / self._csa_n if self._csa_n else np.full_like(self._csa_acc, np.nan)
                self._csa_t.append((self.frames + pos) * self.step_s)
                self._csa_rows.append(mean[:, 0].astype(np.float32))
                self._csa_lin.append(mean[:, 1])
                self._csa_acc[:] = 0
                self._csa_n = 0

    @torch.inference_mode()
    def _embed_points(self, points: list[int], channel_mask: np.ndarray) -> None:
        """Embed the contexts ending at ``points`` (frames from the start), a tokenizer batch at a time."""
        tok, gf = self.tokenizer, self.grid[0]
        buf_mask = cast(np.ndarray, self._buf_mask)
        c_cols = self.context_columns
        enc, dev = self.embedder.encoder, self.embedder.device
        for a in range(0, len(points), tok.batch_size):
            batch = points[a:a + tok.batch_size]
            codes, m_np = self._codes(batch, channel_mask)
            ends = [-(-(t - max(0, t - self.window)) // self.column_frames) for t in batch]  # context's last column
            valid = token_mask_np(m_np, self.grid)
            ctx_codes = torch.stack([codes[b, :, e - c_cols:e] for b, e in enumerate(ends)]).long()
            ctx_valid = torch.from_numpy(np.stack([valid[b, :, e - c_cols:e] for b, e in enumerate(ends)]))
            emb = enc(ctx_codes.reshape(len(batch), gf, c_cols).to(dev), ctx_valid.to(dev)).window_embedding
            emb_np = emb.float().cpu().numpy()
            for b, t in enumerate(batch):
                lo = max(0, t - self.context)
                frac = float(buf_mask[lo - self._buf_start:t - self._buf_start].mean())
                e = emb_np[b] if ctx_valid[b].any() else np.full(emb_np.shape[1], np.nan, dtype=np.float32)
                self._push_point(t * self.step_s, e, frac)

    def _codes(self, batch: list[int], channel_mask: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Codes ``(B, grid_f, grid_t)`` and valid frames ``(B, window)`` of the windows ending at ``batch``.

        A window starts at the recording's start until one window is available (then
        padded at its end). Each window is tokenized whole, except under ``reuse_tokens``
        a point one stride after the last one whose window was whole: the previous
        window's codes shifted by the stride, and the newest columns from a tokenized
        crop of ``self._crop`` frames ending at the point.
        """
        tok = self.tokenizer
        buf, buf_mask = cast(np.ndarray, self._buf), cast(np.ndarray, self._buf_mask)
        w = self.window
        xs, ms, whole, crops, crop_masks, crop_at = [], [], [], [], [], []
        prev_t = self._prev[0] if self._prev is not None else None
        crop_spec = replace(tok.spec, window_frames=self._crop)
        for b, t in enumerate(batch):
            lo = max(0, t - w)
            i, j = lo - self._buf_start, t - self._buf_start
            if self._reuse and prev_t == t - self.stride and prev_t >= w:
                x, cm = window_input(buf[:, :, j - self._crop:j], buf_mask[j - self._crop:j], channel_mask, 0,
                                     crop_spec)
                crops.append(x)
                crop_masks.append(cm)
                crop_at.append(b)
                m = np.zeros(w, dtype=bool)
                m[:j - i] = buf_mask[i:j]
            else:
                x, m = window_input(buf[:, :, i:j], buf_mask[i:j], channel_mask, 0, tok.spec)
                xs.append(x)
                whole.append(b)
            ms.append(m)
            prev_t = t
        m_np = np.stack(ms)
        codes = torch.empty((len(batch), *self.grid), dtype=torch.long)
        if xs:
            c, _ = tok.model.tokenize(torch.from_numpy(np.stack(xs)).to(tok.device),
                                      torch.from_numpy(m_np[whole]).to(tok.device))
            codes[whole] = c.cpu().long()
        if crops:
            c, _ = tok.model.tokenize(torch.from_numpy(np.stack(crops)).to(tok.device),
                                      torch.from_numpy(np.stack(crop_masks)).to(tok.device), any_length=True)
            new = self.stride // self.column_frames
            fresh = dict(zip(crop_at, c.cpu().long()[:, :, -new:]))
            for b in range(len(batch)):  # in order: a reused point follows the point before it
                if b in fresh:
                    before = codes[b - 1] if b else cast(tuple[int, torch.Tensor], self._prev)[1]
                    codes[b] = torch.cat([before[:, new:], fresh[b]], dim=1)
        self._prev = (batch[-1], codes[-1].clone())
        return codes, m_np

    def _push_point(self, t_s: float, emb: np.ndarray, valid_fraction: float) -> None:
        self._t.append(t_s)
        self._emb.append(emb.astype(np.float32))
        self._valid.append(valid_fraction)
        # a context mostly in a gap is missing to the change rule, not a change
        usable = valid_fraction >= self.config.min_valid
        for rule, onset, first in self.embedding_change.push(emb if usable else np.full_like(emb, np.nan)):
            self._change("embedding", rule, onset, first)
        for task, probe in self.probes.items():
            s = float(np.asarray(probe(emb[None].astype(np.float64))).reshape(-1)[0]) if np.isfinite(emb).all() \
                else float("nan")
            self._scores[task].append(s)
            for rule, onset, first in self.score_changes[task].push(s if usable else float("nan")):
                self._change(f"score:{task}", rule, onset, first)

    def _change(self, signal: str, rule: str, onset: int, first: int) -> None:
        det = self.embedding_change if signal == "embedding" else self.score_changes[signal[len("score:"):]]

        def boundary(j: int) -> float:
            return 0.5 * (self._t[j - 1] + self._t[j])

        if rule == "drift":
            drift = cast(DriftDetector, det.drift)
            distance, threshold = drift.statistic[-1], drift.h
        else:
            distance, threshold = det.distance[onset], det.threshold[onset]
        ch = Change(signal, onset, boundary(onset), boundary(first), self._t[-1], distance, threshold, rule)
        self.changes.append(ch)
        log.info("change in %s at %.0f s (%s rule: %.3g > %.3g)", signal, ch.onset_s, rule, ch.distance,
                 ch.threshold)

    def result(self, *, annotations: tuple[Annotation, ...] = (), source_path: str = "", source_sha256: str = "",
               start_clock_s: float | None = None) -> TrendResult:
        """The trend so far (call :meth:`finish` first at the end of a recording)."""
        dim = int(self.embedder.cfg.model.dim)
        n_f = len(self.freqs)
        csa = np.stack(self._csa_rows) if self._csa_rows else np.zeros((0, 2, n_f), np.float32)
        lin = np.stack(self._csa_lin) if self._csa_lin else np.zeros((0, 2, n_f))
        bands: dict[str, np.ndarray] = {}
        for k, side in enumerate(("left", "right")):
            with np.errstate(invalid="ignore", divide="ignore"):
                power = band_power_from_psd(lin[:, k], self.freqs, CANONICAL_BANDS, axis=1)
                for name, p in power.items():
                    bands[f"{side}_{name}_db"] = (10.0 * np.log10(p)).astype(np.float32)
        return TrendResult(
            t_s=np.asarray(self._t, dtype=np.float64),
            embeddings=np.stack(self._emb) if self._emb else np.zeros((0, dim), np.float32),
            valid_fraction=np.asarray(self._valid, dtype=np.float32),
            scores={t: np.asarray(v, dtype=np.float64) for t, v in self._scores.items()},
            embedding_change=self.embedding_change, score_changes=self.score_changes,
            changes=sorted(self.changes, key=lambda c: (c.onset_s, c.signal)),
            csa_t_s=np.asarray(self._csa_t, dtype=np.float64), csa_left=csa[:, 0], csa_right=csa[:, 1], bands=bands,
            freqs=self.freqs, context_s=self.context_s, start_clock_s=start_clock_s, annotations=annotations,
            source_path=source_path, source_sha256=source_sha256, model_id=self.embedder.model_id,
            duration_s=self.frames * self.step_s, config=self.config)


def trend(path: str | Path, checkpoint: str | Path | Embedder, *, probes: Mapping[str, Scorer] | None = None,
          stride_s: float | str = 300.0, config: TrendConfig | None = None, device: str = "cpu",
          threads: int | None = None, block_s: float = BLOCK_S,
          progress: Callable[[float, float], None] | None = None) -> TrendResult:
    """The trend of a long recording, streamed once in bounded memory.

    See the module docstring for what is computed per stride point and per CSA step,
    and for the change rule and its defaults.

    Parameters
    ----------
    path : path
        EDF/BDF file.
    checkpoint : path or Embedder
        Session-transformer checkpoint (with its ``tokenizer/``).
    probes : mapping of str to callable, optional
        ``{task: scorer}`` applied to the embeddings (e.g.
        ``benchmark_tasks.probes.load_probes(RESULTS)``); probes fitted on another
        checkpoint are refused.
    stride_s : float or str
        Seconds between stride points, or a duration (``5min``, :func:`parse_duration`);
        overrides ``config.stride_s``.
    config : TrendConfig, optional
        The other parameters.
    device : str
        Torch device.
    threads : int, optional
        Threads of the preprocessing.
    block_s : float
        Seconds of signal read at a time.
    progress : callable, optional
        Called as ``progress(seconds_done, seconds_total)`` as the recording is read.

    Returns
    -------
    TrendResult

    Raises
    ------
    tokenizer.IngestError
        The file cannot be read, or is shorter than one context (:class:`~tokenizer.TooShortError`).
    ValueError
        A bad stride or configuration, probes of another checkpoint, or no stride point
        inside the recording.
    """
    stride = parse_duration(stride_s)
    config = TrendConfig.model_validate({**(config or TrendConfig()).model_dump(), "stride_s": stride})
    embedder = checkpoint if isinstance(checkpoint, Embedder) else Embedder(checkpoint, device=device)
    builder = TrendBuilder(embedder, probes, config)
    header = read_header(path)
    total = float(header.duration_s)
    if total < builder.context_s:
        raise TooShortError(path, f"expected at least one context of the model ({builder.context_s:g} s) for a "
                                  f"trend, found {total:g} s")
    first = math.ceil(builder.context / builder.stride) * builder.stride * builder.step_s
    if first > total:
        raise ValueError(f"{path}: the recording ({total:g} s) ends before the first stride point ({first:g} s): "
                         "choose a shorter stride")
    stream = RecordingStream(path, builder.contract, threads=threads, channel_map=embedder.channel_map,
                             block_s=block_s)

    def finish() -> bool:
        if stream.info is not None:
            stream.info.check_long_enough(builder.contract)
        return stream.info is not None

    for block in _with_progress(checked_frames(str(path), stream, builder.contract, finish=finish), progress,
                                total, builder.step_s):
        builder.add(block)
    builder.finish()
    if stream.late_masked:
        log.warning("%s: %s flat or railed, found only at the end: kept in the trend", Path(path).name,
                    ", ".join(stream.late_masked))
    if builder.n_points == 0:
        raise ValueError(f"{path}: no stride point inside the recording: choose a shorter stride")
    info = stream.info
    return builder.result(annotations=tuple(info.annotations) if info else (), source_path=str(path),
                          source_sha256=stream.source_sha256 or "", start_clock_s=_clock_of(header.starttime))


def _with_progress(frames: Iterable[FrameBlock], progress: Callable[[float, float], None] | None, total: float,
                   step_s: float) -> Iterator[FrameBlock]:
    done = 0
    for f in frames:
        yield f
        done += f.values.shape[2]
        if progress is not None:
            progress(min(done * step_s, total), total)


def follow_trend(path: str | Path, checkpoint: str | Path | Embedder, *, out: str | Path | None = None,
                 probes: Mapping[str, Scorer] | None = None, stride_s: float | str = 300.0,
                 config: TrendConfig | None = None, device: str = "cpu", threads: int | None = None,
                 poll_s: float = LIVE_POLL_S, idle_timeout_s: float | None = 300.0,
                 lookahead_s: float = LIVE_LOOKAHEAD_S,
                 stop: Callable[[], bool] | None = None, block_s: float = FOLLOW_BLOCK_S, figure: bool = True,
                 on_update: Callable[[TrendResult], None] | None = None) -> TrendResult:
    """The trend of a recording that a recorder is still writing, updated as its records come (live mode).

    The file is followed (:class:`tokenizer.ingest.RecordingStream` in follow mode): its
    complete records are read as they appear, their spectrogram frames computed as soon
    as the signal completes them, and given to a :class:`TrendBuilder`. At each new stride
    point the tables (and ``trend.png``) in ``out`` are rewritten, atomically, and
    ``on_update`` is called, unless the file already holds the signal of the next point
    (a backlog being caught up: the outputs are written once it is). Following stops
    after ``idle_timeout_s`` without a new record or when ``stop()`` returns True; the
    open runs of the change rule are then closed and the outputs written a last time.

    A point at ``T`` s comes out once the recorder has written ``T`` + half a spectrogram
    window (2 s) - half a step + ``lookahead_s``, plus a poll and the computation. With
    ``lookahead_s`` below the 60 s that :func:`trend` sees, the signal near the live edge
    carries the filters' edge transient, so the live trend differs a little from
    :func:`trend` on the finished file (README, live mode); with ``lookahead_s=60`` it is
    the same within float rounding.

    Parameters
    ----------
    path : path
        The EDF/BDF file being written (it must exist; its header may still be on its way).
    checkpoint : path or Embedder
        Session-transformer checkpoint (with its ``tokenizer/``).
    out : path, optional
        Folder of the outputs (:meth:`TrendResult.write` and ``trend.png``); None: write
        nothing, only call ``on_update``.
    probes, stride_s, config, device, threads
        As for :func:`trend`.
    poll_s : float
        Seconds between looks at the file once every record is read.
    idle_timeout_s : float or None
        Stop after this many seconds without a new complete record (None: only ``stop``).
    lookahead_s : float
        Seconds of signal after a block that its filters see (:class:`tokenizer.ingest.Follow`).
    stop : callable, optional
        Stop following when it returns True (asked at every poll).
    block_s : float
        Longest block of signal read at a time.
    figure : bool
        Draw ``trend.png`` in ``out`` at each update.
    on_update : callable, optional
        Called with the trend so far (:class:`TrendResult`) after each update's outputs
        are written, and once more at the end.

    Returns
    -------
    TrendResult
        The final trend.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A bad stride, poll, timeout, lookahead, block or configuration; probes of another checkpoint.
    tokenizer.IngestError
        The file is not EDF/BDF (:class:`~tokenizer.NotEDFError`), never gets a complete
        record before following stops (:class:`~tokenizer.NoDataRecordsError`), or
        changes other than by growing (:class:`~tokenizer.FileChangedError`). Outputs
        written before the error stay as they were.
    """
    stride = parse_duration(stride_s)
    config = TrendConfig.model_validate({**(config or TrendConfig()).model_dump(), "stride_s": stride})
    follow = Follow(poll_s=poll_s, idle_timeout_s=idle_timeout_s, stop=stop, lookahead_s=lookahead_s)
    if not (math.isfinite(block_s) and block_s > 0):
        raise ValueError(f"block_s must be a positive number of seconds, found {block_s}")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file")
    embedder = checkpoint if isinstance(checkpoint, Embedder) else Embedder(checkpoint, device=device)
    builder = TrendBuilder(embedder, probes, config)
    stream = RecordingStream(path, builder.contract, threads=threads, channel_map=embedder.channel_map,
                             block_s=block_s, follow=follow)
    sp = builder.contract.spectrogram
    # signal after a point that its last frame and that frame's filters need
    beyond_s = (sp.window_s - sp.step_s) / 2 + lookahead_s
    header: EDFHeader | None = None

    def update(result: TrendResult) -> None:
        if out is not None:
            result.write(out)
            if figure:
                from clef.viz import plot_trend

                plot_trend(result, Path(out) / "trend.png")
        if on_update is not None:
            on_update(result)

    for block in checked_frames(str(path), stream, builder.contract, finish=lambda: stream.info is not None,
                                eager=True):
        if builder.add(block) == 0 or stream.info is not None:
            continue  # no new point, or the recording's last frames: the final update follows
        if header is None:  # a block came, so the header is there
            header = read_header(path, growing=True)
        if _records_in(path, header) * header.record_duration >= builder.next_point_s + beyond_s:
            continue  # the next point is already in the file: write once caught up
        update(builder.result(source_path=str(path), start_clock_s=_clock_of(header.starttime)))
    builder.finish()
    info = stream.info
    header = header or read_header(path, growing=True)
    if builder.n_points == 0:
        log.warning("%s: following stopped after %g s of signal, before the first stride point (one context, "
                    "%g s, and a stride): no trend point", Path(path).name, builder.frames * builder.step_s,
                    builder.context_s)
    result = builder.result(annotations=tuple(info.annotations) if info else (), source_path=str(path),
                            source_sha256=stream.source_sha256 or "", start_clock_s=_clock_of(header.starttime))
    update(result)
    return result


def _records_in(path: str | Path, header: EDFHeader) -> int:
    """Complete data records in a growing file now."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        return 0
    return max(0, (size - header.header_bytes) // header.record_bytes)

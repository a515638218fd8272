"""A stored session's recording for the explorer: its CSA spectrogram (PNG) and pages of EEG.

The store keeps embeddings and metadata, not signal: the recording is read from the
store's archive (``store.json``'s ``archive`` + the session's relative ``path``). When it
is not there (moved, another machine, a store of anonymous ids whose paths are hashes),
:class:`RecordingUnavailable` says so and the page shows the reason.

Costs are paid once per session: the recording is read whole once and kept in a small
LRU (the spectrogram and every EEG page of a session come from that one read, so paging
costs nothing more). The spectrogram drawn (:func:`clef.viz.plot_session_spectrogram`) is
the tokenizer's when its :class:`~tokenizer.spectrogram_cache.SpectrogramCache` holds one for
the file (``clef tokenize`` and ``clef embed --cache-dir`` write them), else a multitaper
estimate with the contract's tapers at a :data:`DISPLAY_STEP_S` hop (a quarter of the cost);
the PNG is kept on disk beside the cache entry and in memory, so a session viewed again
costs a file read; the figure itself (axes, ticks, colour bar) is built once and drawn again
for each session. Drawing is the costly part of a session's first view (the recording's read,
the estimate and the matplotlib figure; bench/RESULTS.md has the figures), so a service can pay it
ahead: :meth:`SessionSignals.warm_up` pays the first drawing's one-off costs (matplotlib's
import and fonts, the estimate's first call) at start, and :meth:`SessionSignals.predraw`
draws the stored sessions' spectrograms not on disk yet, in the background at a low CPU
priority (``clef serve --warm-explorer``). Recordings longer than :data:`MAX_WHOLE_S` are not
held in memory: their EEG pages are streamed (:class:`~tokenizer.ingest.RecordingStream`,
stopping after the page), and their spectrogram is not drawn (``clef trend`` draws a long recording's CSA).

An EEG page can be filtered for display (:class:`DisplayFilters`: high-pass, low-pass,
notch), zero-phase (:func:`tokenizer.preprocess.zero_phase_band`, the preprocessing's own
cascade) on the page read with :meth:`DisplayFilters.pad_s` more signal on each side from
the recording, so its edges carry no filter transient (only a recording's own start and
end are extended, by reflection).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tokenizer.contract import SignalContract
from tokenizer.recording import Recording

__all__ = ["DOUBLE_BANANA", "MAX_WHOLE_S", "MONTAGES", "DisplayFilters", "EEGPage", "RecordingUnavailable",
           "SessionSignals"]

log = logging.getLogger(__name__)

#: The longitudinal bipolar montage (left temporal, right temporal, left and right
#: parasagittal chains, midline) over the canonical 10-20 electrodes.
DOUBLE_BANANA: tuple[tuple[str, str], ...] = (
    ("Fp1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"),
    ("Fp2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2"),
    ("Fp1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"),
    ("Fp2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2"),
    ("Fz", "Cz"), ("Cz", "Pz"),
)
#: Montages of the EEG viewer.
MONTAGES = ("referential", "double_banana")
#: Longest recording read whole (and kept in memory) for the viewer, in seconds.
MAX_WHOLE_S = 3600.0
#: Hop (s) of the spectrogram drawn when the tokenizer's cache holds none for the file:
#: non-overlapping 4 s tapers still see every sample, at a quarter of the cost of the
#: model's 1 s hop, and a panel of the figure is narrower than a session's frames anyway.
DISPLAY_STEP_S = 4.0
#: Highest frequency drawn (Hz): alpha and slowing stay legible.
DISPLAY_FMAX = 20.0
#: Niceness of the process drawing spectrograms ahead: a view's requests go first, yet the pass
#: still moves on a machine loaded by other work (19 would all but stop it).
PREDRAW_NICE = 10
#: Lowest high-pass edge of the display (Hz): the contract's band-pass already starts at 0.1 Hz,
#: and a lower edge would need minutes of padding to settle.
MIN_HIGHPASS = 0.1


class DisplayFilters(BaseModel):
    """Display filters of an EEG page, as an EEG reader sets them (0: that filter off).

    The defaults are the usual clinical review settings: high-pass 1 Hz, low-pass 70 Hz,
    notch off (the recording was already notched at the contract's mains frequency).

    Attributes
    ----------
    highpass : float
        High-pass edge in Hz: 0 (off) or at least :data:`MIN_HIGHPASS`.
    lowpass : float
        Low-pass edge in Hz: 0 (off) or above ``highpass`` and below the Nyquist frequency
        (checked by :meth:`check`, which knows the sampling rate).
    notch : {0, 50, 60}
        Mains notch in Hz (0: off).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    highpass: float = Field(1.0, ge=0, allow_inf_nan=False)
    lowpass: float = Field(70.0, ge=0, allow_inf_nan=False)
    notch: Literal[0, 50, 60] = 0

    @field_validator("highpass")
    @classmethod
    def _highpass(cls, v: float) -> float:
        if 0 < v < MIN_HIGHPASS:
            raise ValueError(f"highpass must be 0 (off) or at least {MIN_HIGHPASS} Hz, found {v:g} Hz")
        return v

    @model_validator(mode="after")
    def _edges(self) -> "DisplayFilters":
        if self.highpass and self.lowpass and self.lowpass <= self.highpass:
            raise ValueError(f"lowpass must be above highpass, found lowpass={self.lowpass:g} Hz "
                             f"highpass={self.highpass:g} Hz")
        return self

    def check(self, sfreq: float) -> None:
        """Refuse edges at or above the Nyquist frequency of ``sfreq``.

        Raises
        ------
        ValueError
            ``lowpass``, ``highpass`` or ``notch`` not below ``sfreq / 2``.
        """
        for name in ("highpass", "lowpass", "notch"):
            f = getattr(self, name)
            if f and f >= sfreq / 2:
                raise ValueError(f"{name} must be below the Nyquist frequency ({sfreq / 2:g} Hz at {sfreq:g} Hz), "
                                 f"found {f:g} Hz")

    @property
    def off(self) -> bool:
        """No filter at all."""
        return not (self.highpass or self.lowpass or self.notch)

    def pad_s(self) -> float:
        """Signal read on each side of a page (s) so the filters settle before it: three
        periods of the high-pass edge (the transient of the contract's second-order
        Butterworth has died out by then: a page equals the middle of a longer one, as the
        tests check), at least 2 s (the low-pass and the notch settle sooner)."""
        return 0.0 if self.off else max(2.0, 3.0 / self.highpass if self.highpass else 0.0)

    def apply(self, data: np.ndarray, sfreq: float, *, order: int, q: float, padlen: int) -> np.ndarray:
        """``data`` (channels × samples) filtered zero-phase (``padlen``: samples of reflection at each end)."""
        from tokenizer.preprocess import zero_phase_band

        return zero_phase_band(data, sfreq, l_freq=self.highpass or None, h_freq=self.lowpass or None,
                               notches=(float(self.notch),) if self.notch else (), q=q, order=order, padlen=padlen)


class RecordingUnavailable(Exception):
    """The recording of a stored session cannot be shown; ``reason`` says why (no PHI)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class EEGPage:
    """A page of EEG: ``data[i]`` is trace ``channels[i]`` in µV (None: absent electrode;
    NaN: a gap of the recording), ``sfreq`` samples per second from ``start_s``."""

    start_s: float
    seconds: float
    sfreq: float
    duration_s: float
    montage: str
    channels: list[str]
    data: list[np.ndarray | None]
    filters: DisplayFilters


class SessionSignals:
    """Reads stored sessions' recordings for the explorer, with the caches described above.

    Parameters
    ----------
    archive : path or None
        The store's archive root (``store.json``'s ``archive``).
    contract : SignalContract
        The served checkpoint's contract (the recording is read as the model reads it).
    cache_dir : path, optional
        Spectrogram cache (default: the tokenizer's, under ``$CLEF_HOME``).
    keep : int
        Recordings kept in memory (each at most :data:`MAX_WHOLE_S` long).
    """

    def __init__(self, archive: str | Path | None, contract: SignalContract, *, cache_dir: str | Path | None = None,
                 keep: int = 2) -> None:
        from tokenizer.spectrogram_cache import SpectrogramCache

        if keep < 1:
            raise ValueError(f"keep must be at least 1 recording, found {keep}")
        self.archive = Path(archive) if archive else None
        self.contract = contract
        self.cache = SpectrogramCache(cache_dir, contract)
        self.keep = keep
        self._recordings: OrderedDict[str, Recording] = OrderedDict()
        self._pngs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()  # one read at a time: bounded memory and CPU
        self._figure_lock = threading.Lock()  # one drawing at a time in the kept figure
        self._fig: Any = None  # clef.viz.SessionSpectrogramFigure, built by the first drawing

    # -- the file -------------------------------------------------------------------------
    def path_of(self, meta: dict[str, Any]) -> Path:
        """The recording of a stored session (``meta``: its store row).

        Raises
        ------
        RecordingUnavailable
            No archive, no path, or no file there.
        """
        rel = meta.get("path")
        if self.archive is None or not rel:
            raise RecordingUnavailable("the store names no archive for its recordings")
        path = self.archive / str(rel)
        if not path.is_file():
            raise RecordingUnavailable("its recording is not in the store's archive (moved, or on another machine)")
        return path

    def _read(self, meta: dict[str, Any]) -> Recording:
        """The session's recording read from the archive (not kept), refused if it changed since it was embedded."""
        from tokenizer.errors import IngestError
        from tokenizer.ingest import read_recording

        try:
            rec = read_recording(self.path_of(meta), self.contract)
        except IngestError as exc:
            raise RecordingUnavailable(f"its recording cannot be read ({exc.kind})") from None
        if rec.source_sha256 != str(meta["source_sha256"]):
            raise RecordingUnavailable("its recording in the archive has changed since it was embedded")
        return rec

    def _recording(self, meta: dict[str, Any]) -> Recording:
        """:meth:`_read`, kept in the viewer's LRU of recordings."""
        sha = str(meta["source_sha256"])
        with self._lock:
            if sha in self._recordings:
                self._recordings.move_to_end(sha)
                return self._recordings[sha]
            rec = self._read(meta)
            self._recordings[sha] = rec
            while len(self._recordings) > self.keep:
                self._recordings.popitem(last=False)
            return rec

    # -- spectrogram ----------------------------------------------------------------------
    def png_path(self, sha: str) -> Path:
        """Where the spectrogram PNG of the recording of content hash ``sha`` is kept on disk."""
        return self.cache.path_for(sha).with_suffix(".csa.png")

    def spectrogram_png(self, meta: dict[str, Any]) -> bytes:
        """The session's CSA spectrogram per region (PNG bytes), cached in memory and on disk.

        Raises
        ------
        RecordingUnavailable
            The recording cannot be read, or is longer than :data:`MAX_WHOLE_S`.
        """
        sha = str(meta["source_sha256"])
        png = self._pngs.get(sha)
        if png is not None:
            return png
        disk = self.png_path(sha)
        if not disk.is_file():
            self._draw(meta, disk, self._recording)
        png = disk.read_bytes()
        self._pngs[sha] = png
        while len(self._pngs) > 64:
            self._pngs.popitem(last=False)
        return png

    def _draw(self, meta: dict[str, Any], disk: Path, read: Callable[[dict[str, Any]], Recording]) -> None:
        """Draw the session's spectrogram into ``disk`` (``read(meta)``: its :class:`Recording`)."""
        from tokenizer.errors import IngestError
        from tokenizer.multitaper import multitaper_spectrogram

        sha = str(meta["source_sha256"])
        sp = self.contract.spectrogram
        cached = self.cache.get(sha)  # written by `clef tokenize` / `clef embed --cache-dir` into this cache
        if cached is not None:
            values, frame_mask, channel_mask = cached.values, cached.frame_mask, cached.channel_mask
            freqs, step = sp.fmin + np.arange(sp.n_freqs) / sp.window_s, sp.step_s
        else:
            if float(meta.get("duration_s") or 0.0) > MAX_WHOLE_S:
                raise RecordingUnavailable(f"the explorer draws the spectrogram of recordings up to "
                                           f"{MAX_WHOLE_S / 3600:g} h; 'clef trend' draws a longer one's")
            rec = read(meta)
            step = max(sp.step_s, min(sp.window_s, DISPLAY_STEP_S))
            try:
                rec.check_long_enough(self.contract)
                s = multitaper_spectrogram(rec.data, rec.sfreq, window_s=sp.window_s, step_s=step,
                                           bandwidth=sp.bandwidth, fmin=sp.fmin,
                                           fmax=min(DISPLAY_FMAX, sp.fmax), sample_mask=rec.sample_mask)
            except (IngestError, ValueError) as exc:
                raise RecordingUnavailable(f"no spectrogram of its recording ({getattr(exc, 'kind', exc)})"
                                           ) from None
            values, frame_mask, channel_mask = s.clipped(*sp.clip_db), s.frame_mask, rec.channel_mask
            freqs = s.freqs
        self._figure(values, freqs, frame_mask, channel_mask, step, disk)

    def _figure(self, values: np.ndarray, freqs: np.ndarray, frame_mask: np.ndarray, channel_mask: np.ndarray,
                step: float, disk: Path) -> None:
        """The explorer's figure of a spectrogram (:func:`clef.viz.plot_session_spectrogram`'s), written atomically,
        drawn in the one figure these signals keep (:class:`clef.viz.SessionSpectrogramFigure`: its axes, ticks
        and colour bar are built by the first drawing only), one drawing at a time."""
        from clef.viz import SessionSpectrogramFigure
        from tokenizer.atomic import atomic_path

        sp = self.contract.spectrogram
        with self._figure_lock, atomic_path(disk, suffix=".png") as tmp:
            if self._fig is None:
                self._fig = SessionSpectrogramFigure()
            self._fig.draw(values, freqs, frame_mask, np.asarray(channel_mask, bool), tuple(self.contract.channels),
                           tmp, step_s=step, title=f"{values.shape[2] * step / 60:.1f} min, multitaper CSA per region",
                           fmax=min(DISPLAY_FMAX, sp.fmax))

    def warm_up(self) -> float:
        """Pay the first drawing's one-off costs now (matplotlib's import, fonts and first figure;
        the multitaper estimate's first call), on a blank recording of the contract's channels
        a few windows long: a session's first view then pays only its own drawing.

        Returns
        -------
        float
            Seconds it took.
        """
        from tokenizer.multitaper import multitaper_spectrogram

        t0 = time.perf_counter()
        sp = self.contract.spectrogram
        sfreq, n_ch = float(self.contract.sfreq), len(self.contract.channels)
        step = max(sp.step_s, min(sp.window_s, DISPLAY_STEP_S))
        n = int(round((sp.window_s + 3 * step) * sfreq))
        x = np.random.default_rng(0).normal(size=(n_ch, n)).astype(np.float32)
        s = multitaper_spectrogram(x, sfreq, window_s=sp.window_s, step_s=step, bandwidth=sp.bandwidth, fmin=sp.fmin,
                                   fmax=min(DISPLAY_FMAX, sp.fmax), sample_mask=np.ones(n, bool))
        with tempfile.TemporaryDirectory() as d:
            self._figure(s.clipped(*sp.clip_db), s.freqs, s.frame_mask, np.ones(n_ch, bool), step, Path(d) / "w.png")
        return time.perf_counter() - t0

    def predraw(self, metas: Iterable[dict[str, Any]], stop: Callable[[], bool] | None = None) -> int:
        """Draw, onto the disk cache, the spectrogram of each session of ``metas`` that is not
        there yet and whose recording is in the archive (others are passed over), until
        ``stop()`` says so. Meant for the background (:meth:`start_predraw`): its recordings
        are read outside the viewer's LRU and its PNGs are not kept in memory.

        Returns
        -------
        int
            Spectrograms drawn.
        """
        drawn = 0
        for meta in metas:
            if stop is not None and stop():
                break
            sha = meta.get("source_sha256")
            if not sha or not meta.get("path") or self.archive is None:
                continue
            disk = self.png_path(str(sha))
            if disk.is_file() or str(sha) in self._pngs:
                continue
            try:
                self._draw(meta, disk, self._read)
            except RecordingUnavailable as exc:
                log.debug("explorer: no spectrogram drawn ahead for a session: %s", exc.reason)
                continue
            drawn += 1
        return drawn

    def start_predraw(self, store: str | Path, *, nice: int = PREDRAW_NICE) -> subprocess.Popen[bytes]:
        """:meth:`predraw` over the sessions of ``store``, in store order, in a child process
        (``python -m services.explorer.predraw``) at niceness ``nice`` (added to the service's).

        A process rather than a thread of the service: a low-priority thread that holds the
        interpreter lock while the system keeps it waiting would stall the requests it
        should let go first; a process shares nothing with them but the disk cache, whose
        files are written atomically. It stops by itself when the service's process is
        gone (checked between sessions).
        """
        if nice < 0:
            raise ValueError(f"nice must be 0 or more (a lower priority), found {nice}")
        cmd = [sys.executable, "-m", "services.explorer.predraw", str(store), str(self.archive), str(self.cache.root),
               str(os.getpid())]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                preexec_fn=(lambda: os.nice(nice)) if nice and hasattr(os, "nice") else None)
        assert proc.stdin is not None
        proc.stdin.write(self.contract.model_dump_json().encode())
        proc.stdin.close()
        return proc

    # -- EEG pages ------------------------------------------------------------------------
    def page(self, meta: dict[str, Any], start_s: float, seconds: float, montage: str,
             filters: DisplayFilters | None = None) -> EEGPage:
        """``seconds`` of EEG from ``start_s`` (moved back to fit in the recording) in ``montage``,
        filtered for display (``filters``; None: unfiltered, the signal as the model reads it).

        Raises
        ------
        ValueError
            An unknown montage, a non-positive length, or a filter edge at or above the
            Nyquist frequency.
        RecordingUnavailable
            The recording cannot be read.
        """
        if montage not in MONTAGES:
            raise ValueError(f"montage must be one of {', '.join(MONTAGES)}, found {montage!r}")
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be positive, found {seconds}")
        sfreq = float(self.contract.sfreq)
        filters = filters if filters is not None else DisplayFilters(highpass=0, lowpass=0, notch=0)
        filters.check(sfreq)
        pad = int(math.ceil(filters.pad_s() * sfreq))
        n = int(round(seconds * sfreq))
        duration = float(meta.get("duration_s") or 0.0)
        if duration and duration <= MAX_WHOLE_S:
            rec = self._recording(meta)
            duration = rec.duration_s
            start = max(0.0, min(float(start_s), duration - seconds))
            a = int(round(start * sfreq))
            lo, hi = max(0, a - pad), min(rec.n_samples, a + n + pad)
            data, ok, present = rec.data[:, lo:hi], rec.sample_mask[lo:hi], rec.channel_mask.astype(bool)
        else:
            start = max(0.0, min(float(start_s), duration - seconds)) if duration else max(0.0, float(start_s))
            a = int(round(start * sfreq))
            lo = max(0, a - pad)
            data, ok, present = self._streamed(meta, lo, a + n + pad - lo)
            hi = lo + data.shape[1]
        if not filters.off:
            # the padding read from the recording lets the filters settle; reflection only
            # where the recording itself starts or ends
            cfg = self.contract.filters
            data = filters.apply(data, sfreq, order=cfg.order, q=cfg.notch_q, padlen=pad)
        cut = slice(a - lo, max(a, min(a + n, hi)) - lo)
        data, ok = data[:, cut], ok[cut]
        channels = list(self.contract.channels)
        x = np.where(ok[None, :], data, np.nan).astype(np.float32)
        if montage == "referential":
            return EEGPage(start, seconds, sfreq, duration, montage, channels,
                           [x[i] if present[i] else None for i in range(len(channels))], filters)
        idx = {c: i for i, c in enumerate(channels)}
        names, traces = [], []
        for a_, b_ in DOUBLE_BANANA:
            names.append(f"{a_}-{b_}")
            ia, ib = idx.get(a_), idx.get(b_)
            traces.append(x[ia] - x[ib] if ia is not None and ib is not None and present[ia] and present[ib]
                          else None)
        return EEGPage(start, seconds, sfreq, duration, montage, names, traces, filters)

    def _streamed(self, meta: dict[str, Any], a: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Samples ``a`` to ``a + n`` of a long recording (fewer where it ends), streamed from its start."""
        from tokenizer.errors import IngestError
        from tokenizer.ingest import RecordingStream

        path = self.path_of(meta)
        data = np.zeros((len(self.contract.channels), n), np.float32)
        ok = np.zeros(n, bool)
        present = np.zeros(len(self.contract.channels), bool)
        end = a
        with self._lock:
            try:
                for block in RecordingStream(path, self.contract):
                    present = block.channel_mask
                    lo, hi = max(a, block.start), min(a + n, block.start + block.data.shape[1])
                    if lo < hi:
                        data[:, lo - a:hi - a] = block.data[:, lo - block.start:hi - block.start]
                        ok[lo - a:hi - a] = block.sample_mask[lo - block.start:hi - block.start]
                        end = hi
                    if block.start + block.data.shape[1] >= a + n:
                        break
            except IngestError as exc:
                raise RecordingUnavailable(f"its recording cannot be read ({exc.kind})") from None
        # nothing past the recording's end: zeros there would enter the filters as signal
        return data[:, :end - a], ok[:end - a], present

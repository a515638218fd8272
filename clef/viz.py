"""Clinical-style figures: a 10 s EEG page of the canonical channels, a session spectrogram, a long-term trend,
an explanation (attribution over the CSA and a scalp map)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tokenizer import Recording  # noqa: E402

if TYPE_CHECKING:
    from clef.explain import Explanation
    from clef.trend import TrendResult


def annotation_label(text: str, width: int = 30) -> str:
    """Annotation text as it may be drawn: PHI scrubbed (technicians type names, MRNs and
    dates into annotations), then cut to ``width`` characters.

    The scrubber is the reports' (:func:`reports.phi.scrub_phi`), called here rather than
    in the reader because ``tokenizer`` may not import ``reports``; annotation text is
    drawn nowhere else and never written to any table.
    """
    from reports.phi import scrub_phi  # the reports package loads its models' code: only when drawn

    return scrub_phi(text).text[:width]


def plot_page(rec: Recording, out: str | Path, *, start_s: float = 0.0, page_s: float = 10.0,
              sensitivity_uv_per_mm: float = 7.0, title: str | None = None) -> Path:
    """Draw a clinical EEG page: the canonical channels stacked, referential montage.

    Parameters
    ----------
    rec : Recording
        Canonical recording.
    out : str or Path
        PNG file to write.
    start_s : float
        Page start (s); clipped to the recording.
    page_s : float
        Page length (s), 10 s as on a reading station.
    sensitivity_uv_per_mm : float
        Display sensitivity (µV/mm), 7 µV/mm by clinical convention; a trace spacing is
        10 mm.
    title : str, optional
        Figure title (default: file name, format and page time). Never PHI.

    Returns
    -------
    Path
        The PNG written.
    """
    out = Path(out)
    start_s = max(0.0, min(start_s, rec.duration_s - page_s))
    a = int(start_s * rec.sfreq)
    b = min(rec.n_samples, a + int(page_s * rec.sfreq))
    t = np.arange(a, b) / rec.sfreq
    spacing = 10 * sensitivity_uv_per_mm  # µV between baselines (10 mm)
    fig, ax = plt.subplots(figsize=(14, 9), dpi=100)
    for k, name in enumerate(rec.channels):
        y0 = -k * spacing
        if rec.channel_mask[k]:
            x = np.where(rec.sample_mask[a:b], rec.data[k, a:b], np.nan)
            ax.plot(t, y0 + np.clip(x, -2 * spacing, 2 * spacing), lw=0.6, color="black")
        else:
            ax.text(t[0] + page_s / 2, y0, "absent (masked)", color="grey", ha="center", va="center", fontsize=8)
        gaps = ~rec.sample_mask[a:b]
        if gaps.any():
            ax.fill_between(t, y0 - spacing / 2, y0 + spacing / 2, where=gaps, color="#f4cccc", step="mid")
    for ann in rec.annotations:
        if start_s <= ann.onset <= start_s + page_s:
            ax.axvline(ann.onset, color="tab:blue", lw=0.8, ls="--")
            ax.text(ann.onset, spacing * 0.8, annotation_label(ann.text), color="tab:blue", fontsize=7, rotation=0)
    ax.set_yticks([-k * spacing for k in range(len(rec.channels))])
    ax.set_yticklabels(rec.channels)
    ax.set_xlim(t[0], t[0] + page_s)
    ax.set_ylim(-(len(rec.channels) - 0.3) * spacing, spacing * 1.2)
    for s in np.arange(np.ceil(t[0]), t[0] + page_s):
        ax.axvline(s, color="#dddddd", lw=0.5, zorder=0)
    ax.set_xlabel("time (s)")
    ax.plot([t[0] + page_s * 0.97] * 2, [spacing * 0.3, spacing * 0.3 - 50], color="tab:red", lw=2)
    ax.text(t[0] + page_s * 0.975, spacing * 0.05, "50 µV", color="tab:red", fontsize=8)
    ax.set_title(title or f"{Path(rec.source_path).name} — {rec.format}, {rec.sfreq_in:g}→{rec.sfreq:g} Hz, "
                 f"{sensitivity_uv_per_mm:g} µV/mm, {start_s:.0f}–{start_s + page_s:.0f} s")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


#: Regions of the spectrogram view: (title, channels), left and right side by side.
REGIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("L frontal", ("Fp1", "F3", "F7")), ("R frontal", ("Fp2", "F4", "F8")),
    ("L temporal", ("T3", "T5")), ("R temporal", ("T4", "T6")),
    ("L central-parietal", ("C3", "P3")), ("R central-parietal", ("C4", "P4")),
    ("L occipital", ("O1",)), ("R occipital", ("O2",)),
)


def plot_session_spectrogram(values: np.ndarray, freqs: np.ndarray, frame_mask: np.ndarray, channel_mask: np.ndarray,
                             channels: tuple[str, ...], out: str | Path, *, title: str = "",
                             reconstruction: np.ndarray | None = None, vmin: float = -20.0, vmax: float = 30.0,
                             fmax: float | None = None, spectrum_frames: np.ndarray | None = None,
                             spectrum_channels: tuple[str, ...] = ("O1", "O2"), step_s: float = 1.0) -> Path:
    """Whole-session multitaper spectrogram, per region and hemisphere (a compressed spectral array).

    One figure drawn once (:class:`SessionSpectrogramFigure` draws many with one figure).

    Parameters
    ----------
    values : ndarray, (channels, freqs, frames)
        Spectrogram in dB (one frame per second).
    freqs : ndarray
        Frequencies (Hz) of the rows.
    frame_mask, channel_mask : ndarray of bool
        Valid frames (gaps and padding blank) and present channels.
    channels : tuple of str
        Channel names of the rows of ``values``.
    out : str or Path
        PNG to write.
    title : str
        Figure title (never PHI).
    reconstruction : ndarray, optional
        A decoded spectrogram of the same shape, drawn beside the original, and below
        both the mean spectrum of ``spectrum_channels`` over ``spectrum_frames`` of each
        (where a posterior dominant rhythm shows as a peak, or does not).
    vmin, vmax : float
        Colour scale (dB).
    fmax : float, optional
        Highest frequency shown (default: all rows); 20 Hz makes alpha and slowing legible.
    spectrum_frames : ndarray of bool, optional
        Frames of the spectrum panel (e.g. awake frames); default every valid frame.
    spectrum_channels : tuple of str
        Electrodes averaged in the spectrum panel (default O1/O2).
    step_s : float
        Seconds between frames (1 s: the contract's hop; the explorer draws a coarser one).

    Returns
    -------
    Path
    """
    fig = SessionSpectrogramFigure(reconstruction=reconstruction is not None, vmin=vmin, vmax=vmax)
    try:
        return fig.draw(values, freqs, frame_mask, channel_mask, channels, out, title=title,
                        reconstruction=reconstruction, fmax=fmax, spectrum_frames=spectrum_frames,
                        spectrum_channels=spectrum_channels, step_s=step_s)
    finally:
        fig.close()


class SessionSpectrogramFigure:
    """The figure of :func:`plot_session_spectrogram`, built once and drawn for session after session.

    Building the axes, their ticks and the colour bar is a large part of drawing one such
    figure, and the same for every session; a service drawing many (the cohort explorer)
    keeps one and only sets each session's images, limits and title. Not thread-safe: one
    drawing at a time.

    Parameters
    ----------
    reconstruction : bool
        Lay out the reconstruction's panels and the spectrum panel too.
    vmin, vmax : float
        Colour scale (dB).
    """

    def __init__(self, *, reconstruction: bool = False, vmin: float = -20.0, vmax: float = 30.0) -> None:
        self.reconstruction = reconstruction
        n_sets = 1 + reconstruction
        n_cols, n_rows = 2 * n_sets, 4 + reconstruction
        self.fig = plt.figure(figsize=(6.5 * n_sets + 1, 9 + 2.5 * reconstruction))
        gs = self.fig.add_gridspec(n_rows, n_cols, height_ratios=[1.0] * 4 + [1.3] * (n_rows - 4), hspace=0.55)
        self.axes = np.empty((4, n_cols), dtype=object)
        for r in range(4):
            for c in range(n_cols):
                self.axes[r, c] = self.fig.add_subplot(gs[r, c], sharex=self.axes[0, 0], sharey=self.axes[0, 0])
        self.images = np.empty((n_sets, len(REGIONS)), dtype=object)
        self.absent = np.empty((n_sets, len(REGIONS)), dtype=object)
        for s in range(n_sets):
            for k, (region, _) in enumerate(REGIONS):
                ax = self.axes[k // 2, 2 * s + k % 2]
                # an image of regular cells (frames and frequency bins are evenly spaced): a
                # fraction of a mesh's drawing time, the same picture
                self.images[s, k] = ax.imshow(np.full((1, 1), np.nan), origin="lower", aspect="auto",
                                              interpolation="nearest", cmap="jet", vmin=vmin, vmax=vmax)
                self.absent[s, k] = ax.text(0.5, 0.5, "absent", transform=ax.transAxes, ha="center", color="grey",
                                            visible=False)
                short = "original" if s == 0 else "decoded"
                ax.set_title(f"{region}" + (f" ({short})" if reconstruction else ""), fontsize=9)
                if k % 2 == 0 and s == 0:
                    ax.set_ylabel("Hz")
                if k // 2 == 3:
                    ax.set_xlabel("minutes")
        self.fig.colorbar(self.images[0, 0], ax=list(self.axes.ravel()), shrink=0.6, label="power (dB µV²/Hz)")
        self.spectrum = self.fig.add_subplot(gs[4, :]) if reconstruction else None

    def draw(self, values: np.ndarray, freqs: np.ndarray, frame_mask: np.ndarray, channel_mask: np.ndarray,
             channels: tuple[str, ...], out: str | Path, *, title: str = "", reconstruction: np.ndarray | None = None,
             fmax: float | None = None, spectrum_frames: np.ndarray | None = None,
             spectrum_channels: tuple[str, ...] = ("O1", "O2"), step_s: float = 1.0) -> Path:
        """Draw a session into the figure and write it to ``out`` (PNG); the arguments are
        :func:`plot_session_spectrogram`'s.

        Raises
        ------
        ValueError
            ``step_s`` not positive, or a reconstruction given to a figure laid out
            without one (or none given to one laid out with one).
        """
        if not step_s > 0:
            raise ValueError(f"step_s must be positive seconds, found {step_s}")
        if (reconstruction is not None) != self.reconstruction:
            raise ValueError(f"a reconstruction {'expected' if self.reconstruction else 'not expected'} by this "
                             f"figure, {'found one' if reconstruction is not None else 'found none'}")
        out = Path(out)
        sets = [("original", values)] + ([("tokenizer reconstruction", reconstruction)]
                                         if reconstruction is not None else [])
        minutes = np.arange(values.shape[2]) * step_s / 60.0
        df = float(freqs[1] - freqs[0]) if len(freqs) > 1 else 1.0
        extent = (-step_s / 120.0, minutes[-1] + step_s / 120.0 if len(minutes) else step_s / 120.0,
                  float(freqs[0]) - df / 2, float(freqs[-1]) + df / 2)
        idx = {c: k for k, c in enumerate(channels)}
        for s, (_, v) in enumerate(sets):
            masked = np.where(frame_mask[None, None, :], v.astype(np.float32), np.nan)
            for k, (_, chans) in enumerate(REGIONS):
                ks = [idx[c] for c in chans if c in idx and channel_mask[idx[c]]]
                im = self.images[s, k]
                im.set_visible(bool(ks))
                self.absent[s, k].set_visible(not ks)
                if ks:
                    im.set_data(masked[ks].mean(0))
                    im.set_extent(extent)
        self.axes[0, 0].set_xlim(extent[0], extent[1])
        self.axes[0, 0].set_ylim(freqs[0], fmax if fmax is not None else freqs[-1])
        if self.spectrum is not None:
            ax = self.spectrum
            ax.clear()
            frames = frame_mask if spectrum_frames is None else (np.asarray(spectrum_frames, bool) & frame_mask)
            ks = [channels.index(c) for c in spectrum_channels if c in channels and channel_mask[channels.index(c)]]
            if ks and frames.any():
                for (label, v), style in zip(sets, ("k-", "r--")):
                    lin = np.power(10.0, v[ks][:, :, frames].astype(np.float64) / 10).mean(axis=(0, 2))
                    ax.plot(freqs, 10 * np.log10(lin), style, label=label)
                ax.legend(fontsize=8)
            ax.set_xlim(freqs[0], fmax if fmax is not None else freqs[-1])
            ax.set_xlabel("Hz")
            ax.set_ylabel("dB")
            ax.set_title(f"mean spectrum {'/'.join(spectrum_channels)}"
                         + (" (selected frames)" if spectrum_frames is not None else ""), fontsize=9)
        self.fig.suptitle(title or "session spectrogram (multitaper, 4 s windows, 1 s step)")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(out, dpi=90)
        return out

    def close(self) -> None:
        """Release the figure."""
        plt.close(self.fig)


def plot_recording_spectrogram(rec: Recording, out: str | Path) -> Path:
    """Spectrogram view of a :class:`~tokenizer.Recording` under the base spectrogram parameters."""
    from tokenizer.contract import SignalContract
    from tokenizer.spectrogram_cache import compute_spectrogram

    sp = SignalContract().spectrogram
    spec = compute_spectrogram(rec, SignalContract(channels=rec.channels, sfreq=rec.sfreq))
    freqs = sp.fmin + np.arange(sp.n_freqs) / sp.window_s
    return plot_session_spectrogram(spec.values, freqs, spec.frame_mask, spec.channel_mask, rec.channels, out,
                                    title=f"{Path(rec.source_path).name} — {rec.duration_s / 60:.1f} min session spectrogram")


def plot_trend(result: "TrendResult", out: str | Path, *, fmax: float = 20.0, vmin: float = -20.0,
               vmax: float = 30.0, max_labels: int = 25, title: str | None = None) -> Path:
    """Draw a trend (:class:`clef.trend.TrendResult`) as a long-term monitoring review page.

    Time runs along x (hours, or minutes for a recording under two hours). From the top:
    the left and the right hemisphere's compressed spectral array (frequency on y, dB in
    colour); the probe scores; the embedding's change distance with its threshold.
    Flagged changes are vertical lines on every panel (solid red: the embedding; dashed,
    in its trace's colour: a score), the file's annotations ticks along the top with their scrubbed text
    (:func:`annotation_label`; only ticks when there are more than ``max_labels``).

    Parameters
    ----------
    result : TrendResult
    out : str or Path
        PNG to write.
    fmax : float
        Highest frequency drawn (Hz); 20 Hz makes slowing and alpha legible.
    vmin, vmax : float
        Colour scale of the CSA (dB).
    max_labels : int
        Annotations labelled with their text at most.
    title : str, optional
        Default: the file's name, duration, stride and context. Never PHI.

    Returns
    -------
    Path
    """
    out = Path(out)
    hours = result.duration_s >= 2 * 3600
    unit, scale = ("hours", 3600.0) if hours else ("minutes", 60.0)
    n_scores = len(result.scores)
    ratios = [2.2, 2.2] + ([1.3] if n_scores else []) + [1.0]
    fig, axes = plt.subplots(len(ratios), 1, figsize=(14, 2.1 * sum(ratios) + 1.0), sharex=True,
                             gridspec_kw={"height_ratios": ratios, "hspace": 0.12})
    step = result.config.csa_step_s
    edges = np.concatenate([[0.0], result.csa_t_s]) / scale if result.csa_t_s.size else np.zeros(1)
    keep = result.freqs <= fmax
    f = result.freqs[keep]
    df = float(f[1] - f[0]) if f.size > 1 else 1.0
    f_edges = np.concatenate([f - df / 2, [f[-1] + df / 2]])
    im = None
    for ax, side, csa in ((axes[0], "left", result.csa_left), (axes[1], "right", result.csa_right)):
        if csa.shape[0]:
            im = ax.pcolormesh(edges, f_edges, csa[:, keep].T, shading="flat", cmap="jet", vmin=vmin,
                               vmax=vmax)
        ax.set_ylabel(f"{side}\nHz")
        ax.set_ylim(result.freqs[0], fmax)
        ax.text(0.005, 0.92, f"{side} hemisphere CSA ({step:g} s steps)", transform=ax.transAxes, fontsize=8,
                color="white", va="top", bbox={"facecolor": "black", "alpha": 0.4, "pad": 2, "lw": 0})
    if im is not None:
        # beside every panel, so the time axes of the panels stay aligned
        fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.01, anchor=(0.0, 1.0), shrink=0.5, label="dB µV²/Hz")
    t = result.t_s / scale
    row = 2
    colours: dict[str, str] = {}
    if n_scores:
        ax = axes[row]
        for task, s in result.scores.items():
            (line,) = ax.plot(t, s, marker=".", ms=3, lw=1, label=task)
            colours[f"score:{task}"] = line.get_color()
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("probe\nscore")
        ax.legend(fontsize=7, loc="upper left", ncol=min(4, n_scores))
        row += 1
    ax = axes[row]
    det = result.embedding_change
    ax.plot(t, det.distance, color="black", lw=1, marker=".", ms=3, label="embedding change")
    ax.plot(t, det.threshold, color="tab:red", lw=0.8, ls=":", label="threshold")
    ax.set_ylabel("cosine\ndistance")
    ax.legend(fontsize=7, loc="upper left")
    if det.drift is not None:  # the drift rule's sum, as a fraction of its decision limit
        twin = ax.twinx()
        twin.plot(t, np.asarray(det.drift.statistic, dtype=float) / det.drift.h, color="tab:blue", lw=0.8,
                  label="drift sum / limit")
        twin.axhline(1.0, color="tab:blue", lw=0.6, ls=":")
        twin.set_ylabel("drift", color="tab:blue")
        twin.legend(fontsize=7, loc="upper right")
    start = result.clock(np.zeros(1))
    ax.set_xlabel(f"{unit} from the start" + (f" (start {start[0]})" if start else ""))
    for c in result.changes:
        for a in axes:
            if c.signal == "embedding":
                a.axvline(c.onset_s / scale, color="red", lw=1.4)
            else:
                a.axvline(c.onset_s / scale, color=colours.get(c.signal, "orange"), lw=1.2, ls="--")
    label = len(result.annotations) <= max_labels
    for ann in result.annotations:
        x = ann.onset / scale
        axes[0].plot([x], [fmax], marker="v", color="magenta", ms=6, clip_on=False, zorder=5)
        if label:
            axes[0].annotate(annotation_label(ann.text, 20), (x, fmax), xytext=(0, 6), textcoords="offset points",
                             fontsize=6, rotation=45, color="magenta", ha="left", annotation_clip=False)
    axes[-1].set_xlim(0, max(result.duration_s, float(result.t_s[-1]) if result.n_points else 0.0) / scale)
    name = Path(result.source_path).name
    fig.suptitle(title or f"{name} — {result.duration_s / 3600:.1f} h trend, stride {result.config.stride_s:g} s, "
                          f"context {result.context_s:g} s, model {result.model_id}", fontsize=11, y=0.91)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return out



def plot_explanation(ex: "Explanation", out: str | Path, *, fmax: float = 32.0, vmin: float = -20.0,
                     vmax: float = 30.0, title: str | None = None) -> Path:
    """Draw an explanation (:class:`clef.explain.Explanation`): where the score comes from.

    Left, time on x: the left and the right hemisphere's CSA (one column per time step,
    frequency on y, dB in colour) with each band's attribution as a bar at the right edge
    of its rows, and below them the attribution of each time step (the most attributed
    one outlined on the CSA). Right: a scalp map of the channel attribution (10-20
    positions seen from above, nose up; absent channels as open circles) and the
    attribution of each region. Red supports the score (taking the part away lowers
    it), blue opposes it.

    Parameters
    ----------
    ex : Explanation
    out : str or Path
        PNG to write.
    fmax : float
        Highest frequency drawn (Hz).
    vmin, vmax : float
        Colour scale of the CSA (dB).
    title : str, optional
        Default: the file's name, the target and its baseline score. Never PHI.

    Returns
    -------
    Path
    """
    from clef.synthetic.montage import ELECTRODE_SPHERICAL  # the one table of 10-20 positions

    out = Path(out)
    fig = plt.figure(figsize=(15, 8))
    gs = fig.add_gridspec(3, 2, width_ratios=[2.2, 1.0], height_ratios=[1.0, 1.0, 0.8], hspace=0.35, wspace=0.18)
    n = ex.time.shape[0]
    edges = np.arange(n + 1) * ex.minute_s / 60.0
    keep = ex.freqs <= fmax
    f = ex.freqs[keep]
    df = float(f[1] - f[0]) if f.size > 1 else 1.0
    f_edges = np.concatenate([f - df / 2, [f[-1] + df / 2]])
    lim = float(np.nanmax(np.abs(np.concatenate([ex.band, ex.time, ex.region, ex.channel, [1e-12]]))))
    top = ex.top_minute
    bar_w = max(edges[-1] * 0.08, 0.5)
    im = None
    for r, side in enumerate(("left", "right")):
        ax = fig.add_subplot(gs[r, 0])
        if n:
            im = ax.pcolormesh(edges, f_edges, ex.csa[r][:, keep].T, shading="flat", cmap="jet", vmin=vmin, vmax=vmax)
        for (name, (lo, hi)), v in zip(ex.bands.items(), ex.band):
            if np.isfinite(v):
                w = bar_w * abs(v) / lim
                ax.barh((lo + min(hi, fmax)) / 2, w, height=min(hi, fmax) - lo, left=edges[-1],
                        color="tab:red" if v > 0 else "tab:blue", alpha=0.8, edgecolor="black", lw=0.5)
                ax.text(edges[-1] + bar_w * 1.02, (lo + min(hi, fmax)) / 2, f"{name} {v:+.3f}", fontsize=7,
                        va="center")
        if top is not None:
            ax.axvspan(edges[top], edges[top + 1], fill=False, edgecolor="white", lw=2)
        ax.set_xlim(0, edges[-1] + bar_w * 2.2)
        ax.set_ylim(ex.freqs[0], fmax)
        ax.set_ylabel(f"{side}\nHz")
        ax.set_title(f"{side} hemisphere CSA; bars: band attribution", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=fig.axes[:2], fraction=0.02, pad=0.01, label="dB µV²/Hz")
    ax = fig.add_subplot(gs[2, 0])
    mids = (edges[:-1] + edges[1:]) / 2
    vals = np.nan_to_num(ex.time, nan=0.0)
    ax.bar(mids, vals, width=ex.minute_s / 60.0 * 0.9, color=np.where(vals > 0, "tab:red", "tab:blue"))
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlim(0, edges[-1] + bar_w * 2.2)
    ax.set_xlabel("minutes from the start")
    ax.set_ylabel("attribution")
    ax.set_title(f"time: score drop without each {ex.minute_s:g} s step", fontsize=9)
    ax = fig.add_subplot(gs[0:2, 1])
    xy = []
    for name in ex.channels:
        col, az = ELECTRODE_SPHERICAL.get(name, (np.nan, np.nan))
        rad = col / 92.0 * 0.9
        xy.append((rad * np.sin(np.deg2rad(az)), rad * np.cos(np.deg2rad(az))))
    xy_a = np.array(xy)
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, lw=1.2))
    ax.plot([-0.1, 0, 0.1], [0.99, 1.1, 0.99], color="black", lw=1.2)
    present = np.isfinite(ex.channel)
    sc = ax.scatter(xy_a[present, 0], xy_a[present, 1], c=ex.channel[present], cmap="RdBu_r", vmin=-lim, vmax=lim,
                    s=520, edgecolors="black")
    ax.scatter(xy_a[~present, 0], xy_a[~present, 1], facecolors="none", edgecolors="grey", s=520)
    for (x, y), name in zip(xy_a, ex.channels):
        ax.text(x, y, name, ha="center", va="center", fontsize=7)
    ax.set_xlim(-1.15, 1.15)
    ax.set_ylim(-1.15, 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.colorbar(sc, ax=ax, fraction=0.04, pad=0.02, label="channel attribution")
    ax.set_title("scalp map (nose up, left on the left)", fontsize=9)
    ax = fig.add_subplot(gs[2, 1])
    rv = np.nan_to_num(ex.region, nan=0.0)
    ax.barh(list(ex.regions)[::-1], rv[::-1], color=np.where(rv[::-1] > 0, "tab:red", "tab:blue"))
    ax.axvline(0, color="black", lw=0.6)
    ax.tick_params(labelsize=8)
    ax.set_title("regions", fontsize=9)
    name = Path(ex.source_path).name
    fig.suptitle(title or f"{name} — {ex.target}: score {ex.baseline:.3f}, model {ex.model_id} "
                          f"(occlusion; red supports the score)", fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return out

"""Clinical-style figures: a 10 s EEG page of the canonical channels."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tokenizer import Recording  # noqa: E402


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
            ax.text(ann.onset, spacing * 0.8, ann.text[:30], color="tab:blue", fontsize=7, rotation=0)
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

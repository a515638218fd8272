"""The trend part of ``clef demo``: an hour of ICU EEG with a change at a known time, trended.

Reached through the ``trend`` entry point of ``clef.demo_steps`` (``clef`` may not import
``benchmark_tasks``: ARCHITECTURE.md, "Packages and layers"; the trend lives here for the
same reason ``clef trend`` does: it scores with the benchmark's probes). Called with the
hospital folder, the aligned checkpoint, the demo's output folder and its rich console,
after the benchmark step wrote its probes. Writes::

    OUT/long/                    one clef synth-long recording and its truth (an input)
    OUT/trend/                   trend.parquet, csa.parquet, changes.parquet, trend.png
    OUT/trend/section.md         its part of the demo's results page

The recording is the cheapest one that shows a change: one hour of a comatose ICU
patient who goes into burst suppression (``burst_suppression_onset``), the onset drawn in
the second half of the hour (:data:`DEMO_LONG_CONFIG`) so that it falls after the change
rule's warm-up (one context of the model plus ``k + min_history`` strides at 1-minute
strides), trended every minute with the rule's defaults (:class:`clef.trend.TrendConfig`).
The scores traced are those of the benchmark's EEG-finding probes with the best test
AUROC (:data:`MAX_TRACES`; all probes when none is a finding's): a figure a reader can
follow, not one line per task of the suite.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark_tasks.probes import TaskProbe, load_probes
from clef.synthetic.long import LongRecordingConfig, synthesize_long_recordings

if TYPE_CHECKING:
    from clef.trend import TrendResult

__all__ = ["DEMO_HOURS", "DEMO_KIND", "DEMO_LONG_CONFIG", "DEMO_STRIDE", "MAX_TRACES", "demo_step", "traced_probes"]

log = logging.getLogger(__name__)

#: Kind of the demo's long recording: a step change that shows on the CSA.
DEMO_KIND = "burst_suppression_onset"
#: Its duration: an hour holds a 1280 s context, the change rule's warm-up and a change after it.
DEMO_HOURS = 1.0
#: Onset in the second half of the hour: past the warm-up of the change rule at 1-minute strides.
DEMO_LONG_CONFIG = LongRecordingConfig(onset_fraction=(0.55, 0.6))
#: Time between trend points.
DEMO_STRIDE = "1min"
#: Probe scores traced at most.
MAX_TRACES = 4


def traced_probes(probes: dict[str, TaskProbe], n: int = MAX_TRACES) -> dict[str, TaskProbe]:
    """The ``n`` EEG-finding probes with the best test AUROC (any probes when none is a finding's), by task name."""
    if n < 0:
        raise ValueError(f"n must be >= 0, found {n}")
    findings = {t: p for t, p in probes.items() if p.info.get("category") == "finding"}
    pool = findings or probes

    def auroc(t: str) -> float:
        v = pool[t].info.get("auroc")
        return float(v) if isinstance(v, (int, float)) else float("-inf")

    return {t: pool[t] for t in sorted(sorted(pool, key=auroc, reverse=True)[:n])}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def demo_step(hospital: Path, checkpoint: Path, out: Path, console: Any = None) -> "TrendResult":
    """Synthesise one long recording with a known onset, trend it with ``checkpoint`` and the demo's probes.

    Parameters
    ----------
    hospital : path
        The demo hospital (unused: the long recording is its own input, ``out/long``).
    checkpoint : path
        The aligned checkpoint (the one the benchmark's probes were fitted on).
    out : path
        Demo output folder; the benchmark's probes are read from ``out/benchmark/results``
        (none found: the trend has the embedding's change only).
    console : rich.console.Console, optional

    Returns
    -------
    clef.trend.TrendResult
    """
    from rich.console import Console

    from clef.embedding import Embedder
    from clef.synthetic.hospital import load_truth
    from clef.trend import trend
    from clef.viz import plot_trend
    from tokenizer.atomic import write_text_atomic

    console = console or Console()
    out = Path(out)
    long_dir, folder = out / "long", out / "trend"
    s = synthesize_long_recordings(long_dir, 1, hours=DEMO_HOURS, seed=0, kinds=(DEMO_KIND,), config=DEMO_LONG_CONFIG,
                                   workers=1, overwrite=True)
    truth = load_truth(long_dir).row(0, named=True)
    onset = float(truth["onset_s"])
    path = long_dir / truth["path"]
    console.print(f"{truth['path']}: {DEMO_HOURS:g} h of {truth['setting'].upper()} EEG, {DEMO_KIND}: burst "
                  f"suppression from {_minutes(onset)} ({onset:g} s; the synthetic truth), written in "
                  f"{s.seconds:.0f} s → {long_dir}")
    embedder = Embedder(checkpoint)
    found = load_probes(out / "benchmark" / "results", model_id=embedder.model_id, dim=int(embedder.cfg.model.dim))
    probes = traced_probes(found)
    r = trend(path, embedder, probes=probes, stride_s=DEMO_STRIDE)
    r.write(folder)
    png = plot_trend(r, folder / "trend.png")
    said = [f"{c.signal}: a change at {_minutes(c.onset_s)} ({c.onset_s - onset:+.0f} s from the true onset), "
            f"flagged at {_minutes(c.detected_s)}" for c in r.changes]
    flagged = "; ".join(said) if said else "no change flagged"
    scored = (", ".join(probes) + (f" ({len(probes)} of the benchmark's {len(found)}: the findings' best by test "
                                   "AUROC)" if len(probes) < len(found) else "")
              if probes else "no probe of this checkpoint (the embedding's change only)")
    console.print(f"trend: {r.n_points} points every {r.config.stride_s:g} s, probes: {scored}; {flagged} → {png}")
    rel = png.relative_to(out).as_posix()
    lines = ["## Trend of a long recording", "",
             f"One hour of synthetic ICU EEG (`clef synth-long`, kind `{DEMO_KIND}`): a comatose patient with severe "
             f"diffuse slowing goes into **burst suppression at {_minutes(onset)}** ({onset:g} s, the synthetic "
             f"truth). `clef trend` with the demo's aligned checkpoint, a point every {r.config.stride_s:g} s "
             f"({r.n_points} points, each the embedding of the {r.context_s:g} s before it), probes: {scored}.", "",
             f"**Flagged changes:** {flagged}.", "",
             f"![trend of {truth['path']}]({rel})", "",
             "Left and right hemisphere CSA above, probe scores and the embedding's change distance with its "
             "threshold below; a red line is a change flagged in the embedding, a dashed one in a score. The rule "
             "judges no boundary before one context plus its warm-up of strides (README, \"Trends of long "
             "recordings\"). Tables: " + ", ".join(f"[{n}]({(folder / f'{n}.parquet').relative_to(out).as_posix()})"
                                                 for n in ("trend", "csa", "changes")) + "."]
    write_text_atomic("\n".join(lines) + "\n", folder / "section.md")
    return r

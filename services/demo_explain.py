"""The explanation part of ``clef demo``: where one positive session's probe score comes from.

Reached through the ``explain`` entry point of ``clef.demo_steps`` (``clef`` may not
import ``services``: ARCHITECTURE.md, "Packages and layers"), called with the hospital
folder, the aligned checkpoint, the demo's output folder and its rich console, after the
benchmark step wrote its probes and the services step its store. It runs what ``clef
explain SESSION --task TASK --probes RESULTS --store STORE`` runs
(:func:`services.explain.run_explain`) on one session and writes::

    OUT/explain/explanation.json, explanation.png
    OUT/explain/section.md         its part of the demo's results page

The session: a positive of a task that has a probe of this checkpoint, preferably a
finding other than a normal EEG, a test patient's session (the probe never saw it) and
one of at most :data:`MAX_MINUTES` (every occluded variant is the whole session tokenized and encoded again);
among those, the one the probe scores highest. Where the benchmark wrote no probe (a
``--quick`` hospital too small for any task), the step says so and explains nothing.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from services.explain import run_explain

__all__ = ["MAX_MINUTES", "Choice", "choose_session", "demo_step"]

log = logging.getLogger(__name__)

#: Longest session preferred for the explanation: a routine EEG's length.
MAX_MINUTES = 20.0


@dataclass(frozen=True)
class Choice:
    """The session the demo explains and the probe it explains."""

    task: str
    session_id: str
    split: str
    score: float


def choose_session(labels: pl.DataFrame, probes: dict[str, Any], session_ids: list[str], vectors: np.ndarray,
                   durations: dict[str, float] | None = None) -> Choice | None:
    """A positive session of a probed task to explain (see the module docstring), or None.

    Parameters
    ----------
    labels : polars.DataFrame
        The suite's labels (``task``, ``session_id``, ``label``, ``split``).
    probes : dict
        ``{task: scorer}`` of this checkpoint.
    session_ids : list of str
        Stored sessions, in the rows of ``vectors``.
    vectors : ndarray, (n, dim)
        Their embeddings.
    durations : dict, optional
        ``{session_id: seconds}``; a session of unknown duration counts as short.
    """
    durations = durations or {}
    row_of = {sid: i for i, sid in enumerate(session_ids)}
    pos = labels.filter((pl.col("label") == 1) & pl.col("task").is_in(sorted(probes)))
    best: tuple[tuple[bool, bool, bool, float], Choice] | None = None
    for task, sid, split in pos.select("task", "session_id", "split").iter_rows():
        if sid not in row_of:
            continue
        score = float(probes[task](vectors[row_of[sid]]))
        short = (durations.get(sid) or 0.0) <= MAX_MINUTES * 60
        rank = (task != "eeg_normal", split == "test", short, score)
        if best is None or rank > best[0]:
            best = (rank, Choice(task, sid, split, score))
    return best[1] if best else None


def demo_step(hospital: Path, checkpoint: Path, out: Path, console: Any = None) -> dict[str, Any] | None:
    """Explain one positive session's probe score (``out/explain``), with its nearest stored sessions.

    Parameters
    ----------
    hospital : path
        The demo hospital (its ``reports/`` give the examples' findings).
    checkpoint : path
        The aligned checkpoint (the store's model and the probes').
    out : path
        Demo output folder: probes from ``out/benchmark/results``, labels from
        ``out/benchmark/suite.yaml``, the store ``out/store``.
    console : rich.console.Console, optional

    Returns
    -------
    dict or None
        ``explanation.json``'s content; None when there is no probe or positive session.
    """
    from rich.console import Console
    from rich.table import Table

    from benchmark_tasks.probes import load_probes
    from clef.embedding import Embedder
    from services.store import EmbeddingStore
    from tokenizer.atomic import write_text_atomic

    console = console or Console()
    out, hospital = Path(out), Path(hospital)
    results, store, folder = out / "benchmark" / "results", out / "store", out / "explain"
    labels_path = out / "benchmark" / "suite" / "labels.parquet"
    model_id = Embedder(checkpoint).model_id
    probes = load_probes(results, model_id=model_id)
    if not probes or not labels_path.is_file() or not EmbeddingStore(store).exists:
        console.print("[yellow]no explanation[/]: the benchmark wrote no probe of this checkpoint (or no store)")
        return None
    st = EmbeddingStore(store)
    ids, vectors = st.matrix(model_id)
    sessions = st.sessions()
    durations = dict(zip(sessions["session_id"].to_list(), sessions["duration_s"].to_list()))
    choice = choose_session(pl.read_parquet(labels_path), probes, ids, vectors, durations)
    if choice is None:
        console.print("[yellow]no explanation[/]: no stored session is a positive of a probed task")
        return None
    written = run_explain(choice.session_id, checkpoint, task=choice.task, probes=results, store=store,
                          reports=hospital / "reports", out=folder)
    d = json.loads(written["json"].read_text(encoding="utf-8"))
    sm = d["summary"]
    step = d["time"]["step_s"] / 60
    minute = "none" if sm["top_minute"] is None else f"{sm['top_minute'] * step:g}–{(sm['top_minute'] + 1) * step:g} min"
    share = sm["band_shares"].get(sm["top_band"]) if sm["top_band"] else None
    band = "none" if not sm["top_band"] else f"{sm['top_band']}" + (
        f" ({share:.0%} of the bands' positive attribution)" if share is not None and math.isfinite(share) else "")
    said = (f"hemisphere: {sm['hemisphere'] or 'neither'} (occluding it costs the score more); top band: {band}; "
            f"top minute: {minute}")
    auroc = probes[choice.task].info.get("auroc")
    weak = ("The demo's models train for a few steps and its probe is weak" +
            (f" (test AUROC {float(auroc):.2f})" if isinstance(auroc, (int, float)) else "") +
            ": this is the method at work, not where a trained model looks.")
    who = "a test patient's session, unseen by the probe" if choice.split == "test" else f"a {choice.split} session"
    console.print(f"explained {choice.session_id} ({who}), positive for {choice.task}: probe score "
                  f"{d['baseline']:.3f}, {d['n_variants']} occluded variants in {d['seconds']:.0f} s; {said} "
                  f"→ {written['figure']}")
    examples = d.get("examples") or []
    if examples:
        t = Table(title=f"explanation by example: the stored sessions nearest {choice.session_id}",
                  title_justify="left")
        for col in ("#", "session", "cosine", "report findings"):
            t.add_column(col, justify="right" if col in ("#", "cosine") else "left")
        for e in examples:
            t.add_row(str(e["rank"]), e["session_id"], f"{e['score']:.3f}", ", ".join(e["report_findings"] or []))
        console.print(t)

    minutes_by = ("their first-order estimate (one gradient pass)" if d.get("time_method") == "gradient"
                  else "occlusion too")

    def rel(p: Path) -> str:  # the page's links are relative to OUT
        return Path(p).relative_to(out).as_posix()

    lines = ["## Explanation of a probe score", "",
             f"`clef explain {choice.session_id} --task {choice.task}` with the demo's aligned checkpoint, probes and "
             f"store: session {choice.session_id} ({who}) is a positive of `{choice.task}`, and the probe scores it "
             f"**{d['baseline']:.3f}**. Occlusion (each part taken away, the session embedded and scored again; "
             f"{d['n_variants']} variants in {d['seconds']:.0f} s; the minutes by {minutes_by}) says: **{said}**. "
             f"{weak}", "",
             f"![explanation of {choice.session_id}]({rel(written['figure'])})", "",
             "Left and right hemisphere CSA with each band's attribution beside its rows and the top minute "
             "outlined, the attribution per minute below, the scalp map of the electrodes' attribution and the "
             "regions' bars (red supports the score, blue opposes it). All numbers: "
             f"[explanation.json]({rel(written['json'])})."]
    if examples:
        lines += ["", "The nearest stored sessions (explanation by example), with the findings their reports state:",
                  "", "| # | session | cosine | report findings |", "|---|---|---|---|"]
        lines += [f"| {e['rank']} | {e['session_id']} | {e['score']:.3f} | {', '.join(e['report_findings'] or []) or '—'} |"
                  for e in examples]
    write_text_atomic("\n".join(lines) + "\n", folder / "section.md")
    return d

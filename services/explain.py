"""``clef explain``: an explanation of one session's score, with the nearest labelled sessions.

The attribution is :func:`clef.explain.explain` (occlusion over channels, regions,
minutes and bands); this module resolves what the command line names — a session id of a
store or an EDF path, the benchmark's probe of a task (:func:`benchmark_tasks.probes.load_probes`)
or another stored session to compare with — and adds the **explanation by example**: the
session's nearest neighbours in the store (:class:`services.search.CohortSearcher`), each
with the findings its report states (:func:`reports.findings.finding_labels`) when the
reports folder holds ``<session_id>.txt``. It lives in ``services`` because it reads the
store and the benchmark's probes, both layers above ``clef``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

log = logging.getLogger(__name__)


class ExplainError(ValueError):
    """What the command line names cannot be explained (one line, for the user)."""


@dataclass(frozen=True)
class Resolved:
    """A session to explain: its file and, when it is a stored session, its id."""

    path: Path
    session_id: str | None


def resolve_session(session: str, store: Path | None) -> Resolved:
    """An EDF path, or a session id of ``store`` (its row's path under the store's archive).

    Raises
    ------
    ExplainError
        Neither an existing file nor a session of the store (or no store given).
    """
    from services.store import EmbeddingStore

    p = Path(session)
    if p.is_file():
        return Resolved(p, None)
    if store is None:
        raise ExplainError(f"{session}: no such file (give an EDF path, or a session id with --store)")
    st = EmbeddingStore(store)
    st.require()
    sessions = st.sessions()
    rows = sessions.filter(sessions["session_id"] == session)
    if rows.height == 0:
        raise ExplainError(f"session {session!r} is not in the store {store} ({sessions.height} sessions) and is "
                           "not a file")
    archive = st.info().get("archive")
    path = Path(archive) / rows["path"][0] if archive else Path(rows["path"][0])
    if not path.is_file():
        raise ExplainError(f"session {session!r}: its file {path} is missing (the store's archive moved?)")
    return Resolved(path, session)


def report_findings(reports: Path | None, session_id: str) -> list[str] | None:
    """Findings a session's report states as present (None without a report)."""
    from reports.findings import finding_labels

    if reports is None or not (reports / f"{session_id}.txt").is_file():
        return None
    labels = finding_labels((reports / f"{session_id}.txt").read_text(encoding="utf-8", errors="replace"))
    return sorted(k for k, v in labels.items() if v)


def nearest_examples(store: Path, vector: np.ndarray, model_id: str, *, k: int = 5, exclude_sha256: str = "",
                     reports: Path | None = None) -> list[dict[str, Any]]:
    """The ``k`` stored sessions nearest ``vector`` (the explained session's own content left out),
    with their report findings (explanation by example)."""
    from services.search import CohortSearcher

    searcher = CohortSearcher(str(store), model_id)
    row = searcher.row_of_sha(exclude_sha256)
    rows = [row] if row is not None else []
    out = []
    for n in searcher.search(vector, k, exclude_rows=rows):
        d = n.to_dict(public=True)
        d["report_findings"] = report_findings(reports, n.session_id)
        out.append(d)
    return out


def default_reports(store: Path | None) -> Path | None:
    """``reports/`` beside or above the store's archive (the synthetic hospital's layout), if there."""
    from services.store import EmbeddingStore

    if store is None:
        return None
    archive = EmbeddingStore(store).info().get("archive")
    for cand in ([Path(archive) / "reports", Path(archive).parent / "reports"] if archive else []):
        if cand.is_dir():
            return cand
    return None


def explain_command(
    session: str = typer.Argument(..., help="EDF/BDF file, or a session id of --store."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Session-transformer checkpoint directory."),
    task: str | None = typer.Option(None, "--task", help="Explain this task's probe score (with --probes)."),
    probes: Path | None = typer.Option(None, "--probes", help="Benchmark results folder (RESULTS/probes/*.json)."),
    neighbour: str | None = typer.Option(None, "--neighbour", help="Explain the similarity to this stored session "
                                                                   "(with --store)."),
    store: Path | None = typer.Option(None, "--store", help="Embedding store: session ids, neighbours, examples."),
    reports: Path | None = typer.Option(None, "--reports", help="Folder of <session_id>.txt reports for the "
                                                                "examples' findings (default: reports/ beside the "
                                                                "store's archive)."),
    examples: int = typer.Option(5, "--examples", min=0, help="Nearest stored sessions shown (needs --store)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: SESSION's name + '.explain')."),
    minute: float = typer.Option(60.0, "--minute", help="Seconds per time step."),
    channels: bool = typer.Option(True, "--channels/--regions-only", help="Occlude every channel (the scalp map) "
                                                                          "or only the regions (faster)."),
    time_method: str = typer.Option("auto", "--time", help="Minutes by 'occlusion' (one encoder pass each), "
                                                           "'gradient' (to first order, one backward pass) or "
                                                           "'auto' (occlusion while it is as cheap)."),
    hemisphere_baseline: str = typer.Option("mirror", "--hemisphere-baseline",
                                            help="How a hemisphere is taken away: 'mirror' (its electrodes "
                                                 "replaced by their homologues) or 'absent' (zero input)."),
    figure: bool = typer.Option(True, "--figure/--no-figure", help="Draw explanation.png."),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
) -> None:
    """Where a session's score comes from: occlusion over channels, regions, minutes and bands (JSON + PNG)."""
    from clef.cli import err
    from services.cli import _fail

    try:
        written = run_explain(session, checkpoint, task=task, probes=probes, neighbour=neighbour, store=store,
                              reports=reports, examples=examples, out=out, minute_s=minute, channels=channels,
                              time_method=time_method, hemisphere_baseline=hemisphere_baseline, figure=figure,
                              device=device)
    except Exception as exc:  # noqa: BLE001 - sorted below: expected errors are one line
        from services.store import StoreError
        from tokenizer.checkpoint_io import CheckpointError
        from tokenizer.errors import IngestError

        if isinstance(exc, (ExplainError, StoreError, CheckpointError, IngestError, FileNotFoundError, ValueError)):
            _fail(str(exc))
            return
        raise
    err.print(f"explanation -> {', '.join(str(p) for p in written.values())}", highlight=False)


def run_explain(session: str, checkpoint: Path, *, task: str | None = None, probes: Path | None = None,
                neighbour: str | None = None, store: Path | None = None, reports: Path | None = None,
                examples: int = 5, out: Path | None = None, minute_s: float = 60.0, channels: bool = True,
                time_method: str = "auto", hemisphere_baseline: str = "mirror", figure: bool = True,
                device: str = "cpu") -> dict[str, Path]:
    """What ``clef explain`` does; returns ``{"json": path, "figure": path}``.

    Raises
    ------
    ExplainError
        Both or neither of ``task`` and ``neighbour``; a task without probes, or one the
        probes do not have; a neighbour or session not in the store.
    """
    from benchmark_tasks.probes import load_probes
    from clef.embedding import Embedder
    from clef.explain import explain, similarity_scorer
    from clef.trend import check_probes
    from clef.viz import plot_explanation
    from services.store import EmbeddingStore
    from tokenizer.atomic import write_json_atomic

    if (task is None) == (neighbour is None):
        raise ExplainError("give exactly one of --task (a probe score, with --probes) and --neighbour (the "
                           "similarity to a stored session, with --store)")
    if task is not None and probes is None:
        raise ExplainError("--task needs --probes RESULTS (the benchmark results folder holding probes/)")
    if neighbour is not None and store is None:
        raise ExplainError("--neighbour needs --store STORE (the store holding that session's embedding)")
    resolved = resolve_session(session, store)
    emb = Embedder(checkpoint, device=device)
    emb.tokenizer  # noqa: B018  (a checkpoint without its tokenizer fails here, before any reading)
    if task is not None:
        found = load_probes(probes)
        if task not in found:
            raise ExplainError(f"task {task!r} has no probe in {probes}/probes; tasks there: "
                               f"{', '.join(found) or 'none'}")
        check_probes({task: found[task]}, emb.model_id, int(emb.cfg.model.dim))
        scorer, target = found[task], f"probe:{task}"
    else:
        st = EmbeddingStore(store)  # type: ignore[arg-type]
        st.require()
        ref = st.vector(neighbour, emb.model_id)  # type: ignore[arg-type]
        if ref is None:
            raise ExplainError(f"neighbour {neighbour!r} has no embedding of model {emb.model_id} in the store "
                               f"{store}")
        scorer, target = similarity_scorer(ref), f"similarity:{neighbour}"
    ex = explain(resolved.path, emb, scorer, target=target, minute_s=minute_s, channels=channels,
                 time_method=time_method, hemisphere_baseline=hemisphere_baseline)
    if store is not None and examples > 0:
        try:
            ex.extra["examples"] = nearest_examples(store, ex.embedding, emb.model_id, k=examples,
                                                    exclude_sha256=ex.source_sha256,
                                                    reports=reports or default_reports(store))
        except (KeyError, ValueError) as exc:
            log.warning("no examples: %s", exc)
    folder = out if out is not None else Path(f"{resolved.path.name}.explain")
    folder.mkdir(parents=True, exist_ok=True)
    d = ex.to_dict()
    if resolved.session_id is not None:
        d["session_id"] = resolved.session_id
    written = {"json": write_json_atomic(d, folder / "explanation.json")}
    if figure:
        written["figure"] = plot_explanation(ex, folder / "explanation.png")
    return written


def register(app: typer.Typer) -> None:
    """Add ``explain`` to the ``clef`` command line."""
    app.command("explain")(explain_command)

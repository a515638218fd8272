"""The services part of ``clef demo``: embed the synthetic hospital into a store, index it, show neighbours.

``clef`` may not import ``services`` (DESIGN.md §3), so ``clef demo`` reaches this through
an entry point (proposed: ``[project.entry-points."clef.demo_steps"] services =
"services.demo:demo_step"``), called with the hospital folder, the trained checkpoint, the
demo's output folder and its rich console.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from services.batch import embed_archive
from services.config import EmbedConfig
from services.search import CohortSearcher, Neighbour

log = logging.getLogger(__name__)


def _findings(hospital: Path) -> dict[str, str]:
    """``{session_id: planted findings}`` from the synthetic hospital's hidden truth (demo only)."""
    from clef.synthetic.hospital import load_truth

    truth = load_truth(hospital)
    names = truth["finding_names"].to_list() if "finding_names" in truth.columns else [[]] * truth.height
    return {sid: ", ".join(n) if n else "normal" for sid, n in zip(truth["session_id"].to_list(), names)}


def demo_step(hospital: Path, checkpoint: Path, out: Path, console: Any = None, *, k: int = 5) -> list[Neighbour]:
    """Embed ``hospital`` into ``out/store``, build the index, print the neighbours of one abnormal session.

    Parameters
    ----------
    hospital : path
        Synthetic hospital folder (``sessions.csv``, ``edf/``, ``truth.parquet``).
    checkpoint : path
        Trained session-transformer checkpoint.
    out : path
        Demo output folder (the store goes to ``out/store``).
    console : rich.console.Console, optional
    k : int
        Neighbours shown.

    Returns
    -------
    list of Neighbour
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    hospital, store = Path(hospital), Path(out) / "store"
    s = embed_archive(hospital, checkpoint, store, EmbedConfig(workers=1), progress=True)
    console.print(f"embedded {s.embedded} sessions ({s.unchanged} already there, {s.failed} failed) into {store} "
                  f"in {s.seconds:.0f} s")
    searcher = CohortSearcher(store)
    console.print(f"index: {searcher.index.kind}, {searcher.index.n} sessions, dim {searcher.index.dim}")
    findings = _findings(hospital)
    ids = [sid for sid in searcher.index.session_ids if findings.get(sid, "normal") != "normal"]
    query = (ids or searcher.index.session_ids)[0]
    found = searcher.search_session(query, k, per_patient=True)
    meta = searcher.session_meta(query)
    t = Table(title=f"nearest sessions to {query} ({meta.get('site')}, {findings.get(query, '?')}), one per patient",
              title_justify="left")
    for col in ("#", "session", "cosine", "site", "age", "planted findings"):
        t.add_column(col, justify="right" if col in ("#", "cosine", "age") else "left")
    for n in found:
        t.add_row(str(n.rank), n.session_id, f"{n.score:.3f}", n.site or "",
                  "" if n.age_years is None else f"{n.age_years:.0f}", findings.get(n.session_id, "?"))
    console.print(t)
    return found

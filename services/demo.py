"""The services part of ``clef demo``: embed the synthetic hospital into a store, index it, show neighbours.

Besides one example query, the step reports for every planted finding how often a
session's nearest neighbours (other patients) share it, against the base rate: the
search example's honest summary, since one hand-picked query proves nothing.

``clef`` may not import ``services`` (ARCHITECTURE.md, "Packages and layers"), so
``clef demo`` reaches this through the ``services`` entry point of ``clef.demo_steps``
(pyproject.toml; its place in the demo: ``clef.cli.demo.LATER_STEPS``), called with the
hospital folder, the trained checkpoint, the demo's output folder and its rich console.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.batch import embed_archive
from services.config import EmbedConfig
from services.search import CohortSearcher, Neighbour

log = logging.getLogger(__name__)


def _planted(hospital: Path) -> dict[str, list[str]]:
    """``{session_id: planted finding names}`` from the synthetic hospital's hidden truth (demo only)."""
    from clef.synthetic.hospital import load_truth

    truth = load_truth(hospital)
    names = truth["finding_names"].to_list() if "finding_names" in truth.columns else [[]] * truth.height
    return {sid: list(n or []) for sid, n in zip(truth["session_id"].to_list(), names)}


@dataclass(frozen=True)
class Agreement:
    """How often a session's nearest neighbours share one of its planted findings.

    Attributes
    ----------
    finding : str
    queries : int
        Sessions with the finding (each one a query).
    precision : float
        Mean share of a query's ``k`` nearest sessions (other patients only) that have
        the finding too.
    base_rate : float
        Mean share of the other patients' sessions that have it: what ``k`` sessions
        drawn at random would give.
    """

    finding: str
    queries: int
    precision: float
    base_rate: float

    @property
    def lift(self) -> float:
        """``precision / base_rate`` (1: neighbours no better than chance)."""
        return self.precision / self.base_rate if self.base_rate > 0 else float("nan")


def neighbour_agreement(searcher: CohortSearcher, findings: dict[str, list[str]], *, k: int = 10,
                        min_queries: int = 3) -> list[Agreement]:
    """Per planted finding: share of each session's ``k`` nearest other-patient sessions that have it, vs the base rate.

    Parameters
    ----------
    searcher : CohortSearcher
    findings : dict
        ``{session_id: finding names}`` (sessions absent from it count as without findings).
    k : int
        Neighbours per query (one per patient, the query's own patient excluded).
    min_queries : int
        Findings held by fewer stored sessions are left out.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, found {k}")
    ids = list(searcher.index.session_ids)
    patient = {sid: searcher.session_meta(sid).get("patient_hash") for sid in ids}
    out = []
    for f in sorted({x for sid in ids for x in findings.get(sid, [])}):
        has = {sid for sid in ids if f in findings.get(sid, [])}
        if len(has) < min_queries:
            continue
        prec, base = [], []
        for q in sorted(has):
            others = [sid for sid in ids if patient[sid] != patient[q] or patient[q] is None]
            others = [sid for sid in others if sid != q]
            found = searcher.search_session(q, k, per_patient=True)
            if not found or not others:
                continue
            prec.append(sum(n.session_id in has for n in found) / len(found))
            base.append(sum(sid in has for sid in others) / len(others))
        if prec:
            out.append(Agreement(f, len(prec), float(np.mean(prec)), float(np.mean(base))))
    return out


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
    planted = _planted(hospital)
    findings = {sid: ", ".join(n) if n else "normal" for sid, n in planted.items()}
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
    agree = neighbour_agreement(searcher, planted, k=10)
    t = Table(title="how often the 10 nearest sessions (other patients) share a session's planted finding",
              title_justify="left")
    for col in ("planted finding", "sessions", "share among neighbours", "base rate", "lift"):
        t.add_column(col, justify="left" if col == "planted finding" else "right")
    for a in agree:
        t.add_row(a.finding, str(a.queries), f"{a.precision:.2f}", f"{a.base_rate:.2f}", f"{a.lift:.1f}x")
    console.print(t)
    return found

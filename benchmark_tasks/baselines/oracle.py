"""The oracle: session vectors made of the synthetic hospital's hidden truth (validation only).

A perfect encoder of the EEG could know no more of a session than what the simulator
drew into it. The oracle writes exactly that as features, and the benchmark probes them
with the same probes, splits and bootstrap as every model (an :class:`EmbeddingSet` of
kind ``oracle``), so its AUROC is each task's ceiling. A task whose label is not in the
EEG (a negative control, a report's missed finding, a code the simulator gives no
signature) keeps the oracle near 0.5: that is the point, and headroom is then undefined
(:func:`benchmark_tasks.metrics.headroom`).

Features per session (:data:`ORACLE_FEATURES`, from ``truth.parquet``):

* per planted finding type of ``clef.synthetic.spec.FINDINGS``: its severity (0 when
  absent; the largest when drawn twice) and its side one-hot ``left`` / ``right`` /
  ``bilateral`` (``bilateral``: present without a side, or on both sides);
* the posterior dominant rhythm: ``pdr_present`` and ``pdr_hz`` (0 when absent);
* the vigilance states' shares of the session (awake, drowsy, N2, N3);
* ``log1p`` of the counts of interictal discharges and of seizures;
* age in years (the simulator ages the background and the PDR with it).

The codes, report text, site and sex of a session are not features: they are not what
the EEG holds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from benchmark_tasks.embeddings import EmbeddingSet
from benchmark_tasks.tables import require_columns
from clef.synthetic.eeg import STATES
from clef.synthetic.spec import FINDINGS

__all__ = ["ORACLE_FEATURES", "TRUTH_COLUMNS", "oracle_embeddings", "oracle_features"]

_SIDES = ("left", "right", "bilateral")


#: Columns of ``truth.parquet`` the oracle reads.
TRUTH_COLUMNS: tuple[str, ...] = ("session_id", "findings", "pdr_hz", "states", "n_ieds", "n_seizures",
                                  "age_years")

#: Feature names, in vector order.
ORACLE_FEATURES: tuple[str, ...] = (
    *(f"{f}_{part}" for f in FINDINGS for part in ("severity", *_SIDES)),
    "pdr_present", "pdr_hz",
    *(f"state_{s}" for s in STATES),
    "log1p_ieds", "log1p_seizures", "age_years",
)


def _finding_block(findings: list[dict] | None) -> list[float]:
    names = FINDINGS
    sev = dict.fromkeys(names, 0.0)
    sides: dict[str, set[str]] = {f: set() for f in names}
    for f in findings or []:
        name = f.get("name")
        if name not in sev:
            raise ValueError(f"truth: unknown planted finding {name!r}; expected one of {names}")
        sev[name] = max(sev[name], float(f.get("severity") or 0.0))
        sides[name].add({"L": "left", "R": "right"}.get(f.get("side") or "", "bilateral"))
    out: list[float] = []
    for name in names:
        s = sides[name]
        side = "" if not s else ("bilateral" if "bilateral" in s or len(s) > 1 else next(iter(s)))
        out += [sev[name], *(float(side == x) for x in _SIDES)]
    return out


def _state_block(states: list[dict] | None) -> list[float]:
    names = STATES
    length = dict.fromkeys(names, 0.0)
    for st in states or []:
        if st.get("state") in length:
            length[st["state"]] += max(0.0, float(st["stop_s"]) - float(st["start_s"]))
    total = sum(length.values())
    return [length[s] / total if total > 0 else 0.0 for s in names]


def oracle_features(truth: pl.DataFrame) -> tuple[list[str], np.ndarray]:
    """Oracle vectors of the sessions of a truth table.

    Parameters
    ----------
    truth : polars.DataFrame
        ``truth.parquet`` of a synthetic hospital (at least :data:`TRUTH_COLUMNS`).

    Returns
    -------
    session_ids : list of str
    vectors : ndarray, (n, len(ORACLE_FEATURES)), float32
        Columns in :data:`ORACLE_FEATURES` order.

    Raises
    ------
    ValueError
        Missing columns, duplicate sessions or an unknown finding name.
    """
    require_columns(truth, TRUTH_COLUMNS, "truth table")
    ids = truth["session_id"].cast(pl.String).to_list()
    if len(set(ids)) != len(ids):
        raise ValueError("truth table: session ids are not unique")
    rows = []
    for r in truth.select(TRUTH_COLUMNS).iter_rows(named=True):
        pdr = r["pdr_hz"]
        rows.append(_finding_block(r["findings"])
                    + [float(pdr is not None), float(pdr or 0.0)]
                    + _state_block(r["states"])
                    + [float(np.log1p(r["n_ieds"] or 0)), float(np.log1p(r["n_seizures"] or 0)),
                       float(r["age_years"]) if r["age_years"] is not None else float("nan")])
    x = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(ORACLE_FEATURES))
    return ids, x


def oracle_embeddings(hospital: str | os.PathLike[str], session_ids: Sequence[str] | None = None, *,
                      name: str = "oracle") -> EmbeddingSet:
    """The oracle :class:`EmbeddingSet` of a synthetic hospital (kind ``oracle``, a baseline).

    Parameters
    ----------
    hospital : path
        Synthetic hospital folder (with ``truth.parquet``).
    session_ids : sequence of str, optional
        Keep only these sessions (default: all).
    name : str
        Name in the results.

    Raises
    ------
    FileNotFoundError
        No ``truth.parquet`` in ``hospital``.
    ValueError
        A malformed truth table, or none of ``session_ids`` in it.
    """
    from benchmark_tasks.truth import hospital_truth

    truth = hospital_truth(hospital)
    ids, x = oracle_features(truth)
    if session_ids is not None:
        row = {s: i for i, s in enumerate(ids)}
        keep = [s for s in dict.fromkeys(session_ids) if s in row]
        if not keep:
            raise ValueError(f"{hospital}: none of the {len(session_ids)} sessions asked for is in the hospital's "
                             "truth (is the suite made from this hospital?)")
        ids, x = keep, x[[row[s] for s in keep]]
    digest = hashlib.sha256((Path(hospital) / "truth.parquet").read_bytes()).hexdigest()[:12]
    return EmbeddingSet(name, ids, x, kind="oracle", model_id=f"truth-{digest}", source=str(hospital), baseline=True)

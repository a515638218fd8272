"""What the stored-session and upload endpoints both answer with: metadata, task probabilities, similar sessions."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.api.errors import ApiError, FieldErrorOut
from services.api.models import NeighbourOut, SimilarOut
from services.api.state import ServiceState
from services.schemas import PUBLIC_SESSION_FIELDS
from services.search import CohortSearcher, Filter, FilterError, parse_filters

__all__ = ["filters_of", "probabilities", "public", "similar", "stored"]


def stored(searcher: CohortSearcher, session_id: str) -> dict[str, Any]:
    """The metadata of a stored session; 404 when the searcher does not hold it."""
    try:
        return searcher.session_meta(session_id)
    except KeyError:
        raise ApiError(404, f"session {session_id!r} not found", "unknown_session") from None


def public(meta: dict[str, Any]) -> dict[str, Any]:
    """The fields of a session's metadata that carry no PHI."""
    return {k: meta.get(k) for k in PUBLIC_SESSION_FIELDS}


def probabilities(state: ServiceState, x: np.ndarray, tasks: list[str] | None) -> dict[str, float]:
    """Probability of each task (default: every probe) for embedding ``x``; 404 for an unknown task."""
    names = tasks or list(state.probes)
    unknown = [t for t in names if t not in state.probes]
    if unknown:
        raise ApiError(404, f"unknown task(s): {', '.join(unknown)}; GET /tasks lists them", "unknown_task")
    return {t: round(float(state.probes[t](x)), 6) for t in names}


def filters_of(filters: list[str], loc: tuple[str, str] = ("query", "filter")) -> list[Filter]:
    """Parsed filters; 422 (kind ``invalid_request``, the field at ``loc``) for one that does not parse."""
    try:
        return parse_filters(filters)
    except FilterError as exc:
        raise ApiError(422, str(exc), "invalid_request",
                       errors=[FieldErrorOut(loc=list(loc), msg=str(exc), type="value_error")]) from None


def similar(state: ServiceState, searcher: CohortSearcher, vector: np.ndarray, k: int, filters: list[str],
            per_patient: bool, query: str, *, session_id: str | None = None, sha: str | None = None,
            patient: str | None = None) -> SimilarOut:
    """The ``k`` stored sessions most similar to a stored session (``session_id``) or to ``vector``.

    An upload's own bytes (``sha``), if stored, are not their own neighbour, nor (with
    ``per_patient``) is its patient.
    """
    max_k = state.cfg.max_k
    if k > max_k:  # the route's Query(le=max_k) refuses it first; kept for direct calls
        raise ApiError(422, f"k of at most {max_k} expected, found {k}", "invalid_request",
                       errors=[FieldErrorOut(loc=["query", "k"], msg=f"k of at most {max_k} expected",
                                             type="less_than_equal")])
    fs = filters_of(filters)
    if session_id is not None:
        found = searcher.search_session(session_id, k, fs, per_patient=per_patient)
    else:
        row = searcher.row_of_sha(sha)
        found = searcher.search(vector, k, fs, per_patient=per_patient,
                                exclude_rows=[row] if row is not None else [],
                                exclude_patient=patient if per_patient else None)
    return SimilarOut(model_id=state.model_id, query=query, k=k, filters=[str(f) for f in fs],
                      per_patient=per_patient, neighbours=[NeighbourOut(**n.to_dict(public=True)) for n in found])

"""Endpoints about stored sessions: metadata, task probabilities and similar sessions."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends

from services.api.answers import probabilities, public, similar, stored
from services.api.deps import Filters, State, Tasks, k_query, require_key
from services.api.errors import ApiError, error_responses
from services.api.models import NEIGHBOUR_LINKS, ProbabilitiesOut, SessionOut, SimilarOut

__all__ = ["sessions_router"]


def sessions_router(max_k: int) -> APIRouter:
    """The ``/sessions/...`` endpoints; ``k`` is documented and checked up to ``max_k``.

    The longer paths come first: ``{session_id:path}`` would match them too.
    """
    router = APIRouter(dependencies=[Depends(require_key)])
    errors = error_responses(401, 403, 404, 422, 500)

    @router.get("/sessions/{session_id:path}/probabilities", response_model=ProbabilitiesOut, tags=["probes"],
                responses=errors)
    def session_probabilities(session_id: str, state: State, task: Tasks = None) -> ProbabilitiesOut:
        """Task probabilities of a stored session."""
        searcher = state.current()
        stored(searcher, session_id)
        x = searcher.raw_vector(session_id)
        if x is None:  # an index saved without norms: read the vector from the store
            x = state.store.vector(session_id, state.model_id)
        if x is None:  # indexed but gone from the store
            raise ApiError(404, f"session {session_id!r} not found", "unknown_session")
        return ProbabilitiesOut(model_id=state.model_id, query=session_id,
                                probabilities=probabilities(state, x, task))

    @router.get("/sessions/{session_id:path}/similar", response_model=SimilarOut, tags=["search"],
                responses={**errors, **NEIGHBOUR_LINKS})
    def session_similar(session_id: str, state: State, k: int = k_query(max_k),
                        filter: Filters = [],  # noqa: A002,B006
                        per_patient: bool = False) -> SimilarOut:
        """Stored sessions most similar to a stored session (itself excluded)."""
        searcher = state.current()
        stored(searcher, session_id)
        return similar(state, searcher, np.zeros(0), k, filter, per_patient, session_id, session_id=session_id)

    @router.get("/sessions/{session_id:path}", response_model=SessionOut, tags=["sessions"], responses=errors)
    def session(session_id: str, state: State) -> SessionOut:
        """Non-PHI metadata of a stored session."""
        return SessionOut(**public(stored(state.current(), session_id)))

    return router

"""Search stored sessions by words: ``POST /search/text`` (see :mod:`services.text_search`)."""

# no ``from __future__ import annotations``: FastAPI must see the body model, a local of text_router
from typing import Any

from fastapi import APIRouter, Depends

from services.api.answers import filters_of
from services.api.deps import State, require_key
from services.api.errors import ApiError, error_responses
from services.api.models import NEIGHBOUR_LINKS, NeighbourOut, TextSearchOut, text_search_in
from services.text_search import NoReportTowerError

__all__ = ["text_router"]


def text_router(max_k: int) -> APIRouter:
    """The ``/search/text`` endpoint; ``k`` is documented and checked up to ``max_k``."""
    router = APIRouter(dependencies=[Depends(require_key)])
    body_model: Any = text_search_in(max_k)

    # 400, 411 and 413: the request-size guard of every POST (services.api.uploads.limit_uploads)
    @router.post("/search/text", response_model=TextSearchOut, tags=["search"],
                 responses={**error_responses(400, 401, 403, 409, 411, 413, 422, 500), **NEIGHBOUR_LINKS})
    def search_text(body: body_model, state: State) -> TextSearchOut:  # type: ignore[valid-type]
        """Stored sessions whose EEG is closest to the words, in the aligned checkpoint's report space.

        The text is embedded by the served checkpoint's report tower and compared (cosine)
        with every session's EEG projection into the report space, under the filters.
        """
        fs = filters_of(body.filters, ("body", "filters"))
        try:
            ts = state.text_searcher()
        except NoReportTowerError as exc:
            raise ApiError(409, f"the served checkpoint has no report tower for text search: {exc.reason}",
                           "no_report_tower") from None
        found = ts.search(body.text, body.k, fs, per_patient=body.per_patient)
        return TextSearchOut(model_id=state.model_id, text=body.text, k=body.k, filters=[str(f) for f in fs],
                             per_patient=body.per_patient,
                             neighbours=[NeighbourOut(**n.to_dict(public=True)) for n in found])

    return router

"""The service's response models, as its OpenAPI schema documents them (errors: :mod:`services.api.errors`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from services.api.errors import ApiModel
from services.text_search import MAX_QUERY_CHARS

__all__ = [
    "NEIGHBOUR_LINKS",
    "EmbeddingOut",
    "HealthOut",
    "NeighbourOut",
    "ProbabilitiesOut",
    "SessionOut",
    "SimilarOut",
    "TaskOut",
    "TasksOut",
    "TextSearchOut",
    "text_search_in",
]


class HealthOut(ApiModel):
    status: str
    model_id: str


class TaskOut(ApiModel):
    task: str
    category: str | None = None
    auroc: float | None = None


class TasksOut(ApiModel):
    model_id: str
    tasks: list[TaskOut]


class SessionOut(ApiModel):
    session_id: str
    site: str | None = None
    setting: str | None = None
    sex: str | None = None
    age_years: float | None = Field(None, description="Age at recording; 90 means 90 or older.")
    duration_s: float | None = None
    n_windows: int | None = None
    reference: str | None = Field(None, description="Reference scheme the channel labels name, as recorded: REF, LE, "
                                                    "AVG, MAST, EAR, CZ, bipolar, unknown or mixed.")


class NeighbourOut(SessionOut):
    rank: int
    score: float = Field(description="Cosine similarity.")
    distance: float = Field(description="1 - cosine similarity.")


class SimilarOut(ApiModel):
    model_id: str
    query: str = Field(description="The stored session id, or 'upload'.")
    k: int
    filters: list[str]
    per_patient: bool
    neighbours: list[NeighbourOut]


class TextSearchOut(ApiModel):
    model_id: str
    text: str = Field(description="The query, stripped of surrounding white space.")
    k: int
    filters: list[str]
    per_patient: bool
    neighbours: list[NeighbourOut] = Field(description="Best first; `score` is the cosine of the session's EEG "
                                                       "projection with the text in the report space.")


def text_search_in(max_k: int) -> type[ApiModel]:
    """The body of ``POST /search/text``, with ``k`` of at most ``max_k`` (the app's ``ServeConfig.max_k``)."""

    class TextSearchIn(ApiModel):
        text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)] = \
            Field(description=f"Words, e.g. 'left temporal slowing' (1 to {MAX_QUERY_CHARS} characters).")
        k: int = Field(10, ge=1, le=max_k, description=f"Sessions to return (at most {max_k}).")
        filters: list[str] = Field(default_factory=list, description="KEY=VALUE: site=S01[,S02], sex=F, "
                                                                     "setting=emu, age=40-60, reference=LE.")
        per_patient: bool = Field(False, description="At most one session (the best) per patient.")

    return TextSearchIn


class EmbeddingOut(ApiModel):
    model_id: str
    dim: int
    n_windows: int
    duration_s: float
    format: str
    sha256: str = Field(description="SHA-256 of the uploaded bytes.")
    vector: list[float]
    window_vectors: list[list[float]] | None = None


class ProbabilitiesOut(ApiModel):
    model_id: str
    query: str
    probabilities: dict[str, float]


# OpenAPI links from a similarity answer to its first neighbour's endpoints (clients and
# schemathesis's stateful phase follow them).
NEIGHBOUR_LINKS = {200: {"links": {
    name: {"operationRef": f"#/paths/~1sessions~1{{session_id}}{path.replace('/', '~1')}/get",
           "parameters": {"session_id": "$response.body#/neighbours/0/session_id"},
           "description": f"The first neighbour's {what}."}
    for name, path, what in (("FirstNeighbour", "", "metadata"),
                             ("FirstNeighbourProbabilities", "/probabilities", "task probabilities"),
                             ("FirstNeighbourSimilar", "/similar", "similar sessions"))}}}

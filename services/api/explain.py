"""``GET /sessions/{session_id}/explain?task=``: where a stored session's probe score comes from.

The attribution is :func:`clef.explain.explain` (occlusion over channels, regions,
minutes and bands) of the served probe of ``task``, on the session's recording in the
store's archive (read once; one explanation at a time, under the service's embedding
lock). The answer carries no PHI: channel, region and band names, numbers, the model id.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from services.api.answers import stored
from services.api.deps import State, require_key
from services.api.errors import ApiError, error_responses
from tokenizer.checkpoint_io import CheckpointError

__all__ = ["ExplainOut", "explain_router"]

#: Explanations kept per app.
_CACHED = 32


class ExplainOut(BaseModel):
    """Occlusion attribution of a stored session's probe score (``baseline - score without the part``;
    null: an absent electrode, or a minute without signal)."""

    model_config = ConfigDict(extra="forbid")

    model_id: str
    session_id: str
    task: str
    baseline: float = Field(description="The session's probability for the task, nothing occluded.")
    channel: dict[str, float | None] = Field(description="Per electrode (empty with channels=false).")
    region: dict[str, float | None] = Field(description="Per region: left, right (lateral electrodes), lobes.")
    time_step_s: float
    time: list[float | None] = Field(description="Per time step from the start of the recording.")
    band: dict[str, float | None] = Field(description="Per canonical band (delta, theta, alpha, beta).")
    hemisphere: str | None = Field(description="left or right: the side whose occlusion drops the score more.")
    top_minute: int | None
    top_band: str | None
    n_variants: int
    seconds: float


def explain_router() -> APIRouter:
    """The explain endpoint (included before the sessions router, whose ``{session_id:path}`` would match it)."""
    router = APIRouter(dependencies=[Depends(require_key)])
    # An explanation costs one encoder pass per channel, region, minute and band: the last
    # ones are kept (by content hash, task and channels), so asking again is free.
    cache: OrderedDict[tuple[str, str, str, bool], ExplainOut] = OrderedDict()

    @router.get("/sessions/{session_id:path}/explain", response_model=ExplainOut, tags=["probes"],
                responses=error_responses(401, 403, 404, 409, 422, 500))
    def session_explain(session_id: str, state: State,
                        task: str = Query(..., description="The probe task whose score is explained."),
                        channels: bool = Query(True, description="Occlude every electrode too (the scalp map); "
                                                                 "false: regions only, faster.")) -> ExplainOut:
        """Occlusion attribution of a stored session's task probability over electrodes, regions, minutes, bands."""
        from clef.explain import explain

        meta = stored(state.current(), session_id)
        if task not in state.probes:
            raise ApiError(404, f"task {task!r} has no probe (tasks: {', '.join(state.probes) or 'none'})",
                           "unknown_task")
        archive = state.store.info().get("archive")
        path = Path(archive) / str(meta.get("path")) if archive and meta.get("path") else None
        if path is None or not path.is_file():
            raise ApiError(404, f"session {session_id!r}: its recording is not in the store's archive",
                           "unknown_session")
        try:
            state.embedder.tokenizer  # noqa: B018  (loaded once; a checkpoint without one is refused here)
        except CheckpointError as exc:
            reason = str(exc).removeprefix(f"{exc.path}: ")  # no server path in an answer
            raise ApiError(409, f"the served checkpoint cannot read recordings to explain them: {reason}",
                           "no_tokenizer") from None
        key = (state.model_id, str(meta.get("source_sha256")), task, channels)
        if key in cache:
            cache.move_to_end(key)
            return cache[key].model_copy(update={"session_id": session_id})
        with state.lock:
            ex = explain(path, state.embedder, state.probes[task], target=f"probe:{task}", channels=channels)
        d = ex.to_dict()
        cache[key] = ExplainOut(model_id=state.model_id, session_id=session_id, task=task, baseline=ex.baseline,
                          channel=d["channel"] if channels else {}, region=d["region"],
                          time_step_s=ex.minute_s, time=d["time"]["attribution"],
                          band={b: v["attribution"] for b, v in d["band"].items()},
                          hemisphere=ex.hemisphere, top_minute=ex.top_minute, top_band=ex.top_band,
                          n_variants=ex.n_variants, seconds=round(ex.seconds, 3))
        while len(cache) > _CACHED:
            cache.popitem(last=False)
        return cache[key]

    return router

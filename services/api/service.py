"""Endpoints about the service itself: liveness and the probe tasks it scores."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from services.api.deps import State, require_key
from services.api.errors import error_responses
from services.api.models import HealthOut, TaskOut, TasksOut

__all__ = ["router"]

router = APIRouter()


@router.get("/health", response_model=HealthOut, tags=["service"], responses=error_responses(500))
def health(state: State) -> HealthOut:
    """Liveness (no key needed)."""
    return HealthOut(status="ok", model_id=state.model_id)


@router.get("/tasks", response_model=TasksOut, dependencies=[Depends(require_key)], tags=["probes"],
            responses=error_responses(401, 403, 500))
def tasks(state: State) -> TasksOut:
    """Probe tasks available (from the benchmark results given with --probes)."""
    return TasksOut(model_id=state.model_id, tasks=[
        TaskOut(task=t, category=p.info.get("category"), auroc=p.info.get("auroc")) for t, p in state.probes.items()])

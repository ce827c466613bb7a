"""`/adaptive/projects/{id}/limits`: a project's and its environments' spending caps and rate
limits, with what their counters hold now (master key only, mounted by admin_api)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException

from adaptive_plugin.errors import AdaptiveError
from adaptive_plugin.limits import Limits, LimitsUpdate, ProjectLimitsView

if TYPE_CHECKING:
    from adaptive_plugin.adapters.runtime import Runtime


def _service(runtime: Runtime) -> Limits:
    if runtime.ctx.limits is None:
        raise HTTPException(status_code=409, detail={
            "message": "spending caps and rate limits are off (ADAPTIVE_LIMITS_ENABLED=false)", "code": "limits_disabled"})
    return runtime.ctx.limits


def _as_http(exc: AdaptiveError) -> HTTPException:
    return HTTPException(status_code=exc.status_code, detail={"message": exc.message, "code": exc.code})


def add_routes(router: APIRouter, runtime: Runtime, *, dependencies: Sequence[Any]) -> None:
    deps = list(dependencies)

    @router.get("/projects/{project_id}/limits", dependencies=deps, response_model=ProjectLimitsView,
                summary="The project's and its environments' spending caps and rate limits, with current usage")
    async def get_limits(project_id: str) -> ProjectLimitsView:
        try:
            return await _service(runtime).describe(project_id)
        except AdaptiveError as exc:
            raise _as_http(exc) from exc

    @router.put("/projects/{project_id}/limits", dependencies=deps, response_model=ProjectLimitsView,
                summary="Replace the limits of the project (environment null) or of one environment")
    async def put_limits(project_id: str, spec: LimitsUpdate) -> ProjectLimitsView:
        try:
            return await _service(runtime).set_limits(project_id, spec)
        except AdaptiveError as exc:
            raise _as_http(exc) from exc

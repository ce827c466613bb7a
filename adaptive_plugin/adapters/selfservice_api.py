"""The self-service API under `/adaptive/self` and the operator's admin-key routes.

Routes here have their own FastAPI dependency (`SelfService.authorize`); LiteLLM's custom
auth never sees them, and a project admin key is never accepted by LiteLLM's own routes
(`KeyService.authenticate` takes `ak-` keys only). A 403 answers a chat key or another
project's admin key, a 401 a missing or unknown credential; input errors are 400 or 422
naming the field. Bodies of errors: `{"detail": {"message", "code"}}`.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations, and the
# `Admin` dependency type is local to build_router.
import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Query

from adaptive_plugin.adapters.auth import is_master_key
from adaptive_plugin.adapters.selfservice import (
    USAGE_GROUPS,
    ProviderKeyStatus,
    RequestLogPage,
    RotateResult,
    SelfProject,
    SelfService,
    UsageReport,
    available_models,
    check_models,
)
from adaptive_plugin.errors import AdaptiveError, AuthenticationError
from adaptive_plugin.keys import ApiKeyCreated, ApiKeyView, ProviderKeyCreate
from adaptive_plugin.keys.admin import (
    AdminKeyCreate,
    AdminKeyCreated,
    AdminKeyView,
    AdminPrincipal,
    ProviderKeyOrder,
    ProviderKeyRotate,
    ProviderKeyUpdate,
    SelfProjectUpdate,
)

if TYPE_CHECKING:
    from adaptive_plugin.adapters.runtime import Runtime

T = TypeVar("T")
SELF_PREFIX = "/adaptive/self"
ENV_PATTERN = "^(dev|staging|production)$"
DAY_HELP = "YYYY-MM-DD (UTC) or an ISO 8601 time with a timezone"


def bearer(authorization: str | None) -> str:
    token = (authorization or "").strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    return token


def http_error(exc: AdaptiveError) -> HTTPException:
    return HTTPException(status_code=exc.status_code, detail={"message": exc.message, "code": exc.code})


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a synchronous operation in a thread; our errors and bad values become 4xx answers."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except AdaptiveError as exc:
        raise http_error(exc) from exc
    except ValueError as exc:
        raise HTTPException(status_code=400, detail={"message": str(exc), "code": "invalid_parameter"}) from exc


def build_router(svc: SelfService) -> APIRouter:
    router = APIRouter(prefix=SELF_PREFIX, tags=["self-service"])

    async def admin(
        authorization: Annotated[str | None, Header(description="Bearer pak-... (project admin) or the master key")] = None,
        project_id: Annotated[str | None, Query(
            description="The project to act on: required with the master key; with an admin key, only its own")] = None,
    ) -> AdminPrincipal:
        return await run(svc.authorize, bearer(authorization), project_id)

    Admin = Annotated[AdminPrincipal, Depends(admin)]

    @router.get("/project", response_model=SelfProject, summary="The project: plan, fallback, cost bias, allowed models")
    async def get_project(who: Admin) -> SelfProject:
        return await run(svc.project, who, svc.available_models())

    @router.patch("/project", response_model=SelfProject,
                  summary="Change fallback, default cost bias, allowed models or the cache (not the plan)")
    async def update_project(who: Admin, spec: SelfProjectUpdate) -> SelfProject:
        return await run(svc.update_project, who, spec, svc.available_models())

    @router.get("/provider-keys", response_model=list[ProviderKeyStatus],
                summary="Provider keys with status, health, cooldown, spend and last use (never the key)")
    async def list_provider_keys(
        who: Admin, environment: Annotated[str | None, Query(pattern=ENV_PATTERN)] = None,
    ) -> list[ProviderKeyStatus]:
        return await run(svc.provider_keys, who, environment)

    @router.post("/provider-keys", status_code=201, response_model=ProviderKeyStatus,
                 summary="Add a provider key (write-only: it is never returned)")
    async def add_provider_key(who: Admin, spec: ProviderKeyCreate) -> ProviderKeyStatus:
        return await run(svc.add_provider_key, who, spec)

    @router.post("/provider-keys/reorder", response_model=list[ProviderKeyStatus],
                 summary="Set the try order of one environment's keys for one provider")
    async def reorder_provider_keys(who: Admin, spec: ProviderKeyOrder) -> list[ProviderKeyStatus]:
        return await run(svc.reorder_provider_keys, who, spec)

    @router.patch("/provider-keys/{key_id}", response_model=ProviderKeyStatus,
                  summary="Change a key's priority, spending cap or rate limit (null clears a cap or limit)")
    async def update_provider_key(who: Admin, key_id: str, spec: ProviderKeyUpdate) -> ProviderKeyStatus:
        return await run(svc.update_provider_key, who, key_id, spec)

    @router.post("/provider-keys/{key_id}/rotate", response_model=RotateResult,
                 summary="Add the new key in the old one's place and revoke the old one, atomically")
    async def rotate_provider_key(who: Admin, key_id: str, spec: ProviderKeyRotate) -> RotateResult:
        return await run(svc.rotate_provider_key, who, key_id, spec.api_key)

    @router.post("/provider-keys/{key_id}/revoke", response_model=ProviderKeyStatus,
                 summary="Revoke a key: never used again")
    async def revoke_provider_key(who: Admin, key_id: str) -> ProviderKeyStatus:
        return await run(svc.revoke_provider_key, who, key_id)

    @router.get("/api-keys", response_model=list[ApiKeyView], summary="Chat API keys (ak-...): prefixes only")
    async def list_api_keys(
        who: Admin, environment: Annotated[str | None, Query(pattern=ENV_PATTERN)] = None,
    ) -> list[ApiKeyView]:
        return await run(svc.api_keys, who, environment)

    @router.post("/api-keys", status_code=201, response_model=ApiKeyCreated,
                 summary="Create a chat API key for an environment (shown once)")
    async def create_api_key(who: Admin, environment: Annotated[str, Query(pattern=ENV_PATTERN)]) -> ApiKeyCreated:
        return await run(svc.create_api_key, who, environment)

    @router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyView, summary="Revoke a chat API key")
    async def revoke_api_key(who: Admin, key_id: str) -> ApiKeyView:
        return await run(svc.revoke_api_key, who, key_id)

    @router.get("/requests", response_model=RequestLogPage, summary="The request log, newest first, a page at a time")
    async def request_log(
        who: Admin,
        environment: Annotated[str | None, Query(pattern=ENV_PATTERN)] = None,
        provider: Annotated[str | None, Query(max_length=40)] = None,
        key_source: Annotated[str | None, Query(pattern="^(byok|pooled|cache|none)$")] = None,
        cache: Annotated[str | None, Query(pattern="^(hit-exact|hit-semantic|miss|bypass)$")] = None,
        since: Annotated[str | None, Query(description=f"from (inclusive): {DAY_HELP}")] = None,
        until: Annotated[str | None, Query(description=f"to: {DAY_HELP}; a date includes its whole day")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=100, description="next_cursor of the previous page")] = None,
    ) -> RequestLogPage:
        return await run(svc.request_log, who, limit=limit, cursor=cursor, since=since, until=until,
                         environment=environment, provider=provider, key_source=key_source, cache=cache)

    @router.get("/usage", response_model=UsageReport,
                summary="Overhead fee and model cost of successful requests, from the ledger, exact to the micro-dollar")
    async def usage(
        who: Admin,
        group_by: Annotated[str, Query(description=f"comma-separated: {', '.join(USAGE_GROUPS)}")] = "day",
        environment: Annotated[str | None, Query(pattern=ENV_PATTERN)] = None,
        since: Annotated[str | None, Query(description="first UTC day, YYYY-MM-DD")] = None,
        until: Annotated[str | None, Query(description="last UTC day, YYYY-MM-DD (inclusive)")] = None,
    ) -> UsageReport:
        fields = [f.strip() for f in group_by.split(",") if f.strip()]
        return await run(svc.usage, who, group_by=fields, environment=environment, since=since, until=until)

    return router


def require_known_models(runtime: "Runtime", models: list[str] | None) -> None:
    """400 naming a model that is not one of the gateway's model groups (call on the event loop)."""
    try:
        check_models(available_models(runtime), models)
    except AdaptiveError as exc:
        raise http_error(exc) from exc


def routers(runtime: "Runtime") -> list[APIRouter]:
    """The self-service API, the operator's admin-key routes and (unless turned off) the dashboard."""
    svc = SelfService(runtime)
    out = [build_router(svc), build_operator_router(svc)]
    if runtime.settings.ui_enabled:
        from adaptive_plugin.adapters.ui import build_router as build_ui

        out.append(build_ui(svc))
    return out


def build_operator_router(svc: SelfService) -> APIRouter:
    """Project admin keys, issued by the operator (master key only)."""
    router = APIRouter(prefix="/adaptive/projects", tags=["adaptive"])

    async def master_only(authorization: Annotated[str | None, Header()] = None) -> None:
        if not is_master_key(bearer(authorization)):
            raise http_error(AuthenticationError("this endpoint needs the LiteLLM master key"))

    admin = [Depends(master_only)]

    @router.post("/{project_id}/admin-keys", dependencies=admin, status_code=201, response_model=AdminKeyCreated,
                 summary="Create a project admin key (pak-..., shown once)")
    async def create_admin_key(project_id: str, spec: AdminKeyCreate | None = None) -> AdminKeyCreated:
        return await run(svc.admins.create, project_id, label=spec.label if spec else "")

    @router.get("/{project_id}/admin-keys", dependencies=admin, response_model=list[AdminKeyView],
                summary="A project's admin keys (prefixes only)")
    async def list_admin_keys(project_id: str) -> list[AdminKeyView]:
        return await run(svc.admins.list, project_id)

    @router.post("/{project_id}/admin-keys/{key_id}/revoke", dependencies=admin, response_model=AdminKeyView,
                 summary="Revoke a project admin key (its dashboard sessions end too)")
    async def revoke_admin_key(project_id: str, key_id: str) -> AdminKeyView:
        return await run(svc.admins.revoke, project_id, key_id)

    return router

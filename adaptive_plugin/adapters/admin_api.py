"""The `/adaptive/*` admin API, mounted on the proxy's FastAPI app.

Every route but `/adaptive/select-model` needs the LiteLLM master key; `select-model` also
accepts a project key and answers for that project. `/adaptive/routes` shows the operator
what a project key can reach on the running proxy. Input is validated by pydantic (422 names
the field); our errors become JSON `{"detail": {"message", "code"}}` with their status code.
Provider keys are never returned: views carry a fingerprint and the last four characters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request

from adaptive_plugin.adapters import routing
from adaptive_plugin.adapters.auth import AuthGate, is_master_key
from adaptive_plugin.adapters.guard import route_table
from adaptive_plugin.adapters.runtime import OPERATOR, Runtime
from adaptive_plugin.adapters.selfservice_api import require_known_models, routers
from adaptive_plugin.boundary import check_chat_body, is_public, project_may_call
from adaptive_plugin.errors import AdaptiveError, AuthenticationError
from adaptive_plugin.keys import (
    ApiKeyCreated,
    ApiKeyView,
    Principal,
    ProjectCreate,
    ProjectUpdate,
    ProjectView,
    ProviderKeyCreate,
    ProviderKeyView,
)

T = TypeVar("T")
PREFIX = "/adaptive"


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("missing Authorization header: send 'Bearer <LiteLLM master key>'")
    token = authorization.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    return token


def as_http(exc: AdaptiveError) -> HTTPException:
    return HTTPException(status_code=exc.status_code, detail={"message": exc.message, "code": exc.code})


def build_router(runtime: Runtime, gate: AuthGate, *, opened_routes: frozenset[str] = frozenset()) -> APIRouter:
    ctx = runtime.ctx
    router = APIRouter(prefix=PREFIX, tags=["adaptive"])

    async def master_only(authorization: str | None = Header(default=None)) -> None:
        try:
            if not is_master_key(_bearer(authorization)):
                raise AuthenticationError("this endpoint needs the LiteLLM master key")
        except AdaptiveError as exc:
            raise as_http(exc) from exc

    async def call(fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except AdaptiveError as exc:
            raise as_http(exc) from exc
        except ValueError as exc:  # e.g. a bad group_by field
            raise HTTPException(status_code=400, detail={"message": str(exc), "code": "invalid_parameter"}) from exc

    admin = [Depends(master_only)]

    @router.get("/config", dependencies=admin, summary="The plugin's settings, secrets redacted")
    async def get_config() -> dict[str, Any]:
        return ctx.settings.redacted()

    @router.post("/projects", dependencies=admin, status_code=201, response_model=ProjectView)
    async def create_project(spec: ProjectCreate) -> ProjectView:
        require_known_models(runtime, spec.allowed_models)
        return await call(ctx.keys.create_project, spec)

    @router.get("/projects", dependencies=admin, response_model=list[ProjectView])
    async def list_projects() -> list[ProjectView]:
        return await call(ctx.keys.list_projects)

    @router.get("/projects/{project_id}", dependencies=admin, response_model=ProjectView)
    async def get_project(project_id: str) -> ProjectView:
        return await call(ctx.keys.get_project, project_id)

    @router.patch("/projects/{project_id}", dependencies=admin, response_model=ProjectView)
    async def update_project(project_id: str, spec: ProjectUpdate) -> ProjectView:
        require_known_models(runtime, spec.allowed_models)
        return await call(ctx.keys.update_project, project_id, spec)

    @router.post("/projects/{project_id}/api-keys", dependencies=admin, status_code=201, response_model=ApiKeyCreated)
    async def create_api_key(project_id: str, environment: str = Query(pattern="^(dev|staging|production)$")) -> ApiKeyCreated:
        return await call(ctx.keys.create_api_key, project_id, environment)

    @router.get("/projects/{project_id}/api-keys", dependencies=admin, response_model=list[ApiKeyView])
    async def list_api_keys(project_id: str) -> list[ApiKeyView]:
        return await call(ctx.keys.list_api_keys, project_id)

    @router.post("/projects/{project_id}/api-keys/{key_id}/revoke", dependencies=admin, response_model=ApiKeyView)
    async def revoke_api_key(project_id: str, key_id: str) -> ApiKeyView:
        view = await call(ctx.keys.revoke_api_key, project_id, key_id)
        ctx.principals.invalidate()
        return view

    @router.post("/projects/{project_id}/provider-keys", dependencies=admin, status_code=201, response_model=ProviderKeyView)
    async def add_provider_key(project_id: str, spec: ProviderKeyCreate) -> ProviderKeyView:
        return await call(ctx.keys.add_provider_key, project_id, spec)

    @router.get("/projects/{project_id}/provider-keys", dependencies=admin, response_model=list[ProviderKeyView])
    async def list_provider_keys(project_id: str) -> list[ProviderKeyView]:
        return await call(ctx.keys.list_provider_keys, project_id)

    @router.post("/projects/{project_id}/provider-keys/{key_id}/revoke", dependencies=admin, response_model=ProviderKeyView)
    async def revoke_provider_key(project_id: str, key_id: str) -> ProviderKeyView:
        return await call(ctx.keys.set_provider_key_status, project_id, key_id, "revoked", "revoked by the operator")

    @router.post("/projects/{project_id}/provider-keys/{key_id}/activate", dependencies=admin, response_model=ProviderKeyView)
    async def activate_provider_key(project_id: str, key_id: str) -> ProviderKeyView:
        view = await call(ctx.keys.set_provider_key_status, project_id, key_id, "active", None)
        ctx.resolver.forget(key_id)
        return view

    @router.delete("/projects/{project_id}/provider-keys/{key_id}", dependencies=admin, status_code=204)
    async def delete_provider_key(project_id: str, key_id: str) -> None:
        await call(ctx.keys.delete_provider_key, project_id, key_id)

    @router.post("/rotate-encryption", dependencies=admin, summary="Re-encrypt every provider key under the newest master key")
    async def rotate_encryption() -> dict[str, int]:
        return {"reencrypted": await call(ctx.keys.rotate_encryption)}

    @router.get("/usage", dependencies=admin, summary="Ledger totals (successful requests), exact to the micro-dollar")
    async def usage(
        group_by: str = Query("project_id", description="Comma-separated: project_id, environment, day, provider, key_source, model_group, cache"),
        project_id: str | None = None,
        since: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
        until: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
    ) -> list[dict[str, Any]]:
        fields = [f.strip() for f in group_by.split(",") if f.strip()]
        return await call(lambda: ctx.ledger.totals(group_by=fields, project_id=project_id, since_day=since, until_day=until))

    @router.get("/requests", dependencies=admin, summary="The request log, newest first")
    async def requests_log(
        project_id: str | None = None, limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=2**31 - 1),
        before_id: int | None = Query(None, ge=1, le=2**63 - 1, description=(
            "only rows with a smaller id: page on with the last row's id, and each row written before "
            "the first page appears exactly once while traffic goes on (offset pages shift)")),
    ) -> list[dict[str, Any]]:
        rows = await call(lambda: ctx.ledger.requests(project_id=project_id, limit=limit, offset=offset,
                                                      before_id=before_id))
        for row in rows:
            row["ts"] = row["ts"].isoformat() if hasattr(row.get("ts"), "isoformat") else row.get("ts")
        return rows

    @router.get("/routes", dependencies=admin, summary="Every route of the running proxy and who may call it")
    async def routes() -> list[dict[str, Any]]:
        from litellm.proxy.proxy_server import app

        out = []
        for info in route_table(app):
            if info.own:
                access = "own"  # the plugin's routes: their own authentication
            elif info.authenticates:
                access = ("project" if any(project_may_call(m, info.template) for m in info.methods)
                          else "operator")
            else:
                access = "public" if is_public(info.template, opened_routes) else "operator"
            out.append({"path": info.template, "methods": list(info.methods), "kind": info.kind,
                        "authenticates": info.authenticates, "access": access})
        return out

    @router.post("/select-model", summary="The routing decision for a chat request, without calling a provider")
    async def select_model(request: Request, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        principal: Principal
        try:
            token = _bearer(authorization)
            if is_master_key(token):
                principal = OPERATOR
            else:
                principal = await gate.authenticate(token)
        except AdaptiveError as exc:
            raise as_http(exc) from exc
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(status_code=400, detail={"message": "body is not valid JSON", "code": "invalid_json"}) from None
        if not isinstance(body, dict):
            raise HTTPException(status_code=400, detail={"message": "body must be a JSON object", "code": "invalid_body"})
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            # the body of a chat request, held to the same rules (a model name is optional here)
            check_chat_body({"model": runtime.settings.auto_model_name, **body}, forbidden=gate.forbidden_fields)
            return await routing.explain(runtime, principal, body, headers)
        except AdaptiveError as exc:
            raise as_http(exc) from exc

    return router


def mount(runtime: Runtime, gate: AuthGate, *, opened_routes: frozenset[str] = frozenset()) -> None:
    """Add the admin router to the proxy app, ahead of any catch-all route."""
    from litellm.proxy.proxy_server import app

    if any(getattr(r, "path", "").startswith(PREFIX + "/") for r in app.router.routes):
        raise RuntimeError("adaptive admin routes are already mounted: the plugin is registered twice")
    before = len(app.router.routes)
    for router in (build_router(runtime, gate, opened_routes=opened_routes), *routers(runtime)):
        app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added
    app.openapi_schema = None  # regenerate the spec with our routes

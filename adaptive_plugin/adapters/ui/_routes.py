"""The dashboard's pages and form handlers (see `_app.py` for the conventions)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from adaptive_plugin.adapters.selfservice import ENVIRONMENTS, SelfService
from adaptive_plugin.adapters.ui._app import (
    HERE,
    PROVIDERS,
    STATIC_TYPES,
    Dashboard,
    _decimal,
    _int,
    _opt,
)
from adaptive_plugin.adapters.ui._chart import daily_chart
from adaptive_plugin.adapters.ui._session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    UI_PREFIX,
    Visit,
    clear_cookie,
    new_login_token,
    same_token,
    set_cookie,
)
from adaptive_plugin.errors import AdaptiveError
from adaptive_plugin.keys import ProviderKeyCreate
from adaptive_plugin.keys.admin import ProviderKeyRotate, ProviderKeyUpdate, SelfProjectUpdate

USAGE_SPLITS = {"key_source": "key source", "provider": "provider"}
MAX_CHART_DAYS = 92


def _env_param(value: str | None) -> str:
    return value if value in ENVIRONMENTS else "production"


def build_router(svc: SelfService) -> APIRouter:
    ui = Dashboard(svc)
    router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
    static_files = {p.name: p for p in (HERE / "static").iterdir() if p.suffix in STATIC_TYPES}

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        path = static_files.get(name)
        if path is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @router.get("/")
    async def home(request: Request) -> Response:
        visit = await ui.gate.visit(request)
        return ui.redirect("/keys" if visit is not None else "/login")

    # -- sign in and out -------------------------------------------------------------------

    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        token = new_login_token()
        response = ui.page("login.html", request, None, status=status, login_csrf=token, error=error)
        set_cookie(response, request, LOGIN_COOKIE, token)
        return response

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        return login_page(request)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        if not same_token(form.get("csrf_token"), request.cookies.get(LOGIN_COOKIE, "")):
            return login_page(request, "The sign-in form expired or was not sent by this dashboard; try again.", 403)
        key = form.get("key")
        if not isinstance(key, str) or not key.strip():
            return login_page(request, "Enter your project admin key.", 400)
        try:
            token = await asyncio.to_thread(ui.gate.sign_in, key)
        except AdaptiveError as exc:
            return login_page(request, f"Not signed in: {exc.message}", exc.status_code)
        response = ui.redirect("/keys")
        set_cookie(response, request, SESSION_COOKIE, token)
        clear_cookie(response, request, LOGIN_COOKIE)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        got = await ui.posted(request, need_project=False)
        if isinstance(got, Response):
            return got
        visit, _ = got
        await asyncio.to_thread(ui.gate.sessions.end, visit.token)
        response = ui.redirect("/login", notice="signed-out")
        clear_cookie(response, request, SESSION_COOKIE)
        return response

    # -- the operator's project choice -------------------------------------------------------

    @router.get("/projects")
    async def projects(request: Request) -> Response:
        visit = await ui.signed_in(request, need_project=False)
        if isinstance(visit, Response):
            return visit
        if not visit.is_operator:
            return ui.redirect("/keys")
        return ui.page("projects.html", request, visit, current="projects", **await ui.shell(visit))

    @router.post("/project")
    async def choose_project(request: Request) -> Response:
        got = await ui.posted(request, need_project=False)
        if isinstance(got, Response):
            return got
        visit, form = got
        if not visit.is_operator:
            return ui.redirect("/keys")
        ref = _opt(form, "project_id") or ""
        try:
            project = await asyncio.to_thread(svc.ctx.keys.find_project, ref)
        except AdaptiveError as exc:
            return ui.page("projects.html", request, visit, status=400, error=exc.message, current="projects",
                           **await ui.shell(visit))
        await asyncio.to_thread(ui.gate.sessions.set_project, visit.session.id, project.id)
        return ui.redirect("/keys", notice="project-chosen")

    # -- provider keys ---------------------------------------------------------------------

    async def keys_page(request: Request, visit: Visit, environment: str, *, error: str | None = None,
                        status: int = 200) -> Response:
        who = visit.principal
        keys, project = await asyncio.gather(asyncio.to_thread(svc.provider_keys, who, environment),
                                             asyncio.to_thread(svc.project, who, None))
        chains: dict[str, list[Any]] = {}
        for key in sorted(keys, key=lambda k: (k.provider, k.status == "revoked", k.priority, k.created_at)):
            chains.setdefault(key.provider, []).append(key)
        providers = sorted({*PROVIDERS, *(k.provider for k in keys)})
        return ui.page("keys.html", request, visit, status=status, current="keys", environment=environment,
                       environments=ENVIRONMENTS, chains=chains, providers=providers, project=project, error=error,
                       **await ui.shell(visit))

    @router.get("/keys")
    async def keys(request: Request) -> Response:
        visit = await ui.signed_in(request)
        if isinstance(visit, Response):
            return visit
        return await keys_page(request, visit, _env_param(request.query_params.get("environment")))

    @router.post("/keys/add")
    async def add_key(request: Request) -> Response:
        got = await ui.posted(request)
        if isinstance(got, Response):
            return got
        visit, form = got
        environment = _env_param(_opt(form, "environment"))

        def action() -> None:
            spec = ProviderKeyCreate(
                environment=environment, provider=_opt(form, "provider") or "", api_key=str(form.get("api_key") or ""),
                priority=_int(form, "priority") if _opt(form, "priority") else 100,
                spend_cap_usd=_decimal(form, "spend_cap_usd"), spend_cap_period=_opt(form, "spend_cap_period"),
                rpm_limit=_int(form, "rpm_limit"))
            svc.add_provider_key(visit.principal, spec)

        return await ui.act(visit, action, lambda msg: keys_page(request, visit, environment, error=msg, status=400),
                            ui.redirect("/keys", environment=environment, notice="key-added"))

    @router.post("/keys/{key_id}/{verb}")
    async def change_key(request: Request, key_id: str, verb: str) -> Response:
        got = await ui.posted(request)
        if isinstance(got, Response):
            return got
        visit, form = got
        environment = _env_param(_opt(form, "environment"))
        who = visit.principal
        actions = {
            "rotate": (lambda: svc.rotate_provider_key(who, key_id, ProviderKeyRotate(
                api_key=str(form.get("api_key") or "")).api_key), "key-rotated"),
            "revoke": (lambda: svc.revoke_provider_key(who, key_id), "key-revoked"),
            "up": (lambda: svc.move_provider_key(who, key_id, -1), "key-moved"),
            "down": (lambda: svc.move_provider_key(who, key_id, +1), "key-moved"),
            "limits": (lambda: svc.update_provider_key(who, key_id, ProviderKeyUpdate(
                priority=_int(form, "priority") if _opt(form, "priority") else None,
                spend_cap_usd=_decimal(form, "spend_cap_usd"), spend_cap_period=_opt(form, "spend_cap_period"),
                rpm_limit=_int(form, "rpm_limit"))), "key-updated"),
        }
        if verb not in actions:
            return Response("not found", status_code=404, media_type="text/plain")
        action, notice = actions[verb]
        return await ui.act(visit, action, lambda msg: keys_page(request, visit, environment, error=msg, status=400),
                            ui.redirect("/keys", environment=environment, notice=notice))

    # -- fallback and plan -----------------------------------------------------------------

    async def settings_page(request: Request, visit: Visit, *, error: str | None = None, status: int = 200) -> Response:
        project = await asyncio.to_thread(svc.project, visit.principal, svc.available_models())
        return ui.page("settings.html", request, visit, status=status, current="settings", project=project,
                       error=error, **await ui.shell(visit))

    @router.get("/settings")
    async def settings(request: Request) -> Response:
        visit = await ui.signed_in(request)
        if isinstance(visit, Response):
            return visit
        return await settings_page(request, visit)

    @router.post("/settings")
    async def save_settings(request: Request) -> Response:
        got = await ui.posted(request)
        if isinstance(got, Response):
            return got
        visit, form = got
        models = svc.available_models()
        chosen = [m for m in form.getlist("models") if isinstance(m, str)]

        def action() -> None:
            spec = SelfProjectUpdate(
                fallback=_opt(form, "fallback"),
                default_cost_bias=float(_decimal(form, "default_cost_bias")) if _opt(form, "default_cost_bias") else None,
                allowed_models=None if form.get("models_mode") != "some" else chosen,
                cache_enabled=form.get("cache_enabled") == "on",
            )
            svc.update_project(visit.principal, spec, models)

        return await ui.act(visit, action, lambda msg: settings_page(request, visit, error=msg, status=400),
                            ui.redirect("/settings", notice="settings-saved"))

    # -- chat API keys ---------------------------------------------------------------------

    async def api_keys_page(request: Request, visit: Visit, *, created: Any = None, error: str | None = None,
                            status: int = 200) -> Response:
        keys = await asyncio.to_thread(svc.api_keys, visit.principal)
        keys.sort(key=lambda k: (ENVIRONMENTS.index(k.environment), k.revoked_at is not None, k.created_at))
        return ui.page("api_keys.html", request, visit, status=status, current="api-keys", keys=keys,
                       environments=ENVIRONMENTS, created=created, error=error, **await ui.shell(visit))

    @router.get("/api-keys")
    async def api_keys(request: Request) -> Response:
        visit = await ui.signed_in(request)
        if isinstance(visit, Response):
            return visit
        return await api_keys_page(request, visit)

    @router.post("/api-keys/create")
    async def create_api_key(request: Request) -> Response:
        got = await ui.posted(request)
        if isinstance(got, Response):
            return got
        visit, form = got
        environment = _opt(form, "environment") or ""
        try:
            created = await asyncio.to_thread(svc.create_api_key, visit.principal, environment)
        except AdaptiveError as exc:
            return await api_keys_page(request, visit, error=exc.message, status=400)
        return await api_keys_page(request, visit, created=created, status=201)

    @router.post("/api-keys/{key_id}/revoke")
    async def revoke_api_key(request: Request, key_id: str) -> Response:
        got = await ui.posted(request)
        if isinstance(got, Response):
            return got
        visit, _ = got
        return await ui.act(visit, lambda: svc.revoke_api_key(visit.principal, key_id),
                            lambda msg: api_keys_page(request, visit, error=msg, status=400),
                            ui.redirect("/api-keys", notice="api-key-revoked"))

    # -- usage -----------------------------------------------------------------------------

    @router.get("/usage")
    async def usage(request: Request) -> Response:
        visit = await ui.signed_in(request)
        if isinstance(visit, Response):
            return visit
        q = request.query_params
        today = datetime.now(timezone.utc).date()
        split = q.get("by") if q.get("by") in USAGE_SPLITS else "key_source"
        environment = q.get("environment") if q.get("environment") in ENVIRONMENTS else None
        error = None
        try:
            until = date.fromisoformat(q["until"]) if q.get("until") else today
            since = date.fromisoformat(q["since"]) if q.get("since") else until - timedelta(days=29)
            if since > until:
                raise ValueError(f"the range starts ({since}) after it ends ({until})")
            if (until - since).days >= MAX_CHART_DAYS:
                raise ValueError(f"show at most {MAX_CHART_DAYS} days at a time")
        except ValueError as exc:
            error = f"Dates: {exc}" if "range" in str(exc) or "most" in str(exc) else "Dates must be YYYY-MM-DD."
            until, since = today, today - timedelta(days=29)
        days = [(since + timedelta(days=i)).isoformat() for i in range((until - since).days + 1)]
        report = lambda group_by: svc.usage(visit.principal, group_by=group_by, environment=environment,  # noqa: E731
                                            since=days[0], until=days[-1])
        daily, *tables = await asyncio.gather(*(asyncio.to_thread(report, g) for g in (
            ["day", split], ["key_source"], ["provider"], ["key_fingerprint"], ["environment"])))
        series: dict[str, tuple[list[int], list[int]]] = {}
        for row in daily.rows:
            name = row[split] or "none"
            fee, cost = series.setdefault(name, ([0] * len(days), [0] * len(days)))
            i = days.index(row["day"])
            fee[i] += row["overhead_fee_micros"]
            cost[i] += row["model_cost_micros"]
        chart = daily_chart(days, series, title=f"Daily overhead fee and model cost by {USAGE_SPLITS[split]}")
        return ui.page("usage.html", request, visit, current="usage", chart=chart, total=daily.total,
                       tables=dict(zip(("key source", "provider", "key fingerprint", "environment"), tables, strict=True)),
                       since=days[0], until=days[-1], split=split, splits=USAGE_SPLITS, environment=environment,
                       environments=ENVIRONMENTS, error=error, **await ui.shell(visit))

    # -- request log -----------------------------------------------------------------------

    @router.get("/requests")
    async def requests_log(request: Request) -> Response:
        visit = await ui.signed_in(request)
        if isinstance(visit, Response):
            return visit
        q = request.query_params
        filters = {name: (q.get(name) or None) for name in ("environment", "provider", "key_source", "cache")}
        since, until, cursor = q.get("since") or None, q.get("until") or None, q.get("cursor") or None
        error, status = None, 200
        try:
            page = await asyncio.to_thread(svc.request_log, visit.principal, limit=50, cursor=cursor, since=since,
                                           until=until, **filters)
        except (AdaptiveError, ValueError) as exc:
            error, status = getattr(exc, "message", None) or str(exc), 400
            page = await asyncio.to_thread(svc.request_log, visit.principal, limit=50)
        shown = {**filters, "since": since, "until": until}
        kept = {k: v for k, v in shown.items() if v}
        return ui.page("requests.html", request, visit, status=status, current="requests", page=page, filters=shown,
                       environments=ENVIRONMENTS, error=error, newest_query=kept,
                       older_query={**kept, "cursor": page.next_cursor} if page.next_cursor else None,
                       **await ui.shell(visit))

    return router

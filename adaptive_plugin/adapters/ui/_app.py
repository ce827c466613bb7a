"""The dashboard's routes: server-rendered pages over `SelfService`, forms that work without
JavaScript (POST, then a redirect to the page with a notice), every asset served from here.

Pages: keys (provider keys), settings (fallback and plan), api-keys, usage, requests; the
operator (master key) first picks a project. A form error re-renders its page with the message
(status 400). No page ever shows a provider key; a new chat API key is shown once, on the page
that answers its creation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from adaptive_plugin.adapters.selfservice import SelfService
from adaptive_plugin.adapters.ui._chart import usd
from adaptive_plugin.adapters.ui._session import SESSION_COOKIE, UI_PREFIX, SessionGate, Visit, clear_cookie, same_token
from adaptive_plugin.errors import AdaptiveError

HERE = Path(__file__).parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
NOTICES = {
    "key-added": "Provider key added. It is stored encrypted and will not be shown again.",
    "key-rotated": "Key rotated: the new key is in place and the old one is revoked.",
    "key-revoked": "Provider key revoked.",
    "key-moved": "Try order changed.",
    "key-updated": "Priority and limits saved.",
    "settings-saved": "Settings saved.",
    "api-key-revoked": "API key revoked.",
    "signed-out": "You are signed out.",
    "expired": "Your session has ended. Sign in again.",
    "project-chosen": "Project selected.",
}
PAGES = (("keys", "Provider keys"), ("settings", "Fallback and plan"), ("api-keys", "API keys"),
         ("usage", "Usage"), ("requests", "Request log"))
PROVIDERS = ("openai", "anthropic", "gemini", "groq", "deepseek", "mistral", "azure", "bedrock")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["usd"] = lambda v: usd(int(v)) if isinstance(v, int) else f"${v}"
    env.filters["when"] = _when
    return env


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def validation_message(exc: ValidationError) -> str:
    """One line naming the field: what a person reads, not pydantic's dump."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{field.replace('_', ' ')}: {msg}" if field else msg


def _opt(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _decimal(form: FormData, name: str) -> Decimal | None:
    raw = _opt(form, name)
    if raw is None:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{name.replace('_', ' ')}: not a number: {raw!r}") from None


def _int(form: FormData, name: str) -> int | None:
    raw = _opt(form, name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name.replace('_', ' ')}: not a whole number: {raw!r}") from None


class Dashboard:
    """The dashboard over one `SelfService`; `router()` gives its FastAPI routes."""

    def __init__(self, svc: SelfService) -> None:
        self.svc = svc
        self.gate = SessionGate(svc)
        self.templates = _environment()

    # -- rendering -------------------------------------------------------------------------

    def page(self, name: str, request: Request, visit: Visit | None, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("error", None)
        notice = request.query_params.get("notice")
        context.setdefault("notice", NOTICES.get(notice or ""))
        html = self.templates.get_template(name).render(
            prefix=UI_PREFIX, visit=visit, pages=PAGES, current=context.pop("current", ""), **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    @staticmethod
    def redirect(path: str, **params: str) -> RedirectResponse:
        query = f"?{urlencode(params)}" if params else ""
        return RedirectResponse(f"{UI_PREFIX}{path}{query}", status_code=303, headers=SECURITY_HEADERS)

    async def project_name(self, visit: Visit) -> str:
        if visit.principal.project_id is None:
            return ""
        return (await asyncio.to_thread(self.svc.ctx.keys.get_project, visit.principal.project_id)).name

    async def shell(self, visit: Visit) -> dict[str, Any]:
        """What every signed-in page shows: the project, and the operator's project switcher."""
        projects = await asyncio.to_thread(self.svc.ctx.keys.list_projects) if visit.is_operator else []
        return {"project_name": await self.project_name(visit), "projects": projects}

    # -- guards ----------------------------------------------------------------------------

    async def signed_in(self, request: Request, *, need_project: bool = True) -> Visit | Response:
        visit = await self.gate.visit(request)
        if visit is None:
            had_cookie = SESSION_COOKIE in request.cookies
            response = self.redirect("/login", **({"notice": "expired"} if had_cookie else {}))
            if had_cookie:
                clear_cookie(response, request, SESSION_COOKIE)
            return response
        if need_project and visit.principal.project_id is None:
            return self.redirect("/projects")
        return visit

    async def posted(self, request: Request, *, need_project: bool = True) -> tuple[Visit, FormData] | Response:
        """A signed-in form post with the session's CSRF token, or the response refusing it."""
        visit = await self.signed_in(request, need_project=need_project)
        form = await request.form()
        if isinstance(visit, Response):
            return visit
        if not same_token(form.get("csrf_token"), visit.csrf):
            return HTMLResponse("<!doctype html><title>Refused</title><p>This form was not sent by this dashboard "
                                "(missing or wrong CSRF token). Nothing was changed.</p>",
                                status_code=403, headers=SECURITY_HEADERS)
        return visit, form

    async def act(self, visit: Visit, action: Callable[[], Any], on_error: Callable[[str], Awaitable[Response]],
                  done: Response) -> Response:
        """Run a change in a thread; on a refused input re-render its page with the message."""
        try:
            await asyncio.to_thread(action)
        except ValidationError as exc:
            return await on_error(validation_message(exc))
        except (AdaptiveError, ValueError) as exc:
            return await on_error(getattr(exc, "message", None) or str(exc))
        return done

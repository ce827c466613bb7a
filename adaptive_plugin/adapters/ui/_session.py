"""Dashboard sign-in: cookies, CSRF checks and the principal behind a session.

- The session cookie is HttpOnly, SameSite=Strict, scoped to the dashboard's path, and Secure
  when the request came over TLS (directly or as `X-Forwarded-Proto: https`).
- Every form carries a CSRF token: the session's (derived from its token), or before sign-in
  a random value also set in a SameSite=Strict cookie (double submit). A POST without the
  right token is refused with 403 and changes nothing.
- Each request re-checks the credential the session stands on: a revoked admin key or a changed
  master key ends the session.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from adaptive_plugin.adapters.auth import master_key
from adaptive_plugin.adapters.selfservice import SelfService
from adaptive_plugin.keys.admin import AdminPrincipal
from adaptive_plugin.keys.sessions import DashboardSessions, SessionInfo, credential_hash, csrf_token

UI_PREFIX = "/adaptive/ui"
SESSION_COOKIE = "adaptive_session"
LOGIN_COOKIE = "adaptive_login_csrf"


@dataclass(frozen=True)
class Visit:
    """A signed-in request: its session, who it is, and the CSRF token its forms carry."""

    token: str
    session: SessionInfo
    principal: AdminPrincipal
    csrf: str

    @property
    def is_operator(self) -> bool:
        return self.principal.is_operator


def over_tls(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, path=UI_PREFIX, httponly=True, samesite="strict", secure=over_tls(request))


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=UI_PREFIX, httponly=True, samesite="strict", secure=over_tls(request))


def same_token(given: object, expected: str) -> bool:
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


class SessionGate:
    """Starts sessions from a credential and turns a request's cookie back into a `Visit`."""

    def __init__(self, svc: SelfService) -> None:
        self.svc = svc
        settings = svc.ctx.settings
        self.sessions = DashboardSessions(svc.ctx.engine, idle_seconds=settings.ui_idle_timeout_seconds,
                                          max_seconds=settings.ui_session_max_seconds)

    def sign_in(self, key: str) -> str:
        """A new session token for a project admin key or the master key; AuthenticationError otherwise."""
        key = key.strip()
        master = master_key()
        if master and same_token(key, master):
            return self.sessions.start("operator", credential=credential_hash(master), project_id=None)
        principal = self.svc.authorize(key, None)  # refuses chat keys (403) and unknown keys (401)
        assert principal.admin_key_id is not None
        return self.sessions.start("project_admin", credential=principal.admin_key_id, project_id=principal.project_id)

    def _resume(self, token: str) -> Visit | None:
        info = self.sessions.resume(token)
        if info is None:
            return None
        if info.role == "operator":
            master = master_key()
            if not master or not same_token(info.credential, credential_hash(master)):
                self.sessions.end(token)
                return None
            principal = AdminPrincipal(role="operator", project_id=info.project_id)
        else:
            if not self.svc.admins.is_active(info.credential):
                self.sessions.end(token)
                return None
            principal = AdminPrincipal(role="project_admin", project_id=info.project_id, admin_key_id=info.credential)
        return Visit(token=token, session=info, principal=principal, csrf=csrf_token(token))

    async def visit(self, request: Request) -> Visit | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None
        return await asyncio.to_thread(self._resume, token)

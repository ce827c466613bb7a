"""`general_settings.custom_auth`: maps the bearer token to a project and environment, and keeps
project keys inside the tenant boundary.

Fails closed:
- an unknown, revoked or malformed token gets 401 saying which; a database outage gets 503;
- a project key on a route outside `boundary.PROJECT_ROUTES` gets 403 `route_not_allowed`
  (LiteLLM runs none of its own route checks for a custom-auth principal, so this is the only
  check every authenticating route passes through);
- a chat body that is not a JSON object, carries a field that changes where or as whom the
  call goes, or a parameter of the wrong type or range gets 400 naming the field, before
  LiteLLM reads it.

The operator's LiteLLM master key is the proxy admin (and may call models on pooled keys as
the built-in `operator` principal). For a project's chat request this module also starts the
query's embedding (fails open), so that it runs while LiteLLM does its own work.

The proxy loads `user_api_key_auth` by dotted path; it reaches the plugin through the gate the
facade publishes at start-up (`publish`).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Collection
from typing import Any

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

from adaptive_plugin.adapters import metrics_guard
from adaptive_plugin.adapters.cache_backend import AdaptiveCacheBackend
from adaptive_plugin.adapters.runtime import OPERATOR, Runtime
from adaptive_plugin.adapters.state import PREFETCH_KEY
from adaptive_plugin.boundary import CHAT_ROUTES, check_chat_body, project_may_call
from adaptive_plugin.errors import AdaptiveError, AuthenticationError, BoundaryError, InvalidRequestError, RouteNotAllowedError
from adaptive_plugin.keys import Principal

log = logging.getLogger("adaptive_plugin")

OPERATOR_PROJECT = OPERATOR.project_id
KEY_ID_PREFIX = "adaptive:"  # UserAPIKeyAuth.api_key of a project principal: never the key itself


def master_key() -> str | None:
    try:
        from litellm.proxy import proxy_server

        key = proxy_server.master_key
    except ImportError:  # pragma: no cover - only outside the proxy
        key = None
    return key or os.environ.get("LITELLM_MASTER_KEY")


def is_master_key(token: str) -> bool:
    master = master_key()
    return bool(master) and hmac.compare_digest(token.encode(), master.encode())  # type: ignore[union-attr]


def bearer_token(api_key: str | None) -> str:
    token = (api_key or "").strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    return token


def proxy_error(exc: AdaptiveError, *, param: str | None = None) -> ProxyException:
    """Our error as LiteLLM's OpenAI-shaped error response (`type` carries our stable code)."""
    return ProxyException(message=exc.message, type=exc.code, param=param or getattr(exc, "param", None),
                          code=exc.status_code, headers={"x-adaptive-error-code": exc.code})


def route_of(request: Request) -> tuple[str, str]:
    """(method, template) of the route LiteLLM matched, or of the raw path when none was.

    The template counts only if the route's own pattern matches the path the request was
    dispatched on: a route included under a prefix keeps its unprefixed template.
    """
    scope = request.scope
    method = str(scope.get("method") or "GET").upper()
    path = str(scope.get("path") or "")
    root = str(scope.get("app_root_path", scope.get("root_path", "")) or "").rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root):]
    route = scope.get("route")
    template = getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if isinstance(template, str) and regex is not None and regex.match(path):
        return method, template
    return method, path


class AuthGate:
    """Authentication and the tenant boundary for LiteLLM's authenticating routes."""

    def __init__(self, runtime: Runtime, cache_backend: AdaptiveCacheBackend | None, *,
                 forbidden_fields: Collection[str]) -> None:
        self.runtime = runtime
        self.cache_backend = cache_backend
        self.forbidden_fields = frozenset(forbidden_fields)

    async def authenticate(self, token: str) -> Principal:
        """The project behind a chat key (AuthenticationError when there is none)."""
        import asyncio

        await self.runtime.ctx.changes.ensure_current()  # a revoked key or changed plan, everywhere at once
        principals = self.runtime.ctx.principals
        principal = principals.peek(token)
        if principal is None:
            principal = await asyncio.to_thread(principals.get, token)
        self.runtime.principals_by_key_id[principal.api_key_id] = principal
        return principal

    def principal_of(self, user_api_key_dict: Any) -> Principal:
        """The principal of an auth result: a project's, or the operator for the master key."""
        md = getattr(user_api_key_dict, "metadata", None) or {}
        key = str(getattr(user_api_key_dict, "api_key", "") or "")
        if key.startswith(KEY_ID_PREFIX):
            principal = self.runtime.principals_by_key_id.get(key[len(KEY_ID_PREFIX):])
            if principal is not None and principal.project_id == md.get("adaptive_project_id"):
                return principal
            raise AuthenticationError("API key is no longer valid")
        return OPERATOR

    async def check_request(self, request: Request) -> tuple[str, dict[str, Any] | None]:
        """The route's template and, for a chat route, the checked body (BoundaryError otherwise)."""
        method, template = route_of(request)
        if not project_may_call(method, template):
            raise RouteNotAllowedError(
                f"{method} {template} is not open to project keys: they may call the chat completions and model "
                "list routes only (the operator's master key has the rest)")
        if template not in CHAT_ROUTES:
            return template, None
        from litellm.proxy.common_utils.http_parsing_utils import read_request_body

        body = await read_request_body(request)  # parsed (and kept) by LiteLLM before auth
        if isinstance(body, dict) and not body:
            raw = await request.body()
            if raw.strip():
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidRequestError("the request body is not valid UTF-8", param=None) from None
        # the Azure-style routes take the model from the path, and every chat route from `?model=`
        override = request.path_params.get("model") or request.query_params.get("model")
        if override is not None and isinstance(body, dict):
            body = {**body, "model": override}
        return template, check_chat_body(body, forbidden=self.forbidden_fields)

    async def __call__(self, request: Request, api_key: str) -> UserAPIKeyAuth:
        token = bearer_token(api_key)
        if not token:
            raise ProxyException(
                message="missing API key: send your project key as 'Authorization: Bearer ak-...'",
                type="auth_error", param="api_key", code=401,
            )
        if (scraper := metrics_guard.scraper_principal(request, token, self.runtime.ctx.settings, is_master=is_master_key)) is not None:
            return scraper
        if is_master_key(token):
            return UserAPIKeyAuth(api_key=token, user_role=LitellmUserRoles.PROXY_ADMIN, user_id=OPERATOR_PROJECT)
        try:
            principal = await self.authenticate(token)
        except AuthenticationError as exc:
            raise ProxyException(message=exc.message, type="auth_error", param="api_key", code=401) from exc
        except AdaptiveError as exc:
            raise proxy_error(exc, param="api_key") from exc
        try:
            template, body = await self.check_request(request)
        except BoundaryError as exc:
            raise proxy_error(exc) from exc
        metadata: dict[str, Any] = {"adaptive_project_id": principal.project_id,
                                    "adaptive_environment": principal.environment}
        if body is not None and self.cache_backend is not None:
            prefetch = self._prefetch(principal, body, request)
            if prefetch is not None:
                metadata[PREFETCH_KEY] = prefetch
        return UserAPIKeyAuth(
            api_key=f"{KEY_ID_PREFIX}{principal.api_key_id}",
            token=f"{KEY_ID_PREFIX}{principal.api_key_id}",
            user_id=f"{principal.project_id}/{principal.environment}",
            user_role=LitellmUserRoles.INTERNAL_USER,
            metadata=metadata,
        )

    def _prefetch(self, principal: Principal, body: dict[str, Any], request: Request) -> str | None:
        """Fails open: start a chat request's embedding during authentication (see
        `AdaptiveCacheBackend.prefetch`); returns the token its pre-call hook claims it with."""
        assert self.cache_backend is not None
        try:
            return self.cache_backend.prefetch(principal, body, request.headers.get("cache-control", ""))
        except Exception as exc:  # noqa: BLE001 - an optimisation: the pre-call hook embeds instead
            log.debug("adaptive: no early embedding (%s)", type(exc).__name__)  # its text may quote the body
            return None


_gate: AuthGate | None = None


def publish(gate: AuthGate) -> None:
    """Make `gate` the one `user_api_key_auth` uses (the facade calls this once per process)."""
    global _gate
    _gate = gate


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    """The `general_settings.custom_auth` entry point."""
    if _gate is None:
        raise ProxyException(
            message="the Adaptive plugin is not loaded: add adaptive_plugin.adapters.hooks.hooks to "
                    "litellm_settings.callbacks in the proxy config",
            type="plugin_not_loaded", param=None, code=503,
        )
    return await _gate(request, api_key)

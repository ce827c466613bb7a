"""`general_settings.custom_auth`: maps the bearer token to a project and environment.

Fails closed: an unknown, revoked or malformed token gets 401 with a message saying which;
a database outage gets 503. The operator's LiteLLM master key is accepted as the proxy
admin (and may call models on pooled keys as the built-in `operator` principal).

For a project's chat request it also starts the query's embedding (fails open), so that it
runs while LiteLLM does its own work before the router and the cache lookup need it.
"""

from __future__ import annotations

import hmac
import os

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

from adaptive_plugin.adapters import metrics_guard
from adaptive_plugin.adapters.state import PREFETCH_KEY
from adaptive_plugin.errors import AdaptiveError, AuthenticationError

OPERATOR_PROJECT = "operator"


def _master_key() -> str | None:
    try:
        from litellm.proxy import proxy_server

        key = proxy_server.master_key
    except ImportError:  # pragma: no cover - only outside the proxy
        key = None
    return key or os.environ.get("LITELLM_MASTER_KEY")


def is_master_key(token: str) -> bool:
    master = _master_key()
    return bool(master) and hmac.compare_digest(token.encode(), master.encode())  # type: ignore[union-attr]


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    from adaptive_plugin.adapters.hooks import hooks

    token = (api_key or "").strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise ProxyException(
            message="missing API key: send your project key as 'Authorization: Bearer ak-...'",
            type="auth_error", param="api_key", code=401,
        )
    if (scraper := metrics_guard.scraper_principal(request, token)) is not None:
        return scraper
    if is_master_key(token):
        return UserAPIKeyAuth(api_key=token, user_role=LitellmUserRoles.PROXY_ADMIN, user_id=OPERATOR_PROJECT)
    try:
        principal = await hooks.authenticate(token)
    except AuthenticationError as exc:
        raise ProxyException(message=exc.message, type="auth_error", param="api_key", code=401) from exc
    except AdaptiveError as exc:
        raise ProxyException(message=exc.message, type=exc.code, param="api_key", code=exc.status_code) from exc
    metadata = {"adaptive_project_id": principal.project_id, "adaptive_environment": principal.environment}
    prefetch = await hooks.prefetch_embedding(request, principal)
    if prefetch is not None:
        metadata[PREFETCH_KEY] = prefetch
    return UserAPIKeyAuth(
        api_key=f"adaptive:{principal.api_key_id}",
        token=f"adaptive:{principal.api_key_id}",
        user_id=f"{principal.project_id}/{principal.environment}",
        user_role=LitellmUserRoles.INTERNAL_USER,
        metadata=metadata,
    )

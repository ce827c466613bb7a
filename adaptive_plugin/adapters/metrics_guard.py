"""LiteLLM's `/metrics` without tenant data, at `/metrics` exactly, and who may read it.

LiteLLM's `prometheus` callback labels its series, by default, with the caller's key hash
(for a project key the `adaptive:<id>` value, for the master key its unsalted SHA-256), key
alias, user (`<project>/<environment>` here), team, end user (the request's `user` field),
client IP, user agent, request route and request tags. Whoever reads `/metrics` would see every
tenant's traffic and spend, and any client could add series at will (one per user agent).
LiteLLM 1.106's own switch, `litellm_settings.prometheus_exclude_labels`, removes labels from
every metric it builds; the shipped configs set it, and `drop_tenant_labels()` adds whatever
of `TENANT_LABELS` a config left out, before LiteLLM builds its logger (callbacks are loaded in
order, and the plugin is listed before `prometheus`).

LiteLLM mounts its metrics app at `/metrics`, so Starlette answers `/metrics` itself with a
307 to `/metrics/`. `serve_exact_path()` routes `/metrics` to the same app (no second
registry or endpoint).

With `require_auth_for_metrics_endpoint: true`, LiteLLM authenticates `/metrics` through the
plugin's custom auth: `scraper_principal()` admits the master key and, when configured,
`ADAPTIVE_METRICS_TOKEN` (a token that reads `/metrics` and nothing else), and refuses every
other key; LiteLLM's middleware answers that refusal with 401: a tenant's key never reads the
gateway's metrics.
"""

from __future__ import annotations

import hmac
import logging
import sys
from collections.abc import Callable
from typing import Any

import litellm

from adaptive_plugin.errors import ConfigError

log = logging.getLogger("adaptive_plugin")

METRICS_PATH = "/metrics"

# LiteLLM label names (litellm.types.integrations.prometheus.UserAPIKeyLabelNames) whose values
# identify a project, key, user, team, organisation, client or come from the client unchecked
TENANT_LABELS: frozenset[str] = frozenset({
    "end_user", "user", "user_email", "user_alias",
    "hashed_api_key", "api_key_alias",
    "team", "team_alias", "org_id", "org_alias", "project_id", "project_alias",
    "client_ip", "user_agent",
    "tag",  # request tags: client-chosen strings
    "route",  # the raw path of unauthenticated requests too: any string a client sends
})


def drop_tenant_labels() -> None:
    """Exclude `TENANT_LABELS` from LiteLLM's prometheus series. Fails start-up when LiteLLM's
    prometheus logger already exists with any of them (it was loaded before the plugin)."""
    configured = list(litellm.prometheus_exclude_labels or [])
    missing = sorted(TENANT_LABELS - set(configured))
    if missing:
        litellm.prometheus_exclude_labels = configured + missing
    prometheus = sys.modules.get("litellm.integrations.prometheus")
    if prometheus is None:
        return  # no logger can exist yet
    logger_cls = prometheus.PrometheusLogger
    from litellm.litellm_core_utils import litellm_logging

    for callback in [*litellm.callbacks, *getattr(litellm_logging, "_in_memory_loggers", [])]:
        if isinstance(callback, logger_cls) and not TENANT_LABELS <= set(callback.exclude_labels):
            raise ConfigError(
                "LiteLLM's prometheus logger was built before the plugin could remove the tenant labels "
                f"({', '.join(sorted(TENANT_LABELS - set(callback.exclude_labels)))}): list "
                "adaptive_plugin.adapters.hooks.hooks before \"prometheus\" in litellm_settings.callbacks, or set "
                "litellm_settings.prometheus_exclude_labels (see config/proxy.yaml)"
            )


def metrics_need_auth() -> bool:
    """`require_auth_for_metrics_endpoint` as the proxy config sets it: the plugin is loaded while
    LiteLLM applies `litellm_settings` in order, possibly before this key."""
    try:
        from litellm.proxy import proxy_server

        settings = (proxy_server.proxy_config.get_config_state() or {}).get("litellm_settings") or {}
    except (ImportError, AttributeError):  # pragma: no cover - only outside the proxy
        settings = {}
    value = settings.get("require_auth_for_metrics_endpoint", litellm.require_auth_for_metrics_endpoint)
    return value is not False


def check_project_labels(*, project_labels: bool) -> None:
    """`ADAPTIVE_METRICS_PROJECT_LABELS` puts project ids on `/metrics`: only behind authentication."""
    if project_labels and not metrics_need_auth():
        raise ConfigError(
            "ADAPTIVE_METRICS_PROJECT_LABELS=true puts every project's id on /metrics, but /metrics needs no "
            "authentication (litellm_settings.require_auth_for_metrics_endpoint: false): set it to true (and "
            "ADAPTIVE_METRICS_TOKEN for the scraper) or turn the project labels off"
        )


class _ExactMetricsPath:
    """ASGI endpoint for `/metrics` itself: hands the request to the app LiteLLM mounted there."""

    __name__ = "metrics"  # LiteLLM's GET /routes lists endpoints by name

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.responses import PlainTextResponse
        from starlette.routing import Mount

        for route in self._app.router.routes:
            if isinstance(route, Mount) and route.path == METRICS_PATH:
                await route.app(scope, receive, send)
                return
        await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)


def serve_exact_path(app: Any) -> None:
    """Answer `GET /metrics` with the metrics (not a redirect to `/metrics/`)."""
    from starlette.routing import Route

    if any(isinstance(r, Route) and r.path == METRICS_PATH for r in app.router.routes):
        return
    app.router.routes.insert(0, Route(METRICS_PATH, _ExactMetricsPath(app), include_in_schema=False))


def is_metrics_path(path: str) -> bool:
    return path == METRICS_PATH or path.startswith(METRICS_PATH + "/")


def scraper_principal(request: Any, token: str, settings: Any, *, is_master: Callable[[str], bool]) -> Any:
    """Custom auth for `/metrics` (asked only with `require_auth_for_metrics_endpoint: true`).

    The metrics token gets a principal; the master key goes on as usual (None); any other key
    gets 403. Other paths: None (the metrics token is no key there, and fails as one).
    """
    from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth
    from litellm.proxy.auth.auth_utils import get_request_route

    if not is_metrics_path(get_request_route(request)):
        return None
    secret = settings.metrics_token
    if secret is not None and hmac.compare_digest(token.encode(), secret.get_secret_value().encode()):
        return UserAPIKeyAuth(api_key=SCRAPER, user_id=SCRAPER, user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY)
    if is_master(token):
        return None
    raise ProxyException(
        message="/metrics is readable with the metrics token (ADAPTIVE_METRICS_TOKEN) or the master key only",
        type="auth_error", param="api_key", code=403,
    )


SCRAPER = "adaptive-metrics-scraper"


def install(settings: Any) -> None:
    """At start-up: tenant labels out, `/metrics` served without a redirect, project labels checked."""
    from litellm.proxy.proxy_server import app

    drop_tenant_labels()
    check_project_labels(project_labels=settings.metrics_project_labels)
    serve_exact_path(app)

"""Which routes of the proxy a project key may call, and which answer without credentials.

Default deny. A project's chat key (`ak-...`) may call only `PROJECT_ROUTES`; every other route
that LiteLLM mounts (pass-through, health, settings, debug, key/user/team management, spend,
UI, realtime, files, ...) answers 403 `route_not_allowed`. Routes that authenticate nobody are
closed to everyone but the operator (the LiteLLM master key), except `PUBLIC_ROUTES` and the
ones an operator opens with `ADAPTIVE_OPEN_ROUTES`. The plugin's own routes under `OWN_PREFIX`
authenticate their callers themselves.

Routes are compared by their template (`/v1/models/{model_id}`), never by a path prefix: the
pass-through route `/openai/v1/chat/completions` is not the chat route `/v1/chat/completions`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType

_POST = frozenset({"POST"})
_GET = frozenset({"GET", "HEAD"})

CHAT_ROUTES: frozenset[str] = frozenset({
    "/v1/chat/completions",
    "/chat/completions",
    # Azure-style forms of the same handler: the model comes from the path
    "/engines/{model:path}/chat/completions",
    "/openai/deployments/{model:path}/chat/completions",
})
MODEL_LIST_ROUTES: frozenset[str] = frozenset({"/v1/models", "/models", "/v1/models/{model_id}", "/models/{model_id}"})

PROJECT_ROUTES: Mapping[str, frozenset[str]] = MappingProxyType(
    {**{route: _POST for route in CHAT_ROUTES}, **{route: _GET for route in MODEL_LIST_ROUTES}}
)

# Routes that answer anyone, and why that is safe. Everything else that authenticates nobody
# is operator-only.
PUBLIC_ROUTES: Mapping[str, str] = MappingProxyType({
    "/health/liveliness": "liveness probe: a constant answer, no provider or database call",
    "/health/liveness": "liveness probe: a constant answer, no provider or database call",
    "/health/readiness": "readiness probe: database and cache status, no provider call",
    "/metrics": "Prometheus scrape: no tenant labels (set require_auth_for_metrics_endpoint to close it)",
    "/": "API documentation (Swagger UI)",
    "/docs/oauth2-redirect": "API documentation (Swagger UI)",
    "/redoc": "API documentation",
    "/openapi.json": "API documentation",
    "/swagger": "API documentation assets",
})

OWN_PREFIX = "/adaptive"


def project_may_call(method: str, template: str) -> bool:
    """Whether a project's chat key may call `method template`."""
    methods = PROJECT_ROUTES.get(template)
    return methods is not None and method.upper() in methods


def is_public(template: str, opened: Collection[str] = ()) -> bool:
    """Whether a route that authenticates nobody may answer anyone."""
    return template in PUBLIC_ROUTES or template in opened

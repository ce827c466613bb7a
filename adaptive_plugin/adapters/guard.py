"""The proxy's route table seen from the tenant boundary, and the guard in front of it.

Every route LiteLLM mounts is one of:
- authenticating: it depends on LiteLLM's `user_api_key_auth`, which calls our custom auth
  (`auth.py`), where project keys meet the allow-list `boundary.PROJECT_ROUTES`;
- the plugin's own (`/adaptive/...`): they authenticate their callers themselves;
- unauthenticated (SSO and UI login, onboarding, OTLP ingestion, realtime and MCP sockets that
  check keys inside, UI assets, ...): `RouteGuard` answers 403 `route_not_allowed` to anyone
  but the operator, except `boundary.PUBLIC_ROUTES` and the routes the operator opens with
  `ADAPTIVE_OPEN_ROUTES`.

`RouteGuard` also checks request bodies of every caller but the operator before LiteLLM reads
them: LiteLLM's own pre-authentication checks answer a body that is not a JSON object, or one
that carries `api_base`, with a 500. A body that is not a JSON object, is not UTF-8, or carries
a forbidden field gets 400 on any route; a chat body is checked in full (`boundary.request`),
and must be JSON (a form body could be read one way here and another way by LiteLLM).

`RouteGuard` wraps the app router's middleware stack (Starlette's `Router.middleware_stack`),
so it runs after LiteLLM's middlewares have loaded any lazy feature router and sees the same
route table the request is dispatched on. Fails closed.

`forbidden_body_fields()` derives from LiteLLM's own parameter lists the request-body names
with which a client could change where or as whom a call goes.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from adaptive_plugin.boundary import (
    ALLOWED_LITELLM_FIELDS,
    CHAT_ROUTES,
    OWN_PREFIX,
    PROJECT_ROUTES,
    check_chat_body,
    forbidden_by_pattern,
    is_public,
)
from adaptive_plugin.errors import BoundaryError, ConfigError, ForbiddenParameterError, InvalidRequestError

# Body names of LiteLLM's OpenAI-compatible parameter list that are client options, not model
# parameters: where the call goes, with which credentials, and how often it is retried
_OPENAI_CLIENT_OPTIONS = frozenset({
    "api_key", "api_base", "base_url", "api_version", "organization", "deployment_id", "default_headers",
    "extra_headers", "timeout", "request_timeout", "max_retries",
})
# Proxy-level request fields that no list above names
_PROXY_FIELDS = frozenset({
    "user_config", "proxy_server_request", "secret_fields", "extra_body", "extra_query", "headers",
    "model_list", "fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "num_retries",
    "caching", "cache", "cache_key", "no-cache", "no-store", "tags", "guardrails", "mock_testing_fallbacks",
})
# the chat routes served most: no route lookup for them
_FAST_PATHS = frozenset(route for route in CHAT_ROUTES if "{" not in route)
# the chat routes that take the model from the path
_PATH_MODEL_ROUTES = tuple(
    re.compile("^" + re.escape(route).replace(re.escape("{model:path}"), "(?P<model>.+)") + "$", re.DOTALL)
    for route in sorted(CHAT_ROUTES) if "{model:path}" in route
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# the project routes as patterns of the paths they serve, with their methods
_PROJECT_PATTERNS = tuple(
    (re.compile("^" + re.sub(r"\\\{[^}]*:path\\\}", ".+", re.sub(r"\\\{[^}:]*\\\}", "[^/]+", re.escape(route))) + "$", re.DOTALL), methods)
    for route, methods in PROJECT_ROUTES.items()
)
# where LiteLLM looks for a caller's key (besides the query string's `key`)
_KEY_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key", "x-litellm-api-key")
# request headers with which LiteLLM changes a call: its own `x-litellm-*` (timeouts, retries,
# tags, spend metadata, callbacks, ...) and credentials forwarded to one provider
_CONTROL_HEADER_PREFIXES = ("x-litellm-", "typesafe-danger-zone-")
_OPEN_CONTROL_HEADERS = frozenset({"x-litellm-api-key"})
PROJECT_KEY_PREFIX = "ak-"
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def litellm_parameter_names() -> frozenset[str]:
    """Every request parameter LiteLLM itself names: its own kwargs, credentials, per-request
    logging destinations, custom prices, and the client options of the OpenAI list."""
    from litellm.constants import OPENAI_CHAT_COMPLETION_PARAMS
    from litellm.types.router import CredentialLiteLLMParams, GenericLiteLLMParams
    from litellm.types.utils import CustomPricingLiteLLMParams, StandardCallbackDynamicParams, all_litellm_params

    names = set(all_litellm_params)
    names |= set(GenericLiteLLMParams.model_fields) | set(CredentialLiteLLMParams.model_fields)
    names |= set(StandardCallbackDynamicParams.__annotations__) | set(CustomPricingLiteLLMParams.model_fields)
    names |= _OPENAI_CLIENT_OPTIONS & set(OPENAI_CHAT_COMPLETION_PARAMS)
    return frozenset(names)


def forbidden_body_fields() -> frozenset[str]:
    """The exact names a chat body may not carry (the patterns are applied by `boundary`)."""
    return frozenset((litellm_parameter_names() | _OPENAI_CLIENT_OPTIONS | _PROXY_FIELDS) - ALLOWED_LITELLM_FIELDS)


def model_parameter_names() -> frozenset[str]:
    """The OpenAI chat parameters that stay open to clients (for tests and docs)."""
    from litellm.constants import OPENAI_CHAT_COMPLETION_PARAMS

    return frozenset(OPENAI_CHAT_COMPLETION_PARAMS) - _OPENAI_CLIENT_OPTIONS


@dataclass(frozen=True, slots=True)
class RouteInfo:
    template: str
    methods: tuple[str, ...]
    kind: str  # http | websocket | mount | other
    authenticates: bool  # depends on LiteLLM's user_api_key_auth
    route: Any  # the route (context) object, for matching

    @property
    def own(self) -> bool:
        return self.template == OWN_PREFIX or self.template.startswith(OWN_PREFIX + "/")


def _depends_on(dependant: Any, targets: tuple[Callable[..., Any], ...]) -> bool:
    for dep in getattr(dependant, "dependencies", ()) or ():
        if getattr(dep, "call", None) in targets or _depends_on(dep, targets):
            return True
    return False


def route_table(app: Any) -> list[RouteInfo]:
    """Every route of the running app, flattened through included routers, in match order."""
    from fastapi.routing import iter_route_contexts
    from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
    from starlette.routing import Mount, WebSocketRoute

    targets = (user_api_key_auth,)
    out: list[RouteInfo] = []
    for ctx in iter_route_contexts(app.router.routes):
        original = ctx.original_route
        template = str(ctx.path or getattr(original, "path", "") or "")
        dependant = getattr(ctx, "dependant", None) or getattr(original, "dependant", None)
        if isinstance(original, Mount):
            kind = "mount"
        elif isinstance(original, WebSocketRoute) or type(original).__name__ == "APIWebSocketRoute":
            kind = "websocket"
        elif hasattr(original, "methods"):
            kind = "http"
        else:
            kind = "other"
        methods = tuple(sorted(getattr(ctx, "methods", None) or ()))
        out.append(RouteInfo(template=template, methods=methods, kind=kind,
                             authenticates=dependant is not None and _depends_on(dependant, targets), route=ctx))
    return out


def _route_path(scope: dict[str, Any]) -> str:
    path = str(scope.get("path") or "")
    root = str(scope.get("app_root_path", scope.get("root_path", "")) or "").rstrip("/")
    if root and path.startswith(root + "/"):
        return path[len(root):]
    return path


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        out[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
    return out


class RouteGuard:
    """ASGI wrapper: unauthenticated routes answer the operator only, except the public ones.

        >>> app.router.middleware_stack = RouteGuard(app.router.middleware_stack, app=app,   # doctest: +SKIP
        ...     master_key=lambda: "sk-...", forbidden=forbidden_body_fields())
    """

    def __init__(self, inner: Any, *, app: Any, master_key: Callable[[], str | None], forbidden: Collection[str],
                 opened: Collection[str] = ()) -> None:
        self.inner = inner
        self.app = app
        self.master_key = master_key
        self.forbidden = frozenset(forbidden)
        self.opened = frozenset(opened)
        self._signature: tuple[int, ...] = ()
        self._unauthenticated: list[RouteInfo] = []

    def _routes(self) -> list[RouteInfo]:
        routes = self.app.router.routes
        signature = tuple(id(r) for r in routes)
        if signature != self._signature:
            self._unauthenticated = [r for r in route_table(self.app) if not r.authenticates and not r.own]
            self._signature = signature
        return self._unauthenticated

    def decide(self, scope: dict[str, Any]) -> tuple[RouteInfo | None, bool]:
        """The unauthenticated route this request would reach, if any, and whether it is public."""
        path = _route_path(scope)
        if path in _FAST_PATHS or path == OWN_PREFIX or path.startswith(OWN_PREFIX + "/"):
            return None, False
        from starlette.routing import Match

        for info in self._routes():
            match, _ = info.route.matches(scope)
            if match == Match.NONE:
                continue
            if match == Match.PARTIAL and info.kind != "mount":
                continue  # another method of the path may be served by an authenticating route
            return info, is_public(info.template, self.opened)
        return None, False

    def _is_operator(self, headers: dict[str, str]) -> bool:
        master = self.master_key()
        if not master:
            return False
        candidates = [headers.get("x-litellm-api-key", ""), headers.get("api-key", ""), headers.get("x-api-key", "")]
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        return any(c and hmac.compare_digest(c.encode(), master.encode()) for c in candidates)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            headers = _headers(scope)
            operator = self._is_operator(headers)
            if not operator:
                info, public = self.decide(scope)
                if info is not None and not public:
                    await self._refuse_route(scope, send, info.template)
                    return
                if not public and _carries_project_key(scope, headers) and not _project_route(scope):
                    # the custom auth refuses these too, but only after LiteLLM's own dependencies ran
                    await self._refuse_route(scope, send, _route_path(scope), project=True)
                    return
                try:
                    _check_headers(scope, headers)
                except BoundaryError as exc:
                    await self._refuse(scope, send, exc)
                    return
                if (scope["type"] == "http" and str(scope.get("method", "")).upper() in _BODY_METHODS
                        and not _own_route(scope)):  # the plugin's own routes validate their bodies
                    body, receive = await _buffer_body(receive)
                    try:
                        self.check_body(scope, body, headers)
                    except BoundaryError as exc:
                        await _send_error(send, exc.status_code, exc.code, exc.message, exc.param)
                        return
        await self.inner(scope, receive, send)

    def check_body(self, scope: dict[str, Any], body: bytes, headers: dict[str, str] | None = None) -> None:
        """BoundaryError for a body no route may get (see the module docstring)."""
        path = _route_path(scope)
        headers = _headers(scope) if headers is None else headers
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        model = _path_model(path)
        chat = path in _FAST_PATHS or model is not None
        if media in _FORM_TYPES:
            if chat:
                raise InvalidRequestError("send chat requests as JSON (Content-Type: application/json)", param=None)
            return
        if not body.strip():
            if chat:
                raise InvalidRequestError("the request body is empty: send a JSON object", param=None)
            return
        parsed = _parse_json(body)
        if not chat:
            if not isinstance(parsed, dict):
                raise InvalidRequestError(f"the request body must be a JSON object, got {type(parsed).__name__}",
                                          param=None)
            for name in parsed:
                if name not in ALLOWED_LITELLM_FIELDS and (name in self.forbidden or forbidden_by_pattern(name)):
                    raise ForbiddenParameterError(f"{name!r} is not accepted in a request body", param=name)
            return
        raw_query = scope.get("query_string", b"")
        query_model = parse_qs(str(raw_query, "latin-1")).get("model") if raw_query else None
        override = model if model is not None else (query_model[0] if query_model else None)
        if override is not None and isinstance(parsed, dict):
            parsed = {**parsed, "model": override}
        check_chat_body(parsed, forbidden=self.forbidden)

    @staticmethod
    async def _refuse(scope: dict[str, Any], send: Any, exc: BoundaryError) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": exc.code})
            return
        await _send_error(send, exc.status_code, exc.code, exc.message, exc.param)

    @staticmethod
    async def _refuse_route(scope: dict[str, Any], send: Any, template: str, *, project: bool = False) -> None:
        if project:
            message = (f"{template} is not open to project keys: they may call the chat completions and model list "
                       "routes only (the operator's master key has the rest)")
        else:
            message = (f"{template} answers the operator only (the LiteLLM master key); open it to everyone with "
                       "ADAPTIVE_OPEN_ROUTES if you mean to")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "route_not_allowed"})
            return
        await _send_error(send, 403, "route_not_allowed", message, None)


def _carries_project_key(scope: dict[str, Any], headers: dict[str, str]) -> bool:
    """Whether the request presents a project's chat key where LiteLLM would look for a key."""
    for name in _KEY_HEADERS:
        value = headers.get(name, "").strip()
        if name == "authorization" and value.lower().startswith("bearer "):
            value = value[7:].strip()
        if value.startswith(PROJECT_KEY_PREFIX):
            return True
    raw = scope.get("query_string", b"")
    if not raw:
        return False
    query = parse_qs(str(raw, "latin-1"))
    return any(v.startswith(PROJECT_KEY_PREFIX) for v in query.get("key", ()))


def _check_headers(scope: dict[str, Any], headers: dict[str, str]) -> None:
    """A caller sends one credential, and none of LiteLLM's per-request control headers.

    A second credential would be forwarded: LiteLLM passes an Anthropic or ChatGPT OAuth token
    in `Authorization` on to the provider when the key it authenticates came in another header.
    """
    for name in headers:
        if name.startswith(_CONTROL_HEADER_PREFIXES) and name not in _OPEN_CONTROL_HEADERS:
            raise ForbiddenParameterError(
                f"the {name} header is not accepted: a request cannot set the timeouts, retries, tags or "
                "credentials of its call", param=name)
    presented = set()
    for name in _KEY_HEADERS:
        value = headers.get(name, "").strip()
        if name == "authorization" and value.lower().startswith("bearer "):
            value = value[7:].strip()
        if value:
            presented.add(value)
    raw = scope.get("query_string", b"")
    if raw:
        presented.update(v for v in parse_qs(str(raw, "latin-1")).get("key", ()) if v)
    if len(presented) > 1:
        raise ForbiddenParameterError("send one API key: a request carries no second credential for the provider",
                                      param="authorization")


def _own_route(scope: dict[str, Any]) -> bool:
    path = _route_path(scope)
    return path == OWN_PREFIX or path.startswith(OWN_PREFIX + "/")


def _project_route(scope: dict[str, Any]) -> bool:
    """Whether the request goes to a route a project key may call (or to the plugin's own)."""
    if _own_route(scope):
        return True
    path = _route_path(scope)
    method = str(scope.get("method") or "GET").upper()
    return any(pattern.match(path) and method in methods for pattern, methods in _PROJECT_PATTERNS)


def _path_model(path: str) -> str | None:
    for pattern in _PATH_MODEL_ROUTES:
        found = pattern.match(path)
        if found:
            return found.group("model")
    return None


def _parse_json(body: bytes) -> Any:
    """The body as LiteLLM will read it (orjson, then the standard library for what it repairs)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("the request body is not valid UTF-8", param=None) from None
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON ({exc.msg} at character {exc.pos})",
                                  param=None) from None
    try:  # the standard library accepts escapes of lone surrogates, which no provider can encode
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError("the request body contains an unpaired UTF-16 surrogate escape", param=None) from None
    return parsed


async def _buffer_body(receive: Any) -> tuple[bytes, Any]:
    """Read the whole body, and a `receive` that hands it to the app as if unread."""
    chunks: list[bytes] = []
    first: list[dict[str, Any]] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            first.append(message)  # a disconnect: the app sees it after the body
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replay = [{"type": "http.request", "body": body, "more_body": False}, *first]

    async def replayed() -> dict[str, Any]:
        if replay:
            return replay.pop(0)
        return await receive()

    return body, replayed


async def _send_error(send: Any, status: int, code: str, message: str, param: str | None) -> None:
    body = json.dumps({"error": {"message": message, "type": code, "param": param, "code": str(status)}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-adaptive-error-code", code.encode())]})
    await send({"type": "http.response.body", "body": body})


def check_url_validation(litellm_settings: dict[str, Any], *, live: bool = True) -> None:
    """Refuse to serve tenants with LiteLLM's download guard off.

    For some providers LiteLLM downloads the media a request names (image URLs, file ids that are
    URLs, Anthropic-style `source.url`). Its guard (`litellm_settings.user_url_validation`, on by
    default) resolves the hostname once, refuses private, loopback, link-local and cloud-metadata
    addresses and pins the connection to the checked address, redirect by redirect. The boundary
    checks only names (`boundary.request`), so without LiteLLM's guard a tenant could reach the
    proxy's network through a hostname that resolves inside it. `live` is LiteLLM's current value.
    """
    configured = litellm_settings.get("user_url_validation", True)
    if not (configured is True or str(configured).strip().lower() in {"true", "1", "yes", "on"}) or not live:
        raise ConfigError(
            "litellm_settings.user_url_validation is off: every tenant could make the gateway download from "
            "addresses inside its network. Remove the setting; list trusted internal media hosts in "
            "litellm_settings.user_url_allowed_hosts instead")


def check_startup_url_validation() -> None:
    """`check_url_validation` for the proxy's config file, if the plugin runs inside a proxy that loaded one."""
    import litellm

    from adaptive_plugin.adapters import pricing

    path = pricing.proxy_config_path()
    settings = pricing.config_litellm_settings(path) if path is not None else {}
    check_url_validation(settings, live=bool(getattr(litellm, "user_url_validation", True)))


def install_guard(app: Any, *, master_key: Callable[[], str | None], forbidden: Collection[str],
                  opened: Iterable[str] = ()) -> RouteGuard:
    """Wrap the app router's middleware stack with the guard (once per process)."""
    current = app.router.middleware_stack
    if isinstance(current, RouteGuard):
        raise RuntimeError("the adaptive route guard is already installed: the plugin is registered twice")
    guard = RouteGuard(current, app=app, master_key=master_key, forbidden=forbidden, opened=tuple(opened))
    app.router.middleware_stack = guard
    return guard


__all__ = ["RouteGuard", "RouteInfo", "check_startup_url_validation", "check_url_validation", "forbidden_body_fields",
           "forbidden_by_pattern", "install_guard",
           "litellm_parameter_names", "model_parameter_names", "route_table"]

"""The facade: the CustomLogger the proxy loads from
`litellm_settings.callbacks: [adaptive_plugin.adapters.hooks.hooks]`.

`hooks` is built on first access (PEP 562), so importing this module has no side effects;
building it reads the settings, opens the database, checks the vault, loads the embedding
model and the cache index, and fails the proxy's start-up with a message naming the problem.
Only this module imports the per-concern adapter modules; they share a `runtime.Runtime`.

Each hook translates LiteLLM's arguments, calls one capability, and translates back:

- `async_pre_call_hook` (fails closed): who is calling, cache-control, model selection for
  `auto`, the project's allow-list. Bad input gets a 4xx naming the field.
- `async_filter_listed_models` (fails closed): `/v1/models` shows a project what it may use.
- `async_pre_call_deployment_hook` (fails closed): the key for this attempt's provider, with its
  worst case reserved against the spending caps and rate limits (adapters/limits.py).
- `async_post_call_failure_deployment_hook` (fails open): key health and fallback reasons.
- `async_post_call_response_headers_hook` (fails open): the x-adaptive-* headers.
- `async_log_success_event` / `async_post_call_failure_hook` (fail open): ledger and metrics.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import time
from typing import Any

import litellm
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from adaptive_plugin import metrics
from adaptive_plugin.adapters import accounting, admin_api, auth, metrics_guard, routing
from adaptive_plugin.adapters import limits as limits_glue
from adaptive_plugin.adapters.cache_backend import AdaptiveCacheBackend, request_params
from adaptive_plugin.adapters.deployments import provider_of
from adaptive_plugin.adapters.failures import drop_retry_after, failure_reason, retry_after
from adaptive_plugin.adapters.guard import check_startup_url_validation, forbidden_body_fields, install_guard
from adaptive_plugin.adapters.runtime import OPERATOR, Runtime
from adaptive_plugin.adapters.state import PREFETCH_KEY, STATE_KEY, RequestState, request_metadata
from adaptive_plugin.billing import Usage
from adaptive_plugin.boundary import check_model_name
from adaptive_plugin.config import Settings
from adaptive_plugin.context import PluginContext
from adaptive_plugin.errors import AdaptiveError, AuthenticationError, ModelNotAllowedError, RoutingError
from adaptive_plugin.keys import KEY_FAILURES, Principal

log = logging.getLogger("adaptive_plugin")

CHAT_CALL_TYPES = frozenset({"completion", "acompletion"})
_REQUEST_FIELDS = ("cost_bias",)  # body fields that are ours: removed before the provider sees the request


def http_error(exc: AdaptiveError) -> HTTPException:
    return HTTPException(status_code=exc.status_code, detail={"error": exc.message, "code": exc.code},
                         headers=getattr(exc, "headers", None))  # a LimitsError's Retry-After


class AdaptiveHooks(CustomLogger):
    """The facade: every LiteLLM hook of the plugin, over one Runtime.

    It builds the per-concern parts (auth gate, cache backend, router strategy, admin routes,
    route guard), hands each the runtime, and delegates; none of them imports this module.
    """

    def __init__(self, context: PluginContext) -> None:
        super().__init__()
        self.ctx = context
        self.settings: Settings = context.settings
        self.runtime = Runtime(context)
        self.registry = self.runtime.registry
        self.index = self.runtime.index
        # installed even with the cache off: LiteLLM's shutdown calls the backend's disconnect(),
        # which writes the queued ledger rows; requests then carry caching=False
        self.cache_backend = AdaptiveCacheBackend(self.runtime)
        self.forbidden_fields = forbidden_body_fields()
        self.gate = auth.AuthGate(self.runtime, self.cache_backend, forbidden_fields=self.forbidden_fields)

    @property
    def strategy(self) -> Any:
        return self.runtime.strategy

    # -- start-up ------------------------------------------------------------------------

    def install(self) -> None:
        """Register the cache backend, admin routes, route guard and custom auth; the router
        strategy follows the router."""
        from litellm.proxy import proxy_server

        litellm.cache = litellm.Cache(type="local", _backend=self.cache_backend)
        drop_idle_cache_callbacks()
        preload_request_imports()
        opened = self.settings.opened_routes()
        admin_api.mount(self.runtime, self.gate, opened_routes=opened)
        install_guard(proxy_server.app, master_key=auth.master_key, forbidden=self.forbidden_fields, opened=opened)
        auth.publish(self.gate)
        metrics_guard.install(self.settings)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.create_task(self._install_strategy_when_ready())

    async def _install_strategy_when_ready(self) -> None:
        for _ in range(600):
            if self.ensure_strategy():
                if self.settings.gc_freeze:
                    freeze_startup_heap()  # the router exists: start-up is (nearly) over
                return
            await asyncio.sleep(0.1)
        log.error("adaptive: the proxy created no router within 60 s; the routing strategy is not installed")

    def ensure_strategy(self) -> bool:
        """Install the strategy on the proxy's current router (it may be rebuilt); cheap when done."""
        return self.runtime.ensure_strategy()

    def principal_of(self, user_api_key_dict: Any) -> Principal:
        try:
            return self.gate.principal_of(user_api_key_dict)
        except AuthenticationError as exc:
            raise HTTPException(status_code=401, detail={"error": exc.message, "code": exc.code}) from exc

    async def async_filter_listed_models(self, user_api_key_dict: Any, model_names: Any) -> Any:
        """Fails closed: a project lists only the models its allow-list admits and some key of
        its (own, or pooled if its policy allows) can serve now."""
        principal = self.principal_of(user_api_key_dict)
        if principal is OPERATOR:
            return model_names
        self.ensure_strategy()
        groups = self.index.groups()
        kept = []
        for name in model_names:
            if principal.allowed_models is not None and name not in principal.allowed_models:
                continue
            infos = groups.get(str(name), [])
            if any(self.ctx.resolver.can_serve(principal, i.provider, pooled_available=self.runtime.pooled_healthy(i))
                   for i in infos):
                kept.append(name)
        return kept

    # -- before routing --------------------------------------------------------------------

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        """Fails closed: a request we cannot attribute or validate is refused with a 4xx."""
        started = time.perf_counter()
        self.ensure_strategy()
        principal = self.principal_of(user_api_key_dict)
        state = self.registry.new(principal)
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
            data["metadata"] = metadata
        metadata[STATE_KEY] = state.rid
        own = {name: data.pop(name) for name in _REQUEST_FIELDS if name in data}
        try:
            state.requested_model = check_model_name(data.get("model"))
            if str(getattr(call_type, "value", call_type)) in CHAT_CALL_TYPES:
                token = (getattr(user_api_key_dict, "metadata", None) or {}).get(PREFETCH_KEY)
                await self._prepare_chat(state, data, own, token)
            else:
                self._check_allowed(principal, state.requested_model)
                state.model_group = state.requested_model
            await limits_glue.precheck(self.runtime, state)
        except AdaptiveError as exc:
            self._retire(state)
            raise http_error(exc) from exc
        finally:
            metrics.PLUGIN_LATENCY_SECONDS.labels(stage="pre_call").observe(time.perf_counter() - started)
        return data

    async def _prepare_chat(self, state: RequestState, data: dict, own: dict[str, Any], prefetch_token: Any) -> None:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise RoutingError("messages must be a non-empty list of message objects")
        headers = _request_headers(data)
        self._apply_cache_control(state, data, headers)
        if self.cache_backend is not None:
            self.cache_backend.adopt(state, prefetch_token, messages)
        if state.requested_model == self.settings.auto_model_name:
            await routing.route(self.runtime, state, data, own, headers)
        else:
            if "cost_bias" in own or routing.COST_BIAS_HEADER in headers:  # validated, though unused
                routing.parse_cost_bias(own.get("cost_bias", headers.get(routing.COST_BIAS_HEADER)), None)
            self._check_allowed(state.principal, state.requested_model)
            state.model_group = state.requested_model
        if data.get("caching") and not state.no_cache and self.cache_backend is not None:
            self.cache_backend.start_embedding(state, data)

    def _check_allowed(self, principal: Principal, model: str) -> None:
        if principal.allowed_models is not None and model not in principal.allowed_models:
            raise ModelNotAllowedError(f"project {principal.project_name!r} may not use model {model!r}; "
                             f"allowed: {', '.join(sorted(principal.allowed_models)) or 'none'}")

    def _apply_cache_control(self, state: RequestState, data: dict, headers: dict[str, str]) -> None:
        directives = {d.strip().lower() for d in headers.get("cache-control", "").split(",") if d.strip()}
        state.no_cache = "no-cache" in directives
        state.no_store = "no-store" in directives
        enabled = self.ctx.cache is not None and state.principal.cache_enabled
        if not enabled or (state.no_cache and state.no_store):
            # no lookup, and no serialising of the response for a store that would be skipped
            data["caching"] = False
            data["cache"] = {"no-cache": True, "no-store": True}
            state.cache_outcome = "bypass"
            return
        data["caching"] = True
        control = dict(data.get("cache") or {}) if isinstance(data.get("cache"), dict) else {}
        if state.no_cache:
            control["no-cache"] = True
            state.cache_outcome = "bypass"
        control["no-store"] = True  # LiteLLM never stores: the success hook does (cache_backend.store_answer)
        data["cache"] = control
        # the backend keys entries itself (tenant partition + query): spare LiteLLM hashing every
        # request parameter into a key that would be ignored (a LiteLLM parameter, never sent upstream)
        data.setdefault("cache_key", f"adaptive-{state.rid}")
        if isinstance(data.get("messages"), list):
            # lookup and store partition on the same values: the request as the client sent it
            state.cache_request = (data["messages"], request_params(data))

    # -- per attempt -----------------------------------------------------------------------

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict | None:
        """Fails closed: the attempt gets the project's key for its provider, or a clear error."""
        state = self.registry.get(request_metadata(kwargs))
        if state is None:
            return None
        started = time.perf_counter()
        info = self.index.get({"model_info": kwargs.get("model_info") or {},
                               "litellm_params": {"model": kwargs.get("model"), "api_key": kwargs.get("api_key"),
                                                  "custom_llm_provider": kwargs.get("custom_llm_provider")}})
        provider = info.provider or provider_of({"model": kwargs.get("model")})
        pooled = bool(kwargs.get("api_key")) and self.runtime.pooled_healthy(info)
        await self.ctx.changes.ensure_current()  # no attempt starts with a key revoked before it
        choice = await limits_glue.choose_key(self.runtime, state, kwargs, info, provider, pooled=pooled)
        state.provider = provider
        group = (request_metadata(kwargs) or {}).get("model_group")
        if isinstance(group, str) and group:
            state.model_group = group  # differs from the routed choice after a model fallback
        state.keys.last_error = None
        state.keys.last_error_retryable = True
        out = dict(kwargs)
        if choice.key is not None:
            # a customer key: never reuse a client built with another key
            out["api_key"] = choice.key.secret
            out["client"] = None
        metrics.PLUGIN_LATENCY_SECONDS.labels(stage="key_resolution").observe(time.perf_counter() - started)
        return out

    async def async_post_call_failure_deployment_hook(
        self, request_data: Any, exception: Exception, call_type: Any, fallback_depth: int | None = None
    ) -> None:
        """Fails open: records why the attempt's key failed so the next attempt moves on."""
        state = self.registry.get(request_metadata(dict(request_data)))
        if state is None:
            return
        choice = state.keys.last_choice
        status = getattr(exception, "status_code", None)
        reason = failure_reason(exception)
        state.keys.last_error = exception
        state.keys.last_error_retryable = reason in KEY_FAILURES
        wait = retry_after(exception)
        await limits_glue.attempt_failed(self.runtime, state, reason=reason, retry_after=wait)
        if choice is None or reason not in KEY_FAILURES:
            return  # the request's fault (or LiteLLM's): no key is blamed, no other key repeats it
        metrics.KEY_FALLBACKS.labels(provider=choice.provider, key_source=choice.source, reason=reason).inc()
        state.keys.fallbacks.append({"from": choice.fingerprint or f"pooled:{choice.provider}", "reason": reason})
        if choice.key is not None:
            self.ctx.resolver.report_failure(choice.key, reason, retry_after=wait)
            if reason == "invalid":
                await asyncio.to_thread(self._mark_invalid, choice.key.id, status)
            drop_retry_after(exception)  # the next attempt uses another key: no reason to wait
        elif reason in ("rate_limited", "quota", "invalid") and self.strategy is not None:
            model_info = dict(request_data).get("model_info") or {}
            self.strategy.pooled_failed(str(model_info.get("id", "")), wait)

    def _mark_invalid(self, key_id: str, status: Any) -> None:
        try:
            self.ctx.keys.set_provider_key_status(None, key_id, "invalid", f"provider answered {status}")
        except AdaptiveError as exc:
            log.error("adaptive: could not mark provider key %s invalid: %s", key_id, exc.message)

    # -- after the response ----------------------------------------------------------------

    async def async_post_call_response_headers_hook(
        self, data: dict, user_api_key_dict: Any, response: Any, request_headers: dict | None = None,
        litellm_call_info: dict | None = None,
    ) -> dict[str, str] | None:
        """Fails open: headers are informative; the response is never withheld for them."""
        state = self.registry.get(request_metadata(data))
        if state is None:
            return None
        hidden = getattr(response, "_hidden_params", None) or {}
        if hidden.get("cache_hit") and state.cache_outcome not in accounting.CACHE_HITS:
            state.cache_outcome = "hit-exact"
        fee = None
        usage = getattr(response, "usage", None)
        if usage is not None and not data.get("stream"):
            fee = accounting.fee_for(state, accounting.usage_of(response), hidden.get("response_cost"), self.ctx.fee_rates)
        model = hidden.get("litellm_model_name") or getattr(response, "model", None)
        return accounting.headers_for(state, model=model, fee=fee)

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        """Fails closed: a call that produced no response is the client's error, not a 200.

        LiteLLM's OpenAI-compatible handler (with `drop_params`) answers a provider's 422 by
        retrying once without the parameters the provider named, and when that is refused too
        it returns nothing at all, which the proxy would send as a 200 with the body `null`.
        """
        if response is not None:
            return None
        state = self.registry.get(request_metadata(data))
        if state is not None and not state.finished:
            state.finished = True
            await limits_glue.request_failed(self.runtime, state, None)
            row = accounting.ledger_row(state, usage=Usage(), fee=accounting.Fee(0, 0), model="", response_cost=None,
                                        outcome="error", status_code=422, error_code="provider_unprocessable")
            self.ctx.ledger.record(row)
            accounting.record_metrics(row, project_labels=self.settings.metrics_project_labels)
            self._retire(state)
        raise HTTPException(status_code=422, detail={
            "error": "the provider refused the request as unprocessable (422), also without the parameters it named",
            "code": "provider_unprocessable"})

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Fails open: billing problems are logged, never turned into a client error."""
        state = self.registry.get(request_metadata(kwargs))
        if state is None or state.finished or response_obj is None:
            return
        state.finished = True
        slo = kwargs.get("standard_logging_object") or {}
        if slo.get("cache_hit") and state.cache_outcome not in accounting.CACHE_HITS:
            state.cache_outcome = "hit-exact"
        usage = accounting.usage_of(response_obj)
        cost = slo.get("response_cost", kwargs.get("response_cost"))
        fee = accounting.fee_for(state, usage, cost, self.ctx.fee_rates)
        await limits_glue.settle(self.runtime, state, usage=usage, fee=fee, response_cost=cost)
        model = str(slo.get("model") or kwargs.get("model") or "")
        row = accounting.ledger_row(state, usage=usage, fee=fee, model=model, response_cost=cost)
        self.ctx.ledger.record(row)
        accounting.record_metrics(row, project_labels=self.settings.metrics_project_labels)
        if self.cache_backend is not None:
            await self.cache_backend.store_answer(state, response_obj)
        self._retire(state)

    def _retire(self, state: RequestState) -> None:
        """Forget a finished request soon, not at once: LiteLLM may still store it in the cache."""
        try:
            asyncio.get_running_loop().call_later(RETIRE_AFTER_SECONDS, self.registry.pop, state.rid)
        except RuntimeError:
            self.registry.pop(state.rid)

    async def async_post_call_failure_hook(
        self, request_data: dict, original_exception: Exception, user_api_key_dict: Any, traceback_str: str | None = None
    ) -> Any:
        """Fails open: logs the failed request (no fee) and passes the error through."""
        state = self.registry.get(request_metadata(request_data))
        if state is None or state.finished:
            return None
        state.finished = True
        transformed = await limits_glue.request_failed(self.runtime, state, original_exception)
        failure = transformed if transformed is not None else original_exception
        status = getattr(failure, "status_code", 500)
        code = (transformed.detail or {}).get("code") if transformed is not None else getattr(original_exception, "code", None)
        row = accounting.ledger_row(
            state, usage=Usage(), fee=accounting.Fee(0, 0), model="", response_cost=None, outcome="error",
            status_code=int(status) if isinstance(status, int) else 500, error_code=str(code)[:64] if code else None,
        )
        self.ctx.ledger.record(row)
        accounting.record_metrics(row, project_labels=self.settings.metrics_project_labels)
        self._retire(state)
        return transformed


RETIRE_AFTER_SECONDS = 10.0

# litellm.Cache() registers the string callback "cache" with LiteLLM's logging; no LiteLLM code
# acts on it (lookup and store run in LiteLLM's caching handler, and the store here is ours),
# but a string callback makes LiteLLM run its synchronous success handler in a logging thread
# after every request: 1.5 ms of CPU per request on the benchmark machine, competing with the
# event loop for the GIL
_IDLE_CACHE_CALLBACK = "cache"


def drop_idle_cache_callbacks() -> None:
    """Remove the no-op "cache" logging callback that `litellm.Cache()` registers."""
    for callbacks in (litellm.input_callback, litellm.success_callback, litellm._async_success_callback):
        while _IDLE_CACHE_CALLBACK in callbacks:
            callbacks.remove(_IDLE_CACHE_CALLBACK)


def preload_request_imports() -> None:
    """Import at start-up what LiteLLM's auth imports on every request (its OpenTelemetry logger,
    best effort): the first request would otherwise pay for it (about 50 ms on the benchmark
    machine). Without opentelemetry-sdk the import fails, and a failed import is retried by
    every request (about 0.5 ms each): that is worth a warning."""
    try:
        import litellm.integrations.otel.logger  # noqa: F401
    except ImportError as exc:
        log.warning("adaptive: LiteLLM cannot import its OpenTelemetry logger (%s) and will retry the import on "
                    "every request (about 0.5 ms each); install opentelemetry-sdk, a dependency of the plugin", exc)


def freeze_startup_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's reach (`gc.freeze`).

    The proxy's start-up heap (LiteLLM, FastAPI, pydantic models, price map) is hundreds of
    thousands of long-lived objects that every full collection walks again: 250-400 ms with the
    event loop stopped on the benchmark machine, added to every request in flight. Frozen
    objects are never collected; they live as long as the process anyway. Costs one full
    collection (about 0.4 s) while the proxy starts.
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("adaptive: froze %d start-up objects out of the garbage collector in %.0f ms",
             gc.get_freeze_count(), (time.perf_counter() - started) * 1000)


def _request_headers(data: dict) -> dict[str, str]:
    raw = (data.get("proxy_server_request") or {}).get("headers") or (data.get("metadata") or {}).get("headers") or {}
    return {str(k).lower(): str(v) for k, v in raw.items()}


def build() -> AdaptiveHooks:
    """Build the plugin from the environment; raises on any bad setting (start-up fails)."""
    from adaptive_plugin.adapters import pricing

    pricing.check_startup_prices()  # a pooled deployment without a price stops the proxy
    check_startup_url_validation()  # so does LiteLLM's media-download guard turned off
    context = PluginContext.build(Settings.from_env())
    # a clean shutdown (SIGTERM to the proxy or a worker) writes every queued ledger row
    atexit.register(context.close)
    hooks_obj = AdaptiveHooks(context)
    hooks_obj.install()
    return hooks_obj


_built: AdaptiveHooks | None = None


def __getattr__(name: str) -> Any:
    global _built
    if name == "hooks":
        if _built is None:
            _built = build()
        return _built
    raise AttributeError(name)

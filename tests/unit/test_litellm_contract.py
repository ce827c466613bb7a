"""Our adapters override LiteLLM methods by name: fail here, not in production, when LiteLLM moves them.

Like httpx's `test_httpcore_all_exceptions_mapped`: every public method of an adapter class is
either a method of its LiteLLM base (same name, same parameter names and kinds, same sync/async)
or one of our own helpers listed below. LiteLLM is pinned; a new version must pass this first.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

import importlib
import inspect
import logging
import sys
from importlib.metadata import version

import pytest
from litellm import Router
from litellm.caching.base_cache import BaseCache
from litellm.caching.in_memory_cache import InMemoryCache
from litellm.integrations.custom_logger import CustomLogger
from litellm.types.router import CustomRoutingStrategyBase

from adaptive_plugin.adapters.cache_backend import AdaptiveCacheBackend
from adaptive_plugin.adapters.hooks import AdaptiveHooks
from adaptive_plugin.adapters.strategy import AdaptiveRoutingStrategy

PINNED = "1.106.12"

# Public methods that are ours, not LiteLLM overrides.
OWN_METHODS = {
    AdaptiveHooks: {"install", "ensure_strategy", "principal_of", "strategy"},
    AdaptiveCacheBackend: {"store_answer", "prefetch", "adopt", "start_embedding"},
    AdaptiveRoutingStrategy: {"pooled_failed", "pooled_healthy"},
}
# Methods LiteLLM calls by duck typing on a cache backend (not declared on BaseCache), checked
# against the in-memory backend that `Cache(type="local")` would otherwise use.
DUCK_TYPED = {AdaptiveCacheBackend: {"flush_cache": InMemoryCache}}
# async_delete_cache(key) is called on Redis/dual caches by the proxy; BaseCache does not declare it.
DUCK_TYPED_UNCHECKED = {AdaptiveCacheBackend: {"async_delete_cache"}}

PAIRS = [
    (AdaptiveHooks, CustomLogger),
    (AdaptiveCacheBackend, BaseCache),
    (AdaptiveRoutingStrategy, CustomRoutingStrategyBase),
]


def public_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


def shape(func: object) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(func).parameters.values()]  # type: ignore[arg-type]


def test_litellm_is_the_pinned_version() -> None:
    assert version("litellm") == PINNED


@pytest.mark.parametrize("ours, base", PAIRS, ids=lambda c: c.__name__)
def test_classes_subclass_the_litellm_base(ours: type, base: type) -> None:
    assert issubclass(ours, base)


@pytest.mark.parametrize("ours, base", PAIRS, ids=lambda c: c.__name__)
def test_overridden_methods_exist_with_our_parameter_names(ours: type, base: type) -> None:
    own = OWN_METHODS[ours] | set(DUCK_TYPED.get(ours, {})) | DUCK_TYPED_UNCHECKED.get(ours, set())
    overrides = public_methods(ours) - own
    assert overrides, f"{ours.__name__} overrides nothing?"
    problems = []
    for name in sorted(overrides):
        theirs = getattr(base, name, None)
        if theirs is None:
            problems.append(f"{base.__name__}.{name} no longer exists")
            continue
        mine = getattr(ours, name)
        if shape(mine) != shape(theirs):
            problems.append(f"{name}: ours {shape(mine)} != LiteLLM's {shape(theirs)}")
        if inspect.iscoroutinefunction(mine) != inspect.iscoroutinefunction(theirs):
            problems.append(f"{name}: sync/async differs from LiteLLM's")
    assert problems == []


@pytest.mark.parametrize("ours", list(DUCK_TYPED), ids=lambda c: c.__name__)
def test_duck_typed_cache_methods_match_litellms_backends(ours: type) -> None:
    for name, reference in DUCK_TYPED[ours].items():
        assert shape(getattr(ours, name)) == shape(getattr(reference, name)), name


def test_the_hooks_we_rely_on_are_all_overridden() -> None:
    hooks = {
        "async_pre_call_hook", "async_pre_call_deployment_hook", "async_post_call_failure_deployment_hook",
        "async_post_call_response_headers_hook", "async_log_success_event", "async_post_call_failure_hook",
    }
    assert hooks <= public_methods(AdaptiveHooks)
    assert {"get_cache", "async_get_cache", "set_cache", "async_set_cache"} <= public_methods(AdaptiveCacheBackend)
    assert {"async_get_available_deployment", "get_available_deployment"} <= public_methods(AdaptiveRoutingStrategy)


def test_every_hook_says_whether_it_fails_open_or_closed() -> None:
    for name in public_methods(AdaptiveHooks) - OWN_METHODS[AdaptiveHooks]:
        doc = getattr(AdaptiveHooks, name).__doc__ or ""
        assert "fails open" in doc.lower() or "fails closed" in doc.lower(), name


def test_router_accepts_a_custom_routing_strategy() -> None:
    method = getattr(Router, "set_custom_routing_strategy", None)
    assert callable(method)
    assert [name for name, _ in shape(method)] == ["self", "CustomRoutingStrategy"]
    # the strategy keeps a reference to the router's defaults, so these must stay too
    for name in ("async_get_available_deployment", "get_available_deployment"):
        assert hasattr(Router, name), name


@pytest.fixture
def litellm_callbacks():
    """Restore LiteLLM's global cache and callback lists after the test."""
    import litellm

    lists = ("input_callback", "success_callback", "_async_success_callback")
    saved = {name: list(getattr(litellm, name)) for name in lists}
    saved_cache = litellm.cache
    yield litellm
    for name, value in saved.items():
        getattr(litellm, name)[:] = value
    litellm.cache = saved_cache


def _runs_sync_success_handler(litellm) -> bool:
    """Whether LiteLLM would run its synchronous success handler in a thread after an async call."""
    import datetime

    from litellm.litellm_core_utils.litellm_logging import Logging

    logging_obj = Logging(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=False,
                          call_type="acompletion", start_time=datetime.datetime.now(), litellm_call_id="contract",
                          function_id="contract")
    return logging_obj._should_run_sync_callbacks_for_async_calls()


def test_installing_the_cache_backend_leaves_no_sync_success_handler_per_request(litellm_callbacks) -> None:
    """`litellm.Cache()` registers a "cache" logging callback that nothing acts on, yet it makes every
    request run LiteLLM's sync success handler in a thread (CPU the event loop waits for): the
    plugin removes it and keeps its backend installed (hits through the proxy: tests/proxy/test_cache.py)."""
    from adaptive_plugin.adapters.hooks import drop_idle_cache_callbacks

    litellm = litellm_callbacks
    for name in ("input_callback", "success_callback", "_async_success_callback"):
        getattr(litellm, name)[:] = []
    assert not _runs_sync_success_handler(litellm)
    backend = InMemoryCache()
    litellm.cache = litellm.Cache(type="local", _backend=backend)
    assert _runs_sync_success_handler(litellm)  # what LiteLLM does with the callback in place
    drop_idle_cache_callbacks()
    assert not _runs_sync_success_handler(litellm)
    assert "cache" not in litellm.input_callback + litellm.success_callback + litellm._async_success_callback
    assert litellm.cache.cache is backend


def test_litellms_per_request_telemetry_imports_succeed() -> None:
    """LiteLLM's auth imports these on every request (`_seed_request_destinations`, best effort):
    a failing import is not cached, so each request would search and load the modules again
    (about 0.5 ms of CPU). The plugin depends on opentelemetry-sdk so that they import once."""
    from litellm.proxy.auth import user_api_key_auth

    source = inspect.getsource(user_api_key_auth._seed_request_destinations)
    modules = ("litellm.integrations.otel.logger", "litellm.integrations.otel.plumbing.context",
               "litellm.integrations.otel.plumbing.providers", "litellm.proxy.litellm_pre_call_utils")
    for name in modules:
        assert f"from {name} import" in source  # LiteLLM still imports it there
        importlib.import_module(name)


def test_the_plugin_imports_them_at_start_up_and_warns_without_the_sdk(monkeypatch, caplog) -> None:
    """The first request does not pay for the import; an install without the SDK is told why
    every request pays for it."""
    from adaptive_plugin.adapters.hooks import preload_request_imports

    monkeypatch.delitem(sys.modules, "litellm.integrations.otel.logger", raising=False)  # restored afterwards
    preload_request_imports()
    assert "litellm.integrations.otel.logger" in sys.modules
    monkeypatch.delitem(sys.modules, "litellm.integrations.otel.logger")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk._logs", None)  # imports fail as without the SDK
    with caplog.at_level(logging.WARNING, logger="adaptive_plugin"):
        preload_request_imports()
    assert "install opentelemetry-sdk" in caplog.text


# -- the tenant boundary's view of LiteLLM -----------------------------------------------------


def test_every_litellm_request_parameter_is_forbidden_in_a_chat_body_or_reviewed() -> None:
    from adaptive_plugin.adapters.guard import forbidden_body_fields, litellm_parameter_names
    from adaptive_plugin.boundary import ALLOWED_LITELLM_FIELDS, forbidden_by_pattern

    forbidden = forbidden_body_fields()
    open_names = sorted(n for n in litellm_parameter_names()
                        if n not in forbidden and not forbidden_by_pattern(n) and n not in ALLOWED_LITELLM_FIELDS)
    assert open_names == []
    assert ALLOWED_LITELLM_FIELDS == {"metadata"}  # reviewed: checked field by field in boundary.request


def test_openai_model_parameters_stay_open() -> None:
    from adaptive_plugin.adapters.guard import forbidden_body_fields, model_parameter_names
    from adaptive_plugin.boundary import forbidden_by_pattern

    forbidden = forbidden_body_fields()
    closed = sorted(n for n in model_parameter_names() if n in forbidden or forbidden_by_pattern(n))
    assert closed == []
    assert {"temperature", "max_tokens", "tools", "response_format", "stream"} <= model_parameter_names()


def test_the_route_guard_seam_exists() -> None:
    """The guard wraps Starlette's Router.middleware_stack and walks FastAPI's route contexts."""
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Router

    assert "self.middleware_stack" in inspect.getsource(Router.__call__)
    assert callable(iter_route_contexts)


def test_custom_auth_runs_before_any_route_check_for_a_custom_principal() -> None:
    """LiteLLM returns the custom-auth principal without its own route checks (the reason the
    plugin keeps the allow-list itself), unless custom_auth_run_common_checks is set."""
    from litellm.proxy.auth import user_api_key_auth as module

    source = inspect.getsource(module.user_api_key_auth_builder)
    assert "user_custom_auth(request=request, api_key=api_key)" in source


def test_model_listing_callbacks_can_narrow_the_list() -> None:
    params = [p.name for p in inspect.signature(CustomLogger.async_filter_listed_models).parameters.values()]
    assert params == ["self", "user_api_key_dict", "model_names"]

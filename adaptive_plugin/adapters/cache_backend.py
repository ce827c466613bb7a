"""LiteLLM cache backend over the semantic cache (`litellm.Cache(_backend=...)`).

LiteLLM calls it with its own cache key plus the full request kwargs; the key is ignored in
favour of our tenant-scoped partition (project/environment, model group, system prompt, earlier
turns, tools, response format, sampling parameters). LiteLLM handles the rest of the hit path:
no provider call, a proper SSE stream for streamed requests, `cache_hit` in its logging.

Fails open: a cache error is logged and counted, and the request goes to the provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from litellm.caching.base_cache import BaseCache

from adaptive_plugin import metrics
from adaptive_plugin.adapters.state import RequestState, request_metadata
from adaptive_plugin.errors import AdaptiveError

if TYPE_CHECKING:
    from adaptive_plugin.adapters.hooks import AdaptiveHooks

log = logging.getLogger("adaptive_plugin")

# request parameters that change the answer, so they partition the cache
PARTITION_PARAMS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "seed", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "tools", "tool_choice", "functions", "function_call", "response_format",
    "reasoning_effort", "logprobs", "top_logprobs",
)


def cache_params(state: RequestState, kwargs: dict[str, Any]) -> dict[str, Any]:
    params = {name: kwargs[name] for name in PARTITION_PARAMS if kwargs.get(name) is not None}
    params["model"] = state.model_group or str(kwargs.get("model", ""))
    return params


class AdaptiveCacheBackend(BaseCache):
    def __init__(self, hooks: AdaptiveHooks) -> None:
        super().__init__()
        self.hooks = hooks

    def _state(self, kwargs: dict[str, Any]) -> RequestState | None:
        return self.hooks.registry.get(request_metadata(kwargs))

    # -- lookup --------------------------------------------------------------------------

    def get_cache(self, key: str, **kwargs: Any) -> Any:
        state = self._state(kwargs)
        return None if state is None else self._lookup(state, kwargs)

    async def async_get_cache(self, key: str, **kwargs: Any) -> Any:
        state = self._state(kwargs)
        if state is None or state.no_cache:
            return None
        return await asyncio.to_thread(self._lookup, state, kwargs)

    def _lookup(self, state: RequestState, kwargs: dict[str, Any]) -> Any:
        cache = self.hooks.ctx.cache
        messages = kwargs.get("messages")
        if cache is None or not isinstance(messages, list):
            return None
        try:
            result = cache.lookup(state.principal.scope, messages, cache_params(state, kwargs), embedding=state.embedding)
        except (AdaptiveError, OSError, ValueError) as exc:
            metrics.CACHE_LOOKUPS.labels(outcome="error").inc()
            log.error("adaptive: cache lookup failed, calling the provider: %s", exc)
            return None
        state.cache_outcome = result.outcome
        state.similarity = result.similarity
        if state.embedding is None and result.embedding is not None:
            state.embedding = result.embedding  # the store after a miss reuses it: one embedding per request
        if result.response is None:
            return None
        return {"timestamp": time.time(), "response": json.dumps(result.response)}

    # -- store ---------------------------------------------------------------------------

    def set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        state = self._state(kwargs)
        if state is not None:
            self._store(state, value, kwargs)

    async def async_set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        state = self._state(kwargs)
        if state is None or state.no_store or state.cache_outcome in ("hit-exact", "hit-semantic"):
            return
        await asyncio.to_thread(self._store, state, value, kwargs)

    async def async_set_cache_pipeline(self, cache_list: list, **kwargs: Any) -> None:
        for key, value in cache_list:
            await self.async_set_cache(key, value, **kwargs)

    def _store(self, state: RequestState, value: Any, kwargs: dict[str, Any]) -> None:
        cache = self.hooks.ctx.cache
        messages = kwargs.get("messages")
        if cache is None or not isinstance(messages, list):
            return
        raw = value.get("response") if isinstance(value, dict) else value
        try:
            response = json.loads(raw) if isinstance(raw, (str, bytes)) else dict(raw)
            cache.store(state.principal.scope, messages, response, cache_params(state, kwargs), embedding=state.embedding)
        except (AdaptiveError, OSError, ValueError, TypeError) as exc:
            log.error("adaptive: cache store failed (the response was delivered): %s", exc)

    async def async_delete_cache(self, key: str) -> None:
        return None

    def flush_cache(self) -> None:
        return None

    async def disconnect(self) -> None:
        """LiteLLM's shutdown calls this: write queued ledger rows and the cache index."""
        await asyncio.to_thread(self.hooks.ctx.close)

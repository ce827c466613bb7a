"""LiteLLM cache backend over the semantic cache (`litellm.Cache(_backend=...)`).

LiteLLM calls it with its own cache key plus the full request kwargs; the key is ignored in
favour of our tenant-scoped partition (project/environment, model group, system prompt, earlier
turns, tools, response format, sampling parameters). LiteLLM handles the rest of the hit path:
no provider call, a proper SSE stream for streamed requests, `cache_hit` in its logging.

Answers are stored by the plugin's success hook (`store_answer`), not through LiteLLM's cache
write path: the pre-call hook always sets LiteLLM's `no-store`, which spares every request
LiteLLM's serialising, re-hashing and write task (about 1 ms of CPU per request).

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
from adaptive_plugin.embedding import embedding_text, query_text
from adaptive_plugin.errors import AdaptiveError

if TYPE_CHECKING:
    from adaptive_plugin.adapters.hooks import AdaptiveHooks

log = logging.getLogger("adaptive_plugin")

# request parameters that change the answer, so they partition the cache
CACHE_HITS = ("hit-exact", "hit-semantic")

PARTITION_PARAMS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "seed", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "tools", "tool_choice", "functions", "function_call", "response_format",
    "reasoning_effort", "logprobs", "top_logprobs",
)


def embed_timed(embedder: Any, text: str) -> Any:
    """Embed one query (in a worker thread) and record its duration as the `embedding` stage."""
    started = time.perf_counter()
    try:
        return embedder.embed_one(text)
    finally:
        metrics.PLUGIN_LATENCY_SECONDS.labels(stage="embedding").observe(time.perf_counter() - started)


def request_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request parameters that partition the cache, as the client sent them."""
    return {name: kwargs[name] for name in PARTITION_PARAMS if kwargs.get(name) is not None}


def cache_params(state: RequestState, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The partition parameters: recorded by the pre-call hook (else read from `kwargs`) plus
    the model group that answers (the routed or fallback group, not the `auto` alias)."""
    params = dict(state.cache_request[1]) if state.cache_request is not None else request_params(kwargs)
    params["model"] = state.model_group or state.requested_model or str(kwargs.get("model", ""))
    return params


def request_messages(state: RequestState, kwargs: dict[str, Any]) -> Any:
    return state.cache_request[0] if state.cache_request is not None else kwargs.get("messages")


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
        if state.embedding is None and state.embedding_future is not None:
            try:
                state.embedding = await state.embedding_future
            except Exception as exc:  # noqa: BLE001 - the lookup embeds again and reports the error
                log.warning("adaptive: early embedding failed: %s", exc)
        return await asyncio.to_thread(self._lookup, state, kwargs)

    def start_embedding(self, state: RequestState, data: dict[str, Any]) -> None:
        """Start the lookup's embedding now, in a thread, if the lookup will need it.

        Called by the pre-call hook: the embedding (native code, no GIL) then runs while LiteLLM
        prepares the call, instead of after it. Exact hits and empty partitions embed nothing.
        """
        cache, embedder = self.hooks.ctx.cache, self.hooks.ctx.embedder
        messages = request_messages(state, data)
        if cache is None or embedder is None or state.embedding is not None or not isinstance(messages, list):
            return
        if cache.needs_embedding(state.principal.scope, messages, cache_params(state, data)):
            text = embedding_text(query_text(messages))
            future = asyncio.ensure_future(asyncio.to_thread(embed_timed, embedder, text))
            # a request that fails before its lookup never awaits it: retrieve any error here
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            state.embedding_future = future

    def _lookup(self, state: RequestState, kwargs: dict[str, Any]) -> Any:
        cache = self.hooks.ctx.cache
        messages = request_messages(state, kwargs)
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
        return None  # LiteLLM never stores (no-store is always set): see store_answer

    async def async_set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        return None

    async def async_set_cache_pipeline(self, cache_list: list, **kwargs: Any) -> None:
        return None

    async def store_answer(self, state: RequestState, response: Any) -> None:
        """Queue a successful answer for the cache (called by the success hook; never raises)."""
        cache = self.hooks.ctx.cache
        if cache is None or state.cache_request is None or state.no_store or state.cache_outcome in CACHE_HITS:
            return
        try:
            body = response.model_dump(mode="json") if hasattr(response, "model_dump") else dict(response)
            args = (state.principal.scope, state.cache_request[0], body, cache_params(state, {}))
            if state.embedding is not None:
                cache.store(*args, embedding=state.embedding, wait=False)  # no embedding, no database wait
            else:
                await asyncio.to_thread(cache.store, *args, wait=False)  # embeds the query first
        except (AdaptiveError, OSError, ValueError, TypeError) as exc:
            log.error("adaptive: cache store failed (the response was delivered): %s", exc)

    async def async_delete_cache(self, key: str) -> None:
        return None

    def flush_cache(self) -> None:
        return None

    async def disconnect(self) -> None:
        """LiteLLM's shutdown calls this: write queued ledger rows and the cache index."""
        await asyncio.to_thread(self.hooks.ctx.close)

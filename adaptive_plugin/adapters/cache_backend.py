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
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any

from litellm.caching.base_cache import BaseCache

from adaptive_plugin import metrics
from adaptive_plugin.adapters.runtime import Runtime
from adaptive_plugin.adapters.state import RequestState, request_metadata
from adaptive_plugin.embedding import embedding_text, query_text
from adaptive_plugin.errors import AdaptiveError
from adaptive_plugin.keys import Principal


log = logging.getLogger("adaptive_plugin")

# request parameters that change the answer, so they partition the cache
CACHE_HITS = ("hit-exact", "hit-semantic")

PARTITION_PARAMS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "seed", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "tools", "tool_choice", "functions", "function_call", "response_format",
    "reasoning_effort", "logprobs", "top_logprobs",
)


def embed_soon(embedder: Any, text: str) -> asyncio.Future[Any]:
    """Start embedding one query now, off the event loop; records the `embedding` stage.

    A request that fails before it awaits the vector never sees an error: it is retrieved here.
    """
    started = time.perf_counter()
    future: asyncio.Future[Any] = embedder.embed_one_soon(text)

    def finished(f: asyncio.Future[Any]) -> None:
        metrics.PLUGIN_LATENCY_SECONDS.labels(stage="embedding").observe(time.perf_counter() - started)
        if not f.cancelled():
            f.exception()

    future.add_done_callback(finished)
    return future


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


async def request_embedding(state: RequestState) -> Any:
    """The request's embedding if one was started early (None otherwise, or if it failed)."""
    if state.embedding is None and state.embedding_future is not None:
        try:
            state.embedding = await state.embedding_future
        except Exception as exc:  # noqa: BLE001 - the caller embeds again and reports the error
            log.warning("adaptive: early embedding failed: %s", exc)
        state.embedding_future = None
    return state.embedding


class Prefetches:
    """Embeddings started at authentication, waiting for their request's pre-call hook.

    Authentication runs about 2 ms of LiteLLM's own work before the pre-call hook: an embedding
    started there is mostly done by the time the cache lookup (or the router) needs it. A
    request that fails in between never claims its entry: entries expire after `max_age`
    seconds, and at most `limit` wait at once (beyond that nothing is prefetched).
    """

    def __init__(self, *, max_age: float = 30.0, limit: int = 1024) -> None:
        self._waiting: OrderedDict[str, tuple[str, asyncio.Future[Any] | None, float, Any]] = OrderedDict()
        self.max_age = max_age
        self.limit = limit

    def add(self, text: str, future: asyncio.Future[Any] | None, keyed: Any = None) -> str | None:
        """Keep `future` (None: no embedding was needed, only the key) for the pre-call hook."""
        now = time.monotonic()
        while self._waiting and next(iter(self._waiting.values()))[2] < now - self.max_age:
            self._waiting.popitem(last=False)
        if len(self._waiting) >= self.limit:
            if future is not None:
                future.cancel()
            return None
        token = secrets.token_hex(8)
        self._waiting[token] = (text, future, now, keyed)
        return token

    def claim(self, token: Any, text: str) -> asyncio.Future[Any] | None:
        """The future for `token` if it embeds `text` (the pre-call hook's view of the request)."""
        return self.claim_keyed(token, text)[0]

    def claim_keyed(self, token: Any, text: str) -> tuple[asyncio.Future[Any] | None, Any]:
        """`claim`, and the request key computed at authentication (`cache.KeyedRequest`)."""
        entry = self._waiting.pop(token, None) if isinstance(token, str) else None
        if entry is None:
            return None, None
        if entry[0] != text:
            if entry[1] is not None:
                entry[1].cancel()
            return None, None
        return entry[1], entry[3]

    def __len__(self) -> int:
        return len(self._waiting)


class AdaptiveCacheBackend(BaseCache):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.prefetches = Prefetches()

    def _state(self, kwargs: dict[str, Any]) -> RequestState | None:
        return self.runtime.registry.get(request_metadata(kwargs))

    # -- lookup --------------------------------------------------------------------------

    def get_cache(self, key: str, **kwargs: Any) -> Any:
        state = self._state(kwargs)
        return None if state is None else self._lookup(state, kwargs)[1]

    async def async_get_cache(self, key: str, **kwargs: Any) -> Any:
        state = self._state(kwargs)
        if state is None or state.no_cache:
            return None
        await request_embedding(state)
        decided, answer = self._lookup(state, kwargs, now=True)
        if decided:
            return answer
        return (await asyncio.to_thread(self._lookup, state, kwargs))[1]

    # -- early embedding -----------------------------------------------------------------

    def prefetch(self, principal: Principal, body: dict[str, Any], cache_control: str) -> str | None:
        """At authentication: start the embedding that the router or the cache lookup will need.

        Mirrors the pre-call hook's decisions on the raw body: `model: auto` with embedding
        routing always embeds; otherwise only a cache lookup that will embed (cache on for the
        project, no `no-cache`, not bypassed, no exact hit, something cached in the partition).
        Returns the token that the pre-call hook claims the embedding with (`adopt`).
        """
        embedder, cache, settings = self.runtime.ctx.embedder, self.runtime.ctx.cache, self.runtime.settings
        messages, model = body.get("messages"), body.get("model")
        if embedder is None or not isinstance(messages, list) or not messages or not isinstance(model, str):
            return None
        if not all(isinstance(m, dict) for m in messages):
            return None
        keyed = None
        if model == settings.auto_model_name:
            needed = settings.routing_use_embedding
        else:
            needed = cache is not None and principal.cache_enabled and "no-cache" not in cache_control.lower()
            if needed:
                keyed = cache.keyed(principal.scope, messages, {**request_params(body), "model": model})
                needed = cache.needs_embedding(principal.scope, messages, keyed.params, keyed=keyed)
        text = embedding_text(query_text(messages))
        if not needed:  # the key (and the first look's verdict) still spare the pre-call hook a second look
            return self.prefetches.add(text, None, keyed) if keyed is not None else None
        if not text:
            return None
        return self.prefetches.add(text, embed_soon(embedder, text), keyed)

    def adopt(self, state: RequestState, token: Any, messages: list[dict[str, Any]]) -> None:
        """In the pre-call hook: take over the embedding (and key) started at authentication, if any."""
        future, keyed = self.prefetches.claim_keyed(token, embedding_text(query_text(messages))) if token else (None, None)
        if future is not None and state.embedding is None:
            state.embedding_future = future
        state.cache_key = keyed

    def start_embedding(self, state: RequestState, data: dict[str, Any]) -> None:
        """In the pre-call hook: decide the lookup now if it needs nothing slow, else start its
        embedding, if it will need one and none is under way.

        Decided now (a miss by the first look, or nothing cached: most misses, in microseconds):
        the outcome is recorded and LiteLLM is told not to look up (`no-cache`), which spares
        its cache layer's work for every such request. Otherwise the embedding (on the worker
        process, or onnxruntime's thread) runs while LiteLLM prepares the call, instead of after
        it. Exact hits and empty partitions embed nothing.
        """
        cache = self.runtime.ctx.cache
        messages = request_messages(state, data)
        if cache is None or self.runtime.ctx.embedder is None or not isinstance(messages, list):
            return
        if state.embedding is not None or state.embedding_future is not None:
            return
        state.cache_key = cache.keyed(state.principal.scope, messages, cache_params(state, data), state.cache_key)
        decided, _answer = self._lookup(state, data, now=True)
        if decided:
            data["cache"] = {**(data.get("cache") or {}), "no-cache": True}
            return
        if cache.needs_embedding(state.principal.scope, messages, state.cache_key.params, keyed=state.cache_key):
            state.embedding_future = embed_soon(self.runtime.ctx.embedder, embedding_text(query_text(messages)))

    def _lookup(self, state: RequestState, kwargs: dict[str, Any], *, now: bool = False) -> tuple[bool, Any]:
        """(decided, LiteLLM's cached value or None). `now`: only what the cache decides at once,
        on the event loop (`SemanticCache.lookup_now`); undecided, the caller looks up in a thread."""
        cache = self.runtime.ctx.cache
        messages = request_messages(state, kwargs)
        if cache is None or not isinstance(messages, list):
            return True, None
        scope, params = state.principal.scope, cache_params(state, kwargs)
        try:
            if now:
                result = cache.lookup_now(scope, messages, params, keyed=state.cache_key)
                if result is None:
                    return False, None
            else:
                result = cache.lookup(scope, messages, params, embedding=state.embedding, keyed=state.cache_key)
        except (AdaptiveError, OSError, ValueError) as exc:
            metrics.CACHE_LOOKUPS.labels(outcome="error").inc()
            log.error("adaptive: cache lookup failed, calling the provider: %s", exc)
            return True, None
        state.cache_outcome = result.outcome
        state.similarity = result.similarity
        state.cache_key = result.keyed or state.cache_key
        if state.embedding is None and result.embedding is not None:
            state.embedding = result.embedding  # the store after a miss reuses it: one embedding per request
        if result.response is None:
            return True, None
        # LiteLLM takes the dict as it is (a string it would parse again): fresh from the database
        return True, {"timestamp": time.time(), "response": result.response}

    # -- store ---------------------------------------------------------------------------

    def set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        return None  # LiteLLM never stores (no-store is always set): see store_answer

    async def async_set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        return None

    async def async_set_cache_pipeline(self, cache_list: list, **kwargs: Any) -> None:
        return None

    async def store_answer(self, state: RequestState, response: Any) -> None:
        """Queue a successful answer for the cache (called by the success hook; never raises)."""
        cache = self.runtime.ctx.cache
        if cache is None or state.cache_request is None or state.no_store or state.cache_outcome in CACHE_HITS:
            return
        try:
            body = response.model_dump(mode="json") if hasattr(response, "model_dump") else dict(response)
            args = (state.principal.scope, state.cache_request[0], body, cache_params(state, {}))
            keyed, embedder = state.cache_key, self.runtime.ctx.embedder
            if (await request_embedding(state) is None and cache.embeds_to_store and embedder is not None
                    and cache.storable(*args, keyed=keyed)):
                # no lookup embedded it (no-cache, or nothing cached in the partition yet), and without the
                # cascade the entry needs its vector now: in the worker process rather than the cache's thread
                state.embedding = await embed_soon(embedder, embedding_text(query_text(args[1])))
            cache.store(*args, embedding=state.embedding, wait=False, keyed=keyed)  # queued: no database wait
        except (AdaptiveError, OSError, ValueError, TypeError) as exc:
            log.error("adaptive: cache store failed (the response was delivered): %s", exc)

    async def async_delete_cache(self, key: str) -> None:
        return None

    def flush_cache(self) -> None:
        return None

    async def disconnect(self) -> None:
        """LiteLLM's shutdown calls this: write queued ledger rows and the cache index."""
        await asyncio.to_thread(self.runtime.ctx.close)

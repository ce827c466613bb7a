"""A FAISS semantic cache of chat completions: local embeddings, tenant-scoped, durable.

    >>> from adaptive_plugin.cache import SemanticCache                        # doctest: +SKIP
    >>> cache = SemanticCache("/var/lib/adaptive/cache")                       # doctest: +SKIP
    >>> cache.put("project-1", messages, response, {"model": "gpt-4o-mini"})  # doctest: +SKIP
    >>> cache.get("project-1", paraphrased_messages, {"model": "gpt-4o-mini"}) # doctest: +SKIP

This package never imports litellm; `adaptive_plugin.adapters` calls `lookup`/`store`.
"""

from __future__ import annotations

from adaptive_plugin.cache._cache import CacheResult, Outcome, SemanticCache
from adaptive_plugin.cache._guards import near_miss_reason
from adaptive_plugin.cache._request import KeyedRequest, bypass_reason, keyed_request, request_key, unstorable_reason
from adaptive_plugin.cache._verifier import Verifier

__all__ = [
    "CacheResult",
    "KeyedRequest",
    "Outcome",
    "SemanticCache",
    "Verifier",
    "bypass_reason",
    "keyed_request",
    "near_miss_reason",
    "request_key",
    "unstorable_reason",
]

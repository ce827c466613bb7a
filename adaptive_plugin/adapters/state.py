"""Per-request state shared by the hooks of one client request (all of its attempts)."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from adaptive_plugin.keys import Principal, RequestKeyState

STATE_KEY = "adaptive_rid"  # the only thing we put in LiteLLM's request metadata
PREFETCH_KEY = "adaptive_prefetch"  # in the auth result's metadata: the embedding started at auth
_MAX_AGE_SECONDS = 900.0


@dataclass
class RequestState:
    rid: str
    principal: Principal
    started: float = field(default_factory=time.perf_counter)
    requested_model: str = ""
    model_group: str = ""
    no_cache: bool = False
    no_store: bool = False
    cache_outcome: str = "miss"  # hit-exact | hit-semantic | miss | bypass
    similarity: float | None = None
    embedding: Any = None  # numpy vector of query_text(messages), computed at most once
    embedding_future: Any = None  # asyncio future of `embedding`, started early for the cache lookup
    # (messages, request parameters) the cache partitions on; None: the cache is not used
    cache_request: tuple[list[dict[str, Any]], dict[str, Any]] | None = None
    cache_key: Any = None  # cache.KeyedRequest: the request's key, hashed once for prefetch, lookup and store
    routed: bool = False
    route_score: float | None = None
    task_type: str | None = None
    route_order: list[str] = field(default_factory=list)
    keys: RequestKeyState = field(default_factory=RequestKeyState)
    provider: str = ""
    finished: bool = False


class RequestRegistry:
    """rid -> RequestState for requests in flight in this process; stale entries expire."""

    def __init__(self) -> None:
        self._states: dict[str, RequestState] = {}
        self._lock = threading.Lock()
        self._last_sweep = time.monotonic()

    def new(self, principal: Principal) -> RequestState:
        state = RequestState(rid=secrets.token_hex(12), principal=principal)
        with self._lock:
            self._states[state.rid] = state
        self._sweep()
        return state

    def get(self, metadata: dict[str, Any] | None) -> RequestState | None:
        if not metadata:
            return None
        rid = metadata.get(STATE_KEY)
        return self._states.get(rid) if isinstance(rid, str) else None

    def pop(self, rid: str) -> RequestState | None:
        with self._lock:
            return self._states.pop(rid, None)

    def __len__(self) -> int:
        return len(self._states)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        cutoff = time.perf_counter() - _MAX_AGE_SECONDS
        with self._lock:
            for rid in [r for r, s in self._states.items() if s.started < cutoff]:
                del self._states[rid]


def request_metadata(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """LiteLLM keeps request metadata under `metadata` or `litellm_metadata` (or inside litellm_params)."""
    for name in ("metadata", "litellm_metadata"):
        md = kwargs.get(name)
        if isinstance(md, dict) and STATE_KEY in md:
            return md
    params = kwargs.get("litellm_params")
    if isinstance(params, dict):
        md = params.get("metadata")
        if isinstance(md, dict):
            return md
    return None

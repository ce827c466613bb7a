"""Small caches of database state shared across workers and replicas."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SyncedCache(Generic[K, V]):
    """Values loaded on demand and reloaded once older than `max_age` seconds.

    With `scope_of` (the project a value belongs to), `invalidate_scope()` drops the values of
    one project at once: the change feed (adaptive_plugin.changes) calls it when the shared
    revision says that project changed, and `max_age` is only a safety net for changes made
    outside the plugin. A value whose load overlapped an invalidation is returned to its caller
    but not kept: it may predate the change.
    """

    def __init__(self, load: Callable[[K], V], *, max_age: float, clock: Callable[[], float] = time.monotonic,
                 scope_of: Callable[[K, V], str] | None = None) -> None:
        self._load = load
        self._max_age = max_age
        self._clock = clock
        self._scope_of = scope_of
        self._values: dict[K, tuple[float, V]] = {}
        self._scopes: dict[str, set[K]] = {}
        self._generation = 0  # bumped by every invalidation
        self._lock = threading.Lock()

    def get(self, key: K) -> V:
        now = self._clock()
        hit = self._values.get(key)
        if hit is not None and now - hit[0] < self._max_age:
            return hit[1]
        return self.load(key, now=now)

    def load(self, key: K, *, now: float | None = None) -> V:
        """Load `key` now and keep it (unless an invalidation overlapped the load)."""
        now = self._clock() if now is None else now
        generation = self._generation
        value = self._load(key)
        with self._lock:
            if generation == self._generation:
                self._values[key] = (now, value)
                if self._scope_of is not None:
                    self._scopes.setdefault(self._scope_of(key, value), set()).add(key)
                if len(self._values) > 10_000:
                    cutoff = now - self._max_age
                    for k in [k for k, (t, _) in self._values.items() if t < cutoff]:
                        del self._values[k]
        return value

    def peek(self, key: K) -> V | None:
        """The cached value if it is still fresh, without loading (for the event loop)."""
        hit = self._values.get(key)
        if hit is not None and self._clock() - hit[0] < self._max_age:
            return hit[1]
        return None

    def invalidate(self, key: K | None = None) -> None:
        with self._lock:
            self._generation += 1
            if key is None:
                self._values.clear()
                self._scopes.clear()
            else:
                self._values.pop(key, None)

    def invalidate_scope(self, scope: str) -> list[K]:
        """Drop every value of `scope`; returns their keys (to load again ahead of need)."""
        with self._lock:
            self._generation += 1
            keys = self._scopes.pop(scope, set())
            dropped = [k for k in keys if self._values.pop(k, None) is not None]
        return dropped

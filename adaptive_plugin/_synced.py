"""Small time-bounded caches of database state shared across workers and replicas."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SyncedCache(Generic[K, V]):
    """Values loaded on demand and reloaded once older than `max_age` seconds.

    Every worker and replica re-reads the database at most `max_age` after a change, so a
    revoked key or API key stops being used within that bound.
    """

    def __init__(self, load: Callable[[K], V], *, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._max_age = max_age
        self._clock = clock
        self._values: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V:
        now = self._clock()
        hit = self._values.get(key)
        if hit is not None and now - hit[0] < self._max_age:
            return hit[1]
        value = self._load(key)
        with self._lock:
            self._values[key] = (now, value)
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
            if key is None:
                self._values.clear()
            else:
                self._values.pop(key, None)

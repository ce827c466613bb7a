"""Which store counts: Redis when configured, else the database; what happens when Redis is down.

With `fallback="database"` an operation Redis does not answer goes to the database instead, and
Redis is tried again `retry_seconds` later. With `fallback="refuse"` it raises
`LimitsUnavailableError` (503): a limited request is refused rather than counted nowhere. Either
way nothing is ever silently unlimited.

Counters of one store miss what was counted in the other meanwhile, so each process notes when
it last switched store (`fresh_after`): a spending counter seeded before that is seeded again
from the ledger on its next use, keeping the reservations still in flight on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from adaptive_plugin import metrics
from adaptive_plugin.errors import LimitsUnavailableError
from adaptive_plugin.limits._redis import RedisCounterStore, RedisUnavailableError
from adaptive_plugin.limits._results import CounterValue, ReserveResult
from adaptive_plugin.limits._sql import SqlCounterStore
from adaptive_plugin.limits.models import Charge

log = logging.getLogger("adaptive_plugin.limits")


class CounterStores:
    """The async face the service uses over the Redis and database stores."""

    def __init__(self, sql: SqlCounterStore, redis: RedisCounterStore | None = None, *,
                 fallback: str = "database", retry_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.sql = sql
        self.redis = redis
        self.fallback = fallback
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._wall = wall
        self._down_until = 0.0
        self._redis_down = False
        self.fresh_after = 0.0  # wall time of this process's last store switch
        self._last_sweep = 0.0

    def active(self) -> str:
        """The store the next operation goes to."""
        if self.redis is not None and (not self._redis_down or self._clock() >= self._down_until):
            return "redis"
        return "database"

    def _went_down(self, exc: RedisUnavailableError, *, refuse: bool = True) -> None:
        if not self._redis_down:
            log.error("adaptive: %s; limits are counted %s until it answers again", exc,
                      "in the database" if self.fallback == "database" else "nowhere: limited requests are refused")
            self.fresh_after = self._wall()
        self._redis_down = True
        self._down_until = self._clock() + self.retry_seconds
        metrics.LIMITS_STORE_FALLBACKS.labels(outcome=self.fallback).inc()
        if self.fallback != "database" and refuse:
            raise self._unavailable() from exc

    def _unavailable(self) -> LimitsUnavailableError:
        return LimitsUnavailableError(
            "spending caps and rate limits cannot be checked (their Redis does not answer); retry shortly",
            retry_after=max(1, int(self.retry_seconds)))

    def _came_back(self) -> None:
        if self._redis_down:
            log.warning("adaptive: Redis answers again; limits are counted there")
            self._redis_down = False
            self.fresh_after = self._wall()

    async def reserve(self, project_id: str, hold_id: str, charges: Sequence[Charge], *,
                      hold_seconds: float) -> tuple[str, ReserveResult]:
        """(store name, result) of a reservation."""
        if self.active() == "redis":
            assert self.redis is not None
            try:
                result = await self.redis.reserve(project_id, hold_id, charges, hold_seconds=hold_seconds,
                                                  fresh_after=self.fresh_after)
                self._came_back()
                return "redis", result
            except RedisUnavailableError as exc:
                self._went_down(exc)
        elif self.redis is not None and self.fallback != "database":
            metrics.LIMITS_STORE_FALLBACKS.labels(outcome=self.fallback).inc()
            raise self._unavailable()
        await self._maybe_sweep()
        return "database", await asyncio.to_thread(
            self.sql.reserve, hold_id, charges, hold_seconds=hold_seconds, fresh_after=self.fresh_after)

    async def seed(self, store: str, project_id: str, charge: Charge, used: int) -> None:
        if store == "redis" and self.redis is not None:
            try:
                await self.redis.seed(project_id, charge, used, fresh_after=self.fresh_after, now=self._wall())
                return
            except RedisUnavailableError as exc:
                self._went_down(exc)
                return  # the next reservation goes to the database
        await asyncio.to_thread(self.sql.seed, charge, used, fresh_after=self.fresh_after)

    async def finish(self, store: str, project_id: str, hold_id: str, *, held: Sequence[str],
                     adds: Sequence[tuple[str, int]], windows: Sequence[tuple[str, str, int]]) -> None:
        """Settle or release on the store that holds the reservation. A Redis that went away
        meanwhile lets it expire; its counters are seeded again when this process returns to it."""
        if store == "redis" and self.redis is not None:
            try:
                await self.redis.finish(project_id, hold_id, held=held, adds=adds, windows=windows)
            except RedisUnavailableError as exc:
                log.warning("adaptive: %s; a reservation there will expire instead of being settled", exc)
            return
        await asyncio.to_thread(self.sql.finish, hold_id, adds=adds, windows=windows)

    async def read(self, project_id: str, counters: Sequence[str]) -> dict[str, CounterValue]:
        if self.active() == "redis":
            assert self.redis is not None
            try:
                return await self.redis.read(project_id, counters)
            except RedisUnavailableError as exc:
                self._went_down(exc, refuse=False)
                if self.fallback != "database":
                    return {}  # unknown while Redis is away
        return await asyncio.to_thread(self.sql.read, counters)

    async def reset(self, project_id: str, counters: Sequence[str]) -> None:
        """Forget counters everywhere (a limit changed)."""
        if self.redis is not None:
            try:
                await self.redis.reset(project_id, counters)
            except RedisUnavailableError as exc:
                log.warning("adaptive: %s; its counters were not reset", exc)
        await asyncio.to_thread(self.sql.reset, counters)

    async def _maybe_sweep(self, every: float = 30.0) -> None:
        now = self._clock()
        if now - self._last_sweep >= every:
            self._last_sweep = now
            await asyncio.to_thread(self.sql.sweep)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()

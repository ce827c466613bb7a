"""Limit counters in Redis: one Lua script per operation, so every step is atomic on the server.

The reservation script checks every charge first and applies them only if all fit (as LiteLLM's
own multi-instance rate limiter does), with the Redis server's clock for the one-minute windows,
so that every worker and replica agrees on them. All keys of one request carry the project id
as a hash tag (`{prj_...}`): they live in one slot of a Redis Cluster.

A spending counter is a hash: `u` settled micro-dollars, `r` reserved by requests in flight,
`s` when it was seeded, `h:<hold id>` each reservation's amount; a sorted set beside it holds
each reservation's expiry, and expired reservations stop counting at the next reservation.
A window is a hash: `w` the start of the minute, `u` its count.
Redis may keep nothing on disk: a missing spending counter is seeded from the ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adaptive_plugin.limits._results import CounterValue, Missing, Refused, Reserved, ReserveResult
from adaptive_plugin.limits.models import WINDOW_SECONDS, Charge

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local hold = ARGV[1]
local hold_s = tonumber(ARGV[2])
local fresh = tonumber(ARGV[3])
local win = tonumber(ARGV[4])
local n = #KEYS / 2
local starts = {}
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local z = KEYS[2 * i]
  local b = 4 + (i - 1) * 4
  local limit = tonumber(ARGV[b + 2])
  local amount = tonumber(ARGV[b + 3])
  if ARGV[b + 1] == 's' then
    local seeded = redis.call('HGET', h, 's')
    if (not seeded) or tonumber(seeded) < fresh then
      return {'missing', i}
    end
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now)) do
      local a = redis.call('HGET', h, 'h:' .. id)
      if a then
        redis.call('HINCRBY', h, 'r', '-' .. a)
        redis.call('HDEL', h, 'h:' .. id)
      end
      redis.call('ZREM', z, id)
    end
    local used = tonumber(redis.call('HGET', h, 'u') or '0')
    local reserved = math.max(tonumber(redis.call('HGET', h, 'r') or '0'), 0)
    if used + reserved + amount > limit then
      return {'refused', i, used, reserved, '0'}
    end
  else
    local start = redis.call('HGET', h, 'w')
    if start and now - tonumber(start) < win then
      local used = tonumber(redis.call('HGET', h, 'u') or '0')
      if used + amount > limit then
        return {'refused', i, used, 0, string.format('%.6f', tonumber(start) + win - now)}
      end
      starts[i] = start
    else
      starts[i] = false
    end
  end
end
local out = {'ok'}
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local z = KEYS[2 * i]
  local b = 4 + (i - 1) * 4
  local amount = ARGV[b + 3]
  local ttl = ARGV[b + 4]
  if ARGV[b + 1] == 's' then
    local r = redis.call('HINCRBY', h, 'r', amount)
    if r < tonumber(amount) then
      redis.call('HSET', h, 'r', amount)
    end
    redis.call('HSET', h, 'h:' .. hold, amount)
    redis.call('ZADD', z, now + hold_s, hold)
    redis.call('EXPIRE', h, ttl)
    redis.call('EXPIRE', z, ttl)
    table.insert(out, '')
  else
    local start = starts[i]
    if start then
      redis.call('HINCRBY', h, 'u', amount)
    else
      start = string.format('%.6f', now)
      redis.call('HSET', h, 'w', start, 'u', amount)
    end
    redis.call('EXPIRE', h, ttl)
    table.insert(out, start)
  end
end
return out
"""

_SEED = """
local s = redis.call('HGET', KEYS[1], 's')
if s and tonumber(s) >= tonumber(ARGV[4]) then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local reserved = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do
  local a = redis.call('HGET', KEYS[1], 'h:' .. id)
  if a then
    reserved = reserved + tonumber(a)
  end
end
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'r', string.format('%d', reserved), 's', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_FINISH = """
local hold = ARGV[1]
local nh = tonumber(ARGV[2])
local na = tonumber(ARGV[3])
local nw = tonumber(ARGV[4])
for i = 1, nh do
  local h = KEYS[2 * i - 1]
  local a = redis.call('HGET', h, 'h:' .. hold)
  if a then
    if redis.call('HINCRBY', h, 'r', '-' .. a) < 0 then
      redis.call('HSET', h, 'r', '0')
    end
    redis.call('HDEL', h, 'h:' .. hold)
  end
  redis.call('ZREM', KEYS[2 * i], hold)
end
local k = 2 * nh
for i = 1, na do
  if redis.call('HEXISTS', KEYS[k + i], 's') == 1 then
    redis.call('HINCRBY', KEYS[k + i], 'u', ARGV[4 + i])
  end
end
k = k + na
local b = 4 + na
for i = 1, nw do
  local h = KEYS[k + i]
  if redis.call('HGET', h, 'w') == ARGV[b + 2 * i - 1] then
    if redis.call('HINCRBY', h, 'u', ARGV[b + 2 * i]) < 0 then
      redis.call('HSET', h, 'u', '0')
    end
  end
end
return 1
"""


class RedisUnavailableError(Exception):
    """Redis did not answer (connection refused, timeout); the caller falls back or refuses."""


class RedisCounterStore:
    """Counters in Redis (see the module docstring). Every method is a coroutine.

    >>> store = RedisCounterStore("redis://127.0.0.1:6379/0", prefix="adaptive:limits:")   # doctest: +SKIP
    >>> await store.reserve("prj_1", "h1", [charge], hold_seconds=900, fresh_after=0)       # doctest: +SKIP
    Reserved(window_starts={})
    """

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "adaptive:limits:", timeout: float = 0.5, max_connections: int = 32) -> None:
        self._url = url
        self.prefix = prefix
        self._timeout = timeout
        self._max_connections = max_connections
        self._client: tuple[asyncio.AbstractEventLoop, Any, dict[str, Any]] | None = None

    def _scripts(self) -> dict[str, Any]:
        """A client (and its scripts) per event loop: a redis.asyncio pool belongs to one loop."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client[0] is not loop:
            # a burst beyond the pool waits for a connection (a plain pool would raise at once,
            # which would read as "Redis is down")
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url, max_connections=self._max_connections, timeout=self._timeout * 4,
                socket_timeout=self._timeout, socket_connect_timeout=self._timeout, decode_responses=True)
            client = aioredis.Redis(connection_pool=pool)
            scripts = {"reserve": client.register_script(_RESERVE), "seed": client.register_script(_SEED),
                       "finish": client.register_script(_FINISH), "client": client, "pool": pool}
            self._client = (loop, client, scripts)
        return self._client[2]

    def key(self, project_id: str, counter: str) -> str:
        return f"{self.prefix}{{{project_id}}}:{counter}"

    def _pair(self, project_id: str, counter: str) -> list[str]:
        key = self.key(project_id, counter)
        return [key, key + ":holds"]

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts()[name](keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError) as exc:
            raise RedisUnavailableError(f"Redis is unavailable: {type(exc).__name__}") from exc

    async def reserve(self, project_id: str, hold_id: str, charges: Sequence[Charge], *, hold_seconds: float,
                      fresh_after: float) -> ReserveResult:
        keys: list[str] = []
        args: list[Any] = [hold_id, repr(float(hold_seconds)), repr(float(fresh_after)), WINDOW_SECONDS]
        for c in charges:
            keys += self._pair(project_id, c.counter)
            args += ["w" if c.window else "s", c.limit, c.amount, c.ttl]
        reply = await self._call("reserve", keys, args)
        if reply[0] == "ok":
            return Reserved(window_starts={c.counter: str(reply[1 + i]) for i, c in enumerate(charges) if c.window})
        index = int(reply[1]) - 1
        if reply[0] == "missing":
            return Missing(index)
        return Refused(index, used=int(reply[2]), reserved=int(reply[3]), window_left=float(reply[4]))

    async def seed(self, project_id: str, charge: Charge, used: int, *, fresh_after: float, now: float) -> None:
        await self._call("seed", self._pair(project_id, charge.counter),
                         [used, repr(float(now)), charge.ttl, repr(float(fresh_after))])

    async def finish(self, project_id: str, hold_id: str, *, held: Sequence[str], adds: Sequence[tuple[str, int]] = (),
                     windows: Sequence[tuple[str, str, int]] = ()) -> None:
        adds = [(c, a) for c, a in adds if a]
        windows = [(c, s, d) for c, s, d in windows if d]
        keys: list[str] = []
        for counter in held:
            keys += self._pair(project_id, counter)
        keys += [self.key(project_id, c) for c, _ in adds]
        keys += [self.key(project_id, c) for c, _, _ in windows]
        args: list[Any] = [hold_id, len(held), len(adds), len(windows)]
        args += [a for _, a in adds]
        for _, start, delta in windows:
            args += [start, delta]
        await self._call("finish", keys, args)

    async def read(self, project_id: str, counters: Sequence[str]) -> dict[str, CounterValue]:
        client = self._scripts()["client"]
        try:
            async with client.pipeline(transaction=False) as pipe:
                for counter in counters:
                    pipe.hmget(self.key(project_id, counter), "u", "r", "w")
                replies = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailableError(f"Redis is unavailable: {type(exc).__name__}") from exc
        out = {}
        for counter, (used, reserved, start) in zip(counters, replies):
            if used is not None:
                out[counter] = CounterValue(used=int(used), reserved=max(int(reserved or 0), 0),
                                            window_start=float(start or 0))
        return out

    async def reset(self, project_id: str, counters: Sequence[str]) -> None:
        client = self._scripts()["client"]
        keys = [k for counter in counters for k in self._pair(project_id, counter)]
        try:
            if keys:
                await client.delete(*keys)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailableError(f"Redis is unavailable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._client is not None:
            client, pool = self._client[1], self._client[2]["pool"]
            self._client = None
            await client.aclose()
            await pool.disconnect()

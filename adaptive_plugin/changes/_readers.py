"""Where the hot path reads the shared revision: the SQLite file, PostgreSQL or Redis.

Each reader does one cheap read of one number. SQLite is read synchronously on a dedicated
connection (a local file: microseconds). PostgreSQL and Redis are read asynchronously on a
dedicated connection, with concurrent callers sharing reads (`Coalesced`), so a busy event loop
does one round trip at a time, not one per request, and never blocks on the network.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine

_QUERY = "SELECT revision FROM adaptive_revision WHERE id = 1"
READ_TIMEOUT_SECONDS = 2.0

# Raise the Redis revision to ARGV[1] unless it is already there or beyond, and tell the
# subscribers: a late or repeated announcement never moves it back
_ANNOUNCE = """
local held = redis.call('GET', KEYS[1])
if not held or tonumber(ARGV[1]) > tonumber(held) then
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[2], ARGV[1])
return held
"""


class SqliteRevision:
    """The revision row of a SQLite file, on a connection of its own."""

    local = True

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()

    def read(self) -> int:
        with self._lock:
            row = self._conn.execute(_QUERY).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def postgres_conninfo(engine: Engine) -> str:
    """libpq's URL for the engine's database (search_path and other options kept)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresRevision:
    """The revision row, read on an asyncio connection of its own (reconnects when it drops)."""

    local = False

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def read(self) -> int:
        import psycopg

        loop = asyncio.get_running_loop()
        if self._conn is None or self._conn.closed or self._loop is not loop:
            self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, connect_timeout=2)
            self._loop = loop
        try:
            cursor = await self._conn.execute(_QUERY, prepare=True)
            row = await cursor.fetchone()
        except BaseException:
            conn, self._conn = self._conn, None
            if conn is not None:
                await _quietly(conn.close())
            raise
        return int(row[0])

    async def aclose(self) -> None:
        if self._conn is not None:
            await _quietly(self._conn.close())
            self._conn = None


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:  # noqa: BLE001 - closing a connection that already failed
        pass


class RedisRevision:
    """The revision in Redis (key and channel named by the database's cluster id)."""

    local = False

    def __init__(self, url: str, cluster: str) -> None:
        self._url = url
        self.key = f"adaptive:changes:{cluster}:revision"
        self.channel = f"adaptive:changes:{cluster}"
        self.sync = redis.Redis.from_url(url, socket_timeout=READ_TIMEOUT_SECONDS,
                                         socket_connect_timeout=READ_TIMEOUT_SECONDS)
        self._announce = self.sync.register_script(_ANNOUNCE)
        self._async: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def read(self) -> int | None:
        """The revision in Redis; None when Redis has none (a fresh or flushed Redis)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._loop is not loop:
            # one connection held (reads are serialised by Coalesced): no pool checkout per read
            self._async = aioredis.Redis.from_url(self._url, socket_timeout=READ_TIMEOUT_SECONDS,
                                                  socket_connect_timeout=READ_TIMEOUT_SECONDS,
                                                  single_connection_client=True)
            self._loop = loop
        value = await self._async.get(self.key)
        return int(value) if value is not None else None

    def announce(self, revision: int) -> None:
        """Raise the Redis revision to `revision` (never lower it) and publish it."""
        self._announce(keys=[self.key, self.channel], args=[revision])

    def pubsub(self) -> Any:
        return self.sync.pubsub(ignore_subscribe_messages=True)

    async def aclose(self) -> None:
        if self._async is not None:
            await _quietly(self._async.aclose())
            self._async = None

    def close(self) -> None:
        self.sync.close()


class Coalesced:
    """An async read shared by concurrent callers: each caller gets the result of a read that
    started after it asked (so it sees every change committed before it asked): it joins the
    read about to start, or waits for the next one when one is already under way. At most one
    read runs at a time."""

    def __init__(self, read: Callable[[], Awaitable[Any]]) -> None:
        self._read = read
        self._pending: asyncio.Future[Any] | None = None  # the next read, not started yet
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): nothing of the old one is valid
            self._loop, self._pending, self._running = loop, None, False
        if self._pending is None:
            self._pending = loop.create_future()
            if not self._running:
                self._running = True
                loop.create_task(self._run())
        return await asyncio.shield(self._pending)

    async def _run(self) -> None:
        while self._pending is not None:
            future, self._pending = self._pending, None  # callers from now on wait for the next read
            try:
                future.set_result(await asyncio.wait_for(self._read(), READ_TIMEOUT_SECONDS))
            except Exception as exc:  # noqa: BLE001 - handed to every caller of this read
                future.set_exception(exc)
                future.add_done_callback(_retrieved)
        self._running = False


def _retrieved(future: asyncio.Future[Any]) -> None:
    future.exception()  # a caller that gave up never looks: no "exception never retrieved"

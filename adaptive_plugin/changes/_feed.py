"""ChangeFeed: every process at the shared revision before it uses a key or a principal."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from adaptive_plugin import metrics
from adaptive_plugin.changes._readers import (
    Coalesced,
    PostgresRevision,
    RedisRevision,
    SqliteRevision,
    postgres_conninfo,
)
from adaptive_plugin.db._changes import ChangeRecord, changes_since, channel_name, current_revision
from adaptive_plugin.errors import DatabaseUnavailableError

log = logging.getLogger("adaptive_plugin")

# Invalidates what `changes` touched (None: everything) and returns loads to run ahead of need.
Apply = Callable[[list[ChangeRecord] | None], list[Callable[[], object]]]

SQLITE_POLL_SECONDS = 0.2
WAKE_SECONDS = 0.25  # how long a listener waits for a message before looking at its stop flag


class ChangeFeed:
    """Keeps this process's caches at the shared change revision.

        >>> feed = ChangeFeed(engine, apply, redis_url=None)      # doctest: +SKIP
        >>> await feed.ensure_current()   # before a key or principal is used   # doctest: +SKIP

    `ensure_current()` (the hot path, at authentication and at each attempt's key choice) reads
    the shared revision once (SQLite file, PostgreSQL, or Redis when configured) and, if it moved,
    reads what changed and invalidates just that (`apply`) before returning: a change committed
    before the call is always seen. A background thread (started with the first check) learns of
    changes first, from PostgreSQL LISTEN/NOTIFY, Redis pub/sub or, on SQLite, a poll every
    0.2 s, and applies them and loads the invalidated values again, so the hot path seldom has
    to. It also reads the database every `poll_seconds`, which repairs the Redis revision.

    Reads that fail: Redis falls back to the database; when the database cannot be read either,
    the check passes for `stale_seconds` after the last good one and then raises
    DatabaseUnavailableError (503).
    """

    def __init__(self, engine: Engine, apply: Apply, *, redis_url: str | None = None, poll_seconds: float = 1.0,
                 stale_seconds: float = 1.0, listen: bool = True) -> None:
        self.engine = engine
        self.listen = listen
        self._apply = apply
        self.poll_seconds = poll_seconds
        self.stale_seconds = stale_seconds
        self.revision, self.cluster = current_revision(engine)  # applied here: the caches start empty
        self._lock = threading.Lock()
        self._last_good = time.monotonic()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        dialect = engine.dialect.name
        self._db: Any
        if dialect == "sqlite":
            self._db = SqliteRevision(str(engine.url.database))
        elif dialect == "postgresql":
            self._db = PostgresRevision(postgres_conninfo(engine))
        else:  # pragma: no cover - make_engine builds only these
            raise ValueError(f"no change feed for {dialect}")
        self.redis = RedisRevision(redis_url, self.cluster) if redis_url else None
        self._read_db = None if self._db.local else Coalesced(self._db.read)
        self._read_redis = Coalesced(self.redis.read) if self.redis is not None else None

    # -- the hot path ------------------------------------------------------------------------

    async def ensure_current(self) -> None:
        """Return once every change committed before the call is applied here."""
        if self._listener is None and self.listen:
            self.start()
        try:
            shared = await self._shared_revision()
        except Exception as exc:  # noqa: BLE001 - storage errors of three client libraries
            if time.monotonic() - self._last_good < self.stale_seconds:
                return
            raise DatabaseUnavailableError(
                f"cannot read the shared change revision ({type(exc).__name__}): key revocations could be missed"
            ) from None
        self._last_good = time.monotonic()
        if shared > self.revision:
            metrics.CHANGE_CATCH_UPS.labels(where="request").inc()
            if self._db.local:
                self.catch_up()
            else:
                await asyncio.to_thread(self.catch_up)

    async def _shared_revision(self) -> int:
        if self._read_redis is not None:
            try:
                value = await self._read_redis()
            except Exception as exc:  # noqa: BLE001
                log.warning("adaptive: Redis did not give the change revision (%s); reading the database",
                            type(exc).__name__)
            else:
                if value is not None and value >= self.revision:
                    return int(value)
                # Redis lost it (restarted, flushed): the database has it; the listener repairs Redis
        if self._read_db is None:
            return int(self._db.read())
        return int(await self._read_db())

    # -- applying changes --------------------------------------------------------------------

    def catch_up(self, *, preload: bool = False) -> int:
        """Apply every change after the applied revision; returns the revision now applied."""
        with self._lock:
            revision, changes = changes_since(self.engine, self.revision)
            if revision <= self.revision:
                return self.revision
            loads = self._apply(changes)
            self.revision = revision
        if preload:
            for load in loads:
                try:
                    load()
                except Exception as exc:  # noqa: BLE001 - e.g. a revoked API key: it stays out
                    log.debug("adaptive: no preload after change %d (%s)", revision, type(exc).__name__)
        return revision

    # -- the background listener -------------------------------------------------------------

    def start(self) -> None:
        if self._listener is not None:
            return
        target = self._listen_redis if self.redis is not None else (
            self._listen_postgres if isinstance(self._db, PostgresRevision) else self._poll_sqlite)
        self._listener = threading.Thread(target=self._run, args=(target,), name="adaptive-changes", daemon=True)
        self._listener.start()

    def _run(self, target: Callable[[], None]) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                target()
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - keep listening; the hot path still checks
                log.warning("adaptive: change listener interrupted (%s); again in %.1f s", type(exc).__name__, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _poll_sqlite(self) -> None:
        reader = SqliteRevision(str(self.engine.url.database))
        try:
            while not self._stop.wait(SQLITE_POLL_SECONDS):
                if reader.read() > self.revision:
                    metrics.CHANGE_CATCH_UPS.labels(where="background").inc()
                    self.catch_up(preload=True)
        finally:
            reader.close()

    def _listen_postgres(self) -> None:
        import psycopg

        with psycopg.connect(postgres_conninfo(self.engine), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'LISTEN "{channel_name(self.cluster)}"')
            self._poll_database()  # anything committed before the LISTEN
            polled = time.monotonic()
            while not self._stop.is_set():
                heard = any(True for _ in conn.notifies(timeout=WAKE_SECONDS, stop_after=1))
                if heard or time.monotonic() - polled >= self.poll_seconds:
                    self._poll_database()
                    polled = time.monotonic()

    def _listen_redis(self) -> None:
        assert self.redis is not None
        pubsub = self.redis.pubsub()
        try:
            pubsub.subscribe(self.redis.channel)
            self._poll_database()
            polled = time.monotonic()
            while not self._stop.is_set():
                heard = pubsub.get_message(timeout=WAKE_SECONDS) is not None
                if heard or time.monotonic() - polled >= self.poll_seconds:
                    self._poll_database()
                    polled = time.monotonic()
        finally:
            pubsub.close()

    def _poll_database(self) -> None:
        """Apply what the database has, and raise Redis to it if it is behind."""
        revision, _ = current_revision(self.engine)
        if revision > self.revision:
            metrics.CHANGE_CATCH_UPS.labels(where="background").inc()
            self.catch_up(preload=True)
        if self.redis is not None:
            held = self.redis.sync.get(self.redis.key)
            if held is None or int(held) < revision:
                self.announce(revision)

    def announce(self, revision: int) -> None:
        """After a change committed here: raise the Redis revision to it and publish it. A failure
        is logged: the other processes then learn of the change from the database within
        `poll_seconds` (their listeners poll it)."""
        if self.redis is None:
            return
        try:
            self.redis.announce(revision)
        except Exception as exc:  # noqa: BLE001
            log.error("adaptive: could not announce change revision %d in Redis (%s); other replicas apply it "
                      "within %.1f s from the database", revision, type(exc).__name__, self.poll_seconds)

    async def aclose(self) -> None:
        """Close the asyncio connections (their event loop is about to end)."""
        if isinstance(self._db, PostgresRevision):
            await self._db.aclose()
        if self.redis is not None:
            await self.redis.aclose()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=WAKE_SECONDS + 5)
        if isinstance(self._db, SqliteRevision):
            self._db.close()
        if self.redis is not None:
            self.redis.close()

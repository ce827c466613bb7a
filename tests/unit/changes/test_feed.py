"""The shared change revision: a change committed by one process is applied by another before its
next check returns, for just the project it touched; reads are shared and fail safe."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptive_plugin._synced import SyncedCache
from adaptive_plugin.changes import ChangeFeed
from adaptive_plugin.changes._readers import Coalesced
from adaptive_plugin.db import make_engine, migrate
from adaptive_plugin.db._changes import ChangeRecord, current_revision
from adaptive_plugin.errors import DatabaseUnavailableError
from adaptive_plugin.keys import KeyService, ProjectCreate, ProviderKeyCreate, ResolvedKey, Vault

MASTER = os.urandom(32)


@dataclass
class Process:
    """One worker's view: its own engine, key chains cached per (project, environment), a feed."""

    engine: Engine
    keys: KeyService
    chains: SyncedCache[tuple[str, str], list[ResolvedKey]]
    feed: ChangeFeed
    loads: list[tuple[str, str]] = field(default_factory=list)

    def chain(self, project_id: str) -> list[str]:
        return [k.fingerprint for k in self.chains.get((project_id, "production"))]

    async def aclose(self) -> None:
        await self.feed.aclose()
        self.feed.close()
        self.engine.dispose()


def process(url: str, *, redis_url: str | None = None, listen: bool = False, poll_seconds: float = 0.2) -> Process:
    engine = make_engine(url)
    migrate(engine)
    keys = KeyService(engine, Vault([MASTER]))
    proc: Process

    def load(scope: tuple[str, str]) -> list[ResolvedKey]:
        proc.loads.append(scope)
        return keys.active_keys(*scope)

    chains: SyncedCache[tuple[str, str], list[ResolvedKey]] = SyncedCache(load, max_age=3600, scope_of=lambda k, _v: k[0])

    def apply(changes: list[ChangeRecord] | None) -> list[Callable[[], object]]:
        if changes is None:
            chains.invalidate()
            return []
        return [lambda k=k: chains.load(k) for c in changes for k in chains.invalidate_scope(c.project_id)]

    feed = ChangeFeed(engine, apply, redis_url=redis_url, poll_seconds=poll_seconds, stale_seconds=0.5, listen=listen)
    keys.on_change = feed.announce
    proc = Process(engine, keys, chains, feed)
    return proc


@pytest.fixture()
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'adaptive.db'}"


@pytest.fixture()
async def two(sqlite_url: str) -> AsyncIterator[tuple[Process, Process]]:
    a, b = process(sqlite_url), process(sqlite_url)
    yield a, b
    await a.aclose()
    await b.aclose()


def project_with_keys(keys: KeyService, name: str, n: int = 2) -> tuple[str, list[str]]:
    pid = keys.create_project(ProjectCreate(name=name, plan="team")).id
    ids = [keys.add_provider_key(pid, ProviderKeyCreate(environment="production", provider="openai",
                                                        api_key=f"sk-{name}-{i}-0123456789abcdef", priority=i)).id
           for i in range(n)]
    return pid, ids


async def test_a_revocation_is_applied_by_the_next_check_of_another_process(two: tuple[Process, Process]) -> None:
    a, b = two
    pid, ids = project_with_keys(a.keys, "acme")
    await b.feed.ensure_current()
    before = b.chain(pid)
    assert len(before) == 2
    a.keys.set_provider_key_status(pid, ids[0], "revoked")
    assert b.chain(pid) == before  # cached: without the check, b would go on using the revoked key
    await b.feed.ensure_current()
    assert b.chain(pid) == before[1:]
    assert b.feed.revision == current_revision(a.engine)[0]


async def test_only_the_changed_project_is_reloaded(two: tuple[Process, Process]) -> None:
    a, b = two
    p1, ids1 = project_with_keys(a.keys, "one")
    p2, _ = project_with_keys(a.keys, "two")
    await b.feed.ensure_current()
    b.chain(p1), b.chain(p2)
    b.loads.clear()
    a.keys.delete_provider_key(p1, ids1[1])
    await b.feed.ensure_current()
    b.chain(p1), b.chain(p2)
    assert b.loads == [(p1, "production")]
    await b.feed.ensure_current()  # nothing new: nothing dropped
    b.chain(p1)
    assert b.loads == [(p1, "production")]


async def test_a_process_behind_the_pruned_log_reloads_everything(two: tuple[Process, Process]) -> None:
    from sqlmodel import Session

    from adaptive_plugin.db.tables_changes import Change

    a, b = two
    pid, ids = project_with_keys(a.keys, "acme")
    await b.feed.ensure_current()
    b.chain(pid)
    a.keys.set_provider_key_status(pid, ids[0], "revoked")
    with Session(a.engine) as s:  # as the writer's pruning does for old revisions
        s.execute(sa.delete(Change))
        s.commit()
    await b.feed.ensure_current()
    assert len(b.chain(pid)) == 1


async def test_the_background_listener_applies_and_preloads(sqlite_url: str) -> None:
    a, b = process(sqlite_url), process(sqlite_url, listen=True)
    try:
        pid, ids = project_with_keys(a.keys, "acme")
        await b.feed.ensure_current()  # starts the listener
        b.chain(pid)
        b.loads.clear()
        a.keys.set_provider_key_status(pid, ids[0], "revoked")
        deadline = time.monotonic() + 5
        while b.chains.peek((pid, "production")) is None or not b.loads:  # dropped, then loaded again
            assert time.monotonic() < deadline, "the listener did not apply the change"
            await asyncio.sleep(0.02)
        assert b.loads == [(pid, "production")]  # loaded again ahead of need
        assert b.feed.revision == current_revision(a.engine)[0]
        await b.feed.ensure_current()
        assert len(b.chain(pid)) == 1 and b.loads == [(pid, "production")]  # the request loads nothing
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_unreadable_revision_is_tolerated_briefly_then_refused(two: tuple[Process, Process]) -> None:
    _, b = two
    await b.feed.ensure_current()

    def broken() -> int:
        raise OSError("disk gone")

    b.feed._db.read = broken  # type: ignore[method-assign]
    await b.feed.ensure_current()  # within stale_seconds of the last good read
    time.sleep(0.6)
    with pytest.raises(DatabaseUnavailableError, match="shared change revision"):
        await b.feed.ensure_current()


async def test_concurrent_checks_share_reads_and_never_use_an_older_one() -> None:
    started: list[int] = []
    gates: list[asyncio.Event] = []

    async def read() -> int:
        started.append(len(started))
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()
        return started[-1]

    async def settle() -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    shared = Coalesced(read)
    first = [asyncio.ensure_future(shared()) for _ in range(5)]
    await settle()
    assert len(started) == 1  # five callers, one read
    later = [asyncio.ensure_future(shared()) for _ in range(5)]  # asked after read 0 began
    await settle()
    assert len(started) == 1  # they wait for the next read rather than share one that began before
    gates[0].set()
    assert await asyncio.gather(*first) == [0] * 5
    await settle()
    assert len(started) == 2
    gates[1].set()
    assert await asyncio.gather(*later) == [1] * 5


async def test_a_failed_shared_read_reaches_every_caller() -> None:
    async def read() -> int:
        await asyncio.sleep(0)
        raise ConnectionError("down")

    shared = Coalesced(read)
    results = await asyncio.gather(*(shared() for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


def test_a_load_overlapping_an_invalidation_is_not_kept() -> None:
    cache: SyncedCache[str, int] = SyncedCache(lambda k: 0, max_age=3600, scope_of=lambda k, _v: "p")
    values = iter([1, 2])

    def load(key: str) -> int:
        value = next(values)
        if value == 1:
            cache.invalidate_scope("p")  # a change applied while this load read the old state
        return value

    cache._load = load  # type: ignore[method-assign]
    assert cache.get("k") == 1
    assert cache.get("k") == 2  # the overlapping load was not kept


# -- Redis -------------------------------------------------------------------------------------


@pytest.fixture()
async def with_redis(sqlite_url: str, redis_url: str) -> AsyncIterator[tuple[Process, Process, redis.Redis]]:
    a, b = process(sqlite_url, redis_url=redis_url), process(sqlite_url, redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    yield a, b, client
    assert a.feed.redis is not None
    client.delete(a.feed.redis.key)
    client.close()
    await a.aclose()
    await b.aclose()


async def test_redis_holds_the_revision_and_never_goes_back(with_redis: tuple[Process, Process, redis.Redis]) -> None:
    a, b, client = with_redis
    assert a.feed.redis is not None and a.feed.cluster in a.feed.redis.key  # named by the database
    pid, ids = project_with_keys(a.keys, "acme")
    revision = current_revision(a.engine)[0]
    assert int(client.get(a.feed.redis.key)) == revision  # announced after each commit
    a.feed.announce(revision - 1)  # a late announcement does not lower it
    assert int(client.get(a.feed.redis.key)) == revision
    await b.feed.ensure_current()
    b.chain(pid)
    a.keys.set_provider_key_status(pid, ids[1], "revoked")
    await b.feed.ensure_current()
    assert len(b.chain(pid)) == 1


async def test_a_redis_that_lost_the_revision_is_read_around_and_repaired(
    with_redis: tuple[Process, Process, redis.Redis]
) -> None:
    a, b, client = with_redis
    pid, ids = project_with_keys(a.keys, "acme")
    await b.feed.ensure_current()
    b.chain(pid)
    a.keys.on_change = None  # this change reaches the database only (Redis was down for the writer)
    a.keys.set_provider_key_status(pid, ids[0], "revoked")
    client.delete(a.feed.redis.key)  # and Redis restarted empty  # type: ignore[union-attr]
    await b.feed.ensure_current()
    assert len(b.chain(pid)) == 1  # read from the database
    b.feed._poll_database()  # what the listener does every poll interval
    assert int(client.get(a.feed.redis.key)) == current_revision(a.engine)[0]  # type: ignore[union-attr]


async def test_redis_down_falls_back_to_the_database(sqlite_url: str) -> None:
    a = process(sqlite_url)
    b = process(sqlite_url, redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    try:
        pid, ids = project_with_keys(a.keys, "acme")
        await b.feed.ensure_current()
        b.chain(pid)
        a.keys.set_provider_key_status(pid, ids[0], "revoked")
        await b.feed.ensure_current()
        assert len(b.chain(pid)) == 1
    finally:
        await a.aclose()
        await b.aclose()


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_notify_reaches_the_other_process(pg_schema_url: str) -> None:
    a, b = process(pg_schema_url), process(pg_schema_url, listen=True, poll_seconds=30)
    try:
        pid, ids = project_with_keys(a.keys, "acme")
        await b.feed.ensure_current()  # one round trip on b's own connection; starts its listener
        b.chain(pid)
        await asyncio.sleep(0.5)  # the listener is subscribed
        b.loads.clear()
        a.keys.set_provider_key_status(pid, ids[0], "revoked")
        deadline = time.monotonic() + 2  # the poll is 30 s away: the NOTIFY did it
        while b.chains.peek((pid, "production")) is None or not b.loads:
            assert time.monotonic() < deadline, "the NOTIFY did not arrive"
            await asyncio.sleep(0.005)
        assert b.feed.revision == current_revision(a.engine)[0]
        await b.feed.ensure_current()
        assert len(b.chain(pid)) == 1 and b.loads == [(pid, "production")]
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_pubsub_reaches_the_other_process(sqlite_url: str, redis_url: str) -> None:
    a = process(sqlite_url, redis_url=redis_url)
    b = process(sqlite_url, redis_url=redis_url, listen=True, poll_seconds=30)  # only the push can do it
    try:
        pid, ids = project_with_keys(a.keys, "acme")
        await b.feed.ensure_current()
        b.chain(pid)
        await asyncio.sleep(0.5)  # subscribed
        a.keys.set_provider_key_status(pid, ids[0], "revoked")
        deadline = time.monotonic() + 2
        while b.feed.revision < current_revision(a.engine)[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert b.feed.revision == current_revision(a.engine)[0]
    finally:
        redis.Redis.from_url(redis_url).delete(a.feed.redis.key)  # type: ignore[union-attr]
        await a.aclose()
        await b.aclose()

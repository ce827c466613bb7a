"""Counter stores on the real backends: SQLite, PostgreSQL (a schema of the test's own) and Redis
(keys under a random prefix per test, deleted afterwards; never FLUSHALL)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine

from adaptive_plugin.db import make_engine, migrate
from adaptive_plugin.limits import CounterStores, RedisCounterStore, SqlCounterStore
from adaptive_plugin.limits.models import Charge, Scope

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PROJECT = "prj_test"
SCOPE = Scope("project", PROJECT, PROJECT, "project 'acme'")


def spend(limit: int, amount: int, counter: str = f"s:p:{PROJECT}:2026-11-27") -> Charge:
    return Charge(counter=counter, scope=SCOPE, what="spend", limit=limit, amount=amount, ttl=3600,
                  period="day", resets_at=time.time() + 3600)


def window(limit: int, amount: int = 1, what: str = "rpm") -> Charge:
    return Charge(counter=f"w:{what}:p:{PROJECT}", scope=SCOPE, what=what, limit=limit, amount=amount, ttl=120)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)


@pytest.fixture()
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards. Unreachable Redis: the
    test is skipped, unless TEST_REDIS_URL names the server (./scripts/test.sh does), then it fails."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        client.close()
        if os.environ.get("TEST_REDIS_URL"):
            pytest.fail(f"Redis named by TEST_REDIS_URL is not reachable: {exc}", pytrace=False)
        pytest.skip(f"Redis not reachable (set TEST_REDIS_URL to require it): {exc}")
    prefix = f"test:limits:{secrets.token_hex(6)}:"
    yield prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@dataclass
class Backend:
    name: str
    url: str  # the database URL, or the Redis URL for "redis"
    engine: Engine  # the database (for "redis": the SQLite fallback and ledger)
    stores: CounterStores
    prefix: str = ""


def sqlite_engine(tmp_path: Path) -> tuple[str, Engine]:
    url = f"sqlite:///{tmp_path / 'adaptive.db'}"
    engine = make_engine(url)
    migrate(engine)
    return url, engine


def make_backend(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Backend:
    if name == "postgresql":
        url = request.getfixturevalue("pg_schema_url")
        engine = make_engine(url)
        migrate(engine)
        return Backend("postgresql", url, engine, CounterStores(SqlCounterStore(engine)))
    if name == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        url = request.getfixturevalue("redis_url")
        _, engine = sqlite_engine(tmp_path)
        return Backend("redis", url, engine, CounterStores(SqlCounterStore(engine), RedisCounterStore(url, prefix=prefix)),
                       prefix)
    url, engine = sqlite_engine(tmp_path)
    return Backend("sqlite", url, engine, CounterStores(SqlCounterStore(engine)))


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    b = make_backend(request, tmp_path, request.param)
    yield b
    await b.stores.close()
    b.engine.dispose()

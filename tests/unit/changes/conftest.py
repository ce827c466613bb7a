"""Fixtures: a keys service and a change feed over one database, as one process sees it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture()
def redis_url() -> Iterator[str]:
    """Redis for the test; its change keys live under the database's random cluster id. Unreachable:
    skipped, unless TEST_REDIS_URL names the server (./scripts/test.sh does), then it fails."""
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("TEST_REDIS_URL"):
            pytest.fail(f"Redis named by TEST_REDIS_URL is not reachable: {exc}", pytrace=False)
        pytest.skip(f"Redis not reachable (set TEST_REDIS_URL to require it): {exc}")
    finally:
        client.close()
    yield url

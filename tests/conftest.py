"""Suite-wide fixtures: a clean environment per test, and PostgreSQL schemas of their own."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import Engine

# the real proxy and the fake provider, once per run, for tests/proxy and tests/security alike
from tests.proxy.fixtures import (  # noqa: E402,F401
    _close_clients, fake_provider, gateway, pg_replicas, redis_replicas, workers_gateway)

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Restore os.environ after every test."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A new schema on the PostgreSQL server at ``url``, selected through search_path; dropped
    afterwards. Unreachable server: the test is skipped, unless TEST_POSTGRES_URL names the server
    (as ./scripts/test.sh does), and then it fails: the suite's PostgreSQL path never skips quietly."""
    import sqlalchemy as sa

    from adaptive_plugin.db import make_engine
    from adaptive_plugin.errors import DatabaseUnavailableError

    admin = make_engine(url)
    schema = f"t_{secrets.token_hex(6)}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except (DatabaseUnavailableError, sa.exc.OperationalError) as exc:
        admin.dispose()
        if os.environ.get("TEST_POSTGRES_URL"):
            pytest.fail(f"PostgreSQL named by TEST_POSTGRES_URL is not reachable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not reachable (set TEST_POSTGRES_URL to require it): {exc}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture()
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """The URL of an empty schema of this test's own."""
    with postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture()
def pg_engine(pg_schema_url: str) -> Iterator[Engine]:
    """An engine on a migrated schema of this test's own."""
    from adaptive_plugin.db import make_engine, migrate

    engine = make_engine(pg_schema_url)
    migrate(engine)
    yield engine
    engine.dispose()


# markers applied from where a test lives and what it needs, so that `-m` selects what it says
# (pyproject.toml registers them; CONTRIBUTING.md says which command runs which part)
_PROXY_DIRS = ("tests/proxy/", "tests/security/")
_POSTGRES_FIXTURES = {"postgres_url", "pg_schema_url", "pg_engine", "pg_replicas", "redis_replicas"}
_REDIS_FIXTURES = {"redis_url", "redis_prefix", "redis_replicas"}
_BACKEND_PARAMS = {"postgres": {"pg_schema_url"}, "postgresql": {"pg_schema_url"}, "pg_replicas": {"pg_replicas"},
                   "redis": {"redis_url"}, "postgres+redis": {"redis_replicas"}, "redis_replicas": {"redis_replicas"}}


def _apply_markers(item: pytest.Item) -> None:
    path = item.nodeid.split("::", 1)[0]
    fixtures = set(getattr(item, "fixturenames", ()))
    # fixtures reached through request.getfixturevalue by a parameter that names its backend
    # ("postgresql", "postgres+redis", "redis_replicas", ...)
    callspec = getattr(item, "callspec", None)
    for value in (callspec.params.values() if callspec else ()):
        fixtures |= _BACKEND_PARAMS.get(value, set()) if isinstance(value, str) else set()
    if path.startswith(_PROXY_DIRS):
        item.add_marker(pytest.mark.proxy)
    if path.startswith("tests/proxy/browser/"):
        item.add_marker(pytest.mark.browser)
    if path.startswith("tests/helm/"):
        item.add_marker(pytest.mark.helm)
    if fixtures & _POSTGRES_FIXTURES:
        item.add_marker(pytest.mark.postgres)
    if fixtures & _REDIS_FIXTURES:
        item.add_marker(pytest.mark.redis)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from each test's place and fixtures; the secret scan reads everything the run
    wrote, so it runs after every other test."""
    for item in items:
        _apply_markers(item)
    scan = [item for item in items if item.nodeid.startswith("tests/proxy/test_zz_secret_scan.py")]
    if scan:
        items[:] = [item for item in items if item not in scan] + scan

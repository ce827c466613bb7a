"""The once-per-run gateways: the real `litellm --config config/demo.yaml` process with the plugin,
against the fake provider on 127.0.0.1.

- `gateway`: one worker on SQLite (the embedded default);
- `workers_gateway`: one proxy with two workers on SQLite;
- `pg_replicas`: two proxies sharing one PostgreSQL schema;
- `redis_replicas`: two proxies sharing PostgreSQL and Redis (the plugin's counters and change
  feed, and LiteLLM's router settings), as a multi-replica deployment runs.

Starting a proxy costs about 8 s (importing LiteLLM alone takes 7), so modules that need the same
shape share one per run; every test makes projects of its own, so they do not see each other's
data. The fixtures are registered once, by `tests/conftest.py`, so that `tests/proxy` and
`tests/security` share them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from adaptive_plugin.config import Settings
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, base_env, demo_config, fake_env
from tests.proxy.gateway import FAKE_KEYS, POOLED_KEYS, Gateway

MASTER_KEY = "sk-master-S3CRET-" + "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"
VAULT_KEY = Settings.generate_master_key()


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    fake = FakeProvider(FAKE_KEYS)
    fake.start_in_thread()
    yield fake
    fake.stop()


def gateway_env(fake: FakeProvider, state_dir: Path, **extra: str) -> dict[str, str]:
    settings = {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "ADAPTIVE_MASTER_KEYS": VAULT_KEY,
        "ADAPTIVE_STATE_DIR": str(state_dir),
        "ADAPTIVE_LEDGER_FLUSH_SECONDS": "0.2",
        **fake_env(str(fake.base_url), POOLED_KEYS),
    }
    settings.update(extra)
    return base_env(**settings)


@pytest.fixture(scope="session")
def gateway(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state = tmp_path_factory.mktemp("gateway")
    env = gateway_env(fake_provider, state)
    proxy = ProxyProcess(demo_config(), env=env, log_path=state / "proxy.log")
    proxy.start()
    gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=state,
                 database_url=f"sqlite:///{state / 'adaptive.db'}", env=env)
    yield gw
    proxy.stop()


@pytest.fixture(scope="session")
def workers_gateway(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state = tmp_path_factory.mktemp("workers")
    env = gateway_env(fake_provider, state)
    with ProxyProcess(demo_config(), env=env, log_path=state / "proxy.log", workers=2) as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=state,
                     database_url=f"sqlite:///{state / 'adaptive.db'}", env=env)
        yield gw
        gw.close_clients()


def redis_config(directory: Path) -> Path:
    """The demo config with LiteLLM's router on the Redis server (as the Helm chart's replicas run)."""
    config = yaml.safe_load(demo_config().read_text())
    config["router_settings"].update({"redis_host": "127.0.0.1", "redis_port": 6379})
    path = directory / "replica.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_replicas(fake: FakeProvider, root: Path, database_url: str, *, config: Path | None = None,
                   **extra: str) -> list[Gateway]:
    """Two proxies on one database, each with a state directory of its own."""
    gateways: list[Gateway] = []
    try:
        for name in ("a", "b"):
            state = root / name
            env = gateway_env(fake, state, ADAPTIVE_DATABASE_URL=database_url, **extra)
            proxy = ProxyProcess(config or demo_config(), env=env, log_path=state / "proxy.log").start()
            gateways.append(Gateway(proxy=proxy, fake=fake, master=MASTER_KEY, state_dir=state,
                                    database_url=database_url, env=env))
    except BaseException:
        stop_all(gateways)
        raise
    return gateways


def stop_all(gateways: list[Gateway]) -> None:
    for gw in gateways:
        gw.close_clients()
        gw.proxy.stop()


@pytest.fixture(scope="session")
def pg_replicas(fake_provider: FakeProvider, postgres_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gateway]]:
    from tests.conftest import postgres_schema

    with postgres_schema(postgres_url) as url:
        gateways = start_replicas(fake_provider, tmp_path_factory.mktemp("replicas-pg"), url)
        yield gateways
        stop_all(gateways)


@pytest.fixture(scope="session")
def redis_replicas(fake_provider: FakeProvider, postgres_url: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gateway]]:
    import redis

    from tests.conftest import postgres_schema

    prefix = f"test:replicas:{secrets.token_hex(6)}:"
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.ping()
    root = tmp_path_factory.mktemp("replicas-redis")
    try:
        with postgres_schema(postgres_url) as url:
            gateways = start_replicas(fake_provider, root, url, config=redis_config(root),
                                      ADAPTIVE_REDIS_URL="redis://127.0.0.1:6379/0", ADAPTIVE_LIMITS_REDIS_PREFIX=prefix)
            yield gateways
            stop_all(gateways)
    finally:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()


@pytest.fixture(autouse=True)
def _close_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("gateway", "workers_gateway"):
        if name in request.fixturenames:
            request.getfixturevalue(name).close_clients()
    for name in ("pg_replicas", "redis_replicas"):
        if name in request.fixturenames:
            for gw in request.getfixturevalue(name):
                gw.close_clients()

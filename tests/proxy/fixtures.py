"""The once-per-run gateway: the real `litellm --config config/demo.yaml` process with the plugin,
against the fake provider on 127.0.0.1, on SQLite (the embedded default).

The fixtures are registered once, by `tests/conftest.py`, so that `tests/proxy` and
`tests/security` share one fake provider and one gateway per run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adaptive_plugin.config import Settings
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, base_env, demo_config
from tests.proxy.gateway import FAKE_KEYS, POOLED_ANTHROPIC, POOLED_OPENAI, Gateway

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
        "FAKE_OPENAI_API_BASE": f"{fake.base_url}/v1",
        "FAKE_ANTHROPIC_API_BASE": str(fake.base_url),
        "POOLED_OPENAI_KEY": POOLED_OPENAI,
        "POOLED_ANTHROPIC_KEY": POOLED_ANTHROPIC,
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


@pytest.fixture(autouse=True)
def _close_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("gateway",):
        if name in request.fixturenames:
            request.getfixturevalue(name).close_clients()

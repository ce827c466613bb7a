"""A clean shutdown loses nothing acknowledged: every answered request has its ledger row."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import sqlalchemy as sa

from adaptive_plugin.db import make_engine
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import Gateway, byok_key, chat


# starts proxy processes (or derives models) of its own: `-m "not slow"` leaves it out
pytestmark = pytest.mark.slow


def test_sigterm_writes_every_queued_ledger_row(fake_provider: FakeProvider, tmp_path: Path) -> None:
    # a flush interval far longer than the test: the rows are written by the shutdown path only
    env = gateway_env(fake_provider, tmp_path, ADAPTIVE_LEDGER_FLUSH_SECONDS="300")
    proxy = ProxyProcess(demo_config(), env=env, log_path=tmp_path / "proxy.log").start()
    gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=tmp_path, database_url="", env=env)
    try:
        project = gw.project(keys=[("openai", byok_key("shutdown"), 1)])
        ids = [chat(gw.client(project.api_key), f"before shutdown {i} #tokens=100,100",
                    extra_headers={"Cache-Control": "no-store"})[1]["x-adaptive-request-id"] for i in range(8)]
    finally:
        gw.close_clients()
        code = proxy.stop(sig=signal.SIGTERM, timeout=30)
    assert code is not None
    engine = make_engine(f"sqlite:///{tmp_path / 'adaptive.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT request_id, overhead_fee_micros FROM adaptive_usage")).all()
    engine.dispose()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert all(r[1] == 30 for r in rows)

"""Master-key rotation without downtime: both keys configured, re-encrypt, drop the old key (issue 3)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from adaptive_plugin.config import Settings
from adaptive_plugin.db import make_engine
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from adaptive_plugin.keys import master_key_id
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import Gateway, byok_key


# starts proxy processes (or derives models) of its own: `-m "not slow"` leaves it out
pytestmark = pytest.mark.slow


def _key_ids(state: Path) -> set[str]:
    import sqlalchemy as sa

    engine = make_engine(f"sqlite:///{state / 'adaptive.db'}")
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT master_key_id FROM adaptive_provider_key"))}
    engine.dispose()
    return ids


def test_rotation_reencrypts_every_row_and_requests_keep_working(fake_provider: FakeProvider, tmp_path: Path) -> None:
    import base64

    old, new = Settings.generate_master_key(), Settings.generate_master_key()
    env_old = gateway_env(fake_provider, tmp_path, ADAPTIVE_MASTER_KEYS=old)
    env_both = gateway_env(fake_provider, tmp_path, ADAPTIVE_MASTER_KEYS=f"{new},{old}")
    env_new = gateway_env(fake_provider, tmp_path, ADAPTIVE_MASTER_KEYS=new)

    with ProxyProcess(demo_config(), env=env_old, log_path=tmp_path / "proxy-old.log") as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=tmp_path,
                     database_url="", env=env_old)
        projects = [gw.project(keys=[("openai", byok_key(f"rot-{i}-{j}"), j) for j in (1, 2)]) for i in range(3)]
        gw.close_clients()
    assert _key_ids(tmp_path) == {master_key_id(base64.b64decode(old))}

    errors: list[BaseException] = []
    done = threading.Event()
    with ProxyProcess(demo_config(), env=env_both, log_path=tmp_path / "proxy-both.log") as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=tmp_path, database_url="", env=env_both)
        clients = [gw.client(p.api_key) for p in projects]

        def traffic() -> None:
            i = 0
            while not done.is_set() or i < 6:
                try:
                    r = clients[i % len(clients)].chat.completions.with_raw_response.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": f"during rotation {i}"}],
                        extra_headers={"Cache-Control": "no-store"})
                    assert r.headers["x-adaptive-key-source"] == "byok"
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)
                i += 1

        worker = threading.Thread(target=traffic)
        worker.start()
        rotated = subprocess.run([sys.executable, "-m", "adaptive_plugin.cli", "keys", "rotate-encryption"],
                                 env=env_both, capture_output=True, text=True, timeout=120, check=False)
        done.set()
        worker.join(60)
        gw.close_clients()
    assert rotated.returncode == 0, rotated.stderr
    assert '"reencrypted": 6' in rotated.stdout
    assert errors == []
    assert _key_ids(tmp_path) == {master_key_id(base64.b64decode(new))}

    with ProxyProcess(demo_config(), env=env_new, log_path=tmp_path / "proxy-new.log") as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=tmp_path, database_url="", env=env_new)
        mark = gw.mark()
        r = gw.client(projects[0].api_key).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "after rotation"}],
            extra_headers={"Cache-Control": "no-store"})
        assert r.headers["x-adaptive-key-source"] == "byok"
        assert [c["key_label"] for c in gw.calls_since(mark)] == ["rot-0-1"]
        gw.close_clients()

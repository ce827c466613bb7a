"""Broken configuration fails the proxy's start-up fast, naming the problem, losing nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adaptive_plugin.config import Settings
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import gateway_env


# starts proxy processes (or derives models) of its own: `-m "not slow"` leaves it out
pytestmark = pytest.mark.slow


def failed_start(fake: FakeProvider, state: Path, **env: str) -> str:
    proxy = ProxyProcess(demo_config(), env=gateway_env(fake, state, **env), log_path=state / "proxy.log")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with code") as err:
        proxy.start(timeout=90)
    assert time.monotonic() - started < 60, "start-up should fail fast"
    return str(err.value)


NOT_A_DATABASE = b"this is not a database" * 100
# each case: the settings of a start-up that must fail
CASES: dict[str, dict[str, str]] = {
    "bad-setting": {"ADAPTIVE_CACHE_TTL_SECONDS": "-5"},
    "unknown-setting": {"ADAPTIVE_CACHE_TTL_SECOND": "60"},
    "no-master-key": {"ADAPTIVE_MASTER_KEYS": ""},
    "database-down": {"ADAPTIVE_DATABASE_URL": "postgresql://adaptive:hunter2-secret@127.0.0.1:1/adaptive"},
    "corrupted-sqlite": {},
}


@pytest.fixture(scope="module")
def failed(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Every case's state directory and error output. The cases start two at a time (one per core
    of a 2-core machine): each start spends most of its 8 s importing LiteLLM before the plugin
    refuses it, so that two side by side still fail well within `failed_start`'s bound."""
    states = {name: tmp_path_factory.mktemp(f"startup-{name}") for name in CASES}
    (states["corrupted-sqlite"] / "adaptive.db").write_bytes(NOT_A_DATABASE)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outputs = {name: pool.submit(failed_start, fake_provider, states[name], **env) for name, env in CASES.items()}
        return {name: (states[name], future.result()) for name, future in outputs.items()}


def test_bad_plugin_setting_names_the_setting(failed: dict[str, tuple[Path, str]]) -> None:
    assert "invalid setting ADAPTIVE_CACHE_TTL_SECONDS" in failed["bad-setting"][1]


def test_unknown_setting_is_refused_with_a_suggestion(failed: dict[str, tuple[Path, str]]) -> None:
    out = failed["unknown-setting"][1]
    assert "unknown setting ADAPTIVE_CACHE_TTL_SECOND" in out and "ADAPTIVE_CACHE_TTL_SECONDS" in out


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adaptive_plugin.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def test_wrong_master_key_is_a_startup_error_and_keeps_the_data(fake_provider: FakeProvider, tmp_path: Path) -> None:
    env = gateway_env(fake_provider, tmp_path)
    assert _cli(env, "projects", "create", "acme", "--plan", "team").returncode == 0
    added = _cli(env, "provider-keys", "add", "acme", "--environment", "production", "--provider", "openai",
                 "--key-stdin", stdin="sk-wrong-master-test-key-123456\n")
    assert added.returncode == 0, added.stderr
    db = tmp_path / "adaptive.db"
    before = db.read_bytes()
    out = failed_start(fake_provider, tmp_path, ADAPTIVE_MASTER_KEYS=Settings.generate_master_key())
    assert "not in ADAPTIVE_MASTER_KEYS" in out
    assert "sk-wrong-master-test-key-123456" not in out
    listing = _cli(env, "provider-keys", "list", "acme")  # the right key still reads everything
    assert listing.returncode == 0 and '"status": "active"' in listing.stdout
    assert db.read_bytes()[:100] == before[:100]


def test_missing_master_key_is_a_startup_error(failed: dict[str, tuple[Path, str]]) -> None:
    assert "ADAPTIVE_MASTER_KEYS" in failed["no-master-key"][1]


def test_database_that_is_down_is_named_without_its_password(failed: dict[str, tuple[Path, str]]) -> None:
    out = failed["database-down"][1]
    assert "is unavailable" in out and "127.0.0.1:1" in out
    assert "hunter2-secret" not in out


def test_corrupted_sqlite_file_is_reported_and_left_alone(failed: dict[str, tuple[Path, str]]) -> None:
    state, out = failed["corrupted-sqlite"]
    assert "cannot be migrated" in out and "is the file a database" in out
    assert (state / "adaptive.db").read_bytes() == NOT_A_DATABASE

"""Attack class: reading the gateway's state from the host (another local user, a shared volume).

The state directory holds prompts and cached answers, encrypted provider keys and the ledger.
After a real proxy run with traffic (two workers, cache stores, BYOK keys) every file in it is
0600 and every directory 0700, including the SQLite WAL and shared-memory files that appear
after start-up and the FAISS index files written at shutdown; the process umask is the usual
022. And the proxy runs with a read-only root filesystem apart from the state directory, /tmp and
PROMETHEUS_MULTIPROC_DIR (what the Helm chart mounts).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from adaptive_plugin.devtools import launcher
from adaptive_plugin.embedding import default_model_dir
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import Gateway, byok_key, chat, settle


# starts proxy processes (or derives models) of its own: `-m "not slow"` leaves it out
pytestmark = pytest.mark.slow


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): _mode(p) for p in sorted(root.rglob("*"))}


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # what a shell or a container usually runs with
    yield
    os.umask(old)


def _traffic(gw: Gateway) -> None:
    project = gw.project(keys=[("openai", byok_key("files"), 1)])
    client = gw.client(project.api_key)
    for i in range(6):
        chat(client, f"Which river flows through the city number {i}?")
    settle(1.0)


def test_state_files_are_owner_only_after_a_real_run(fake_provider: FakeProvider, tmp_path: Path, umask_022: None) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)  # as an operator's `mkdir` leaves it
    env = gateway_env(fake_provider, state)
    with ProxyProcess(demo_config(), env=env, log_path=tmp_path / "proxy.log", workers=2) as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=tmp_path,
                     database_url="", env=env)
        _traffic(gw)
        running = _modes(state)
        gw.close_clients()
    stopped = _modes(state)

    assert {"adaptive.db", "adaptive.db-wal", "adaptive.db-shm"} <= set(running), running
    assert any(name.endswith(".idx") for name in stopped), f"no cache index file was written: {stopped}"
    assert _mode(state) == 0o700
    for modes in (running, stopped):
        for name, mode in modes.items():
            expected = 0o700 if (state / name).is_dir() else 0o600
            assert mode == expected, f"{name}: {oct(mode)}"


def _can_make_read_only_root() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount --bind / / && mount -o remount,bind,ro / && ! touch /.adaptive-ro-probe"],
                           capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def _read_only_wrapper(tmp: Path, real: str, writable: list[Path]) -> Path:
    """A `litellm` that runs the real one in a mount namespace whose root filesystem is read-only
    except for `writable` (bind-mounted over themselves first, so they stay writable)."""
    script = tmp / "litellm-read-only-root"
    dirs = " ".join(f"'{d}'" for d in writable)
    script.write_text(
        "#!/bin/sh\n"
        "exec unshare -m --propagation private sh -c '\n"
        f"  for d in $(seq 1 {len(writable)}); do eval dir=\\\"\\${{$d}}\\\"; mount --bind \"$dir\" \"$dir\" || exit 97; done\n"
        "  mount --bind / / && mount -o remount,bind,ro / || exit 98\n"
        f"  real=\"$0\"; shift {len(writable)}\n"
        "  exec \"$real\" \"$@\"\n"
        f"' '{real}' {dirs} \"$@\"\n"
    )
    script.chmod(0o755)
    return script


@pytest.mark.skipif(not _can_make_read_only_root(), reason="needs root and mount namespaces (unshare -m)")
def test_proxy_runs_on_a_read_only_root_filesystem(fake_provider: FakeProvider, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    state, prom, tmpdir = tmp_path / "state", tmp_path / "prom", tmp_path / "tmp"
    for d in (state, prom, tmpdir):
        d.mkdir()
    wrapper = _read_only_wrapper(tmp_path, launcher.litellm_executable(), [state, prom, tmpdir])
    monkeypatch.setattr(launcher, "litellm_executable", lambda: str(wrapper))
    # as the Helm chart: HOME and caches under /tmp (onnxruntime keeps a device id under
    # $HOME/.cache, fastembed makes its cache dir), no bytecode written next to the sources
    env = gateway_env(fake_provider, state, PROMETHEUS_MULTIPROC_DIR=str(prom), TMPDIR=str(tmpdir),
                      HOME=str(tmpdir), XDG_CACHE_HOME=str(tmpdir / ".cache"), PYTHONDONTWRITEBYTECODE="1",
                      ADAPTIVE_EMBEDDING_MODEL_DIR=str(default_model_dir()))  # read-only, as in the image
    log = tmp_path / "proxy.log"
    with ProxyProcess(demo_config(), env=env, log_path=log, workers=2) as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=tmp_path,
                     database_url="", env=env)
        _traffic(gw)
        text = gw.metrics()
        gw.close_clients()
    output = log.read_text(errors="replace")
    assert "adaptive_requests_total" in text
    assert "Read-only file system" not in output, output[-3000:]
    assert any(name.endswith(".idx") for name in _modes(state)), "the cache index was not written at shutdown"

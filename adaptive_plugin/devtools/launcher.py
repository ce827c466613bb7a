"""Start the real `litellm --config` proxy as operators do, for the demo, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config() -> Path:
    """config/demo.yaml from the source tree, or the packaged copy."""
    for candidate in (REPO_CONFIG_DIR / "demo.yaml", Path(__file__).with_name("demo.yaml")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("config/demo.yaml not found")


def litellm_executable() -> str:
    exe = Path(sys.executable).with_name("litellm")
    return str(exe) if exe.exists() else (shutil.which("litellm") or "litellm")


WORKER_HEALTHCHECK_SECONDS = 60  # as the Helm chart's proxy.workerHealthcheckTimeoutSeconds


class ProxyProcess:
    """A `litellm --config CONFIG --port PORT` child process with captured output.

    >>> with ProxyProcess(config, env=env, log_path=tmp / "proxy.log") as proxy:   # doctest: +SKIP
    ...     proxy.base_url
    'http://127.0.0.1:...'
    """

    def __init__(self, config: Path, *, env: dict[str, str], log_path: Path, port: int | None = None,
                 workers: int = 1, extra_args: tuple[str, ...] = ()) -> None:
        self.config = config
        self.env = env
        self.log_path = log_path
        self.port = port or free_port()
        self.workers = workers
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 120.0) -> ProxyProcess:
        cmd = [litellm_executable(), "--config", str(self.config), "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            # uvicorn kills a worker that leaves its health check unanswered for 5 s: on a busy CPU
            # a worker that is still starting misses it, and is killed and restarted in a loop
            cmd += ["--num_workers", str(self.workers), "--timeout_worker_healthcheck", str(WORKER_HEALTHCHECK_SECONDS)]
        cmd += list(self.extra_args)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the proxy exited with code {self.proc.returncode}:\n{self.output()[-6000:]}")
            try:
                if httpx.get(f"{self.base_url}/health/liveliness", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the proxy did not answer within {timeout:.0f} s:\n{self.output()[-6000:]}")

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(sig=signal.SIGKILL)

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def fake_env(fake_base_url: str, pooled_keys: dict[str, str]) -> dict[str, str]:
    """The variables config/demo.yaml reads: ``FAKE_<PROVIDER>_API_BASE`` for every provider of the
    fake at `fake_base_url`, and ``POOLED_<PROVIDER>_KEY`` for each provider in `pooled_keys`
    (a provider left out has no pooled key: its deployments are BYOK-only)."""
    from adaptive_plugin.devtools.fake_provider import api_bases

    env = {f"FAKE_{provider.upper()}_API_BASE": base for provider, base in api_bases(fake_base_url).items()}
    env.update({f"POOLED_{provider.upper()}_KEY": key for provider, key in pooled_keys.items()})
    return env


def base_env(**extra: Any) -> dict[str, str]:
    """The environment a proxy child gets: ours minus stray ADAPTIVE_* settings, plus defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTIVE_") or k == "ADAPTIVE_EMBEDDING_MODEL_DIR"}
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("INITIAL_RETRY_DELAY", "0.05")
    env.setdefault("JITTER", "0.05")
    env.update({k: str(v) for k, v in extra.items()})
    return env

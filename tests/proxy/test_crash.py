"""Crash safety (issue 8): SIGKILL mid-load, and corrupt FAISS index files, on a dedicated proxy.

After a SIGKILL the proxy restarts on the same state directory with a consistent database,
its semantic cache (an answer stored before the crash is still a hit), keys that still
decrypt, and a ledger row for every answered request except at most those answered within
`ADAPTIVE_LEDGER_FLUSH_SECONDS` before the kill (the bound `billing.Ledger` documents: rows
are queued on the request path and written by a background thread). Garbage in the index
files is detected (checksum) and the index rebuilt from the database: never a wrong answer.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from bench._common import Result, run_load
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import FAKE_KEYS, byok_key

# starts proxy processes (or derives models) of its own: `-m "not slow"` leaves it out
pytestmark = pytest.mark.slow


FLUSH_SECONDS = 0.5
NO_STORE = {"Cache-Control": "no-store, no-cache"}


class Dedicated:
    """A proxy of its own on a state directory that outlives restarts."""

    def __init__(self, fake: FakeProvider, state: Path) -> None:
        self.fake = fake
        self.state = state
        self.env = gateway_env(fake, state, ADAPTIVE_LEDGER_FLUSH_SECONDS=str(FLUSH_SECONDS))
        self.proxy: ProxyProcess | None = None
        self.starts = 0
        self.api_key = ""
        self.stored: dict[str, str] = {}  # question -> cached answer

    def start(self) -> ProxyProcess:
        self.starts += 1
        self.proxy = ProxyProcess(demo_config(), env=self.env, log_path=self.state / f"proxy-{self.starts}.log")
        return self.proxy.start()

    @property
    def base_url(self) -> str:
        assert self.proxy is not None
        return self.proxy.base_url

    def admin(self, method: str, path: str, *, expect: int, **kw: Any) -> Any:
        with httpx.Client(base_url=self.base_url, timeout=30) as c:
            r = c.request(method, path, headers={"Authorization": f"Bearer {MASTER_KEY}"}, **kw)
        assert r.status_code == expect, f"{method} {path} -> {r.status_code}: {r.text}"
        return r.json() if r.content else None

    def project(self, label: str) -> tuple[str, str]:
        """A project with one working BYOK OpenAI key: (project id, API key)."""
        secret = byok_key(label)
        self.fake.set_keys(FAKE_KEYS)
        p = self.admin("POST", "/adaptive/projects", expect=201, json={"name": f"crash-{secrets.token_hex(3)}",
                                                                       "plan": "team", "fallback": "pooled"})
        ak = self.admin("POST", f"/adaptive/projects/{p['id']}/api-keys", expect=201, params={"environment": "production"})
        self.admin("POST", f"/adaptive/projects/{p['id']}/provider-keys", expect=201,
                   json={"environment": "production", "provider": "openai", "api_key": secret, "priority": 1})
        return p["id"], ak["api_key"]

    def chat(self, api_key: str, content: str, headers: dict[str, str] | None = None) -> httpx.Response:
        with httpx.Client(base_url=self.base_url, timeout=30) as c:
            return c.post("/v1/chat/completions", headers={"Authorization": f"Bearer {api_key}", **(headers or {})},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})

    def rows(self, project_id: str) -> list[dict[str, Any]]:
        return self.admin("GET", "/adaptive/requests", expect=200, params={"project_id": project_id, "limit": 1000})

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None


@pytest.fixture(scope="module")
def dedicated(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dedicated]:
    """One state directory for the module: the corruption test reuses what the crash test left."""
    d = Dedicated(fake_provider, tmp_path_factory.mktemp("crash") / "state")
    yield d
    d.stop()


def store_and_confirm(d: Dedicated, api_key: str, question: str) -> str:
    """Ask once (miss, stored), then again until it is a hit; returns the cached content."""
    first = d.chat(api_key, question)
    assert first.status_code == 200, first.text
    content = first.json()["choices"][0]["message"]["content"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)  # LiteLLM stores the answer in a background task
        again = d.chat(api_key, question)
        if again.headers.get("x-adaptive-cache", "").startswith("hit"):
            assert again.json()["choices"][0]["message"]["content"] == content
            return content
    raise AssertionError("the answer was never stored in the cache")


def assert_integrity(state: Path) -> None:
    for db in sorted(state.rglob("*.db")):
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
        conn.close()


def test_sigkill_mid_load_loses_at_most_one_flush_interval(dedicated: Dedicated) -> None:
    d = dedicated
    d.start()
    project_id, api_key = d.project("crash-own")
    question = f"What is the boiling point of water at sea level, in Celsius? ({secrets.token_hex(3)})"
    cached = store_and_confirm(d, api_key, question)
    time.sleep(FLUSH_SECONDS * 3)  # the stored entry and its ledger rows are written before the crash

    # load from a thread; SIGKILL once ~60 answers came back
    results: list[Result] = []
    headers = {"Authorization": f"Bearer {api_key}", **NO_STORE}

    def make(i: int) -> tuple[dict[str, str], dict[str, Any]]:
        return headers, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"load {i} before the crash"}]}

    load = threading.Thread(target=lambda: asyncio.run(run_load(
        f"{d.base_url}/v1/chat/completions", make, n=400, concurrency=8, timeout_s=10, deadline_s=30, results=results)))
    load.start()
    try:
        deadline = time.monotonic() + 20
        while sum(r.status == 200 for r in list(results)) < 60 and time.monotonic() < deadline and load.is_alive():
            time.sleep(0.02)
        killed_at = time.time()
        assert d.proxy is not None
        d.proxy.kill()
    finally:
        load.join(40)
    assert not load.is_alive()
    answered = [r for r in results if r.status == 200]
    assert len(answered) >= 60, "the load did not get going before the kill"
    assert any(r.status == 0 for r in results), "the kill did not interrupt the load"

    assert_integrity(d.state)
    d.start()  # migrate, vault check, cache load: the same state directory

    # the database is readable and every answered request has its row, but the last flush interval
    rows = {row["request_id"]: row for row in d.rows(project_id)}
    missing = [r for r in answered if r.headers["x-adaptive-request-id"] not in rows]
    late = [r for r in missing if r.done_at < killed_at - FLUSH_SECONDS]
    assert late == [], (f"{len(late)} requests answered more than {FLUSH_SECONDS} s before the kill have no ledger row "
                        f"(of {len(missing)} missing, {len(answered)} answered)")
    for r in answered:
        row = rows.get(r.headers["x-adaptive-request-id"])
        if row is not None:
            assert row["outcome"] == "success"
            assert row["overhead_fee_micros"] == round(float(r.headers["x-adaptive-overhead-fee-usd"]) * 1e6)

    # the cache survived: the question stored before the crash is still a hit, with its answer
    hit = d.chat(api_key, question)
    assert hit.status_code == 200
    assert hit.headers["x-adaptive-cache"].startswith("hit")
    assert hit.json()["choices"][0]["message"]["content"] == cached

    # the keys still decrypt: a BYOK request succeeds on the customer's key
    mark = len(d.fake.calls())
    byok = d.chat(api_key, "after the restart, on my own key", NO_STORE)
    assert byok.status_code == 200, byok.text
    assert byok.headers["x-adaptive-key-source"] == "byok"
    assert [c["key_label"] for c in d.fake.calls()[mark:]] == ["crash-own"]

    d.api_key, d.stored = api_key, {question: cached}
    d.stop()


def test_corrupt_index_files_are_rebuilt_from_the_database(dedicated: Dedicated) -> None:
    d = dedicated
    d.stop()
    tag = secrets.token_hex(3)
    if not d.stored:  # run alone: store something first
        d.start()
        _, d.api_key = d.project("corrupt-own")
        question = f"What is the boiling point of water at sea level, in Celsius? ({tag})"
        d.stored = {question: store_and_confirm(d, d.api_key, question)}
        d.stop()
    if not list((d.state / "cache").rglob("*.idx")):
        # The atexit hook meant to save the index on SIGTERM does not run under uvicorn (it
        # re-raises SIGTERM after its graceful shutdown); a start writes the missing files.
        d.start()
        d.stop()

    index_files = sorted((d.state / "cache").rglob("*.idx"))
    assert index_files, f"no index file under {d.state / 'cache'}: {sorted(p.name for p in d.state.rglob('*'))}"
    for i, path in enumerate(index_files):
        size = max(path.stat().st_size, 64)
        if i % 2 == 0:
            path.write_bytes(os.urandom(size))  # garbage
        else:
            path.write_bytes(path.read_bytes()[: size // 2])  # truncated

    d.start()
    assert_integrity(d.state)
    api_key = d.api_key
    for question, answer in d.stored.items():
        hit = d.chat(api_key, question)
        assert hit.status_code == 200
        assert hit.headers["x-adaptive-cache"].startswith("hit"), hit.headers
        assert hit.json()["choices"][0]["message"]["content"] == answer
    # a near miss is not served the stored answer
    question = next(iter(d.stored))
    fahrenheit = question.replace("Celsius", "Fahrenheit")
    near = d.chat(api_key, fahrenheit)
    assert near.status_code == 200
    assert not near.headers["x-adaptive-cache"].startswith("hit")
    assert "Fahrenheit" in near.json()["choices"][0]["message"]["content"]
    assert d.proxy is not None
    assert "rebuilding semantic cache partition" in d.proxy.output()

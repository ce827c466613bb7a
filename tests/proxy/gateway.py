"""Test helpers around a running proxy: admin calls, projects, SDK clients that record responses."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess

# The fake provider's key table. Strings are long and distinctive so the secret scan can find them.
POOLED_OPENAI = "sk-pooled-openai-S3CRET-7f1e2d3c4b5a69788"
POOLED_ANTHROPIC = "sk-ant-pooled-S3CRET-0a1b2c3d4e5f60718"
POOLED_GEMINI = "AIzaSy-pooled-gemini-S3CRET-4c3b2a1908f7e"
POOLED_GROQ = "gsk_pooled-groq-S3CRET-9e8d7c6b5a4f3e2d1"
POOLED_DEEPSEEK = "sk-pooled-deepseek-S3CRET-1f2e3d4c5b6a79"
POOLED_KEYS = {"openai": POOLED_OPENAI, "anthropic": POOLED_ANTHROPIC, "gemini": POOLED_GEMINI,
               "groq": POOLED_GROQ, "deepseek": POOLED_DEEPSEEK}
FAKE_KEYS: dict[str, dict[str, Any]] = {
    key: {"label": f"pooled-{provider}", "behaviour": "ok", "provider": provider} for provider, key in POOLED_KEYS.items()
}
# each provider's key format (adaptive_plugin.providers), so the gateway's format guard accepts them
_KEY_PREFIX = {"openai": "sk-ope-", "anthropic": "sk-ant-", "gemini": "AIzaSy-", "groq": "gsk_", "deepseek": "sk-dee-"}


def byok_key(label: str, behaviour: str = "ok", provider: str = "openai", **extra: Any) -> str:
    """Register a new customer key with the fake provider's table and return it."""
    secret = f"{_KEY_PREFIX[provider]}byok-S3CRET-{label}-{secrets.token_hex(6)}"
    FAKE_KEYS[secret] = {"label": label, "behaviour": behaviour, "provider": provider, **extra}
    return secret


class RecordingTransport(httpx.HTTPTransport):
    """Writes every response (status, headers, body) to a file for the secret scan."""

    def __init__(self, sink: Path) -> None:
        super().__init__()
        self.sink = sink
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        with self._lock, self.sink.open("a") as fh:
            fh.write(json.dumps({"url": str(request.url), "status": response.status_code,
                                 "headers": dict(response.headers), "body": response.text}) + "\n")
        return response


@dataclass
class Project:
    id: str
    name: str
    api_key: str
    keys: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Gateway:
    proxy: ProxyProcess
    fake: FakeProvider
    master: str
    state_dir: Path
    database_url: str
    env: dict[str, str]
    clients: list[openai.OpenAI] = field(default_factory=list)

    def close_clients(self) -> None:
        while self.clients:
            self.clients.pop().close()

    @property
    def base_url(self) -> str:
        return self.proxy.base_url

    @property
    def responses_log(self) -> Path:
        return self.state_dir / "responses.jsonl"

    def admin(self, method: str, path: str, *, expect: int | None = None, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.base_url, timeout=30,
                          transport=RecordingTransport(self.responses_log)) as c:
            r = c.request(method, path, headers={"Authorization": f"Bearer {self.master}"}, **kw)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path} -> {r.status_code}: {r.text}"
        return r

    def project(self, *, plan: str = "team", fallback: str = "pooled", keys: list[tuple[str, str, int]] = (),  # type: ignore[assignment]
                environment: str = "production", **options: Any) -> Project:
        """A new project with an API key and provider keys given as (provider, secret, priority)."""
        self.fake.set_keys(FAKE_KEYS)
        name = f"p-{secrets.token_hex(4)}"
        body = {"name": name, "plan": plan, "fallback": fallback, **options}
        p = self.admin("POST", "/adaptive/projects", json=body, expect=201).json()
        ak = self.admin("POST", f"/adaptive/projects/{p['id']}/api-keys", params={"environment": environment}, expect=201).json()
        views = []
        for provider, secret, priority in keys:
            views.append(self.admin("POST", f"/adaptive/projects/{p['id']}/provider-keys", expect=201, json={
                "environment": environment, "provider": provider, "api_key": secret, "priority": priority}).json())
        return Project(id=p["id"], name=name, api_key=ak["api_key"], keys=views)

    def client(self, api_key: str) -> openai.OpenAI:
        http = httpx.Client(transport=RecordingTransport(self.responses_log), timeout=60)
        client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=api_key, max_retries=0, http_client=http)
        self.clients.append(client)
        return client

    def calls_since(self, mark: int) -> list[dict[str, Any]]:
        return self.fake.calls()[mark:]

    def mark(self) -> int:
        return len(self.fake.calls())

    def ledger_rows(self, project_id: str, *, wait_for: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The request log of a project, waiting until the batched ledger has written `wait_for` rows."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.admin("GET", "/adaptive/requests", params={"project_id": project_id, "limit": 1000}, expect=200).json()
            if len(rows) >= wait_for:
                return rows
            time.sleep(0.2)
        return rows

    def metrics(self) -> str:
        with httpx.Client(base_url=self.base_url, timeout=30, transport=RecordingTransport(self.responses_log)) as c:
            return c.get("/metrics").text


def settle(seconds: float = 0.5) -> None:
    """LiteLLM writes the cache in a background task after answering: give it a moment."""
    time.sleep(seconds)


def chat(client: openai.OpenAI, content: str, *, model: str = "gpt-4o-mini", **kw: Any) -> tuple[Any, dict[str, str]]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], **kw
    )
    return raw.parse(), {k.lower(): v for k, v in raw.headers.items()}

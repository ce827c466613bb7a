"""Helpers for self-service tests: a project run by its own admin key, through the real proxy."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.proxy.gateway import FAKE_KEYS, Gateway, RecordingTransport, byok_key


@dataclass
class AdminProject:
    """A project created by the operator, then managed only with its admin key (`pak-...`)."""

    gateway: Gateway
    id: str
    name: str
    admin_key: str

    def call(self, method: str, path: str, *, expect: int | None = None, key: str | None = None,
             **kw: Any) -> httpx.Response:
        """`key`: another credential than the admin key; "" sends none."""
        token = self.admin_key if key is None else key
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=self.gateway.base_url, timeout=30,
                          transport=RecordingTransport(self.gateway.responses_log)) as c:
            r = c.request(method, path, headers=headers, **kw)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path} -> {r.status_code}: {r.text}"
        return r

    def add_key(self, label: str, *, behaviour: str = "ok", provider: str = "openai", environment: str = "production",
                **fields: Any) -> tuple[str, dict[str, Any]]:
        """A new key known to the fake provider, added by the project admin; (secret, view)."""
        secret = byok_key(label, behaviour, provider=provider)
        self.gateway.fake.set_keys(FAKE_KEYS)
        view = self.call("POST", "/adaptive/self/provider-keys", expect=201, json={
            "environment": environment, "provider": provider, "api_key": secret, **fields}).json()
        return secret, view

    def chat_key(self, environment: str = "production") -> str:
        return str(self.call("POST", "/adaptive/self/api-keys", params={"environment": environment},
                             expect=201).json()["api_key"])

    def log(self, *, wait_for: int = 0, timeout: float = 15.0, **params: Any) -> list[dict[str, Any]]:
        """The project's request log (one page of up to 500), waiting for the batched ledger."""
        deadline = time.monotonic() + timeout
        while True:
            items = self.call("GET", "/adaptive/self/requests", params={"limit": 500, **params}, expect=200).json()["items"]
            if len(items) >= wait_for or time.monotonic() > deadline:
                return list(items)
            time.sleep(0.2)


def admin_project(gateway: Gateway, *, plan: str = "team", **options: Any) -> AdminProject:
    """The operator creates a project and hands out one admin key; nothing else uses the master key."""
    gateway.fake.set_keys(FAKE_KEYS)
    name = f"p-{secrets.token_hex(4)}"
    project = gateway.admin("POST", "/adaptive/projects", json={"name": name, "plan": plan, **options}, expect=201).json()
    created = gateway.admin("POST", f"/adaptive/projects/{project['id']}/admin-keys", json={"label": "tests"},
                            expect=201).json()
    return AdminProject(gateway=gateway, id=project["id"], name=name, admin_key=created["admin_key"])

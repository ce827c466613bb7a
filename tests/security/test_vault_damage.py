"""Attack class: damaging the key vault (a tampered or copied ciphertext row in the database).

One altered row must not take its environment down, leak internal ids to the tenant, or pass
the operator's check: the row is marked broken and skipped like an invalid key (the project's
next key, then the pooled key if its policy allows), the project's other providers keep
serving, the tenant of a `byok_only` project reads "provider key unavailable" without key or
master-key ids, and `adaptive-plugin check` fails naming the row. The tampering is done to the
SQLite file of the running gateway, as an attacker with write access to it would.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import openai
import pytest

from tests.proxy.gateway import Gateway, Project, byok_key, chat

NO_STORE = {"Cache-Control": "no-store"}


def tamper(gateway: Gateway, key_id: str) -> None:
    """Flip one bit of a row's ciphertext in the live database file (WAL mode: readers go on)."""
    with sqlite3.connect(gateway.state_dir / "adaptive.db", timeout=30) as db:
        (ciphertext,) = db.execute("SELECT ciphertext FROM adaptive_provider_key WHERE id = ?", (key_id,)).fetchone()
        db.execute("UPDATE adaptive_provider_key SET ciphertext = ? WHERE id = ?",
                   (bytes([ciphertext[0] ^ 0x01]) + bytes(ciphertext[1:]), key_id))


def key_id(project: Project, provider: str, priority: int) -> str:
    return next(k["id"] for k in project.keys if k["provider"] == provider and k["priority"] == priority)


def statuses(gateway: Gateway, project: Project) -> dict[str, str]:
    views = gateway.admin("GET", f"/adaptive/projects/{project.id}/provider-keys", expect=200).json()
    return {v["id"]: v["status"] for v in views}


def labels(gateway: Gateway, mark: int) -> list[str]:
    return [c["key_label"] for c in gateway.calls_since(mark)]


def test_a_tampered_key_is_skipped_and_the_environment_keeps_serving(gateway: Gateway) -> None:
    tag = byok_key("vault-tag")[-6:]
    first, second, claude = byok_key(f"vault-first-{tag}"), byok_key(f"vault-second-{tag}"), byok_key(
        f"vault-claude-{tag}", provider="anthropic")
    project = gateway.project(keys=[("openai", first, 1), ("openai", second, 2), ("anthropic", claude, 1)])
    broken = key_id(project, "openai", 1)
    tamper(gateway, broken)  # before the project's first request: nothing of it is cached yet
    client = gateway.client(project.api_key)

    mark = gateway.mark()
    _, headers = chat(client, "after the damage", extra_headers=NO_STORE)
    assert labels(gateway, mark) == [f"vault-second-{tag}"]  # the next own key, never the damaged one
    assert headers["x-adaptive-key-source"] == "byok"
    mark = gateway.mark()
    _, headers = chat(client, "the other provider", model="claude-haiku-4-5", extra_headers=NO_STORE)
    assert labels(gateway, mark) == [f"vault-claude-{tag}"] and headers["x-adaptive-key-source"] == "byok"

    assert statuses(gateway, project)[broken] == "broken"
    failures = [float(line.rsplit(" ", 1)[1]) for line in gateway.metrics().splitlines()
                if line.startswith('adaptive_keys_vault_failures_total{reason="authentication"}')]
    assert failures and failures[0] >= 1
    log = gateway.proxy.output()
    assert f"provider key {broken}" in log and "marked broken" in log
    assert first not in log and second not in log


def test_pooled_fallback_follows_the_projects_policy(gateway: Gateway) -> None:
    tag = byok_key("vault-tag")[-6:]
    pooled = gateway.project(keys=[("openai", byok_key(f"vault-only-{tag}"), 1)])
    own_only = gateway.project(fallback="byok_only", keys=[("openai", byok_key(f"vault-byok-only-{tag}"), 1),
                                                           ("anthropic", byok_key(f"vault-byok-only-claude-{tag}",
                                                                                  provider="anthropic"), 1)])
    tamper(gateway, key_id(pooled, "openai", 1))
    tamper(gateway, key_id(own_only, "openai", 1))

    mark = gateway.mark()
    _, headers = chat(gateway.client(pooled.api_key), "pooled after the damage", extra_headers=NO_STORE)
    assert labels(gateway, mark) == ["pooled-openai"] and headers["x-adaptive-key-source"] == "pooled"

    mark = gateway.mark()
    with pytest.raises(openai.APIStatusError) as err:
        chat(gateway.client(own_only.api_key), "byok only after the damage", extra_headers=NO_STORE)
    assert labels(gateway, mark) == []
    assert 400 <= err.value.status_code < 500
    message = str(err.value)
    assert "provider key unavailable" in message
    assert "pk_" not in message and key_id(own_only, "openai", 1) not in message
    for view in own_only.keys:
        assert view["master_key_id"] not in message
    # its other provider still serves
    mark = gateway.mark()
    chat(gateway.client(own_only.api_key), "claude still works", model="claude-haiku-4-5", extra_headers=NO_STORE)
    assert labels(gateway, mark) == [f"vault-byok-only-claude-{tag}"]


def test_operator_check_fails_and_names_the_row(gateway: Gateway) -> None:
    project = gateway.project(keys=[("openai", byok_key("vault-check"), 1), ("openai", byok_key("vault-check-ok"), 2)])
    broken = key_id(project, "openai", 1)
    tamper(gateway, broken)
    env = {**gateway.env, "ADAPTIVE_EMBEDDING_PROCESS": "false"}
    run = subprocess.run([sys.executable, "-m", "adaptive_plugin.cli", "check", "--skip-model"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert broken in run.stderr and broken in run.stdout and '"ok": false' in run.stdout
    assert key_id(project, "openai", 2) not in run.stderr  # the sound row is not blamed
    assert "vault-check" not in run.stdout + run.stderr  # no secret

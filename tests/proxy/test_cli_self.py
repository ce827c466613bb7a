"""`adaptive-plugin self ...` and `select-model` against the running gateway (issue 20)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from adaptive_plugin import cli
from tests.proxy.gateway import FAKE_KEYS, Gateway, byok_key, chat
from tests.proxy.selfservice import admin_project


def run(capsys: pytest.CaptureFixture[str], gateway: Gateway, *argv: str, stdin: str = "") -> tuple[int, Any, str]:
    import sys

    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(["self", "--url", gateway.base_url, *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_a_project_admin_manages_its_project_from_the_shell(gateway: Gateway, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    project = admin_project(gateway)
    monkeypatch.setenv("ADAPTIVE_ADMIN_KEY", project.admin_key)
    secret = byok_key("cli-self-first")
    gateway.fake.set_keys(FAKE_KEYS)
    code, added, err = run(capsys, gateway, "provider-keys", "add", "--environment", "production", "--provider",
                           "openai", "--key-stdin", "--priority", "5", "--rpm-limit", "50", stdin=secret + "\n")
    assert code == 0, err
    assert added["priority"] == 5 and added["rpm_limit"] == 50 and secret not in json.dumps(added)
    code, updated, err = run(capsys, gateway, "provider-keys", "update", added["id"], "--spend-cap-usd", "3",
                             "--spend-cap-period", "day", "--no-rpm-limit")
    assert code == 0, err
    assert (updated["spend_cap_usd"], updated["spend_cap_period"], updated["rpm_limit"]) == ("3", "day", None)
    code, created, _ = run(capsys, gateway, "api-keys", "create", "--environment", "production")
    assert created["api_key"].startswith("ak-prd-")
    _, headers = chat(gateway.client(created["api_key"]), "from the shell", extra_headers={"Cache-Control": "no-store, no-cache"})
    project.log(wait_for=1)
    code, page, _ = run(capsys, gateway, "requests", "--key-source", "byok", "--limit", "10")
    assert [r["request_id"] for r in page["items"]] == [headers["x-adaptive-request-id"]]
    code, usage, _ = run(capsys, gateway, "usage", "--group-by", "key_fingerprint")
    assert usage["rows"][0]["key_fingerprint"] == added["fingerprint"]
    assert usage["total"]["overhead_fee_usd"] == headers["x-adaptive-overhead-fee-usd"]
    rotated_secret = byok_key("cli-self-rotated")
    gateway.fake.set_keys(FAKE_KEYS)
    code, rotated, err = run(capsys, gateway, "provider-keys", "rotate", added["id"], "--key-stdin", stdin=rotated_secret)
    assert code == 0, err
    assert rotated["revoked"]["status"] == "revoked" and rotated["new"]["priority"] == 5
    code, shown, _ = run(capsys, gateway, "project", "update", "--fallback", "byok_only", "--cost-bias", "0.1")
    assert (shown["fallback"], shown["default_cost_bias"]) == ("byok_only", 0.1)
    # what the gateway refuses: one line with the gateway's message and status
    code, _, err = run(capsys, gateway, "project", "update", "--allowed-models", "no-such-model")
    assert code == 1 and err == ("error: unknown model 'no-such-model': the gateway serves claude-haiku-4-5, "
                                 "claude-sonnet-4-5, gpt-4o, gpt-4o-mini (HTTP 400)\n")
    code, _, err = run(capsys, gateway, "--project", "prj_someone_else", "provider-keys", "list")
    assert code == 1 and "manages its own project only (HTTP 403)" in err


def test_select_model_from_the_shell(gateway: Gateway, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_MASTER_KEY", gateway.master)
    code = cli.main(["select-model", "--url", gateway.base_url, "--message", "Prove that sqrt(2) is irrational.",
                     "--cost-bias", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    decision = json.loads(out)
    assert decision["model"] in ("gpt-4o", "claude-sonnet-4-5") and decision["cost_bias"] == 1
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-wrong")
    assert cli.main(["select-model", "--url", gateway.base_url, "--message", "hi"]) == 1
    assert "(HTTP 401)" in capsys.readouterr().err

"""The operator CLI as a new user meets it: help everywhere, one-line errors naming the option,
the same database from any directory, timezones on every time, the admin API's operations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from adaptive_plugin import cli
from adaptive_plugin.config import Settings

CONFIG = Path(__file__).resolve().parents[2] / "config" / "proxy.yaml"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with a vault key and no ADAPTIVE_STATE_DIR: the default state directory is used."""
    for name in ("ADAPTIVE_STATE_DIR", "ADAPTIVE_DATABASE_URL", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADAPTIVE_MASTER_KEYS", Settings.generate_master_key())
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def walk(parser: argparse.ArgumentParser, path: str = "adaptive-plugin") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += walk(sub, f"{path} {name}")
    return found


def test_every_option_and_subcommand_says_what_it_does() -> None:
    missing = []
    for path, parser in walk(cli.build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_key_options_explain_priority_caps_and_limits(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # argparse wraps at hyphens otherwise
    code, out, _ = run(capsys, "provider-keys", "add", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "lower goes first" in flat
    assert "spend at the provider per --spend-cap-period, in USD" in flat
    assert "requests per minute sent with this key" in flat
    code, out, _ = run(capsys, "fetch-model", "--help")
    assert "XDG_CACHE_HOME" in out


@pytest.mark.parametrize("argv,words", [
    (["usage", "--since", "yesterday"], "argument --since: must be a date as YYYY-MM-DD, got 'yesterday'"),
    (["usage", "--until", "2026-13-45"], "argument --until: is not a calendar date: '2026-13-45'"),
    (["requests", "--limit", "-1"], "argument --limit: must be between 1 and 1000, got -1"),
    (["requests", "--limit", "ten"], "argument --limit: not a whole number: 'ten'"),
    (["provider-keys", "add", "acme", "--environment", "production", "--provider", "openai", "--priority", "-5"],
     "argument --priority: must be between 0 and 10000"),
    (["provider-keys", "add", "acme", "--environment", "production", "--provider", "openai", "--spend-cap-usd", "-1"],
     "argument --spend-cap-usd: must be a positive amount in USD"),
    (["projects", "create", "x", "--plan", "team", "--cost-bias", "2"], "argument --cost-bias: must be between 0 and 1"),
])
def test_bad_values_are_one_line_naming_the_option(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert words in err


def test_refused_input_is_one_line_not_a_pydantic_dump(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "projects", "create", "acme", "--plan", "team")[0] == 0
    code, _, err = run(capsys, "provider-keys", "add", "acme", "--environment", "production", "--provider",
                       "openai", "--api-key", "short")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: the provider key (--api-key or --key-stdin): String should have at least 8")
    code, _, err = run(capsys, "provider-keys", "add", "acme", "--environment", "production", "--provider", "openai",
                       "--api-key", "sk-a-long-enough-key", "--spend-cap-usd", "5")
    assert code == 2 and err.count("\n") == 1 and "spend_cap_usd and spend_cap_period go together" in err
    assert "validation error" not in err and "pydantic" not in err
    code, _, err = run(capsys, "projects", "create", "bad/name", "--plan", "team")
    assert code == 2 and err.startswith("error: --name: String should match pattern")


def test_the_state_directory_does_not_depend_on_the_working_directory(home: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "projects", "create", "acme", "--plan", "team")[0] == 0
    (tmp_path / "deep" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "sub")
    code, out, _ = run(capsys, "projects", "list")
    assert code == 0 and [p["name"] for p in json.loads(out)] == ["acme"]
    assert (home / ".local" / "state" / "adaptive-plugin" / "adaptive.db").is_file()
    assert not (tmp_path / ".adaptive").exists()


def test_projects_get_and_update(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "projects", "create", "acme", "--plan", "developer")
    code, out, err = run(capsys, "projects", "update", "acme", "--plan", "team", "--fallback", "byok_only",
                         "--cost-bias", "0.25", "--no-cache", "--allowed-models", "gpt-4o-mini,gpt-4o",
                         "--proxy-config", str(CONFIG))
    assert code == 0, err
    shown = json.loads(run(capsys, "projects", "get", "acme")[1])
    assert (shown["plan"], shown["fallback"], shown["default_cost_bias"], shown["cache_enabled"]) == ("team", "byok_only", 0.25, False)
    assert shown["allowed_models"] == ["gpt-4o-mini", "gpt-4o"]
    assert shown["created_at"].endswith("Z")  # every time carries its timezone
    code, _, err = run(capsys, "projects", "update", "acme", "--allowed-models", "gpt-9", "--proxy-config", str(CONFIG))
    assert code == 1 and "--allowed-models: unknown model 'gpt-9'" in err
    code, _, err = run(capsys, "projects", "update", "acme", "--allowed-models", "gpt-9")
    assert code == 0 and "not checked against the proxy's models" in err
    run(capsys, "projects", "update", "acme", "--all-models", "--clear-cost-bias", "--cache")
    shown = json.loads(run(capsys, "projects", "get", "acme")[1])
    assert (shown["allowed_models"], shown["default_cost_bias"], shown["cache_enabled"]) == (None, None, True)
    code, _, err = run(capsys, "projects", "update", "acme")
    assert code == 1 and "nothing to change" in err


def test_admin_keys_are_created_listed_and_revoked(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "projects", "create", "acme", "--plan", "team")
    created = json.loads(run(capsys, "admin-keys", "create", "acme", "--label", "alice")[1])
    assert created["admin_key"].startswith("pak-")
    [listed] = json.loads(run(capsys, "admin-keys", "list", "acme")[1])
    assert listed["label"] == "alice" and "admin_key" not in listed
    revoked = json.loads(run(capsys, "admin-keys", "revoke", "acme", listed["id"])[1])
    assert revoked["revoked_at"] is not None and revoked["revoked_at"].endswith("Z")


def test_request_log_times_carry_a_timezone(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adaptive_plugin.billing import Ledger
    from adaptive_plugin.db import make_engine, migrate
    from adaptive_plugin.db.tables_billing import UsageRow

    settings = Settings.from_env()
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    Ledger(engine).write_now([UsageRow(request_id="r1", day="2026-01-01", project_id="p", environment="dev").model_dump()])
    engine.dispose()
    code, out, _ = run(capsys, "requests", "--environment", "dev", "--since", "2000-01-01")
    [row] = json.loads(out)
    assert code == 0 and row["ts"].endswith("+00:00")
    code, _, err = run(capsys, "requests", "--since", "2026-01-01T00:00:00")
    assert code == 2 and err == "error: --since needs a timezone, for example 2026-01-01T00:00:00Z or 2026-01-01T00:00:00+02:00\n"


def test_the_package_ships_a_usable_proxy_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "proxy-config")
    assert code == 0 and out == CONFIG.read_text()
    assert "adaptive_plugin.adapters.hooks.hooks" in out and "custom_auth: adaptive_plugin.adapters.auth" in out
    code, out, _ = run(capsys, "proxy-config", "--path")
    assert Path(out.strip()).read_text() == CONFIG.read_text()


def test_self_commands_need_an_admin_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADAPTIVE_ADMIN_KEY", raising=False)
    code, _, err = run(capsys, "self", "provider-keys", "list")
    assert code == 1 and "set ADAPTIVE_ADMIN_KEY" in err
    monkeypatch.setenv("ADAPTIVE_ADMIN_KEY", "pak-x")
    code, _, err = run(capsys, "self", "--url", "http://127.0.0.1:9", "project", "show")
    assert code == 1 and "cannot reach the gateway at http://127.0.0.1:9" in err

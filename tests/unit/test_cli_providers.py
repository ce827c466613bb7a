"""The CLI names the supported providers on a typo, and `check` reports keys stored under unknown names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from adaptive_plugin.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adaptive_plugin.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def cli_env(state: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTIVE_")}
    return {**keep, "ADAPTIVE_MASTER_KEYS": Settings.generate_master_key(), "ADAPTIVE_STATE_DIR": str(state)}


def test_unknown_provider_on_the_command_line_lists_the_supported_names(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    assert run(env, "projects", "create", "acme", "--plan", "team").returncode == 0
    typo = run(env, "provider-keys", "add", "acme", "--environment", "production", "--provider", "opneai",
               "--key-stdin", stdin="sk-typo-cli-key-0123456789\n")
    assert typo.returncode == 1
    assert typo.stderr.startswith("error: unknown provider 'opneai'; supported: openai, anthropic, gemini")
    assert "groq" in typo.stderr and "deepseek" in typo.stderr and "sk-typo-cli-key" not in typo.stderr
    alias = run(env, "provider-keys", "add", "acme", "--environment", "production", "--provider", "google",
                "--key-stdin", stdin="AIzaSy-cli-gemini-key-0123456789\n")
    assert alias.returncode == 0, alias.stderr
    assert json.loads(alias.stdout)["provider"] == "gemini"


def test_check_reports_keys_stored_under_an_unknown_provider(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    assert run(env, "projects", "create", "acme", "--plan", "team").returncode == 0
    added = run(env, "provider-keys", "add", "acme", "--environment", "production", "--provider", "openai",
                "--key-stdin", stdin="sk-stored-before-the-registry-0123\n")
    assert added.returncode == 0, added.stderr
    ok = run(env, "check", "--skip-model")
    assert ok.returncode == 0 and json.loads(ok.stdout)["provider_keys_with_unknown_provider"] == []

    # a row an older version stored unchecked, under a typo (re-encrypted under that name, as it would have been)
    from adaptive_plugin.keys import Vault

    key_id = json.loads(added.stdout)["id"]
    project_id = json.loads(added.stdout)["project_id"]
    vault = Vault(Settings(master_keys=env["ADAPTIVE_MASTER_KEYS"]).master_key_bytes())
    sealed = vault.encrypt("sk-stored-before-the-registry-0123", project_id=project_id, environment="production",
                           provider="opneai", key_id=key_id)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'adaptive.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE adaptive_provider_key SET provider = 'opneai', ciphertext = :c, nonce = :n"),
                     {"c": sealed.ciphertext, "n": sealed.nonce})
    engine.dispose()
    bad = run(env, "check", "--skip-model")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    [row] = report["provider_keys_with_unknown_provider"]
    assert (row["id"], row["provider"]) == (key_id, "opneai") and "never used" in row["note"]
    assert "stored provider key(s) name an unknown provider" in bad.stderr
    assert "sk-stored-before-the-registry" not in bad.stdout + bad.stderr

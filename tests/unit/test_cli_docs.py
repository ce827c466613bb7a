"""docs/cli.md is the generated CLI reference; it must match the parser."""

from __future__ import annotations

import os
from pathlib import Path

from adaptive_plugin import _clidoc

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    os.environ["COLUMNS"] = "100"
    assert DOC.read_text() == _clidoc.render(), "regenerate with: COLUMNS=100 python -m adaptive_plugin._clidoc > docs/cli.md"


def test_every_command_has_help() -> None:
    os.environ["COLUMNS"] = "100"
    text = _clidoc.render()
    for command in ("fetch-model", "migrate", "check", "demo", "proxy-config", "keys rotate-encryption", "projects create",
                    "projects get", "projects update", "admin-keys create", "api-keys create", "provider-keys add",
                    "provider-keys revoke", "usage", "requests", "select-model", "self provider-keys rotate",
                    "self requests", "self usage"):
        assert f"## adaptive-plugin {command}\n" in text

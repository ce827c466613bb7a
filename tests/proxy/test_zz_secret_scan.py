"""After every other test ran: no provider key, master key or vault key in anything they wrote.

Runs last in the whole run (`tests/conftest.py` moves it there). It scans every file under pytest's base temporary
directory (proxy logs, SQLite databases and WAL files, FAISS index files, recorded responses
and error bodies) and the live /metrics text, for every key string the suite used.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.proxy.conftest import MASTER_KEY, VAULT_KEY
from tests.proxy.gateway import FAKE_KEYS, Gateway


def secrets_used() -> dict[str, bytes]:
    found = {key: key.encode() for key in FAKE_KEYS}
    found["LITELLM_MASTER_KEY"] = MASTER_KEY.encode()
    found["ADAPTIVE_MASTER_KEYS"] = VAULT_KEY.encode()
    found["vault key bytes"] = base64.b64decode(VAULT_KEY)
    return found


def test_no_secret_in_anything_the_run_wrote(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.getbasetemp()
    assert (gateway.state_dir / "proxy.log").stat().st_size > 0
    assert gateway.responses_log.stat().st_size > 0
    byok = [k for k, spec in FAKE_KEYS.items() if "byok" in k]
    assert len(byok) >= 10, "the suite should have stored many customer keys before this scan"
    leaks = []
    scanned = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        scanned += 1
        for name, needle in secrets_used().items():
            if needle in data:
                leaks.append(f"{name[:12]}... in {path.relative_to(root)}")
    metrics = gateway.metrics().encode()
    for name, needle in secrets_used().items():
        if needle in metrics:
            leaks.append(f"{name[:12]}... in /metrics")
    assert scanned > 10
    assert leaks == []


def test_the_scan_can_find_a_leak(tmp_path: Path) -> None:
    """Guard against a scan that cannot fail: a planted key is found."""
    planted = next(iter(FAKE_KEYS))
    (tmp_path / "leak.log").write_text(f"oops {planted} oops")
    assert any(needle in (tmp_path / "leak.log").read_bytes() for needle in secrets_used().values())

"""Proxy tests: the session gateway and fake provider come from `tests/proxy/fixtures.py`
(registered by `tests/conftest.py`); the names other modules import are re-exported here."""

from __future__ import annotations

from tests.proxy.fixtures import MASTER_KEY, VAULT_KEY, gateway_env

__all__ = ["MASTER_KEY", "VAULT_KEY", "gateway_env"]

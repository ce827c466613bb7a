"""Attacks on the tenant boundary, one module per attack class, against the real proxy.

The session gateway (`tests/proxy/fixtures.py`: one `litellm --config config/demo.yaml` worker on SQLite,
the fake provider on 127.0.0.1) is shared; modules that need two workers, PostgreSQL or Redis
start their own proxies. `docs/security.md` names the test that closes each door.
"""

from __future__ import annotations

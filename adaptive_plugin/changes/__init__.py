"""Immediate revocation: one shared change revision, checked on the hot path, pushed to others.

Every change that must take effect at once everywhere (a provider key added, revoked, deleted,
marked invalid or broken; a project API key revoked; a project's plan, fallback or models
changed) bumps one revision in the same database transaction (`db/_changes.py`), and in Redis
when configured. Before a request is authenticated and before each attempt's key is chosen,
`ChangeFeed.ensure_current()` reads that revision (a few microseconds on SQLite, one round
trip shared by concurrent requests on PostgreSQL or Redis) and, when it moved, invalidates
what changed. PostgreSQL LISTEN/NOTIFY or Redis pub/sub (on SQLite, a 0.2 s poll) tell the
other processes first, in the background, so a request seldom has to reload anything itself.
"""

from __future__ import annotations

from adaptive_plugin.changes._feed import ChangeFeed

__all__ = ["ChangeFeed"]

"""Dashboard sessions: a random token in an HttpOnly cookie, its SHA-256 in the database.

Sessions live in the shared database, so any worker or replica serves any session and a
logout ends it everywhere. A session ends after `idle_seconds` without a request, after
`max_seconds` in all, at logout, or when the credential it stands on is revoked (checked
by the caller at each request). The CSRF token of a session is derived from its token
(HMAC), so it needs no storage and cannot be computed without the cookie.

    >>> sessions = DashboardSessions(engine, idle_seconds=1800, max_seconds=43200)   # doctest: +SKIP
    >>> token = sessions.start("project_admin", credential=key_id, project_id=pid)    # doctest: +SKIP
    >>> sessions.resume(token).project_id == pid                                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptive_plugin.db import session_scope
from adaptive_plugin.db.tables_admin import DashboardSession
from adaptive_plugin.db.tables_keys import utcnow

_TOUCH_EVERY = timedelta(seconds=10)  # last_seen_at is written at most this often (or a tenth of the idle timeout)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: HMAC of a fixed label under the session token."""
    return hmac.new(session_token.encode(), b"adaptive-dashboard-csrf", hashlib.sha256).hexdigest()


def credential_hash(secret: str) -> str:
    """What a session records of a secret credential (the operator's master key)."""
    return hashlib.sha256(b"adaptive-dashboard:" + secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    role: str
    credential: str
    project_id: str | None
    expires_at: datetime
    idle_until: datetime


class DashboardSessions:
    """Start, resume, retarget and end dashboard sessions."""

    def __init__(self, engine: Engine, *, idle_seconds: float, max_seconds: float,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.idle = timedelta(seconds=idle_seconds)
        self.max_age = timedelta(seconds=max_seconds)
        self._touch_every = min(_TOUCH_EVERY, self.idle / 10)
        self._clock = clock

    def start(self, role: str, *, credential: str, project_id: str | None) -> str:
        """A new session; returns its token (for the cookie). Expired sessions are swept."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with session_scope(self.engine) as s:
            s.execute(sa.delete(DashboardSession).where(
                sa.or_(DashboardSession.expires_at < now, DashboardSession.last_seen_at < now - self.idle)))
            s.add(DashboardSession(id=_hash(token), role=role, credential=credential, project_id=project_id,
                                   created_at=now, last_seen_at=now, expires_at=now + self.max_age))
        return token

    def resume(self, token: str) -> SessionInfo | None:
        """The live session of a token, its idle clock restarted; None if unknown or expired."""
        if not token or len(token) > 100:
            return None
        now = self._clock()
        with session_scope(self.engine) as s:
            row = s.get(DashboardSession, _hash(token))
            if row is None:
                return None
            last_seen, expires = _aware(row.last_seen_at), _aware(row.expires_at)
            if now >= expires or now - last_seen >= self.idle:
                s.delete(row)
                return None
            if now - last_seen >= self._touch_every:
                row.last_seen_at = last_seen = now
                s.add(row)
            return SessionInfo(id=row.id, role=row.role, credential=row.credential, project_id=row.project_id,
                               expires_at=expires, idle_until=min(expires, last_seen + self.idle))

    def set_project(self, session_id: str, project_id: str) -> None:
        with session_scope(self.engine) as s:
            s.execute(sa.update(DashboardSession).where(DashboardSession.id == session_id).values(project_id=project_id))

    def end(self, token: str) -> None:
        with session_scope(self.engine) as s:
            s.execute(sa.delete(DashboardSession).where(DashboardSession.id == _hash(token)))


__all__ = ["DashboardSessions", "SessionInfo", "credential_hash", "csrf_token"]

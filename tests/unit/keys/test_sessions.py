"""Dashboard sessions: idle timeout, absolute lifetime, logout, CSRF tokens."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptive_plugin.db.tables_admin import DashboardSession
from adaptive_plugin.keys.sessions import DashboardSessions, credential_hash, csrf_token


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def sessions(engine: Engine, clock: Clock) -> DashboardSessions:
    return DashboardSessions(engine, idle_seconds=600, max_seconds=3600, clock=clock)


def test_a_session_is_resumed_by_its_token_only(sessions: DashboardSessions, engine: Engine) -> None:
    token = sessions.start("project_admin", credential="pak_1", project_id="prj_a")
    info = sessions.resume(token)
    assert info is not None and (info.role, info.credential, info.project_id) == ("project_admin", "pak_1", "prj_a")
    assert sessions.resume(token + "x") is None and sessions.resume("") is None
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(DashboardSession.id))]
    assert token not in ids and len(ids) == 1  # only the hash is stored


def test_idle_sessions_end_and_activity_keeps_them(sessions: DashboardSessions, clock: Clock) -> None:
    token = sessions.start("project_admin", credential="pak_1", project_id="prj_a")
    for _ in range(5):
        clock.advance(500)  # under the 600 s idle timeout each time, 2500 s in all
        assert sessions.resume(token) is not None
    clock.advance(601)
    assert sessions.resume(token) is None
    assert sessions.resume(token) is None  # and it stays ended


def test_short_idle_timeouts_are_kept_by_activity(engine: Engine, clock: Clock) -> None:
    sessions = DashboardSessions(engine, idle_seconds=3, max_seconds=60, clock=clock)
    token = sessions.start("project_admin", credential="pak_1", project_id="prj_a")
    for _ in range(20):
        clock.advance(1)
        assert sessions.resume(token) is not None


def test_sessions_end_at_their_lifetime_however_active(sessions: DashboardSessions, clock: Clock) -> None:
    token = sessions.start("operator", credential=credential_hash("master"), project_id=None)
    for _ in range(7):
        clock.advance(500)
        assert sessions.resume(token) is not None  # 3500 s, active all along
    clock.advance(100)
    assert sessions.resume(token) is None  # 3600 s: the lifetime is over


def test_logout_ends_the_session_and_expired_ones_are_swept(sessions: DashboardSessions, clock: Clock,
                                                            engine: Engine) -> None:
    old = sessions.start("project_admin", credential="pak_1", project_id="prj_a")
    clock.advance(700)
    token = sessions.start("project_admin", credential="pak_1", project_id="prj_a")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DashboardSession)).scalar_one() == 1
    assert sessions.resume(old) is None
    sessions.end(token)
    assert sessions.resume(token) is None


def test_the_operator_chooses_the_project_of_a_session(sessions: DashboardSessions) -> None:
    token = sessions.start("operator", credential=credential_hash("master"), project_id=None)
    info = sessions.resume(token)
    assert info is not None and info.project_id is None
    sessions.set_project(info.id, "prj_b")
    assert sessions.resume(token).project_id == "prj_b"  # type: ignore[union-attr]


def test_csrf_token_belongs_to_its_session() -> None:
    assert csrf_token("token-a") == csrf_token("token-a")
    assert csrf_token("token-a") != csrf_token("token-b")
    assert "token-a" not in csrf_token("token-a")
    assert credential_hash("m1") != credential_hash("m2") and "m1" not in credential_hash("m1")

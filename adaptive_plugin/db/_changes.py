"""Writing and reading the shared change revision (tables in tables_changes.py).

`record_change(session, ...)` runs inside the transaction of the change it announces: the
revision and the change commit together or not at all. The UPDATE of the one revision row
serialises writers, so revisions are taken in commit order and a reader that has seen revision
R has seen every change up to R. On PostgreSQL the same transaction sends a NOTIFY, delivered
at commit, to the channel `channel_name(cluster)`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from adaptive_plugin.db.tables_changes import Change, Revision

KEEP_CHANGES = 10_000  # log rows kept; a process further behind reloads everything


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    revision: int
    kind: str
    project_id: str
    key_id: str | None


def channel_name(cluster: str) -> str:
    return f"adaptive_changes_{cluster}"


def seed_revision(conn: Connection) -> None:
    """Create the revision row once (called by `migrate`, under its lock)."""
    conn.execute(
        sa.text("INSERT INTO adaptive_revision (id, revision, cluster) SELECT 1, 0, :cluster "
                "WHERE NOT EXISTS (SELECT 1 FROM adaptive_revision WHERE id = 1)"),
        {"cluster": secrets.token_hex(8)},
    )


def record_change(session: Session, *, kind: str, project_id: str, key_id: str | None = None) -> int:
    """Bump the revision and log the change in `session`'s transaction; returns the new revision."""
    revision, cluster = session.execute(
        sa.update(Revision).where(Revision.id == 1).values(revision=Revision.revision + 1)  # type: ignore[arg-type]
        .returning(Revision.revision, Revision.cluster)  # type: ignore[arg-type]
    ).one()
    session.add(Change(revision=revision, kind=kind, project_id=project_id, key_id=key_id))
    if revision % 256 == 0:
        session.execute(sa.delete(Change).where(Change.revision <= revision - KEEP_CHANGES))  # type: ignore[arg-type]
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_notify(:channel, :payload)"),
                        {"channel": channel_name(cluster), "payload": str(revision)})
    return int(revision)


def current_revision(engine: Engine) -> tuple[int, str]:
    """(revision, cluster id)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(Revision.revision, Revision.cluster).where(Revision.id == 1)).one()  # type: ignore[call-overload]
        return int(row[0]), str(row[1])


def changes_since(engine: Engine, after: int) -> tuple[int, list[ChangeRecord] | None]:
    """The current revision and the changes after `after`, oldest first; None instead of the list
    when the log no longer holds all of them (pruned): the caller reloads everything."""
    with engine.connect() as conn:
        revision = int(conn.execute(sa.select(Revision.revision).where(Revision.id == 1)).scalar_one())  # type: ignore[call-overload]
        if revision <= after:
            return revision, []
        rows = conn.execute(
            sa.select(Change.revision, Change.kind, Change.project_id, Change.key_id)  # type: ignore[call-overload]
            .where(Change.revision > after, Change.revision <= revision).order_by(Change.revision)
        ).all()
    if len(rows) != revision - after:
        return revision, None
    return revision, [ChangeRecord(int(r[0]), r[1], r[2], r[3]) for r in rows]

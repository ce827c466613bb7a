"""The shared change revision: one counter bumped in the same transaction as every change that
must take effect at once in every worker and replica (a key revoked, a plan changed), and a
short log of what each revision changed, so that a process reloads only that."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from adaptive_plugin.db.tables_keys import utcnow

__all__ = ["Change", "Revision"]


class Revision(SQLModel, table=True):
    """The one row (id 1): the revision, and a random id of this database that names its Redis
    keys and PostgreSQL channel (two gateways sharing a Redis never mix their revisions)."""

    __tablename__ = "adaptive_revision"

    id: int = Field(primary_key=True)
    revision: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    cluster: str = Field(max_length=32)


class Change(SQLModel, table=True):
    """What one revision changed: `kind` is project, api_key or provider_key."""

    __tablename__ = "adaptive_change"

    revision: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    kind: str = Field(max_length=20)
    project_id: str = Field(max_length=40)
    key_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))

"""Project admin keys and dashboard sessions (self-service)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from adaptive_plugin.db.tables_keys import utcnow


class ProjectAdminKey(SQLModel, table=True):
    """A project admin credential (`pak-...`): manages one project. Only its SHA-256 is stored."""

    __tablename__ = "adaptive_project_admin_key"

    id: str = Field(primary_key=True, max_length=40)
    project_id: str = Field(foreign_key="adaptive_project.id", index=True, max_length=40)
    label: str = Field(default="", max_length=100)
    key_hash: str = Field(sa_column=sa.Column(sa.String(64), unique=True, nullable=False))
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True))


class DashboardSession(SQLModel, table=True):
    """A signed-in dashboard session. The cookie holds a random token; only its SHA-256 is the key.

    `credential` is what the session stands on: the admin key's id for a project admin, a hash
    of the LiteLLM master key for the operator. Revoking the key (or changing the master key)
    ends the session at its next request.
    """

    __tablename__ = "adaptive_dashboard_session"

    id: str = Field(primary_key=True, max_length=64)  # sha256(token)
    role: str = Field(max_length=16)  # operator | project_admin
    credential: str = Field(max_length=64)
    project_id: str | None = Field(default=None, max_length=40)  # the project shown (operator: chosen)
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))

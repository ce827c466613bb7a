"""Projects, their gateway API keys and their encrypted provider keys."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Project(SQLModel, table=True):
    __tablename__ = "adaptive_project"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(sa_column=sa.Column(sa.String(200), unique=True, nullable=False))
    plan: str = Field(max_length=20)  # developer | team | enterprise
    fallback: str = Field(default="pooled", max_length=20)  # pooled | byok_only
    allowed_models: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))  # JSON list
    cache_enabled: bool = True
    default_cost_bias: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class ProjectApiKey(SQLModel, table=True):
    """A gateway API key: only its SHA-256 is stored; the key is shown once at creation."""

    __tablename__ = "adaptive_project_api_key"

    id: str = Field(primary_key=True, max_length=40)
    project_id: str = Field(foreign_key="adaptive_project.id", index=True, max_length=40)
    environment: str = Field(max_length=20)  # dev | staging | production
    key_hash: str = Field(sa_column=sa.Column(sa.String(64), unique=True, nullable=False))
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True))


class ProviderKey(SQLModel, table=True):
    """A customer's provider key, AES-256-GCM encrypted, bound to project/env/provider/id."""

    __tablename__ = "adaptive_provider_key"
    __table_args__ = (sa.Index("ix_adaptive_provider_key_scope", "project_id", "environment", "provider"),)

    id: str = Field(primary_key=True, max_length=40)
    project_id: str = Field(foreign_key="adaptive_project.id", max_length=40)
    environment: str = Field(max_length=20)
    provider: str = Field(max_length=40)
    priority: int = 100  # lower first
    ciphertext: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    nonce: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    master_key_id: str = Field(max_length=16)
    fingerprint: str = Field(max_length=16)
    last4: str = Field(max_length=4)
    status: str = Field(default="active", max_length=16)  # active | revoked | invalid | broken
    status_reason: str | None = Field(default=None, max_length=200)
    spend_cap_usd: str | None = Field(default=None, max_length=32)  # Decimal as text
    spend_cap_period: str | None = Field(default=None, max_length=8)  # day | month
    rpm_limit: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))

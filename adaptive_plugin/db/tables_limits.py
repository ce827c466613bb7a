"""Spending caps and rate limits: project and environment settings, and the database counters.

The counters are used when no Redis is configured (or Redis is down and the operator chose the
database fallback). Times are UNIX seconds (floats), money integer micro-dollars.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from adaptive_plugin.db.tables_keys import utcnow

PROJECT_WIDE = "*"  # `environment` of a limit that covers every environment of the project


class ScopeLimitRow(SQLModel, table=True):
    """The limits of a project (environment `*`) or of one of its environments."""

    __tablename__ = "adaptive_limit"

    project_id: str = Field(foreign_key="adaptive_project.id", primary_key=True, max_length=40)
    environment: str = Field(primary_key=True, max_length=20)  # dev | staging | production | *
    spend_cap_usd: str | None = Field(default=None, max_length=32)  # Decimal as text
    spend_cap_period: str | None = Field(default=None, max_length=8)  # day | month
    rpm_limit: int | None = None
    tpm_limit: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class LimitCounterRow(SQLModel, table=True):
    """One counter: a spending period (`used` settled, `reserved` in flight) or a one-minute window."""

    __tablename__ = "adaptive_limit_counter"

    key: str = Field(primary_key=True, max_length=200)
    used: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    reserved: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    window_start: float = 0.0
    seeded_at: float = 0.0
    expires_at: float = Field(default=0.0, index=True)


class LimitHoldRow(SQLModel, table=True):
    """The part of one reservation held on one spending counter until it is settled or expires."""

    __tablename__ = "adaptive_limit_hold"

    hold_id: str = Field(primary_key=True, max_length=40)
    counter: str = Field(primary_key=True, max_length=200)
    amount: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    expires_at: float = Field(default=0.0, index=True)

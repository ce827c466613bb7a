"""The usage ledger and request log: one row per request."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from adaptive_plugin.db.tables_keys import utcnow


class UsageRow(SQLModel, table=True):
    """One finished request. Money is integer micro-dollars (1 USD = 1_000_000)."""

    __tablename__ = "adaptive_usage"
    __table_args__ = (
        sa.Index("ix_adaptive_usage_project_day", "project_id", "day"),
        sa.Index("ix_adaptive_usage_key_ts", "key_id", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(sa_column=sa.Column(sa.String(64), unique=True, nullable=False))
    ts: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    day: str = Field(max_length=10)  # YYYY-MM-DD (UTC)
    project_id: str = Field(max_length=40)
    environment: str = Field(max_length=20)
    provider: str = Field(default="", max_length=40)
    model_group: str = Field(default="", max_length=200)
    model: str = Field(default="", max_length=200)
    key_source: str = Field(default="", max_length=16)  # byok | pooled | cache | none
    key_id: str | None = Field(default=None, max_length=40)
    key_fingerprint: str | None = Field(default=None, max_length=16)
    cache: str = Field(default="miss", max_length=16)  # miss | hit-exact | hit-semantic | bypass
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    overhead_fee_micros: int = 0
    model_cost_micros: int = 0  # billed model cost (pooled only)
    provider_cost_micros: int = 0  # what the provider charged the key's owner (for BYOK spend caps)
    latency_ms: float = 0.0
    outcome: str = Field(default="success", max_length=16)  # success | error
    status_code: int = 200
    error_code: str | None = Field(default=None, max_length=64)
    fallbacks: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))  # JSON list
    # the project stores keys for the provider but its plan has no BYOK, so pooled keys served it
    byok_off_by_plan: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False,
                                                                      server_default=sa.false()))
    routed: bool = False
    route_score: float | None = None
    task_type: str | None = Field(default=None, max_length=32)

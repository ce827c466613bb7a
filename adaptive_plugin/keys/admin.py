"""Project admin keys and the self-service inputs a project admin may send.

A project admin key (`pak-...`) manages one project: its provider keys, its chat API keys,
its settings (not its plan), and reads its own request log and usage. It is a different kind
of credential from a chat API key (`ak-...`): neither is accepted where the other is expected,
and the prefixes keep them apart (`KeyService.authenticate` refuses anything not `ak-`).

    >>> admins = AdminKeyService(engine)                                   # doctest: +SKIP
    >>> created = admins.create(project_id, label="alice")                 # doctest: +SKIP
    >>> admins.authenticate(created.admin_key).project_id == project_id    # doctest: +SKIP
    True
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import Engine
from sqlmodel import select

from adaptive_plugin.db import session_scope
from adaptive_plugin.db.tables_admin import ProjectAdminKey
from adaptive_plugin.db.tables_keys import Project, utcnow
from adaptive_plugin.errors import AuthenticationError, NotFoundError
from adaptive_plugin.keys.models import CapPeriod, Environment, FallbackPolicy, _utc, _View
from adaptive_plugin.keys.service import hash_api_key

ADMIN_KEY_PREFIX = "pak-"
_LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most once a minute per key

Role = Literal["operator", "project_admin"]


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """Who is managing: the operator (any project) or one project's admin."""

    role: Role
    project_id: str | None  # the project acted on; None for the operator until one is chosen
    admin_key_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


class AdminKeyView(_View):
    id: str
    project_id: str
    label: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @field_validator("last_used_at")
    @classmethod
    def _aware_last_used(cls, value: datetime | None) -> datetime | None:
        return _utc(value)


class AdminKeyCreated(AdminKeyView):
    admin_key: str = Field(description="Shown once; only its hash is stored.")


class AdminKeyCreate(BaseModel):
    """Input of `POST /adaptive/projects/{id}/admin-keys`."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9 _.@\-]*$",
                       description="Who or what holds the key (shown in listings).")


class SelfProjectUpdate(BaseModel):
    """What a project admin may change about its project (the plan is the operator's)."""

    model_config = ConfigDict(extra="forbid")
    fallback: FallbackPolicy | None = Field(
        default=None, description="pooled: fall back to the operator's keys when own keys fail; byok_only: never.")
    default_cost_bias: float | None = Field(
        default=None, ge=0, le=1, description="Default trade-off for model auto: 0 cheapest, 1 best; null: the gateway's.")
    allowed_models: list[str] | None = Field(
        default=None, max_length=200, description="Model groups the project may use; null: all of the gateway's.")
    cache_enabled: bool | None = Field(default=None, description="Serve and store answers in the semantic cache.")

    @field_validator("allowed_models")
    @classmethod
    def _models(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = sorted({m.strip() for m in value if m and m.strip()})
        if any(len(m) > 200 for m in cleaned):
            raise ValueError("a model name is at most 200 characters")
        return cleaned

    @model_validator(mode="after")
    def _no_null_fallback(self) -> SelfProjectUpdate:
        if "fallback" in self.model_fields_set and self.fallback is None:
            raise ValueError("fallback must be 'pooled' or 'byok_only'")
        if "cache_enabled" in self.model_fields_set and self.cache_enabled is None:
            raise ValueError("cache_enabled must be true or false")
        return self


def clean_provider_secret(value: str) -> str:
    value = value.strip()
    if any(c.isspace() for c in value):
        raise ValueError("api_key must not contain whitespace")
    return value


class ProviderKeyRotate(BaseModel):
    """Input of a rotation: the new key takes the old one's place (provider, priority, caps)."""

    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=8, max_length=4096, repr=False, description="The new provider key (write-only).")

    @field_validator("api_key")
    @classmethod
    def _clean(cls, value: str) -> str:
        return clean_provider_secret(value)


class ProviderKeyUpdate(BaseModel):
    """Priority, spending cap and rate limit of a provider key; a field set to null is cleared."""

    model_config = ConfigDict(extra="forbid")
    priority: int | None = Field(default=None, ge=0, le=10_000, description="Lower is tried first.")
    spend_cap_usd: Decimal | None = Field(
        default=None, gt=0, max_digits=14, decimal_places=6,
        description="Most this key may spend at the provider per period (USD); over it, the key is skipped.")
    spend_cap_period: CapPeriod | None = Field(default=None, description="day or month (UTC), with spend_cap_usd.")
    rpm_limit: int | None = Field(
        default=None, gt=0, le=1_000_000, description="Most requests per minute sent with this key (per worker).")

    @model_validator(mode="after")
    def _priority_not_null(self) -> ProviderKeyUpdate:
        if "priority" in self.model_fields_set and self.priority is None:
            raise ValueError("priority cannot be cleared")
        return self


class ProviderKeyOrder(BaseModel):
    """The keys of one environment and provider, first tried first."""

    model_config = ConfigDict(extra="forbid")
    environment: Environment
    provider: str = Field(min_length=1, max_length=40)
    key_ids: list[str] = Field(min_length=1, max_length=100)


class AdminKeyService:
    """Create, list, revoke and authenticate project admin keys."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, project_id: str, *, label: str = "") -> AdminKeyCreated:
        token = f"{ADMIN_KEY_PREFIX}{secrets.token_urlsafe(32)}"
        with session_scope(self.engine) as s:
            if s.get(Project, project_id) is None:
                raise NotFoundError(f"project {project_id!r} not found")
            row = ProjectAdminKey(id=f"pak_{secrets.token_hex(8)}", project_id=project_id, label=label,
                                  key_hash=hash_api_key(token), prefix=token[:12])
            s.add(row)
        return AdminKeyCreated(**_view(row).model_dump(), admin_key=token)

    def list(self, project_id: str) -> list[AdminKeyView]:
        with session_scope(self.engine) as s:
            if s.get(Project, project_id) is None:
                raise NotFoundError(f"project {project_id!r} not found")
            rows = s.exec(select(ProjectAdminKey).where(ProjectAdminKey.project_id == project_id)
                          .order_by(ProjectAdminKey.created_at))
            return [_view(r) for r in rows]

    def revoke(self, project_id: str, key_id: str) -> AdminKeyView:
        with session_scope(self.engine) as s:
            row = s.get(ProjectAdminKey, key_id)
            if row is None or row.project_id != project_id:
                raise NotFoundError(f"admin key {key_id!r} not found in project {project_id!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.add(row)
            return _view(row)

    def authenticate(self, token: str) -> AdminPrincipal:
        """The project admin behind a `pak-` key, or AuthenticationError. Read from the database
        each time: a revoked admin key stops working at once, in every worker and replica."""
        if not token.startswith(ADMIN_KEY_PREFIX) or len(token) > 200:
            raise AuthenticationError("malformed admin key: expected a project admin key starting with 'pak-'")
        with session_scope(self.engine) as s:
            row = s.exec(select(ProjectAdminKey).where(ProjectAdminKey.key_hash == hash_api_key(token))).first()
            if row is None:
                raise AuthenticationError("unknown admin key")
            if row.revoked_at is not None:
                raise AuthenticationError("admin key has been revoked")
            now = utcnow()
            last = row.last_used_at
            if last is not None and last.tzinfo is None:
                last = last.replace(tzinfo=now.tzinfo)
            if last is None or now - last >= _LAST_USED_RESOLUTION:
                s.execute(sa.update(ProjectAdminKey).where(ProjectAdminKey.id == row.id).values(last_used_at=now))
            return AdminPrincipal(role="project_admin", project_id=row.project_id, admin_key_id=row.id)

    def is_active(self, key_id: str) -> bool:
        with session_scope(self.engine) as s:
            row = s.get(ProjectAdminKey, key_id)
            return row is not None and row.revoked_at is None


def _view(row: ProjectAdminKey) -> AdminKeyView:
    return AdminKeyView(id=row.id, project_id=row.project_id, label=row.label, prefix=row.prefix,
                        created_at=row.created_at, revoked_at=row.revoked_at, last_used_at=row.last_used_at)


__all__ = [
    "ADMIN_KEY_PREFIX",
    "AdminKeyCreate",
    "AdminKeyCreated",
    "AdminKeyService",
    "AdminKeyView",
    "AdminPrincipal",
    "ProviderKeyOrder",
    "ProviderKeyRotate",
    "ProviderKeyUpdate",
    "SelfProjectUpdate",
]

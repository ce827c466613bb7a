"""Value types of the keys capability (no database or litellm types leak out)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from adaptive_plugin import providers

Plan = Literal["developer", "team", "enterprise"]
Environment = Literal["dev", "staging", "production"]
FallbackPolicy = Literal["pooled", "byok_only"]
CapPeriod = Literal["day", "month"]

BYOK_PLANS: frozenset[str] = frozenset({"team", "enterprise"})
_PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")


class ProjectCreate(BaseModel):
    """Input of `POST /adaptive/projects`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.\-]*$")
    plan: Plan
    fallback: FallbackPolicy = "pooled"
    allowed_models: list[str] | None = Field(default=None, description="Model groups the project may use; null = all.")
    cache_enabled: bool = True
    default_cost_bias: float | None = Field(default=None, ge=0, le=1)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: Plan | None = None
    fallback: FallbackPolicy | None = None
    allowed_models: list[str] | None = None
    cache_enabled: bool | None = None
    default_cost_bias: float | None = Field(default=None, ge=0, le=1)


class ProviderKeyCreate(BaseModel):
    """Input of `POST /adaptive/projects/{id}/provider-keys`. The key itself is never returned."""

    model_config = ConfigDict(extra="forbid")
    environment: Environment
    provider: str = Field(description="Provider: openai, anthropic, gemini (alias google), groq or deepseek.")
    api_key: str = Field(min_length=8, max_length=4096, repr=False)
    priority: int = Field(default=100, ge=0, le=10_000, description="Lower is tried first.")
    spend_cap_usd: Decimal | None = Field(default=None, gt=0, max_digits=14, decimal_places=6)
    spend_cap_period: CapPeriod | None = None
    rpm_limit: int | None = Field(default=None, gt=0, le=1_000_000)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        value = value.strip().lower()
        if not _PROVIDER_RE.match(value):
            raise ValueError(f"provider must be one of {', '.join(providers.supported_names())}")
        # aliases become the canonical name; an unknown name is refused by the service (400)
        return providers.canonical(value) or value

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str) -> str:
        value = value.strip()
        if any(c.isspace() for c in value):
            raise ValueError("api_key must not contain whitespace")
        return value

    @model_validator(mode="after")
    def _cap_pair(self) -> ProviderKeyCreate:
        if (self.spend_cap_usd is None) != (self.spend_cap_period is None):
            raise ValueError("spend_cap_usd and spend_cap_period go together")
        return self


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class _View(BaseModel):
    @field_validator("created_at", "revoked_at", check_fields=False)
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)


class ProjectView(_View):
    id: str
    name: str
    plan: Plan
    fallback: FallbackPolicy
    allowed_models: list[str] | None
    cache_enabled: bool
    default_cost_bias: float | None
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def byok(self) -> Literal["on", "off-by-plan"]:
        """Whether the project's stored provider keys are used: not on the developer plan."""
        return "on" if self.plan in BYOK_PLANS else "off-by-plan"


class ApiKeyView(_View):
    id: str
    project_id: str
    environment: Environment
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyView):
    api_key: str = Field(description="Shown once; only its hash is stored.")


class ProviderKeyView(_View):
    id: str
    project_id: str
    environment: Environment
    provider: str
    priority: int
    fingerprint: str
    last4: str
    status: Literal["active", "revoked", "invalid", "broken"]
    status_reason: str | None
    spend_cap_usd: Decimal | None
    spend_cap_period: CapPeriod | None
    rpm_limit: int | None
    master_key_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the project and environment behind a gateway API key."""

    project_id: str
    project_name: str
    environment: str
    plan: str
    fallback: str
    allowed_models: frozenset[str] | None
    cache_enabled: bool
    default_cost_bias: float | None
    api_key_id: str

    @property
    def scope(self) -> str:
        """The tenant: cache entries never cross it."""
        return f"{self.project_id}/{self.environment}"

    @property
    def byok_allowed(self) -> bool:
        return self.plan in BYOK_PLANS


@dataclass(slots=True)
class ResolvedKey:
    """A decrypted provider key held in memory only for the request path.

    `unavailable`: the row cannot be decrypted (marked broken in the vault, or under a master
    key this process lacks); it is kept in the chain, without a secret, so that key choice skips
    it as it skips an invalid key and can say why.
    """

    id: str
    provider: str
    priority: int
    secret: str = field(repr=False)
    fingerprint: str
    spend_cap_micros: int | None
    spend_cap_period: str | None
    rpm_limit: int | None
    unavailable: bool = False

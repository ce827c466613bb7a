"""Value types of the limits capability: what is limited, what a request asks for, what came back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adaptive_plugin.errors import LimitsError, RateLimitedError, SpendCapReachedError

Period = Literal["day", "month"]
What = Literal["spend", "rpm", "tpm"]
ScopeKind = Literal["key", "project", "environment"]
Environment = Literal["dev", "staging", "production"]

WINDOW_SECONDS = 60  # rpm and tpm count fixed one-minute windows
WINDOW_TTL_SECONDS = 2 * WINDOW_SECONDS
MICROS_PER_USD = 1_000_000


# -- periods --------------------------------------------------------------------------------


def _utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, tz=timezone.utc)


def period_start(now: float, period: str) -> datetime:
    """Start (UTC) of the day or month containing `now`."""
    start = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return start.replace(day=1) if period == "month" else start


def period_end(now: float, period: str) -> float:
    """UNIX time at which the day or month containing `now` ends (UTC)."""
    start = period_start(now, period)
    if period == "month":
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        end = start + timedelta(days=1)
    return end.timestamp()


def period_id(now: float, period: str) -> str:
    """`2026-11-27` for a day, `2026-11` for a month (UTC), as the ledger's `day` column."""
    start = period_start(now, period)
    return start.strftime("%Y-%m") if period == "month" else start.strftime("%Y-%m-%d")


def seconds_until(when: float, now: float) -> int:
    """Whole seconds until `when`, at least 1 (a Retry-After value)."""
    return max(1, math.ceil(when - now))


# -- configured limits ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """The limits of one project, or of one of its environments. None: not limited."""

    spend_cap_micros: int | None = None
    spend_cap_period: str | None = None  # day | month
    rpm: int | None = None
    tpm: int | None = None

    @property
    def empty(self) -> bool:
        return self.spend_cap_micros is None and self.rpm is None and self.tpm is None


NO_LIMITS = ScopeLimits()


@dataclass(frozen=True, slots=True)
class ProjectLimits:
    """A project's own limits and its environments' limits."""

    project: ScopeLimits = NO_LIMITS
    environments: tuple[tuple[str, ScopeLimits], ...] = ()

    def environment(self, name: str) -> ScopeLimits:
        return next((limits for env, limits in self.environments if env == name), NO_LIMITS)

    def applies(self, environment: str) -> bool:
        return not (self.project.empty and self.environment(environment).empty)


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A provider key's own limits (its `spend_cap_usd`, `spend_cap_period`, `rpm_limit`)."""

    key_id: str
    fingerprint: str
    spend_cap_micros: int | None = None
    spend_cap_period: str | None = None
    rpm: int | None = None

    @property
    def empty(self) -> bool:
        return self.spend_cap_micros is None and self.rpm is None


# -- one reservation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ask:
    """One provider attempt, as the limits see it.

    `key_cost_micros` is the worst-case provider cost (a key's cap counts it), `bill_micros` the
    worst-case gateway bill (project and environment caps count it: the overhead fee, plus the
    model cost on pooled keys), `tokens` worst-case input plus output tokens (tpm).
    `count_request` counts one request against project and environment rpm (the request's
    first admitted attempt); a key's rpm counts every attempt made with it.
    """

    project_id: str
    project_name: str
    environment: str
    key: KeyLimits | None = None
    key_cost_micros: int = 0
    bill_micros: int = 0
    tokens: int = 0
    count_request: bool = True


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    id: str  # provider key id, project id, or "project_id/environment"
    project_id: str
    label: str  # for messages: never a secret

    @property
    def tag(self) -> str:
        return {"key": "k", "project": "p", "environment": "e"}[self.kind]


@dataclass(frozen=True, slots=True)
class Charge:
    """One counter a reservation touches: a spending period or a one-minute window."""

    counter: str
    scope: Scope
    what: What
    limit: int
    amount: int
    ttl: int  # seconds the counter is kept after its last use
    period: str | None = None  # spend: day | month
    resets_at: float = 0.0  # spend: end of the period (UNIX time)

    @property
    def window(self) -> bool:
        return self.what != "spend"


def spend_counter(scope: Scope, period: str, now: float) -> str:
    return f"s:{scope.tag}:{scope.id}:{period_id(now, period)}"


def window_counter(scope: Scope, what: str) -> str:
    return f"w:{what}:{scope.tag}:{scope.id}"


@dataclass(frozen=True, slots=True)
class Actual:
    """What an attempt really used, for settling its reservation."""

    key_cost_micros: int = 0
    bill_micros: int = 0
    tokens: int = 0
    provider_called: bool = True  # False for a cache hit: the key's rpm slot is given back


@dataclass(slots=True)
class Admission:
    """A reservation held for one attempt; settle or release it exactly once."""

    hold_id: str
    project_id: str
    charges: tuple[Charge, ...]
    window_starts: dict[str, str] = field(default_factory=dict)  # counter -> its window's start
    store: str = "database"  # the store that holds it: redis | database
    done: bool = False


# -- refusals -------------------------------------------------------------------------------


_PERIODLY = {"day": "daily", "month": "monthly"}


def _usd(micros: int) -> str:
    return f"${Decimal(micros) / MICROS_PER_USD:.6f}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A limit with no room for the attempt."""

    charge: Charge
    used: int
    reserved: int
    retry_after: int

    @property
    def scope(self) -> ScopeKind:
        return self.charge.scope.kind

    @property
    def reason(self) -> str:
        """The key-fallback reason (`x-adaptive-fallbacks`): spend_cap, rpm_limit, tpm_limit."""
        return "spend_cap" if self.charge.what == "spend" else f"{self.charge.what}_limit"

    @property
    def message(self) -> str:
        c = self.charge
        who = c.scope.label
        if c.what == "spend":
            cap = f"{_PERIODLY.get(str(c.period), str(c.period))} spending cap of {_usd(c.limit)}"
            if c.amount > c.limit:
                text = f"{who}: this request may cost up to {_usd(c.amount)}, more than the whole {cap} (lower max_tokens)"
            elif self.used + c.amount > c.limit:
                text = (f"{who} reached its {cap}: {_usd(self.used)} spent, and this request may cost up to "
                        f"{_usd(c.amount)}")
            else:
                text = (f"{who} has no room left in its {cap} for now: {_usd(self.used)} spent and "
                        f"{_usd(self.reserved)} reserved by requests in flight, and this request may cost up to "
                        f"{_usd(c.amount)}")
        elif c.what == "rpm":
            text = f"{who} reached its limit of {c.limit} requests per minute"
        elif c.amount > c.limit:
            text = f"{who}: this request may use up to {c.amount} tokens, more than its limit of {c.limit} per minute"
        else:
            text = f"{who} reached its limit of {c.limit} tokens per minute ({self.used} used; this request may use {c.amount})"
        return f"{text}; retry in {self.retry_after} s"

    def error(self) -> LimitsError:
        cls = SpendCapReachedError if self.charge.what == "spend" else RateLimitedError
        return cls(self.message, retry_after=self.retry_after)


# -- the admin API's input and output -------------------------------------------------------


class LimitsUpdate(BaseModel):
    """Input of `PUT /adaptive/projects/{id}/limits`: replaces one scope's limits (null: unlimited)."""

    model_config = ConfigDict(extra="forbid")
    environment: Environment | None = Field(
        default=None, description="The environment these limits apply to; null: the whole project (every environment)."
    )
    spend_cap_usd: Decimal | None = Field(default=None, gt=0, max_digits=14, decimal_places=6)
    spend_cap_period: Period | None = None
    rpm_limit: int | None = Field(default=None, gt=0, le=100_000_000, description="Requests per minute.")
    tpm_limit: int | None = Field(default=None, gt=0, le=100_000_000_000, description="Tokens per minute.")

    @model_validator(mode="after")
    def _cap_pair(self) -> LimitsUpdate:
        if (self.spend_cap_usd is None) != (self.spend_cap_period is None):
            raise ValueError("spend_cap_usd and spend_cap_period go together")
        return self


class ScopeUsage(BaseModel):
    """What the counters hold now (null: not counted yet in this period or window)."""

    spent_usd: Decimal | None = None
    reserved_usd: Decimal | None = None
    period_resets_in_seconds: int | None = None
    requests_this_minute: int | None = None
    tokens_this_minute: int | None = None


class ScopeLimitsView(BaseModel):
    environment: str | None = Field(description="null: the whole project")
    spend_cap_usd: Decimal | None
    spend_cap_period: Period | None
    rpm_limit: int | None
    tpm_limit: int | None
    usage: ScopeUsage


class ProjectLimitsView(BaseModel):
    """Output of `GET /adaptive/projects/{id}/limits`."""

    project_id: str
    limits: list[ScopeLimitsView]

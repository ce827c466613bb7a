"""Spending caps and rate limits, exact across workers and replicas.

Before each provider attempt the worst case (counted input tokens plus the most output tokens
it may generate) is reserved against every limit that applies: the provider key's own cap and
rpm, the project's and the environment's cap, rpm and tpm, all or nothing. The reservation is
settled to the real amount when the attempt succeeds and released when it fails, so concurrent
requests never push recorded spend over a cap. Counters live in Redis (atomic Lua scripts) when
one is configured, else in the database (conditional UPDATEs). See README.md.

    >>> limits = open_limits(engine, redis_url=None)                              # doctest: +SKIP
    >>> outcome = await limits.reserve(Ask(project_id="prj_1", project_name="acme",
    ...                                    environment="production", bill_micros=650))  # doctest: +SKIP
"""

from __future__ import annotations

import typing

from adaptive_plugin.limits._redis import RedisCounterStore
from adaptive_plugin.limits._repo import LimitsRepository
from adaptive_plugin.limits._seed import ledger_spend
from adaptive_plugin.limits._sql import SqlCounterStore
from adaptive_plugin.limits._stores import CounterStores
from adaptive_plugin.limits.amounts import WorstCase, cost_micros, worst_case
from adaptive_plugin.limits.models import (
    Actual,
    Admission,
    Ask,
    KeyLimits,
    LimitsUpdate,
    ProjectLimits,
    ProjectLimitsView,
    Refusal,
    ScopeLimits,
    ScopeLimitsView,
    ScopeUsage,
)
from adaptive_plugin.limits.service import Limits

if typing.TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def open_limits(engine: Engine, *, redis_url: str | None, redis_prefix: str = "adaptive:limits:",
                redis_fallback: str = "database", hold_seconds: float = 900.0, sync_seconds: float = 1.0) -> Limits:
    """The limits service over the plugin's database, and Redis when `redis_url` is given."""
    redis = RedisCounterStore(redis_url, prefix=redis_prefix) if redis_url else None
    stores = CounterStores(SqlCounterStore(engine), redis, fallback=redis_fallback)
    return Limits(stores, repo=LimitsRepository(engine), seed=lambda charge, now: ledger_spend(engine, charge, now),
                  hold_seconds=hold_seconds, sync_seconds=sync_seconds)


__all__ = [
    "Actual",
    "Admission",
    "Ask",
    "CounterStores",
    "KeyLimits",
    "Limits",
    "LimitsRepository",
    "LimitsUpdate",
    "ProjectLimits",
    "ProjectLimitsView",
    "RedisCounterStore",
    "Refusal",
    "ScopeLimits",
    "ScopeLimitsView",
    "ScopeUsage",
    "SqlCounterStore",
    "WorstCase",
    "cost_micros",
    "ledger_spend",
    "open_limits",
    "worst_case",
]

"""The limits service: which counters an attempt touches, seeding from the ledger, refusals and
their Retry-After, settling, what is remembered, limit changes, and Redis outages."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from adaptive_plugin.billing import Ledger
from adaptive_plugin.db import session_scope
from adaptive_plugin.db.tables_keys import Project
from adaptive_plugin.errors import LimitsUnavailableError, NotFoundError, RateLimitedError, SpendCapReachedError
from adaptive_plugin.limits import (
    Actual,
    Admission,
    Ask,
    CounterStores,
    KeyLimits,
    Limits,
    LimitsRepository,
    LimitsUpdate,
    ProjectLimits,
    RedisCounterStore,
    Refusal,
    ScopeLimits,
    SqlCounterStore,
    ledger_spend,
)
from adaptive_plugin.limits.models import period_end, period_id
from adaptive_plugin.limits.service import charges_for
from tests.unit.limits.conftest import Backend, make_backend

PID = "prj_svc"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


NOON = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc).timestamp()


def add_project(engine: Engine, project_id: str = PID) -> None:
    with session_scope(engine) as s:
        s.add(Project(id=project_id, name="acme", plan="team"))


def limits_over(b: Backend, *, clock: Clock | None = None) -> Limits:
    add_project(b.engine)
    return Limits(b.stores, repo=LimitsRepository(b.engine), seed=lambda c, now: ledger_spend(b.engine, c, now),
                  clock=clock or Clock(NOON), sync_seconds=0.001)


def ask(**kw: Any) -> Ask:
    base: dict[str, Any] = {"project_id": PID, "project_name": "acme", "environment": "production"}
    return Ask(**{**base, **kw})


def key(cap: int | None = None, rpm: int | None = None, period: str = "day") -> KeyLimits:
    return KeyLimits(key_id="pk_1", fingerprint="fp0123", spend_cap_micros=cap,
                     spend_cap_period=period if cap is not None else None, rpm=rpm)


async def put(limits: Limits, **kw: Any) -> None:
    await limits.set_limits(PID, LimitsUpdate(**kw))


@pytest.fixture()
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    b = make_backend(request, tmp_path, "sqlite")
    yield b
    await b.stores.close()
    b.engine.dispose()


# -- which counters ----------------------------------------------------------------------------


def test_charges_follow_the_limits_that_apply() -> None:
    limits = ProjectLimits(project=ScopeLimits(spend_cap_micros=5_000_000, spend_cap_period="month", rpm=60),
                           environments=(("production", ScopeLimits(tpm=10_000)), ("dev", ScopeLimits(rpm=5))))
    charges = charges_for(ask(key=key(cap=1_000, rpm=3), key_cost_micros=40, bill_micros=55, tokens=900), limits, NOON)
    assert [(c.scope.kind, c.what, c.limit, c.amount) for c in charges] == [
        ("key", "spend", 1_000, 40),  # a key's cap counts the provider cost
        ("key", "rpm", 3, 1),
        ("project", "spend", 5_000_000, 55),  # a project's cap counts the gateway's bill
        ("project", "rpm", 60, 1),
        ("environment", "tpm", 10_000, 900),
    ]
    assert charges[0].counter == "s:k:pk_1:2026-11-27" and charges[2].counter == f"s:p:{PID}:2026-11"
    assert charges[2].resets_at == datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
    # a later attempt of the same request: the project's rpm was counted by the first
    later = charges_for(ask(key=key(rpm=3), count_request=False), limits, NOON)
    assert [(c.scope.kind, c.what) for c in later] == [("key", "rpm"), ("project", "spend"), ("environment", "tpm")]
    assert charges_for(ask(environment="staging"), ProjectLimits(), NOON) == []


def test_periods_end_at_utc_midnight_and_month_start() -> None:
    dec = datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
    assert period_end(dec, "day") == datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()
    assert period_end(dec, "month") == datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()
    assert (period_id(dec, "day"), period_id(dec, "month")) == ("2026-12-31", "2026-12")


# -- reserve, refuse, settle ---------------------------------------------------------------------


async def test_nothing_limited_touches_no_store(db: Backend) -> None:
    limits = limits_over(db)
    assert await limits.reserve(ask(bill_micros=10**9, key=key())) is None
    assert db.stores.sql.read([f"s:p:{PID}:2026-11-27"]) == {}


async def test_a_cap_is_seeded_from_the_ledger_and_counts_the_gateway_bill(db: Backend) -> None:
    ledger = Ledger(db.engine)
    day = period_id(NOON, "day")
    ledger.write_now([
        row(day, overhead=300, model=500, key_id="pk_1", provider=500),
        row(day, overhead=100, model=0, environment="dev"),
        row(day, overhead=999, outcome="error"),  # failed requests cost nothing
        row("2026-11-26", overhead=7000),  # yesterday
    ])
    limits = limits_over(db)
    await put(limits, spend_cap_usd=Decimal("0.001"), spend_cap_period="day")
    admission = await limits.reserve(ask(bill_micros=100))
    assert isinstance(admission, Admission)
    value = db.stores.sql.read([f"s:p:{PID}:{day}"])[f"s:p:{PID}:{day}"]
    assert (value.used, value.reserved) == (900, 100)
    refusal = await limits.reserve(ask(bill_micros=1))
    assert isinstance(refusal, Refusal) and refusal.scope == "project"
    assert refusal.retry_after == 1  # only in-flight reservations fill it: they settle soon
    await limits.settle(admission, Actual(bill_micros=60))
    value = db.stores.sql.read([f"s:p:{PID}:{day}"])[f"s:p:{PID}:{day}"]
    assert (value.used, value.reserved) == (960, 0)


def row(day: str, *, overhead: int = 0, model: int = 0, provider: int = 0, key_id: str | None = None,
        environment: str = "production", outcome: str = "success") -> dict[str, Any]:
    return {"request_id": secrets.token_hex(8), "ts": datetime.fromisoformat(day + "T10:00:00+00:00"), "day": day,
            "project_id": PID, "environment": environment, "key_id": key_id, "overhead_fee_micros": overhead,
            "model_cost_micros": model, "provider_cost_micros": provider, "outcome": outcome}


async def test_a_key_cap_counts_provider_cost_seeded_from_the_ledger(db: Backend) -> None:
    Ledger(db.engine).write_now([row(period_id(NOON, "day"), overhead=50, model=0, key_id="pk_1", provider=700)])
    limits = limits_over(db)
    assert isinstance(await limits.reserve(ask(key=key(cap=1000), key_cost_micros=300, bill_micros=5)), Admission)
    refusal = await limits.reserve(ask(key=key(cap=1000), key_cost_micros=1, bill_micros=5))
    assert isinstance(refusal, Refusal) and refusal.scope == "key" and refusal.reason == "spend_cap"
    assert "provider key fp0123" in refusal.message


async def test_a_reached_cap_says_when_its_period_ends_and_is_then_refused_without_a_store_call(db: Backend) -> None:
    clock = Clock(NOON)
    limits = limits_over(db, clock=clock)
    await put(limits, spend_cap_usd=Decimal("0.0001"), spend_cap_period="day")
    admission = await limits.reserve(ask(bill_micros=100))
    await limits.settle(admission, Actual(bill_micros=100))  # settled spend reached the cap
    refusal = await limits.reserve(ask(bill_micros=1))
    assert isinstance(refusal, Refusal) and refusal.retry_after == 12 * 3600
    error = refusal.error()
    assert isinstance(error, SpendCapReachedError) and error.status_code == 429 and error.code == "spend_cap_reached"
    assert error.headers == {"retry-after": str(12 * 3600), "x-adaptive-error-code": "spend_cap_reached"}
    assert "reached its daily spending cap of $0.000100" in error.message

    calls = []
    original = db.stores.reserve

    async def counting(*a: Any, **kw: Any) -> Any:
        calls.append(a)
        return await original(*a, **kw)

    db.stores.reserve = counting  # type: ignore[method-assign]
    clock.now += 3600
    refusal = await limits.reserve(ask(bill_micros=1))
    assert isinstance(refusal, Refusal) and refusal.retry_after == 11 * 3600
    assert calls == []
    project_limits = await limits.project_limits(PID)
    early = limits.precheck(project_limits, project_id=PID, project_name="acme", environment="production")
    assert early is not None and early.retry_after == 11 * 3600
    clock.now = period_end(NOON, "day") + 1  # the next day has room again
    assert isinstance(await limits.reserve(ask(bill_micros=1)), Admission)
    assert len(calls) >= 1


async def test_a_worst_case_larger_than_the_cap_is_refused_with_a_clear_message(db: Backend) -> None:
    limits = limits_over(db)
    await put(limits, environment="production", spend_cap_usd=Decimal("0.00005"), spend_cap_period="month")
    refusal = await limits.reserve(ask(bill_micros=51))
    assert isinstance(refusal, Refusal) and refusal.scope == "environment"
    assert "more than the whole monthly spending cap of $0.000050 (lower max_tokens)" in refusal.message
    assert "environment 'production'" in refusal.message
    assert await limits.reserve(ask(environment="dev", bill_micros=51)) is None  # another environment


async def test_rpm_counts_requests_and_a_key_gets_its_slot_back_on_a_cache_hit(db: Backend) -> None:
    limits = limits_over(db)
    await put(limits, rpm_limit=2)
    k = key(rpm=1)
    first = await limits.reserve(ask(key=k))
    assert isinstance(first, Admission)
    assert isinstance(await limits.reserve(ask(key=k, count_request=False)), Refusal)  # the key's one call
    await limits.settle(first, Actual(provider_called=False))  # a cache hit made no call with the key
    second = await limits.reserve(ask(key=k))
    assert isinstance(second, Admission)
    refusal = await limits.reserve(ask())
    assert isinstance(refusal, Refusal) and refusal.scope == "project" and refusal.charge.what == "rpm"
    assert isinstance(refusal.error(), RateLimitedError) and 1 <= refusal.retry_after <= 60


async def test_tpm_settles_to_the_tokens_used(db: Backend) -> None:
    limits = limits_over(db)
    await put(limits, tpm_limit=1000)
    admission = await limits.reserve(ask(tokens=800))
    assert isinstance(await limits.reserve(ask(tokens=300)), Refusal)
    await limits.settle(admission, Actual(tokens=200))
    assert isinstance(await limits.reserve(ask(tokens=800)), Admission)
    refusal = await limits.reserve(ask(tokens=1001))
    assert isinstance(refusal, Refusal) and "more than its limit of 1000 per minute" in refusal.message


async def test_settling_after_midnight_releases_yesterday_and_leaves_today_to_the_ledger(db: Backend) -> None:
    clock = Clock(period_end(NOON, "day") - 0.5)
    limits = limits_over(db, clock=clock)
    await put(limits, spend_cap_usd=Decimal("1"), spend_cap_period="day")
    admission = await limits.reserve(ask(bill_micros=100))
    clock.now += 1
    await limits.settle(admission, Actual(bill_micros=80))
    yesterday = f"s:p:{PID}:2026-11-27"
    value = db.stores.sql.read([yesterday])[yesterday]
    assert (value.used, value.reserved) == (0, 0)
    assert db.stores.sql.read([f"s:p:{PID}:2026-11-28"]) == {}  # seeded from the ledger on first use


async def test_settling_twice_counts_once(db: Backend) -> None:
    limits = limits_over(db)
    await put(limits, spend_cap_usd=Decimal("1"), spend_cap_period="day")
    admission = await limits.reserve(ask(bill_micros=100))
    await limits.settle(admission, Actual(bill_micros=70))
    await limits.settle(admission, Actual(bill_micros=70))
    await limits.release(admission)
    counter = f"s:p:{PID}:2026-11-27"
    assert db.stores.sql.read([counter])[counter].used == 70


async def test_changing_a_limit_starts_its_counters_again_from_the_ledger(db: Backend) -> None:
    limits = limits_over(db)
    await put(limits, spend_cap_usd=Decimal("0.0001"), spend_cap_period="day")
    admission = await limits.reserve(ask(bill_micros=100))
    await limits.settle(admission, Actual(bill_micros=100))
    Ledger(db.engine).write_now([row("2026-11-27", overhead=100)])  # its ledger row
    assert isinstance(await limits.reserve(ask(bill_micros=1)), Refusal)
    view = await limits.set_limits(PID, LimitsUpdate(spend_cap_usd=Decimal("0.0003"), spend_cap_period="day"))
    assert isinstance(await limits.reserve(ask(bill_micros=150)), Admission)
    refusal = await limits.reserve(ask(bill_micros=51))
    assert isinstance(refusal, Refusal) and refusal.used == 100 and refusal.reserved == 150
    [scope] = view.limits
    assert scope.environment is None and scope.spend_cap_usd == Decimal("0.0003")
    assert scope.usage.period_resets_in_seconds == 12 * 3600
    usage = (await limits.describe(PID)).limits[0].usage
    assert (usage.spent_usd, usage.reserved_usd) == (Decimal("0.0001"), Decimal("0.00015"))


async def test_limits_of_an_unknown_project_are_not_found(db: Backend) -> None:
    limits = limits_over(db)
    with pytest.raises(NotFoundError):
        await limits.set_limits("prj_nope", LimitsUpdate(rpm_limit=1))
    with pytest.raises(NotFoundError):
        await limits.describe("prj_nope")
    await put(limits, rpm_limit=5)
    await put(limits)  # all null: unlimited again
    assert (await limits.describe(PID)).limits == []
    with pytest.raises(ValueError, match="go together"):
        LimitsUpdate(spend_cap_usd=Decimal("1"))


# -- Redis outages ---------------------------------------------------------------------------------


def _fallbacks(outcome: str) -> float:
    return REGISTRY.get_sample_value("adaptive_limits_store_fallbacks_total", {"outcome": outcome}) or 0.0


@pytest.mark.redis
async def test_redis_down_counts_in_the_database_then_reseeds_redis_when_it_is_back(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    b = make_backend(request, tmp_path, "redis")
    live = b.stores.redis
    assert live is not None
    b.stores.redis = RedisCounterStore("redis://127.0.0.1:1/0", prefix=b.prefix, timeout=0.2)  # nothing listens
    b.stores.retry_seconds = 0.0
    limits = limits_over(b)
    await put(limits, spend_cap_usd=Decimal("0.001"), spend_cap_period="day")
    before = _fallbacks("database")
    admission = await limits.reserve(ask(bill_micros=400))
    assert isinstance(admission, Admission) and admission.store == "database"
    assert _fallbacks("database") > before
    await limits.settle(admission, Actual(bill_micros=400))
    Ledger(b.engine).write_now([row("2026-11-27", overhead=400)])

    b.stores.redis = live  # Redis answers again: its counters miss what the database counted
    admission = await limits.reserve(ask(bill_micros=500))
    assert isinstance(admission, Admission) and admission.store == "redis"
    refusal = await limits.reserve(ask(bill_micros=200))
    assert isinstance(refusal, Refusal) and refusal.used == 400  # seeded from the ledger
    await b.stores.close()
    b.engine.dispose()


async def test_redis_down_with_refuse_refuses_limited_requests(db: Backend) -> None:
    db.stores.redis = RedisCounterStore("redis://127.0.0.1:1/0", timeout=0.2)
    db.stores.fallback = "refuse"
    limits = limits_over(db)
    await put(limits, rpm_limit=100)
    with pytest.raises(LimitsUnavailableError) as info:
        await limits.reserve(ask())
    assert info.value.status_code == 503 and info.value.code == "limits_unavailable"
    assert info.value.headers["retry-after"]
    assert await limits.reserve(ask(project_id="prj_other")) is None  # unlimited projects never need Redis


def test_the_sql_store_speaks_both_dialects(db: Backend) -> None:
    assert "%(key)s" not in SqlCounterStore(db.engine)._sql["select"]
    store = SqlCounterStore.__new__(SqlCounterStore)
    assert isinstance(store, SqlCounterStore)
    assert isinstance(CounterStores(SqlCounterStore(db.engine)).active(), str)


@pytest.mark.parametrize("store", ["postgresql", "redis"])
async def test_the_largest_limits_fit_the_columns_and_counters(store: str, request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    b = make_backend(request, tmp_path, store)
    limits = limits_over(b)
    await put(limits, spend_cap_usd=Decimal("99999999.999999"), spend_cap_period="month", rpm_limit=100_000_000,
              tpm_limit=100_000_000_000)
    [scope] = (await limits.describe(PID)).limits
    assert (scope.rpm_limit, scope.tpm_limit) == (100_000_000, 100_000_000_000)
    admission = await limits.reserve(ask(bill_micros=90_000_000_000_000, tokens=99_000_000_000))
    assert isinstance(admission, Admission)
    await limits.settle(admission, Actual(bill_micros=90_000_000_000_000, tokens=99_000_000_000))
    usage = (await limits.describe(PID)).limits[0].usage
    assert usage.spent_usd == Decimal("90000000") and usage.tokens_this_minute == 99_000_000_000
    await b.stores.close()
    b.engine.dispose()

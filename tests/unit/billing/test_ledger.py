"""The batched usage ledger: nothing queued is lost on close, nothing is billed twice."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from adaptive_plugin.billing import GROUP_FIELDS, FeeRates, Ledger, Usage, compute_fee, micros_to_usd
from adaptive_plugin.db import make_engine, migrate
from adaptive_plugin.db.tables_billing import UsageRow

DAY = "2026-01-15"


def row(rid: str, **kw: Any) -> UsageRow:
    kw.setdefault("day", DAY)
    kw.setdefault("project_id", "prj_a")
    kw.setdefault("environment", "production")
    return UsageRow(request_id=rid, **kw)


def count(ledger: Ledger, **kw: Any) -> int:
    return len(ledger.requests(limit=100_000, **kw))


def test_close_without_start_writes_everything_queued(engine: Engine) -> None:
    ledger = Ledger(engine)
    for i in range(25):
        ledger.record(row(f"r{i}"))
    ledger.close()
    assert count(ledger) == 25


def test_close_with_background_thread_writes_everything_queued(engine: Engine) -> None:
    ledger = Ledger(engine, flush_seconds=60, batch_size=7)  # the timer never fires: close() must flush
    ledger.start()
    for i in range(100):
        ledger.record(row(f"r{i}"))
    ledger.close()
    assert count(ledger) == 100
    assert ledger.written == 100


def test_background_thread_writes_batches_without_close(engine: Engine) -> None:
    ledger = Ledger(engine, flush_seconds=0.02, batch_size=10)
    ledger.start()
    try:
        for i in range(35):
            ledger.record(row(f"r{i}"))
        deadline = time.monotonic() + 5
        while ledger.written < 35 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert count(ledger) == 35
    finally:
        ledger.close()


def test_flush_writes_and_keeps_running(engine: Engine) -> None:
    ledger = Ledger(engine, flush_seconds=60)
    ledger.start()
    ledger.record(row("r1"))
    ledger.flush()
    assert count(ledger) == 1
    ledger.record(row("r2"))
    ledger.close()
    assert count(ledger) == 2


def test_rows_are_idempotent_by_request_id(any_engine: Engine) -> None:
    ledger = Ledger(any_engine)
    ledger.record(row("same", overhead_fee_micros=100))
    ledger.record(row("same", overhead_fee_micros=100))
    ledger.close()
    ledger.write_now([row("same", overhead_fee_micros=100).model_dump()])  # a retried batch
    rows = ledger.requests()
    assert len(rows) == 1
    assert ledger.totals()[0]["overhead_fee_micros"] == 100


def test_a_batch_is_one_insert_statement(engine: Engine) -> None:
    """The writer thread calls into SQLite once per batch, not once per row: beside a busy event
    loop it waits for the GIL after each call (20 rows took 0.1-0.4 s that way on the 2-core
    machine, which broke the crash bound)."""
    inserts: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", seen)
    ledger = Ledger(engine)
    ledger.write_now([row(f"r{i}").model_dump() for i in range(40)])
    ledger.write_now([row("r0").model_dump()])  # a retried row: skipped, not an error
    columns = len(UsageRow.__table__.columns) - 1  # type: ignore[attr-defined]  # all but the id
    assert [len(params) for _, params in inserts] == [40 * columns, columns]
    assert count(ledger) == 40


def test_slow_writes_make_the_next_batch_start_sooner(engine: Engine) -> None:
    """A batch gathers rows for half the flush interval, less after slow writes, so that its rows
    still commit within the interval; the commit lag is exported for operators."""
    ledger = Ledger(engine, flush_seconds=0.5)
    assert ledger.gather_seconds() == pytest.approx(0.25)
    real = ledger.write_now
    lag = "adaptive_billing_ledger_commit_lag_seconds"
    before = (REGISTRY.get_sample_value(f"{lag}_count") or 0.0, REGISTRY.get_sample_value(f"{lag}_sum") or 0.0)

    def slow(rows: Any) -> None:
        time.sleep(0.15)
        real(rows)

    def one_batch(rid: str) -> None:
        written = ledger.written
        ledger.record(row(rid))
        deadline = time.monotonic() + 5
        while ledger.written == written and time.monotonic() < deadline:
            time.sleep(0.005)
        assert ledger.written == written + 1

    ledger.write_now = slow  # type: ignore[method-assign]
    ledger.start()
    try:
        one_batch("slow")
        after_slow = ledger.gather_seconds()
        assert after_slow <= 0.5 - 2 * 0.15 + 1e-9  # the write took 0.15 s or more
        after = (REGISTRY.get_sample_value(f"{lag}_count"), REGISTRY.get_sample_value(f"{lag}_sum"))
        assert after[0] == before[0] + 1
        assert after[1] - before[1] >= 0.25 + 0.15 - 0.01  # gathered, then the write (timer granularity)
        ledger.write_now = real  # type: ignore[method-assign]
        for i in range(8):  # the slow write leaves the window of the last 8
            one_batch(f"fast{i}")
        assert ledger.gather_seconds() > after_slow
    finally:
        ledger.close()
    assert count(ledger) == 9


def test_failed_batch_is_retried_not_lost(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'late.db'}")  # not migrated yet: writes fail
    try:
        ledger = Ledger(eng, flush_seconds=0.02)
        ledger.start()
        ledger.record(row("r1"))
        deadline = time.monotonic() + 5
        while ledger.failed_batches == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.failed_batches >= 1
        migrate(eng)
        ledger.close()
        assert [r["request_id"] for r in ledger.requests()] == ["r1"]
    finally:
        eng.dispose()


def test_totals_equal_the_sum_of_rows_exactly(engine: Engine) -> None:
    rates = FeeRates()
    ledger = Ledger(engine)
    expected_overhead = expected_cost = 0
    for i in range(2000):
        usage = Usage(input_tokens=13 + i % 7, output_tokens=3 + i % 5, cached_tokens=i % 3)
        pooled = i % 2 == 0
        fee = compute_fee(usage, key_source="pooled" if pooled else "byok", cache="hit-semantic" if i % 10 == 0 else "miss",
                          rates=rates, model_cost_usd=0.0000013 * (1 + i % 4) if pooled else None)
        expected_overhead += fee.overhead_micros
        expected_cost += fee.model_cost_micros
        ledger.record(row(f"r{i}", input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                          cached_tokens=usage.cached_tokens, overhead_fee_micros=fee.overhead_micros,
                          model_cost_micros=fee.model_cost_micros))
    ledger.close()
    [total] = ledger.totals()
    assert total["requests"] == 2000
    assert total["overhead_fee_micros"] == expected_overhead
    assert total["model_cost_micros"] == expected_cost
    assert Decimal(total["overhead_fee_usd"]) == micros_to_usd(expected_overhead)
    assert Decimal(total["total_usd"]) == micros_to_usd(expected_overhead + expected_cost)
    by_source = ledger.totals(group_by=["key_source"])
    assert sum(t["overhead_fee_micros"] for t in by_source) == expected_overhead


def test_totals_group_filter_and_skip_errors(engine: Engine) -> None:
    ledger = Ledger(engine)
    ledger.record(row("a1", day="2026-01-01", provider="openai", overhead_fee_micros=10, input_tokens=100))
    ledger.record(row("a2", day="2026-01-02", provider="anthropic", overhead_fee_micros=20, model_cost_micros=5))
    ledger.record(row("a3", day="2026-01-03", provider="openai", overhead_fee_micros=40))
    ledger.record(row("a4", day="2026-01-02", provider="openai", outcome="error", status_code=502, overhead_fee_micros=999))
    ledger.record(row("b1", project_id="prj_b", day="2026-01-02", overhead_fee_micros=1000))
    ledger.close()

    assert [(t["project_id"], t["requests"], t["overhead_fee_micros"]) for t in ledger.totals()] == [
        ("prj_a", 3, 70), ("prj_b", 1, 1000)
    ]
    by_provider = ledger.totals(group_by=["provider"], project_id="prj_a")
    assert [(t["provider"], t["overhead_fee_micros"], t["model_cost_micros"]) for t in by_provider] == [
        ("anthropic", 20, 5), ("openai", 50, 0)
    ]
    window = ledger.totals(group_by=["day"], project_id="prj_a", since_day="2026-01-02", until_day="2026-01-02")
    assert [(t["day"], t["requests"], t["total_usd"]) for t in window] == [("2026-01-02", 1, "0.000025")]
    assert ledger.totals(group_by=[])[0]["requests"] == 4


def test_totals_of_empty_ledger(engine: Engine) -> None:
    assert Ledger(engine).totals() == []


def test_totals_refuses_unknown_group_field(engine: Engine) -> None:
    with pytest.raises(ValueError, match="cannot group by 'key_id'") as info:
        Ledger(engine).totals(group_by=["project_id", "key_id"])
    for name in GROUP_FIELDS:
        assert name in str(info.value)


def test_requests_newest_first_paged_and_filtered(engine: Engine) -> None:
    ledger = Ledger(engine)
    for i in range(5):
        ledger.record(row(f"r{i}", project_id="prj_a" if i % 2 == 0 else "prj_b"))
    ledger.close()
    assert [r["request_id"] for r in ledger.requests()] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r["request_id"] for r in ledger.requests(limit=2, offset=1)] == ["r3", "r2"]
    assert [r["request_id"] for r in ledger.requests(project_id="prj_b")] == ["r3", "r1"]


def test_request_log_filters_by_column_and_time(any_engine: Engine) -> None:
    t0 = datetime(2026, 1, 15, 10, 0, tzinfo=timezone.utc)
    ledger = Ledger(any_engine)
    ledger.write_now([
        row("a", ts=t0, provider="openai", key_source="byok", cache="miss", environment="production").model_dump(),
        row("b", ts=t0 + timedelta(hours=1), provider="anthropic", key_source="pooled", cache="miss").model_dump(),
        row("c", ts=t0 + timedelta(hours=2), provider="", key_source="cache", cache="hit-semantic",
            environment="dev").model_dump(),
        row("d", ts=t0 + timedelta(hours=3), provider="openai", key_source="byok", project_id="prj_other").model_dump(),
    ])

    def ids(**kw: Any) -> list[str]:
        return [r["request_id"] for r in ledger.requests(project_id="prj_a", **kw)]

    assert ids() == ["c", "b", "a"]
    assert ids(provider="openai") == ["a"]
    assert ids(key_source="pooled") == ["b"]
    assert ids(cache="hit-semantic") == ["c"] == ids(environment="dev")
    assert ids(since=t0 + timedelta(minutes=30)) == ["c", "b"]
    assert ids(until=t0 + timedelta(hours=1)) == ["a"]  # exclusive
    assert ids(since=t0, until=t0 + timedelta(hours=2), key_source="byok") == ["a"]
    for r in ledger.requests():
        assert r["ts"].tzinfo is not None  # SQLite gives naive datetimes back; rows say UTC


def test_request_log_refuses_bad_filters(engine: Engine) -> None:
    ledger = Ledger(engine)
    with pytest.raises(ValueError, match="limit must be between 1 and 100000"):
        ledger.requests(limit=-1)
    with pytest.raises(ValueError, match="key_source must be one of"):
        ledger.requests(key_source="mine")
    with pytest.raises(ValueError, match="cannot filter the request log by 'model'"):
        ledger.requests(model="x")
    with pytest.raises(ValueError, match="since needs a timezone"):
        ledger.requests(since=datetime(2026, 1, 1))


@pytest.mark.parametrize("day", ["yesterday", "2026-13-45", "2026-02-30", "20260101", "2026-1-1"])
def test_totals_refuse_a_day_that_is_not_a_date(engine: Engine, day: str) -> None:
    with pytest.raises(ValueError, match="since"):
        Ledger(engine).totals(since_day=day)
    with pytest.raises(ValueError, match="until"):
        Ledger(engine).totals(until_day=day)


def test_totals_by_key_fingerprint_and_environment(engine: Engine) -> None:
    ledger = Ledger(engine)
    ledger.write_now([
        row("a", key_fingerprint="fp1", overhead_fee_micros=10, environment="production").model_dump(),
        row("b", key_fingerprint="fp1", overhead_fee_micros=5, environment="dev").model_dump(),
        row("c", key_fingerprint=None, overhead_fee_micros=7, model_cost_micros=100, key_source="pooled").model_dump(),
    ])
    by_key = {r["key_fingerprint"]: r["overhead_fee_micros"] for r in ledger.totals(group_by=["key_fingerprint"])}
    assert by_key == {None: 7, "fp1": 15}
    assert ledger.totals(group_by=[], environment="production")[0]["overhead_fee_micros"] == 17
    with pytest.raises(ValueError, match="before since"):
        ledger.totals(since_day="2026-02-01", until_day="2026-01-01")


def test_last_used_is_the_latest_row_of_each_key(engine: Engine) -> None:
    t0 = datetime(2026, 1, 15, 10, 0, tzinfo=timezone.utc)
    ledger = Ledger(engine)
    ledger.write_now([row("a", key_id="pk_1", ts=t0).model_dump(),
                      row("b", key_id="pk_1", ts=t0 + timedelta(minutes=5), outcome="error").model_dump(),
                      row("c", key_id="pk_2", ts=t0).model_dump()])
    assert ledger.last_used(["pk_1", "pk_2", "pk_3"]) == {"pk_1": t0 + timedelta(minutes=5), "pk_2": t0}
    assert ledger.last_used([]) == {}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    """The SQLite engine, or PostgreSQL (what replicas share) on a schema of this test's own."""
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


def test_paging_by_id_returns_each_row_once_while_rows_keep_arriving(any_engine: Engine) -> None:
    ledger = Ledger(any_engine)
    ledger.write_now([row(f"old{i}").model_dump() for i in range(7)])
    walked: list[str] = []
    before = None
    for page in range(10):
        batch = ledger.requests(limit=3, before_id=before)
        walked += [r["request_id"] for r in batch]
        ledger.write_now([row(f"new{page}").model_dump()])  # traffic goes on
        if len(batch) < 3:
            break
        before = batch[-1]["id"]
    assert walked == [f"old{i}" for i in reversed(range(7))]  # offset pages would repeat rows here


def test_provider_spend_counts_this_period_on_that_key_only(engine: Engine) -> None:
    now = datetime.now(timezone.utc)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    before_today = today - timedelta(seconds=1)  # this month unless today is the 1st
    last_month = month - timedelta(days=1)
    ledger = Ledger(engine)
    ledger.record(row("t1", key_id="pk_1", provider_cost_micros=100, ts=now))
    ledger.record(row("t2", key_id="pk_1", provider_cost_micros=30, ts=now, outcome="error"))
    ledger.record(row("t3", key_id="pk_2", provider_cost_micros=1000, ts=now))
    ledger.record(row("y1", key_id="pk_1", provider_cost_micros=7, ts=before_today))
    ledger.record(row("m1", key_id="pk_1", provider_cost_micros=50_000, ts=last_month))
    ledger.close()
    assert ledger.provider_spend_micros("pk_1", "day") == 100
    assert ledger.provider_spend_micros("pk_1", "month") == 100 + (7 if before_today >= month else 0)
    assert ledger.provider_spend_micros("pk_unknown", "month") == 0

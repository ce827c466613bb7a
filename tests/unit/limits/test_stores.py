"""Counter stores on SQLite, PostgreSQL and Redis: all-or-nothing reservations, seeding, settling,
windows, and no overshoot when many tasks, threads or processes race on one cap."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import secrets
import time

import pytest

from adaptive_plugin.db import make_engine
from adaptive_plugin.limits import CounterStores, RedisCounterStore, SqlCounterStore
from adaptive_plugin.limits._results import Missing, Refused, Reserved
from tests.unit.limits.conftest import PROJECT, Backend, spend, window


async def reserve(stores: CounterStores, *charges, hold: str | None = None, hold_seconds: float = 60.0):  # type: ignore[no-untyped-def]
    _, result = await stores.reserve(PROJECT, hold or secrets.token_hex(8), list(charges), hold_seconds=hold_seconds)
    return result


async def seeded(b: Backend, charge, used: int = 0) -> None:  # type: ignore[no-untyped-def]
    name, result = await b.stores.reserve(PROJECT, "probe", [charge], hold_seconds=60)
    assert isinstance(result, Missing)
    await b.stores.seed(name, PROJECT, charge, used)


async def test_a_new_spending_counter_is_seeded_then_counts_from_its_seed(backend: Backend) -> None:
    c = spend(limit=1000, amount=300)
    assert await reserve(backend.stores, c) == Missing(0)
    await backend.stores.seed(backend.stores.active(), PROJECT, c, 200)
    assert isinstance(await reserve(backend.stores, c), Reserved)
    assert isinstance(await reserve(backend.stores, c), Reserved)  # 200 + 600 <= 1000
    refused = await reserve(backend.stores, c)
    assert refused == Refused(0, used=200, reserved=600)
    values = await backend.stores.read(PROJECT, [c.counter])
    assert (values[c.counter].used, values[c.counter].reserved) == (200, 600)


async def test_a_reservation_is_all_or_nothing(backend: Backend) -> None:
    money, rpm = spend(limit=1000, amount=100), window(limit=1)
    await seeded(backend, money)
    assert isinstance(await reserve(backend.stores, money, rpm), Reserved)
    refused = await reserve(backend.stores, money, rpm)
    assert isinstance(refused, Refused) and refused.index == 1 and refused.used == 1
    assert 0 < refused.window_left <= 60
    values = await backend.stores.read(PROJECT, [money.counter, rpm.counter])
    assert values[money.counter].reserved == 100  # the refused reservation's spend was not counted
    assert values[rpm.counter].used == 1


async def test_finishing_drops_the_hold_and_adds_what_was_spent(backend: Backend) -> None:
    c = spend(limit=1000, amount=300)
    await seeded(backend, c, used=50)
    assert isinstance(await reserve(backend.stores, c, hold="h1"), Reserved)
    assert isinstance(await reserve(backend.stores, c, hold="h2"), Reserved)
    store = backend.stores.active()
    await backend.stores.finish(store, PROJECT, "h1", held=[c.counter], adds=[(c.counter, 120)], windows=[])
    values = await backend.stores.read(PROJECT, [c.counter])
    assert (values[c.counter].used, values[c.counter].reserved) == (170, 300)
    await backend.stores.finish(store, PROJECT, "h1", held=[c.counter], adds=[], windows=[])  # no hold left: no change
    await backend.stores.finish(store, PROJECT, "h2", held=[c.counter], adds=[], windows=[])  # released
    values = await backend.stores.read(PROJECT, [c.counter])
    assert (values[c.counter].used, values[c.counter].reserved) == (170, 0)


async def test_an_addition_to_a_counter_not_seeded_yet_is_left_to_the_ledger(backend: Backend) -> None:
    c = spend(limit=1000, amount=10)
    await backend.stores.finish(backend.stores.active(), PROJECT, "h", held=[], adds=[(c.counter, 99)], windows=[])
    assert await backend.stores.read(PROJECT, [c.counter]) == {}
    assert await reserve(backend.stores, c) == Missing(0)


async def test_a_window_counts_up_to_its_limit_and_says_when_it_ends(backend: Backend) -> None:
    rpm = window(limit=3)
    results = [await reserve(backend.stores, rpm) for _ in range(4)]
    assert [type(r) for r in results] == [Reserved, Reserved, Reserved, Refused]
    starts = {r.window_starts[rpm.counter] for r in results[:3]}  # type: ignore[union-attr]
    assert len(starts) == 1, "one window"
    assert results[3].used == 3 and 0 < results[3].window_left <= 60  # type: ignore[union-attr]


async def test_a_window_adjustment_applies_only_to_its_own_window(backend: Backend) -> None:
    tpm = window(limit=100, amount=60, what="tpm")
    result = await reserve(backend.stores, tpm)
    assert isinstance(result, Reserved)
    start = result.window_starts[tpm.counter]
    store = backend.stores.active()
    await backend.stores.finish(store, PROJECT, "x", held=[], adds=[], windows=[(tpm.counter, start, -40)])
    await backend.stores.finish(store, PROJECT, "x", held=[], adds=[], windows=[(tpm.counter, "12.5", -20)])
    assert (await backend.stores.read(PROJECT, [tpm.counter]))[tpm.counter].used == 20
    await backend.stores.finish(store, PROJECT, "x", held=[], adds=[], windows=[(tpm.counter, start, -500)])
    assert (await backend.stores.read(PROJECT, [tpm.counter]))[tpm.counter].used == 0  # never below zero


async def test_a_counter_seeded_before_a_store_switch_is_seeded_again_keeping_live_holds(backend: Backend) -> None:
    c = spend(limit=1000, amount=50)
    await seeded(backend, c, used=100)
    assert isinstance(await reserve(backend.stores, c), Reserved)
    backend.stores.fresh_after = time.time() + 0.001  # as when this process switches store
    time.sleep(0.01)
    assert await reserve(backend.stores, c) == Missing(0)
    await backend.stores.seed(backend.stores.active(), PROJECT, c, 400)
    values = await backend.stores.read(PROJECT, [c.counter])
    assert (values[c.counter].used, values[c.counter].reserved) == (400, 50)


async def test_reset_forgets_counters(backend: Backend) -> None:
    c, rpm = spend(limit=1000, amount=50), window(limit=1)
    await seeded(backend, c)
    assert isinstance(await reserve(backend.stores, c, rpm), Reserved)
    await backend.stores.reset(PROJECT, [c.counter, rpm.counter])
    assert await backend.stores.read(PROJECT, [c.counter, rpm.counter]) == {}
    assert await reserve(backend.stores, c, rpm) == Missing(0)


async def test_expired_holds_stop_counting(backend: Backend) -> None:
    c = spend(limit=100, amount=100)
    await seeded(backend, c)
    assert isinstance(await reserve(backend.stores, c, hold_seconds=0.05), Reserved)  # its worker "died"
    assert isinstance(await reserve(backend.stores, c), Refused)
    await asyncio.sleep(0.1)
    if backend.name != "redis":
        assert backend.stores.sql.sweep() == 1  # every process sweeps the database every 30 s
    assert isinstance(await reserve(backend.stores, c), Reserved)


async def test_concurrent_reservations_never_overshoot(backend: Backend) -> None:
    """200 reservations at once (database: on the thread pool, each its own transaction)."""
    c = spend(limit=1000, amount=7)
    await seeded(backend, c)
    results = await asyncio.gather(*(reserve(backend.stores, c) for _ in range(200)))
    admitted = sum(isinstance(r, Reserved) for r in results)
    assert admitted == 1000 // 7
    assert all(isinstance(r, Reserved | Refused) for r in results)
    values = await backend.stores.read(PROJECT, [c.counter])
    assert values[c.counter].reserved == admitted * 7 <= 1000


# -- processes racing on one cap --------------------------------------------------------------


def _race(kind: str, url: str, prefix: str, cap: int, attempts: int, seed: int) -> tuple[int, int]:
    """One process: reserve, then settle to a real amount at most the reservation, `attempts` times.
    Returns (admitted, micro-dollars settled)."""
    rng = random.Random(seed)

    async def run() -> tuple[int, int]:
        if kind == "redis":
            stores = CounterStores(SqlCounterStore(make_engine("sqlite://")), RedisCounterStore(url, prefix=prefix))
        else:
            stores = CounterStores(SqlCounterStore(make_engine(url)))
        admitted = settled = 0
        for _ in range(attempts):
            amount = rng.randint(5, 40)
            c = spend(limit=cap, amount=amount)
            hold = secrets.token_hex(8)
            store, result = await stores.reserve(PROJECT, hold, [c], hold_seconds=60)
            if isinstance(result, Reserved):
                real = rng.randint(0, amount)
                await stores.finish(store, PROJECT, hold, held=[c.counter], adds=[(c.counter, real)], windows=[])
                admitted += 1
                settled += real
        await stores.close()
        return admitted, settled

    return asyncio.run(run())


async def test_processes_racing_on_one_cap_never_overshoot(backend: Backend) -> None:
    cap = 1500
    c = spend(limit=cap, amount=1)
    await seeded(backend, c)
    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with ctx.Pool(4) as pool:
        jobs = [pool.apply_async(_race, (backend.name, backend.url, backend.prefix, cap, 60, i)) for i in range(4)]
        outcomes = await loop.run_in_executor(None, lambda: [j.get(timeout=300) for j in jobs])
    admitted = sum(a for a, _ in outcomes)
    settled = sum(s for _, s in outcomes)
    values = await backend.stores.read(PROJECT, [c.counter])
    assert values[c.counter].reserved == 0
    assert values[c.counter].used == settled <= cap, "0 overshoot"
    assert admitted < 4 * 60, "the cap refused some attempts"
    assert settled > cap // 3, "and was used"


@pytest.mark.parametrize("kind", ["sqlite"])
def test_sql_store_refuses_to_write_when_the_transaction_fails(kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A failing statement rolls the whole reservation back (no half-counted charges)."""
    from tests.unit.limits.conftest import sqlite_engine

    _, engine = sqlite_engine(tmp_path)
    store = SqlCounterStore(engine)
    good = spend(limit=100, amount=10)
    store.seed(good, 0, fresh_after=0)
    store._sql["hold_insert"] = "INSERT INTO nowhere VALUES (:hold)"  # the last step fails
    with pytest.raises(Exception, match="nowhere"):
        store.reserve("h", [good], hold_seconds=60, fresh_after=0)
    assert store.read([good.counter])[good.counter].reserved == 0

"""What a limit reservation adds to a request: SQLite, PostgreSQL and Redis, against the limits off.

    python bench/limits.py [--n 2000] [--rounds 10] [--postgres-url URL] [--redis-url URL]

Runs the plugin's own per-request limit path (`adapters.limits.choose_key` before the provider
call, `adapters.limits.settle` after the response) on a real PluginContext, one request after
another on one event loop, for a pooled request of a project with limits:

- `off`: `ADAPTIVE_LIMITS_ENABLED=false` (the key choice alone: what every request pays anyway);
- `project`: a project spending cap and rpm limit (2 counters);
- `all scopes`: a BYOK key with cap and rpm, project cap, rpm and tpm, environment cap (7 counters).

Variants are interleaved in rounds so that machine noise falls on all of them. Reported per
request: p50 / p95 of the key choice (what the client waits for), of the settlement (after the
response; event-loop time, not latency) and the reservation's added p50 / p95 (choice with
limits minus choice without), beside the p50 of one bare round trip to the store (Redis PING,
database `SELECT 1` on the thread pool) measured in the same run: on a loaded machine the wait
for the Redis or PostgreSQL server's turn on a CPU dominates. Targets: added p50 < 0.5 ms on
SQLite, < 1 ms with Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cpu_speed_ms, machine_note  # noqa: E402

PROMPT = ("Summarise in three sentences why the sky looks blue at noon and red at sunset, for a curious "
          "ten-year-old who likes physics and has just learned what a wavelength is.")


def build_context(database_url: str, redis_url: str | None, state: Path, *, enabled: bool) -> Any:
    from adaptive_plugin.config import Settings
    from adaptive_plugin.context import PluginContext

    env = {"ADAPTIVE_MASTER_KEYS": Settings.generate_master_key(), "ADAPTIVE_STATE_DIR": str(state),
           "ADAPTIVE_DATABASE_URL": database_url, "ADAPTIVE_CACHE_ENABLED": "false",
           "ADAPTIVE_ROUTING_USE_EMBEDDING": "false", "ADAPTIVE_LIMITS_ENABLED": str(enabled).lower(),
           "ADAPTIVE_LIMITS_REDIS_PREFIX": f"bench:limits:{secrets.token_hex(4)}:"}
    if redis_url:
        env["ADAPTIVE_REDIS_URL"] = redis_url
    return PluginContext.build(Settings.from_env(env), with_embedder=False)


async def setup_projects(ctx: Any) -> dict[str, Any]:
    """A developer project (pooled) and a team project (own key), each with its limits."""
    from adaptive_plugin.keys import ProjectCreate, ProviderKeyCreate
    from adaptive_plugin.limits import LimitsUpdate

    out = {}
    for name, plan in (("project", "developer"), ("all scopes", "team")):
        p = ctx.keys.create_project(ProjectCreate(name=f"bench-{secrets.token_hex(3)}", plan=plan))
        api = ctx.keys.create_api_key(p.id, "production")
        if ctx.limits is not None:
            await ctx.limits.set_limits(p.id, LimitsUpdate(spend_cap_usd=Decimal("100000"), spend_cap_period="day",
                                                           rpm_limit=100_000_000,
                                                           tpm_limit=10**10 if plan == "team" else None))
            if plan == "team":
                await ctx.limits.set_limits(p.id, LimitsUpdate(environment="production", spend_cap_usd=Decimal("100000"),
                                                               spend_cap_period="month"))
        if plan == "team":
            ctx.keys.add_provider_key(p.id, ProviderKeyCreate(
                environment="production", provider="openai", api_key="sk-bench-" + secrets.token_hex(12),
                spend_cap_usd=Decimal("100000"), spend_cap_period="day", rpm_limit=1_000_000))
        out[name] = ctx.principals.get(api.api_key)
    return out


async def one_request(hooks: Any, principal: Any, info: Any, kwargs: dict[str, Any]) -> tuple[float, float]:
    """(seconds choosing the key, seconds settling) of one request."""
    from adaptive_plugin.adapters import limits as glue
    from adaptive_plugin.adapters.state import RequestState
    from adaptive_plugin.billing import Usage, compute_fee

    state = RequestState(rid=secrets.token_hex(12), principal=principal)
    started = time.perf_counter()
    choice = await glue.choose_key(hooks, state, kwargs, info, "openai", pooled=True)
    chosen = time.perf_counter()
    usage = Usage(input_tokens=45, output_tokens=60)
    fee = compute_fee(usage, key_source=choice.source, cache="miss", rates=hooks.ctx.fee_rates, model_cost_usd="0.0000427")
    await glue.settle(hooks, state, usage=usage, fee=fee, response_cost="0.0000427")
    return chosen - started, time.perf_counter() - chosen


async def round_trip_floor(database_url: str, redis_url: str | None, n: int = 300) -> float:
    """p50 ms of the cheapest round trip to the store on this machine now (Redis PING, or a
    `SELECT 1` on the thread pool): the part of a reservation the CPU's load decides."""
    if redis_url:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            await client.ping()
            samples.append(time.perf_counter() - started)
        await client.aclose()
        return pct(samples, 0.5)
    from adaptive_plugin.db import make_engine

    engine = make_engine(database_url)
    conn = engine.raw_connection()

    def select_one() -> None:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        conn.commit()

    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await asyncio.to_thread(select_one)
        samples.append(time.perf_counter() - started)
    conn.close()
    engine.dispose()
    return pct(samples, 0.5)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bench_store(name: str, database_url: str, redis_url: str | None, *, n: int, rounds: int) -> dict[str, Any]:
    from adaptive_plugin.adapters.deployments import describe

    info = describe({"model_name": "gpt-4o-mini", "model_info": {"id": "bench"},
                     "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-pooled"}})
    kwargs = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 256, "model_info": {"id": "bench"}}
    with tempfile.TemporaryDirectory() as tmp:
        on_ctx = build_context(database_url, redis_url, Path(tmp) / "on", enabled=True)
        off_ctx = build_context(database_url, None, Path(tmp) / "off", enabled=False)
        principals = await setup_projects(on_ctx)
        variants: dict[str, tuple[Any, Any]] = {
            "off": (SimpleNamespace(ctx=off_ctx, settings=off_ctx.settings), principals["project"]),
            "project": (SimpleNamespace(ctx=on_ctx, settings=on_ctx.settings), principals["project"]),
            "all scopes": (SimpleNamespace(ctx=on_ctx, settings=on_ctx.settings), principals["all scopes"]),
        }
        times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in variants}
        for hooks, principal in variants.values():  # warm up: caches, prepared statements, scripts
            for _ in range(50):
                await one_request(hooks, principal, info, kwargs)
        for _ in range(rounds):
            for label, (hooks, principal) in variants.items():
                for _ in range(n // rounds):
                    choose, settle = await one_request(hooks, principal, info, kwargs)
                    times[label][0].append(choose)
                    times[label][1].append(settle)
        floor = await round_trip_floor(database_url, redis_url)
        if on_ctx.limits is not None:
            await on_ctx.limits.close()
        on_ctx.close()
        off_ctx.close()
    off = times["off"][0]
    out: dict[str, Any] = {"store": name, "floor": floor}
    for label in ("project", "all scopes"):
        choose, settle = times[label]
        out[label] = {
            "choose_p50": pct(choose, 0.5), "choose_p95": pct(choose, 0.95),
            "settle_p50": pct(settle, 0.5), "settle_p95": pct(settle, 0.95),
            "added_p50": pct(choose, 0.5) - pct(off, 0.5), "added_p95": pct(choose, 0.95) - pct(off, 0.95),
        }
    out["off"] = {"choose_p50": pct(off, 0.5), "choose_p95": pct(off, 0.95)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="requests per variant and store")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    from tests.conftest import postgres_schema

    print(f"machine: {machine_note()}; CPU speed figure {cpu_speed_ms():.0f} ms")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(asyncio.run(bench_store("SQLite", f"sqlite:///{tmp}/bench.db", None, n=args.n, rounds=args.rounds)))
    with postgres_schema(args.postgres_url) as url:
        results.append(asyncio.run(bench_store("PostgreSQL", url, None, n=args.n, rounds=args.rounds)))
    with tempfile.TemporaryDirectory() as tmp:
        results.append(asyncio.run(bench_store("Redis", f"sqlite:///{tmp}/bench.db", args.redis_url, n=args.n,
                                               rounds=args.rounds)))
    print(f"after: {machine_note()}")
    print()
    print("| store | limits | key choice p50 / p95 (ms) | added p50 / p95 (ms) | settle p50 / p95 (ms) |")
    print("|---|---|---|---|---|")
    for r in results:
        off = r["off"]
        print(f"| {r['store']} | off | {off['choose_p50']:.3f} / {off['choose_p95']:.3f} | - "
              f"(one bare round trip: {r['floor']:.3f} p50) | - |")
        for label in ("project", "all scopes"):
            v = r[label]
            print(f"| {r['store']} | {label} | {v['choose_p50']:.3f} / {v['choose_p95']:.3f} | "
                  f"**{v['added_p50']:+.3f}** / {v['added_p95']:+.3f} | {v['settle_p50']:.3f} / {v['settle_p95']:.3f} |")
    verdicts = {r["store"]: r["project"]["added_p50"] for r in results}
    print()
    print(f"targets: SQLite added p50 < 0.5 ms: {'met' if verdicts['SQLite'] < 0.5 else 'NOT met'} "
          f"({verdicts['SQLite']:.3f}); Redis < 1 ms: {'met' if verdicts['Redis'] < 1.0 else 'NOT met'} "
          f"({verdicts['Redis']:.3f})")


if __name__ == "__main__":
    main()

"""What the hot path's change-revision check costs per request, on SQLite, PostgreSQL and Redis.

    python bench/revision_check.py [--postgres URL] [--redis URL] [--n 5000]

Each request runs `ChangeFeed.ensure_current()` twice (at authentication and at its key
choice). This times the check when nothing changed (the steady state), one caller at a time
(c=1: latency) and with 16 concurrent callers on one event loop (c=16: concurrent checks share
PostgreSQL and Redis round trips), and reports both wall time and the process's CPU time per
check. A PostgreSQL schema of its own is created and dropped; Redis keys are named by that
database's random cluster id and deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from adaptive_plugin.changes import ChangeFeed  # noqa: E402
from adaptive_plugin.db import make_engine, migrate  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def _measure(feed: ChangeFeed, n: int, concurrency: int) -> dict[str, float]:
    for _ in range(200):  # warm: connections open, statements prepared
        await feed.ensure_current()
    latencies: list[float] = []

    async def one() -> None:
        t0 = time.perf_counter()
        await feed.ensure_current()
        latencies.append(time.perf_counter() - t0)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    if concurrency == 1:
        for _ in range(n):
            await one()
    else:
        for _ in range(n // concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    checks = len(latencies)
    return {
        "p50_us": statistics.median(latencies) * 1e6,
        "p95_us": _pct(latencies, 0.95) * 1e6,
        "cpu_us_per_check": cpu / checks * 1e6,
        "wall_us_per_check": wall / checks * 1e6,
    }


async def _run(label: str, feed: ChangeFeed, n: int) -> None:
    for c in (1, 16):
        r = await _measure(feed, n, c)
        print(f"| {label} | {c} | {r['p50_us']:.1f} | {r['p95_us']:.1f} | {r['cpu_us_per_check']:.1f} | "
              f"{r['wall_us_per_check']:.1f} |", flush=True)
    await feed.aclose()
    feed.close()


def _feed(engine: sa.engine.Engine, redis_url: str | None = None) -> ChangeFeed:
    return ChangeFeed(engine, lambda changes: [], redis_url=redis_url, listen=False)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| backend | concurrency | p50 µs | p95 µs | CPU µs per check | wall µs per check |")
    print("|---|---|---|---|---|---|")

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/adaptive.db")
        migrate(engine)
        await _run("SQLite", _feed(engine), args.n)
        engine.dispose()

    admin = make_engine(args.postgres)
    schema = f"bench_{secrets.token_hex(4)}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in args.postgres else "?"
        engine = make_engine(f"{args.postgres}{sep}options=-csearch_path%3D{schema}")
        migrate(engine)
        await _run("PostgreSQL", _feed(engine), args.n)
        redis_feed = _feed(engine, args.redis)
        assert redis_feed.redis is not None
        redis_feed.announce(redis_feed.revision)
        key = redis_feed.redis.key
        await _run("Redis (PostgreSQL behind)", redis_feed, args.n)
        import redis

        redis.Redis.from_url(args.redis).delete(key)
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())

"""Limit counters in the database: conditional UPDATEs in one short transaction per operation.

A reservation is all-or-nothing: every charge is an UPDATE whose WHERE clause holds only if the
charge fits (`used + reserved + amount <= limit` for a spending period; the window's count for
rpm and tpm), all in one transaction that rolls back when one does not fit.

- PostgreSQL: each conditional UPDATE takes the counter's row lock and re-checks its condition
  on the committed row (READ COMMITTED), so concurrent reservations on any number of workers
  and replicas serialise per counter; counters are always locked in key order (no deadlocks).
- SQLite: `BEGIN IMMEDIATE` takes the database's write lock first: one writer at a time across
  the workers of one node (SQLite does not serve several nodes).

Reservations commit without waiting for PostgreSQL's WAL flush (`synchronous_commit = off`,
about 0.1 ms instead of 4 ms here); settling is durable. Only a crash of the database server
can lose the last few hundred milliseconds of reservations.

Spending reservations also write a hold row with an expiry, so that a reservation whose worker
died stops counting after `hold_seconds` (`sweep()`, run by every process now and then).
Windows are one minute from their first request (as LiteLLM's parallel request limiter), timed
by each process's clock; one row per scope, reset in place when the minute is over.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from adaptive_plugin.db._engine import redact_url
from adaptive_plugin.errors import DatabaseUnavailableError
from adaptive_plugin.limits._results import CounterValue, Missing, Refused, Reserved, ReserveResult
from adaptive_plugin.limits.models import WINDOW_SECONDS, Charge

_C = "adaptive_limit_counter"
_H = "adaptive_limit_hold"

_SQL = {
    "window_update": f"""
        UPDATE {_C}
        SET used = CASE WHEN window_start <= :now - :win THEN :amount ELSE used + :amount END,
            window_start = CASE WHEN window_start <= :now - :win THEN :now ELSE window_start END,
            expires_at = :expires
        WHERE key = :key AND (window_start <= :now - :win OR used + :amount <= :limit)
        RETURNING used, window_start""",
    "window_insert": f"""
        INSERT INTO {_C} (key, used, reserved, window_start, seeded_at, expires_at)
        VALUES (:key, :amount, 0, :now, :now, :expires) ON CONFLICT (key) DO NOTHING""",
    "spend_update": f"""
        UPDATE {_C} SET reserved = reserved + :amount, expires_at = :expires
        WHERE key = :key AND seeded_at >= :fresh AND used + reserved + :amount <= :limit
        RETURNING used, reserved""",
    "select": f"SELECT used, reserved, window_start, seeded_at FROM {_C} WHERE key = :key",
    "seed": f"""
        INSERT INTO {_C} (key, used, reserved, window_start, seeded_at, expires_at)
        VALUES (:key, :used, (SELECT COALESCE(SUM(amount), 0) FROM {_H} WHERE counter = :counter AND expires_at > :now),
                0, :now, :expires)
        ON CONFLICT (key) DO UPDATE SET used = excluded.used, reserved = excluded.reserved,
            seeded_at = excluded.seeded_at, expires_at = excluded.expires_at
        WHERE {_C}.seeded_at < :fresh""",
    "hold_insert": f"INSERT INTO {_H} (hold_id, counter, amount, expires_at) VALUES (:hold, :counter, :amount, :expires)",
    "hold_delete": f"DELETE FROM {_H} WHERE hold_id = :hold RETURNING counter, amount",
    "unreserve": f"UPDATE {_C} SET reserved = CASE WHEN reserved > :amount THEN reserved - :amount ELSE 0 END WHERE key = :key",
    "add_used": f"UPDATE {_C} SET used = used + :amount WHERE key = :key",
    "window_adjust": f"""
        UPDATE {_C} SET used = CASE WHEN used + :delta > 0 THEN used + :delta ELSE 0 END
        WHERE key = :key AND window_start = :start""",
    "sweep_holds": f"DELETE FROM {_H} WHERE expires_at < :now RETURNING counter, amount",
    "sweep_holds_pg": f"""
        DELETE FROM {_H} WHERE (hold_id, counter) IN
            (SELECT hold_id, counter FROM {_H} WHERE expires_at < :now FOR UPDATE SKIP LOCKED)
        RETURNING counter, amount""",
    "sweep_counters": f"DELETE FROM {_C} WHERE expires_at < :now",
    "delete": f"DELETE FROM {_C} WHERE key = :key",
}

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def _pyformat(sql: str) -> str:
    """`:name` -> `%(name)s` for psycopg."""
    return _PARAM.sub(r"%(\1)s", sql)


class SqlCounterStore:
    """Counters in the plugin's database (SQLite or PostgreSQL). Every method is synchronous.

    >>> store = SqlCounterStore(engine)                                          # doctest: +SKIP
    >>> store.reserve("h1", [charge], hold_seconds=900, fresh_after=0)            # doctest: +SKIP
    Reserved(window_starts={})
    """

    name = "database"

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._clock = clock
        pg = self.dialect == "postgresql"
        self._sql = {k: (_pyformat(v) if pg else v) for k, v in _SQL.items()}
        if pg:
            self._sql["sweep_holds"] = self._sql["sweep_holds_pg"]

    # -- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[Any]:
        try:
            conn = self.engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - any driver error opening a connection
            raise self._unavailable(exc) from exc
        try:
            cur = conn.cursor()
            if self.dialect == "sqlite":
                cur.execute("BEGIN IMMEDIATE")
            elif not durable and self.dialect == "postgresql":
                cur.execute("SET LOCAL synchronous_commit = off")
            yield cur
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            conn.close()

    def _run(self, fn: Callable[[Any], Any], *, durable: bool = True) -> Any:
        """Run `fn(cursor)` in a transaction; retried when PostgreSQL picks it as a deadlock victim.

        `durable=False` (reservations): PostgreSQL acknowledges the commit before its WAL reaches
        the disk (`synchronous_commit = off`: about 0.1 ms instead of a 4 ms flush here); only a
        crash of the database server can lose the last few hundred milliseconds of such
        commits, i.e. reservations of requests then in flight. Settled spend is always durable."""
        for attempt in range(3):
            try:
                with self._transaction(durable=durable) as cur:
                    return fn(cur)
            except DatabaseUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted below by driver error class
                if _is_deadlock(exc) and attempt < 2:
                    continue
                if _is_operational(exc):
                    raise self._unavailable(exc) from exc
                raise
        raise AssertionError("unreachable")

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        return DatabaseUnavailableError(
            f"database {redact_url(str(self.engine.url))} is unavailable for limit counters: {type(exc).__name__}: {exc}")

    def _one(self, cur: Any, name: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        cur.execute(self._sql[name], params)
        row = cur.fetchone()
        return tuple(row) if row is not None else None

    # -- reservation ---------------------------------------------------------------------------

    def reserve(self, hold_id: str, charges: Sequence[Charge], *, hold_seconds: float, fresh_after: float) -> ReserveResult:
        """Count every charge or none (see the module docstring)."""
        order = sorted(range(len(charges)), key=lambda i: charges[i].counter)

        def work(cur: Any) -> ReserveResult:
            now = self._clock()
            starts: dict[str, str] = {}
            holds = []
            for i in order:
                c = charges[i]
                params = {"key": c.counter, "amount": c.amount, "limit": c.limit, "now": now,
                          "expires": now + c.ttl, "win": WINDOW_SECONDS, "fresh": fresh_after}
                if c.window:
                    row = self._one(cur, "window_update", params)
                    if row is None:
                        cur.execute(self._sql["window_insert"], params)
                        if cur.rowcount == 1:
                            row = (c.amount, now)
                        else:  # another transaction created it meanwhile
                            row = self._one(cur, "window_update", params)
                    if row is None:
                        current = self._one(cur, "select", params)
                        assert current is not None
                        return self._refuse(cur, i, used=int(current[0]),
                                            window_left=float(current[2]) + WINDOW_SECONDS - now)
                    starts[c.counter] = repr(float(row[1]))
                else:
                    row = self._one(cur, "spend_update", params)
                    if row is None:
                        current = self._one(cur, "select", params)
                        if current is None or float(current[3]) < fresh_after:
                            return self._refuse(cur, i, missing=True)
                        return self._refuse(cur, i, used=int(current[0]), reserved=int(current[1]))
                    holds.append({"hold": hold_id, "counter": c.counter, "amount": c.amount,
                                  "expires": now + hold_seconds})
            if holds:
                cur.executemany(self._sql["hold_insert"], holds)
            return Reserved(window_starts=starts)

        return self._run(work, durable=False)  # type: ignore[no-any-return]

    @staticmethod
    def _refuse(cur: Any, index: int, *, missing: bool = False, used: int = 0, reserved: int = 0,
                window_left: float = 0.0) -> ReserveResult:
        """Undo this transaction's earlier charges (the caller's commit then writes nothing)."""
        cur.connection.rollback()
        if missing:
            return Missing(index)
        return Refused(index, used=used, reserved=reserved, window_left=window_left)

    def seed(self, charge: Charge, used: int, *, fresh_after: float) -> None:
        """Create a spending counter holding `used` (from the ledger), unless a fresh one exists.

        Its `reserved` is the sum of the live holds on it, so a counter seeded again (after a
        store switch) keeps counting the reservations in flight."""

        def work(cur: Any) -> None:
            now = self._clock()
            cur.execute(self._sql["seed"], {"key": charge.counter, "counter": charge.counter, "used": used, "now": now,
                                            "expires": now + charge.ttl, "fresh": fresh_after})

        self._run(work)

    def finish(self, hold_id: str, *, adds: Sequence[tuple[str, int]] = (),
               windows: Sequence[tuple[str, str, int]] = ()) -> None:
        """Drop the hold of `hold_id` from its counters, add settled amounts `(counter, micros)`
        and adjust windows `(counter, window start, delta)` still in the same window."""

        def work(cur: Any) -> None:
            cur.execute(self._sql["hold_delete"], {"hold": hold_id})
            held = [(str(r[0]), int(r[1])) for r in cur.fetchall()]
            steps: list[tuple[str, str, dict[str, Any]]] = []
            steps += [(counter, "unreserve", {"key": counter, "amount": amount}) for counter, amount in held]
            steps += [(counter, "add_used", {"key": counter, "amount": amount}) for counter, amount in adds if amount]
            steps += [(counter, "window_adjust", {"key": counter, "start": float(start), "delta": delta})
                      for counter, start, delta in windows if delta]
            for _, name, params in sorted(steps, key=lambda s: s[0]):  # lock counters in key order
                cur.execute(self._sql[name], params)

        self._run(work)

    # -- upkeep and reading -----------------------------------------------------------------------

    def sweep(self) -> int:
        """Drop expired holds (their workers died) and counters of past periods; returns the holds dropped."""

        def work(cur: Any) -> int:
            now = self._clock()
            cur.execute(self._sql["sweep_holds"], {"now": now})
            totals: dict[str, int] = defaultdict(int)
            rows = cur.fetchall()
            for counter, amount in rows:
                totals[str(counter)] += int(amount)
            for counter in sorted(totals):
                cur.execute(self._sql["unreserve"], {"key": counter, "amount": totals[counter]})
            cur.execute(self._sql["sweep_counters"], {"now": now})
            return len(rows)

        return int(self._run(work))

    def read(self, counters: Sequence[str]) -> dict[str, CounterValue]:
        def work(cur: Any) -> dict[str, CounterValue]:
            out = {}
            for counter in counters:
                row = self._one(cur, "select", {"key": counter})
                if row is not None:
                    out[counter] = CounterValue(used=int(row[0]), reserved=int(row[1]), window_start=float(row[2]))
            return out

        return self._run(work)  # type: ignore[no-any-return]

    def reset(self, counters: Sequence[str]) -> None:
        """Forget counters (a limit changed): spending counters are seeded again from the ledger."""

        def work(cur: Any) -> None:
            for counter in sorted(counters):
                cur.execute(self._sql["delete"], {"key": counter})

        self._run(work)


def _is_deadlock(exc: BaseException) -> bool:
    return type(exc).__name__ in ("DeadlockDetected", "SerializationFailure")


def _is_operational(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return True
    return any(cls.__name__ == "OperationalError" for cls in type(exc).__mro__)

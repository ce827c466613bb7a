"""The usage ledger: rows queued on the request path, written in batches by a thread.

`record()` never blocks on the database. A background thread writes batches so that every
row is committed within `flush_seconds` of being queued: a batch starts half an interval
after its oldest row, which leaves the other half for the write itself, or sooner when recent
writes were slow (`Ledger.gather_seconds`); each statement carries at most `batch_size` rows.
`close()` writes what is queued. What a SIGKILL can lose is bounded by one flush interval of
rows; `adaptive_billing_ledger_commit_lag_seconds` shows the bound as it holds in production.
Rows are idempotent by `request_id`, so a retried batch never double-bills.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from adaptive_plugin import metrics
from adaptive_plugin.billing.fees import micros_to_usd
from adaptive_plugin.db import session_scope
from adaptive_plugin.db.tables_billing import UsageRow
from adaptive_plugin.errors import AdaptiveError

log = logging.getLogger("adaptive_plugin.billing")

GROUP_FIELDS = ("project_id", "environment", "day", "provider", "key_source", "key_fingerprint", "model_group", "cache")
# filters of the request log: column -> allowed values (None: any short string)
REQUEST_FILTERS: dict[str, tuple[str, ...] | None] = {
    "environment": ("dev", "staging", "production"),
    "provider": None,
    "key_source": ("byok", "pooled", "cache", "none"),
    "cache": ("hit-exact", "hit-semantic", "miss", "bypass"),
}
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_day(value: str | None, name: str = "day") -> str | None:
    """A UTC day as YYYY-MM-DD, or ValueError naming the parameter."""
    if value is None:
        return None
    if not _DAY_RE.match(value):
        raise ValueError(f"{name} must be a date as YYYY-MM-DD, got {value!r}")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} is not a calendar date: {value!r}") from None
    return value


def parse_bound(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    """A bound of a time range: YYYY-MM-DD (UTC; as an end it includes its whole day) or an ISO
    8601 time with a timezone. ValueError names the parameter."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) == 10:
        check_day(value, name)
        day = date.fromisoformat(value) + (timedelta(days=1) if end else timedelta(0))
        return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be YYYY-MM-DD or an ISO 8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name} needs a timezone, for example {value}Z or {value}+02:00")
    return parsed


def _aware(value: Any) -> Any:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value

_TABLE = UsageRow.__table__  # type: ignore[attr-defined]
# Idempotent by request_id. SQLite's OR IGNORE is a prefix, so SQLAlchemy can still send the
# batch as one multi-row INSERT (an ON CONFLICT clause would turn that off).
_SQLITE_INSERT = sa.insert(_TABLE).prefix_with("OR IGNORE", dialect="sqlite")
_PG_INSERT = pg_insert(_TABLE).on_conflict_do_nothing(index_elements=["request_id"])


class Ledger:
    """Batched writer and reader of usage rows.

    >>> ledger = Ledger(engine); ledger.start()                       # doctest: +SKIP
    >>> ledger.record(UsageRow(request_id="r1", day="2026-01-01", project_id="p", environment="dev"))  # doctest: +SKIP
    >>> ledger.close()                                                 # doctest: +SKIP
    """

    def __init__(self, engine: Engine, *, flush_seconds: float = 0.5, batch_size: int = 500) -> None:
        self.engine = engine
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._queue: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()  # cuts a gathering (or a retry's wait) short
        self._write_seconds: deque[float] = deque([0.0], maxlen=8)
        self.written = 0
        self.failed_batches = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._closing.clear()
                self._thread = threading.Thread(target=self._run, name="adaptive-ledger", daemon=True)
                self._thread.start()

    def record(self, row: UsageRow | Mapping[str, Any]) -> None:
        """Queue one row (a `UsageRow` or a dict with its columns); never touches the database."""
        self._queue.put((time.monotonic(), dict(row) if isinstance(row, Mapping) else row.model_dump()))

    def gather_seconds(self) -> float:
        """How long a batch's first row waits for company before the batch is written.

        Half the interval, or less when writes are slow: the write gets twice the longest of the
        last 8 writes. Under a saturated CPU the write waits for the GIL at each call into the
        database (0.1-0.4 s for 20 rows on the 2-core machine, against 1 ms idle), and a batch
        started half an interval after its first row then committed it past the bound.
        """
        return max(0.0, min(self._flush_seconds / 2, self._flush_seconds - 2 * max(self._write_seconds)))

    def _run(self) -> None:
        """Write batches until `close()`; sleeps while a batch gathers (no wake-up per row)."""
        pending: list[tuple[float, dict[str, Any]]] = []
        stopping = False
        while not stopping:
            if not pending:
                item = self._queue.get()
                if item is None:
                    return
                pending.append(item)
                self._closing.wait(max(0.0, item[0] + self.gather_seconds() - time.monotonic()))
            stopping = self._drain(pending)
            pending = self._write(pending)
            if pending and not stopping:  # the database refused: try again after another interval
                self._closing.wait(self._flush_seconds)
        if pending:
            self._write(pending)

    def _drain(self, pending: list[tuple[float, dict[str, Any]]]) -> bool:
        """Move every queued row to `pending`; True when `close()` has asked the thread to stop."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            pending.append(item)

    def _write(self, queued: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, dict[str, Any]]]:
        """Write rows in batches; on a database error return the rows not written (kept for later)."""
        for start in range(0, len(queued), self._batch_size):
            batch = queued[start:start + self._batch_size]
            began = time.monotonic()
            try:
                self.write_now(row for _, row in batch)
            except (AdaptiveError, sa.exc.SQLAlchemyError) as exc:
                self.failed_batches += 1
                log.error("ledger write of %d rows failed, will retry: %s", len(queued) - start, exc)
                return queued[start:]
            done = time.monotonic()
            self._write_seconds.append(done - began)
            metrics.LEDGER_COMMIT_LAG_SECONDS.observe(done - batch[0][0])
            self.written += len(batch)
        return []

    def write_now(self, rows: Iterable[dict[str, Any]]) -> None:
        """Insert rows at once, skipping any whose `request_id` is already there (a retried batch).

        On SQLite the batch is one multi-row INSERT (see `make_engine`): the writer thread calls
        into the database, and waits for the GIL after each call, a few times per batch instead
        of once per row. On PostgreSQL psycopg pipelines the rows of its executemany.
        """
        rows = [{k: v for k, v in r.items() if k != "id"} for r in rows]
        if not rows:
            return
        with session_scope(self.engine) as s:
            if self.engine.dialect.name == "postgresql":
                s.execute(_PG_INSERT, rows)
            elif self.engine.dialect.name == "sqlite":
                s.execute(_SQLITE_INSERT, rows)
            else:
                s.execute(sa.insert(_TABLE), rows)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            leftover = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    leftover.append(item[1])
            self.write_now(leftover)
            return
        self._queue.put(None)
        self._closing.set()
        thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> None:
        """Block until rows queued before this call are written (for tests and shutdown)."""
        self.close(timeout)
        self.start()

    # -- reading ---------------------------------------------------------------------------

    def totals(self, *, group_by: Iterable[str] = ("project_id",), project_id: str | None = None,
               since_day: str | None = None, until_day: str | None = None,
               environment: str | None = None) -> list[dict[str, Any]]:
        """Sums of successful rows grouped by the given fields; money as exact USD Decimals.

        Days are UTC and inclusive; a bad field or date is a ValueError naming it.
        """
        fields = list(group_by)
        bad = [f for f in fields if f not in GROUP_FIELDS]
        if bad:
            raise ValueError(f"cannot group by {bad[0]!r}; choose from {', '.join(GROUP_FIELDS)}")
        check_day(since_day, "since")
        check_day(until_day, "until")
        if since_day is not None and until_day is not None and until_day < since_day:
            raise ValueError(f"until ({until_day}) is before since ({since_day})")
        t = UsageRow.__table__  # type: ignore[attr-defined]
        cols = [t.c[f] for f in fields]
        q = sa.select(
            *cols,
            sa.func.count().label("requests"),
            sa.func.coalesce(sa.func.sum(t.c.input_tokens), 0).label("input_tokens"),
            sa.func.coalesce(sa.func.sum(t.c.cached_tokens), 0).label("cached_tokens"),
            sa.func.coalesce(sa.func.sum(t.c.output_tokens), 0).label("output_tokens"),
            sa.func.coalesce(sa.func.sum(t.c.overhead_fee_micros), 0).label("overhead_fee_micros"),
            sa.func.coalesce(sa.func.sum(t.c.model_cost_micros), 0).label("model_cost_micros"),
        ).where(t.c.outcome == "success")
        if project_id is not None:
            q = q.where(t.c.project_id == project_id)
        if environment is not None:
            q = q.where(t.c.environment == environment)
        if since_day is not None:
            q = q.where(t.c.day >= since_day)
        if until_day is not None:
            q = q.where(t.c.day <= until_day)
        if cols:
            q = q.group_by(*cols).order_by(*cols)
        with session_scope(self.engine) as s:
            result = s.execute(q).mappings().all()
        out = []
        for r in result:
            row = dict(r)
            for k in ("requests", "input_tokens", "cached_tokens", "output_tokens", "overhead_fee_micros", "model_cost_micros"):
                row[k] = int(row[k])
            row["overhead_fee_usd"] = str(micros_to_usd(row["overhead_fee_micros"]))
            row["model_cost_usd"] = str(micros_to_usd(row["model_cost_micros"]))
            row["total_usd"] = str(micros_to_usd(row["overhead_fee_micros"] + row["model_cost_micros"]))
            out.append(row)
        return out

    def requests(
        self, *, project_id: str | None = None, limit: int = 100, offset: int = 0, before_id: int | None = None,
        since: datetime | None = None, until: datetime | None = None, **filters: str | None,
    ) -> list[dict[str, Any]]:
        """The request log, newest first; `ts` is timezone-aware (UTC).

        `before_id` pages by key: only rows with a smaller id. Paging on with the last id of the
        previous page returns each row written before the walk began exactly once, while new rows
        keep arriving; `offset` pages shift by one for every row written in between. `since`
        (inclusive) and `until` (exclusive) bound the time; `filters` are equalities on the
        columns of `REQUEST_FILTERS`. Bad values are a ValueError naming the parameter.
        """
        if not 1 <= limit <= 100_000:
            raise ValueError(f"limit must be between 1 and 100000, got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be 0 or more, got {offset}")
        t = UsageRow.__table__  # type: ignore[attr-defined]
        q = sa.select(t).order_by(t.c.id.desc()).limit(limit).offset(offset)
        if project_id is not None:
            q = q.where(t.c.project_id == project_id)
        if before_id is not None:
            q = q.where(t.c.id < before_id)
        for name, value in filters.items():
            if name not in REQUEST_FILTERS:
                raise ValueError(f"cannot filter the request log by {name!r}; choose from {', '.join(REQUEST_FILTERS)}")
            allowed = REQUEST_FILTERS[name]
            if value is None:
                continue
            if allowed is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
            q = q.where(t.c[name] == value)
        for name, bound in (("since", since), ("until", until)):
            if bound is not None and bound.tzinfo is None:
                raise ValueError(f"{name} needs a timezone (for example 2026-01-31T00:00:00Z)")
        if since is not None:
            q = q.where(t.c.ts >= since)
        if until is not None:
            q = q.where(t.c.ts < until)
        with session_scope(self.engine) as s:
            rows = [dict(r) for r in s.execute(q).mappings().all()]
        for row in rows:
            row["ts"] = _aware(row["ts"])
        return rows

    def last_used(self, key_ids: Iterable[str]) -> dict[str, datetime]:
        """When each BYOK key last served or failed a request (its latest ledger row)."""
        ids = list(key_ids)
        if not ids:
            return {}
        t = UsageRow.__table__  # type: ignore[attr-defined]
        q = sa.select(t.c.key_id, sa.func.max(t.c.ts)).where(t.c.key_id.in_(ids)).group_by(t.c.key_id)
        with session_scope(self.engine) as s:
            return {str(k): _aware(ts) for k, ts in s.execute(q).all() if ts is not None}

    def provider_spend_micros(self, key_id: str, period: str) -> int:
        """Provider cost incurred on a BYOK key in the current UTC day or month."""
        now = datetime.now(timezone.utc)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if period == "month":
            start = start.replace(day=1)
        t = UsageRow.__table__  # type: ignore[attr-defined]
        q = sa.select(sa.func.coalesce(sa.func.sum(t.c.provider_cost_micros), 0)).where(
            t.c.key_id == key_id, t.c.ts >= start, t.c.outcome == "success"
        )
        with session_scope(self.engine) as s:
            return int(s.execute(q).scalar_one())


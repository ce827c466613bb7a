"""Engine construction and schema migration, safe when several workers start at once."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Field, Session, SQLModel

from adaptive_plugin._files import private_sqlite_file
from adaptive_plugin.db._changes import seed_revision
from adaptive_plugin.errors import DatabaseUnavailableError, SchemaError, StorageError

SCHEMA_VERSION = 3
_PG_LOCK_ID = 0x4164617074  # "Adapt": advisory lock serialising migrations across replicas


def redact_url(url: str) -> str:
    """The URL with its password replaced, for error messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL must still produce a message
        return "<unparseable database URL>"


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so that workers can share the file.

    `hide_parameters`: a database error's message (logged, and wrapped into our errors) never
    carries statement parameters, which hold prompts, cached answers and encrypted keys.
    """
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise SchemaError(f"ADAPTIVE_DATABASE_URL is not a valid database URL: {redact_url(url)}") from exc
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            try:
                private_sqlite_file(Path(parsed.database))  # 0600, and so its WAL and shm files
            except OSError as exc:
                raise StorageError(f"cannot create the directory of the SQLite database {redact_url(url)}: {exc}") from exc
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        # an executemany becomes one multi-row INSERT (as SQLAlchemy does for PostgreSQL): one call
        # into SQLite per batch instead of one per row, each of which waits for the GIL when a
        # background writer shares the CPU with a busy event loop
        engine.dialect.use_insertmanyvalues_wo_returning = True

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            _use_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10, hide_parameters=True)


def _use_wal(cur: sqlite3.Cursor, wait_s: float = 30.0) -> None:
    """Switch the file to WAL (it stays so), waiting out other connections that hold it.

    The switch needs the file to itself, and SQLite answers "database is locked" at once instead
    of using the busy timeout: when several workers open a new database together, one of them
    would fail its start (1 in 12 runs of the concurrent-migration test).
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _unavailable(engine: Engine, exc: OperationalError) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"database {redact_url(str(engine.url))} is unavailable: {exc.orig}")


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error, mapping outages to our errors."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise _unavailable(engine, exc) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextlib.contextmanager
def transaction_scope(engine: Engine) -> Iterator[Connection]:
    """`session_scope` on a Core connection (no ORM session: less Python per transaction)."""
    try:
        with engine.begin() as conn:
            yield conn
    except OperationalError as exc:
        raise _unavailable(engine, exc) from exc


class _SchemaVersion(SQLModel, table=True):
    __tablename__ = "adaptive_schema_version"
    id: int = Field(primary_key=True)
    version: int


def migrate(engine: Engine) -> int:
    """Create or upgrade the schema to SCHEMA_VERSION; returns the version found before.

    PostgreSQL: a transaction-level advisory lock makes concurrent replicas take turns.
    SQLite: `BEGIN IMMEDIATE` takes the write lock for the same purpose.
    """
    url = redact_url(str(engine.url))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
            elif engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            SQLModel.metadata.create_all(conn)
            seed_revision(conn)
            row = conn.execute(sa.text("SELECT version FROM adaptive_schema_version WHERE id = 1")).first()
            before = int(row[0]) if row else 0
            if before > SCHEMA_VERSION:
                raise SchemaError(
                    f"database {url} has schema version {before}, newer than this plugin's {SCHEMA_VERSION}; "
                    "upgrade the plugin"
                )
            if row is not None:  # a fresh database got the current tables from create_all
                for version in range(before + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS.get(version, ()):
                        conn.exec_driver_sql(statement.format(**_TYPES.get(engine.dialect.name, _TYPES["sqlite"])))
            if row is None:
                conn.execute(sa.text("INSERT INTO adaptive_schema_version (id, version) VALUES (1, :v)"), {"v": SCHEMA_VERSION})
            elif before != SCHEMA_VERSION:
                conn.execute(sa.text("UPDATE adaptive_schema_version SET version = :v WHERE id = 1"), {"v": SCHEMA_VERSION})
            conn.commit()
            return before
    except OperationalError as exc:
        raise DatabaseUnavailableError(f"database {url} is unavailable: {exc.orig}") from exc
    except sa.exc.DatabaseError as exc:
        raise SchemaError(f"database {url} cannot be migrated (is the file a database?): {exc.orig}") from exc
    except SQLAlchemyError as exc:
        raise SchemaError(f"database {url} cannot be migrated: {exc}") from exc


# Version -> statements applied after create_all (which only adds missing tables).
# Columns added to existing tables in later versions go here.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # the request log says when pooled keys served a project whose plan leaves its stored keys unused
    2: ("ALTER TABLE adaptive_usage ADD COLUMN byok_off_by_plan BOOLEAN NOT NULL DEFAULT FALSE",),
    # the semantic cache's vectors name the model that computed them; the first-look vector beside them
    3: ("ALTER TABLE adaptive_cache_entries ADD COLUMN vector_model VARCHAR(120) NOT NULL DEFAULT ''",
        "ALTER TABLE adaptive_cache_entries ADD COLUMN first_vector {binary}",
        "ALTER TABLE adaptive_cache_entries ADD COLUMN first_model VARCHAR(40) NOT NULL DEFAULT ''"),
}
# column types that differ by dialect, substituted into the statements above
_TYPES = {"postgresql": {"binary": "BYTEA"}, "sqlite": {"binary": "BLOB"}}


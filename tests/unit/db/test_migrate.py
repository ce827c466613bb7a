"""Schema migration: idempotent, safe when workers start at once, and clear about broken databases."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptive_plugin.db import make_engine, migrate, session_scope
from adaptive_plugin.db._engine import SCHEMA_VERSION, redact_url
from adaptive_plugin.errors import DatabaseUnavailableError, SchemaError, StorageError

TABLES = {
    "adaptive_schema_version", "adaptive_project", "adaptive_project_api_key", "adaptive_provider_key",
    "adaptive_usage", "adaptive_cache_entries",
}


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'adaptive.db'}"


def version(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT version FROM adaptive_schema_version WHERE id = 1")).scalar_one())


def migrate_concurrently(engines: list[Engine]) -> tuple[list[int], list[BaseException]]:
    """Run migrate() on every engine at once, one thread each, released together."""
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def worker(engine: Engine) -> None:
        barrier.wait()
        try:
            results.append(migrate(engine))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(engine,)) for engine in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


# -- SQLite ------------------------------------------------------------------------------------


def test_fresh_database_gets_every_table(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)  # creates the state directory
    try:
        assert migrate(engine) == 0
        assert TABLES <= set(sa.inspect(engine).get_table_names())
        assert version(engine) == SCHEMA_VERSION
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_migrate_is_idempotent(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        assert migrate(engine) == 0
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO adaptive_project (id, name, plan, fallback, cache_enabled, created_at) "
                                 "VALUES ('prj_1', 'kept', 'team', 'pooled', 1, '2026-01-01 00:00:00')"))
        assert migrate(engine) == SCHEMA_VERSION
        assert migrate(engine) == SCHEMA_VERSION
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM adaptive_project")).scalars().all() == ["kept"]
            assert conn.execute(sa.text("SELECT count(*) FROM adaptive_schema_version")).scalar_one() == 1
    finally:
        engine.dispose()


def test_concurrent_migrations_on_sqlite(sqlite_url: str) -> None:
    engines = [make_engine(sqlite_url) for _ in range(8)]  # one per "worker process"
    try:
        results, errors = migrate_concurrently(engines)
        assert errors == []
        assert sorted(results) == [0] + [SCHEMA_VERSION] * 7  # exactly one worker created the schema
        assert version(engines[0]) == SCHEMA_VERSION
    finally:
        for engine in engines:
            engine.dispose()


def test_newer_schema_is_refused(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE adaptive_schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
        with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this plugin's") as info:
            migrate(engine)
        assert "upgrade the plugin" in str(info.value)
        assert version(engine) == SCHEMA_VERSION + 1  # left alone
    finally:
        engine.dispose()


def test_corrupted_sqlite_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "adaptive.db"
    path.write_bytes(b"this is not a database, just garbage bytes " * 200)
    engine = make_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(StorageError) as info:
            migrate(engine)
    finally:
        engine.dispose()
    assert isinstance(info.value, SchemaError)
    message = str(info.value)
    assert str(path) in message and "is the file a database?" in message
    assert "file is not a database" in message


def test_unusable_state_directory_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot create the directory of the SQLite database"):
        make_engine(f"sqlite:///{tmp_path / 'file' / 'sub' / 'adaptive.db'}")


def test_session_scope_commits_and_rolls_back(sqlite_url: str) -> None:
    from adaptive_plugin.db.tables_keys import Project

    engine = make_engine(sqlite_url)
    try:
        migrate(engine)
        with session_scope(engine) as s:
            s.add(Project(id="prj_1", name="a", plan="team"))
        with pytest.raises(RuntimeError):
            with session_scope(engine) as s:
                s.add(Project(id="prj_2", name="b", plan="team"))
                s.flush()
                raise RuntimeError("boom")
        with session_scope(engine) as s:
            assert list(s.execute(sa.select(Project.id)).scalars()) == ["prj_1"]
    finally:
        engine.dispose()


# -- unreachable and malformed URLs ---------------------------------------------------------------


def test_database_down_names_the_redacted_url() -> None:
    engine = make_engine("postgresql://adaptive:hunter2@127.0.0.1:1/adaptive")
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            migrate(engine)
    finally:
        engine.dispose()
    message = str(info.value)
    assert "127.0.0.1:1/adaptive" in message and "adaptive:***@" in message
    assert "hunter2" not in message
    assert info.value.status_code == 503 and info.value.code == "database_unavailable"


def test_session_on_a_down_database_is_unavailable_not_a_crash() -> None:
    engine = make_engine("postgresql://adaptive:hunter2@127.0.0.1:1/adaptive")
    try:
        with pytest.raises(DatabaseUnavailableError, match="is unavailable") as info:
            with session_scope(engine) as s:
                s.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()
    assert "hunter2" not in str(info.value)


def test_malformed_url_is_refused_without_the_password() -> None:
    with pytest.raises(SchemaError, match="not a valid database URL") as info:
        make_engine("not a url with secret-pw")
    assert "secret-pw" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert redact_url("::garbage::") == "<unparseable database URL>"


def _downgrade_to_version_2(engine: Engine) -> None:
    """Make a current database look like one written by schema version 2 (cache vectors without
    the model that computed them, no first-look vectors), holding one cache row of that version."""
    with engine.begin() as conn:
        for column in ("vector_model", "first_vector", "first_model"):
            conn.execute(sa.text(f"ALTER TABLE adaptive_cache_entries DROP COLUMN {column}"))
        conn.execute(sa.text("INSERT INTO adaptive_cache_entries (scope, partition, exact_hash, query_text, vector, "
                             "response_json, created_at, last_used_at, expires_at) VALUES ('p', 'part', 'exact', 'q', "
                             ":v, '{}', 1, 1, 9e12)"), {"v": b"\0" * 16})
        conn.execute(sa.text("UPDATE adaptive_schema_version SET version = 2"))


def _downgrade_to_version_1(engine: Engine) -> None:
    """Make a current database look like one written by schema version 1 (no byok_off_by_plan)."""
    _downgrade_to_version_2(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE adaptive_usage DROP COLUMN byok_off_by_plan"))
        conn.execute(sa.text("INSERT INTO adaptive_usage (request_id, ts, day, project_id, environment, provider, "
                             "model_group, model, key_source, cache, input_tokens, cached_tokens, output_tokens, "
                             "overhead_fee_micros, model_cost_micros, provider_cost_micros, latency_ms, outcome, "
                             "status_code, routed) VALUES ('old', '2026-01-01 00:00:00', '2026-01-01', 'p', 'dev', "
                             "'openai', 'g', 'm', 'byok', 'miss', 1, 0, 1, 0, 0, 0, 1.0, 'success', 200, false)"))
        conn.execute(sa.text("UPDATE adaptive_schema_version SET version = 1"))


def _usage_columns(engine: Engine) -> dict[str, object]:
    return {c["name"]: c for c in sa.inspect(engine).get_columns("adaptive_usage")}


def test_version_1_database_gains_the_byok_off_by_plan_column(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        migrate(engine)
        _downgrade_to_version_1(engine)
        assert "byok_off_by_plan" not in _usage_columns(engine)
        assert migrate(engine) == 1
        assert "byok_off_by_plan" in _usage_columns(engine) and version(engine) == SCHEMA_VERSION
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT byok_off_by_plan FROM adaptive_usage WHERE request_id = 'old'")).scalar_one() in (0, False)
        assert migrate(engine) == SCHEMA_VERSION  # nothing left to apply
    finally:
        engine.dispose()


def _check_version_2_cache_row(engine: Engine) -> None:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT vector, vector_model, first_vector, first_model FROM adaptive_cache_entries "
                                   "WHERE exact_hash = 'exact'")).one()
    assert bytes(row[0]) == b"\0" * 16 and row[1] == "" and row[2] is None and row[3] == ""  # kept, model unknown


def test_version_2_cache_rows_keep_their_vectors_and_name_no_model(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        migrate(engine)
        _downgrade_to_version_2(engine)
        assert migrate(engine) == 2 and version(engine) == SCHEMA_VERSION
        _check_version_2_cache_row(engine)
    finally:
        engine.dispose()


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_migrate_is_idempotent(pg_schema_url: str) -> None:
    engine = make_engine(pg_schema_url)
    try:
        assert migrate(engine) == 0
        assert migrate(engine) == SCHEMA_VERSION
        schema = pg_schema_url.rsplit("%3D", 1)[1]
        assert TABLES <= set(sa.inspect(engine).get_table_names(schema=schema))
        assert version(engine) == SCHEMA_VERSION
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_concurrent_migrations(pg_schema_url: str) -> None:
    engines = [make_engine(pg_schema_url) for _ in range(6)]  # one per replica
    try:
        results, errors = migrate_concurrently(engines)
        assert errors == []
        assert sorted(results) == [0] + [SCHEMA_VERSION] * 5
        with engines[0].connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM adaptive_schema_version")).scalar_one() == 1
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.postgres
def test_postgres_ledger_and_keys_round_trip(pg_schema_url: str) -> None:
    import os

    from adaptive_plugin.billing import Ledger
    from adaptive_plugin.db.tables_billing import UsageRow
    from adaptive_plugin.keys import KeyService, ProjectCreate, ProviderKeyCreate, Vault

    engine = make_engine(pg_schema_url)
    try:
        migrate(engine)
        svc = KeyService(engine, Vault([os.urandom(32)]))
        pid = svc.create_project(ProjectCreate(name="pg", plan="team")).id
        svc.add_provider_key(pid, ProviderKeyCreate(environment="dev", provider="openai", api_key="sk-postgres-0001"))
        assert [k.secret for k in svc.active_keys(pid, "dev")] == ["sk-postgres-0001"]
        token = svc.create_api_key(pid, "dev").api_key
        assert svc.authenticate(token).project_id == pid

        ledger = Ledger(engine)
        for i in range(3):
            ledger.record(UsageRow(request_id="dup" if i < 2 else "other", day="2026-01-01", project_id=pid,
                                   environment="dev", overhead_fee_micros=7, key_id="pk", provider_cost_micros=5))
        ledger.close()
        ledger.write_now([UsageRow(request_id="dup", day="2026-01-01", project_id=pid, environment="dev").model_dump()])
        [total] = ledger.totals(project_id=pid)
        assert (total["requests"], total["overhead_fee_micros"]) == (2, 14)
        assert ledger.provider_spend_micros("pk", "day") == 10
    finally:
        engine.dispose()


def test_truncated_sqlite_file_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    import sqlite3

    import sqlalchemy as sa

    from adaptive_plugin.db import make_engine, migrate
    from adaptive_plugin.errors import SchemaError

    path = tmp_path / "adaptive.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.begin() as conn:
        for i in range(400):
            conn.execute(sa.text("INSERT INTO adaptive_project (id, name, plan, fallback, cache_enabled, created_at) "
                                 "VALUES (:i, :n, 'team', 'pooled', 1, '2026-01-01')"), {"i": f"p{i}", "n": f"name {i}" * 5})
    engine.dispose()
    conn2 = sqlite3.connect(path)
    conn2.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn2.close()
    for extra in ("-wal", "-shm"):
        (tmp_path / f"adaptive.db{extra}").unlink(missing_ok=True)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)
    truncated = path.read_bytes()
    with pytest.raises(SchemaError, match="cannot be migrated"):
        migrate(make_engine(f"sqlite:///{path}"))
    assert path.read_bytes() == truncated


@pytest.mark.postgres
def test_postgres_version_1_database_gains_the_byok_off_by_plan_column(pg_schema_url: str) -> None:
    engine = make_engine(pg_schema_url)
    try:
        migrate(engine)
        _downgrade_to_version_1(engine)
        assert migrate(engine) == 1
        schema = pg_schema_url.rsplit("%3D", 1)[1]
        columns = {c["name"] for c in sa.inspect(engine).get_columns("adaptive_usage", schema=schema)}
        assert "byok_off_by_plan" in columns and version(engine) == SCHEMA_VERSION
        _check_version_2_cache_row(engine)
    finally:
        engine.dispose()

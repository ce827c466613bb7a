"""The state is owner-only: database, WAL, shared memory and index files 0600, directories 0700,
whatever the umask, including files SQLite creates after start-up."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adaptive_plugin._files import private_dir
from adaptive_plugin.cache._index import PartitionIndex
from adaptive_plugin.db import make_engine, migrate


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual umask 022 would make everything readable by all."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_sqlite_database_and_its_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "state" / "nested" / "adaptive.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    with engine.begin() as conn:  # a write after start-up: the WAL and shm files appear now
        conn.exec_driver_sql("CREATE TABLE t (x)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    assert (db.parent / "adaptive.db-wal").exists() and (db.parent / "adaptive.db-shm").exists()
    for name in ("adaptive.db", "adaptive.db-wal", "adaptive.db-shm"):
        assert mode(db.parent / name) == 0o600, name
    assert mode(db.parent) == 0o700 and mode(db.parent.parent) == 0o700
    engine.dispose()


def test_files_left_readable_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    db = tmp_path / "adaptive.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    engine.dispose()
    for path in (db, db.with_name("adaptive.db-wal"), db.with_name("adaptive.db-journal")):
        path.touch()
        path.chmod(0o644)
    make_engine(f"sqlite:///{db}").dispose()
    for path in (db, db.with_name("adaptive.db-wal"), db.with_name("adaptive.db-journal")):
        assert mode(path) == 0o600, path.name


def test_state_dir_is_created_or_tightened_to_0700(tmp_path: Path) -> None:
    fresh = private_dir(tmp_path / "a" / "b")
    assert mode(fresh) == 0o700 and mode(tmp_path / "a") == 0o700
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    private_dir(existing)
    assert mode(existing) == 0o700
    assert mode(tmp_path) == stat.S_IMODE(tmp_path.stat().st_mode)  # parents that exist are not touched


def test_cache_index_file_and_directory_are_owner_only(tmp_path: Path) -> None:
    index = PartitionIndex(4)
    index.add(np.array([1], dtype=np.int64), np.eye(4, dtype=np.float32)[:1])
    path = tmp_path / "cache" / "index" / "part.idx"
    index.save(path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["part.idx"]  # no temp file left behind

"""The same cache on PostgreSQL: two workers, one database (needs 127.0.0.1:5432, trust auth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .conftest import completion, user

P: dict[str, Any] = {"model": "gpt-4o-mini", "temperature": 0}

pytestmark = pytest.mark.postgres


def test_two_workers_on_postgres(make_cache: Any, pg_engine: Engine, tmp_path: Path) -> None:
    scope = "pytest"
    w1 = make_cache(tmp_path / "w1", engine=pg_engine, sync_interval=0.0)
    w2 = make_cache(tmp_path / "w2", engine=pg_engine, sync_interval=0.0)
    try:
        assert w1.store(scope, user("How do I reverse a list in Python?"), completion("reversed()"), P)
        assert w2.lookup(scope, user("How do I reverse a list in Python?"), P).outcome == "hit-exact"
        assert w2.lookup(scope, user("How can I reverse a Python list?"), P).outcome == "hit-semantic"
        assert w2.lookup(scope + "-other", user("How do I reverse a list in Python?"), P).outcome == "miss"
        assert w2.lookup(scope, user("How do I reverse a list in Rust?"), P).outcome == "miss"
    finally:
        w1.clear_scope(scope)
    with pg_engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM adaptive_cache_entries WHERE scope = :s"), {"s": scope}
        ).scalar_one()
    assert left == 0


def test_a_queued_batch_on_postgres_keeps_each_answer_with_its_question(
    make_cache: Any, pg_engine: Engine, tmp_path: Path
) -> None:
    scope = "pytest"
    w1 = make_cache(tmp_path / "w1", engine=pg_engine, sync_interval=0.0, write_delay=30.0)
    w2 = make_cache(tmp_path / "w2", engine=pg_engine, sync_interval=0.0)
    questions = [f"What is {n} times {n + 7}?" for n in range(5)]
    try:
        for q in questions:
            assert w1.store(scope, user(q), completion(f"answer to {q}"), P, wait=False)
        assert w1.flush() == len(questions)  # one multi-row INSERT ... RETURNING
        for q in questions:
            assert w1.get(scope, user(q), P) == completion(f"answer to {q}")  # ids matched to rows
            assert w2.get(scope, user(q), P) == completion(f"answer to {q}")  # and visible to a second worker
    finally:
        w1.clear_scope(scope)

"""Unit-test fixtures shared by capabilities: a migrated SQLite database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from adaptive_plugin.db import make_engine, migrate


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'adaptive.db'}")
    migrate(eng)
    yield eng
    eng.dispose()

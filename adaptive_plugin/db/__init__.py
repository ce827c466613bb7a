"""Persistence through sqlmodel: SQLite by default, PostgreSQL for multi-replica deployments.

    >>> engine = make_engine("sqlite:///var/adaptive.db")     # doctest: +SKIP
    >>> migrate(engine)                                         # doctest: +SKIP

Table modules (`tables_*.py`) each hold one capability's tables; importing this package
registers all of them on `SQLModel.metadata`.
"""

from __future__ import annotations

from adaptive_plugin.db._engine import make_engine, migrate, session_scope, transaction_scope
from adaptive_plugin.db import (  # noqa: F401  (register tables)
    tables_admin, tables_billing, tables_cache, tables_changes, tables_keys, tables_limits,
)

__all__ = ["make_engine", "migrate", "session_scope", "transaction_scope"]

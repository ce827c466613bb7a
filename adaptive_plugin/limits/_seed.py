"""What the ledger says a scope has spent in the current period: the start value of a counter.

A key's cap counts the provider cost of its calls (`provider_cost_micros`); a project's or an
environment's cap counts the gateway's bill (`overhead_fee_micros + model_cost_micros`, cache
hits at their discounted fee). Only successful rows carry money.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptive_plugin.db import session_scope
from adaptive_plugin.db.tables_billing import UsageRow
from adaptive_plugin.limits.models import Charge, period_id, period_start

_T = UsageRow.__table__  # type: ignore[attr-defined]


def ledger_spend(engine: Engine, charge: Charge, now: float) -> int:
    """Micro-dollars the ledger holds for the charge's scope in the period containing `now`."""
    assert charge.period is not None
    scope = charge.scope
    if scope.kind == "key":
        total = sa.func.sum(_T.c.provider_cost_micros)
        where = [_T.c.key_id == scope.id, _T.c.ts >= period_start(now, charge.period)]
    else:
        total = sa.func.sum(_T.c.overhead_fee_micros + _T.c.model_cost_micros)
        first_day = period_id(now, charge.period)
        where = [_T.c.project_id == scope.project_id, _T.c.day >= (first_day if len(first_day) == 10 else first_day + "-01")]
        if scope.kind == "environment":
            where.append(_T.c.environment == scope.id.split("/", 1)[1])
    query = sa.select(sa.func.coalesce(total, 0)).where(_T.c.outcome == "success", *where)
    with session_scope(engine) as s:
        return int(s.execute(query).scalar_one())

"""Project and environment limits in the database (`adaptive_limit`)."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from adaptive_plugin.db import session_scope
from adaptive_plugin.db.tables_keys import Project, utcnow
from adaptive_plugin.db.tables_limits import PROJECT_WIDE, ScopeLimitRow
from adaptive_plugin.errors import NotFoundError
from adaptive_plugin.limits.models import MICROS_PER_USD, LimitsUpdate, ProjectLimits, ScopeLimits


def micros_of(usd: str | Decimal | None) -> int | None:
    return None if usd is None else int(Decimal(usd) * MICROS_PER_USD)


def _limits(row: ScopeLimitRow) -> ScopeLimits:
    return ScopeLimits(spend_cap_micros=micros_of(row.spend_cap_usd), spend_cap_period=row.spend_cap_period,
                       rpm=row.rpm_limit, tpm=row.tpm_limit)


class LimitsRepository:
    """Reads and writes the limits of projects and their environments."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, project_id: str) -> ProjectLimits:
        with session_scope(self.engine) as s:
            rows = list(s.exec(select(ScopeLimitRow).where(ScopeLimitRow.project_id == project_id)))
        project = next((_limits(r) for r in rows if r.environment == PROJECT_WIDE), None)
        envs = tuple(sorted((r.environment, _limits(r)) for r in rows if r.environment != PROJECT_WIDE))
        return ProjectLimits(project=project or ScopeLimits(), environments=envs)

    def rows(self, project_id: str) -> list[ScopeLimitRow]:
        with session_scope(self.engine) as s:
            if s.get(Project, project_id) is None:
                raise NotFoundError(f"project {project_id!r} not found")
            return list(s.exec(select(ScopeLimitRow).where(ScopeLimitRow.project_id == project_id)
                               .order_by(ScopeLimitRow.environment)))

    def put(self, project_id: str, spec: LimitsUpdate) -> None:
        """Replace one scope's limits; all of them null removes the scope's row."""
        environment = spec.environment or PROJECT_WIDE
        with session_scope(self.engine) as s:
            if s.get(Project, project_id) is None:
                raise NotFoundError(f"project {project_id!r} not found")
            s.execute(sa.delete(ScopeLimitRow).where(ScopeLimitRow.project_id == project_id,
                                                     ScopeLimitRow.environment == environment))
            if spec.spend_cap_usd is None and spec.rpm_limit is None and spec.tpm_limit is None:
                return
            s.add(ScopeLimitRow(
                project_id=project_id, environment=environment,
                spend_cap_usd=str(spec.spend_cap_usd) if spec.spend_cap_usd is not None else None,
                spend_cap_period=spec.spend_cap_period, rpm_limit=spec.rpm_limit, tpm_limit=spec.tpm_limit,
                updated_at=utcnow(),
            ))

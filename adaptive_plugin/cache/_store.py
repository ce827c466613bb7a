"""Row-level access to `adaptive_cache_entries`: the durable truth behind the indexes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from adaptive_plugin.db import transaction_scope
from adaptive_plugin.db.tables_cache import CacheEntry
from adaptive_plugin.errors import CacheError, StorageError

__all__ = ["EntryMeta", "EntryStore"]

_T = CacheEntry.__table__  # type: ignore[attr-defined]
_IN_LIMIT = 5000  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits
# every cache hit reads its response: built once, the statement costs 32 instead of 95 us per read (SQLite)
_INSERT = sa.insert(_T).returning(_T.c.id, sort_by_parameter_order=True)
_RESPONSE = sa.select(_T.c.response_json).where(_T.c.id == sa.bindparam("row_id"), _T.c.expires_at > sa.bindparam("now"))


def _id_chunks(ids: Iterable[int]) -> list[list[int]]:
    wanted = sorted(set(ids))
    return [wanted[i : i + _IN_LIMIT] for i in range(0, len(wanted), _IN_LIMIT)]


@dataclass(slots=True)
class EntryMeta:
    """What a worker keeps in memory per entry (the response stays in the database)."""

    id: int
    partition: str
    exact_hash: str
    query_text: str
    expires_at: float


class EntryStore:
    """Reads and writes cache rows; every database error surfaces as a StorageError/CacheError."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _wrap(self, what: str, exc: SQLAlchemyError) -> CacheError:
        return CacheError(f"semantic cache could not {what}: {exc}")

    def insert(self, rows: list[dict[str, object]]) -> list[int]:
        """Insert rows in one transaction; returns their new ids in the order given."""
        try:  # a Core transaction: an ORM session cost the writer thread twice the CPU per batch
            with transaction_scope(self.engine) as conn:
                result = conn.execute(_INSERT, rows)
                return [int(row_id) for row_id in result.scalars()]
        except StorageError:
            raise
        except SQLAlchemyError as exc:
            raise self._wrap("store entries", exc) from exc

    def insert_many(self, rows: list[dict[str, object]]) -> None:
        """Bulk insert (benchmarks and imports); ids are assigned by the database."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(_T), rows)
        except SQLAlchemyError as exc:
            raise self._wrap("bulk-store entries", exc) from exc

    def response(self, row_id: int, now: float) -> str | None:
        """The response JSON of a live row, or None if it is gone or expired."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(_RESPONSE, {"row_id": row_id, "now": now}).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise self._wrap("read an entry", exc) from exc

    def metas(self, *, ids: Iterable[int] | None = None, now: float) -> Iterator[EntryMeta]:
        """Live rows' metadata in id order: all of them, or only the given ids."""
        query = sa.select(_T.c.id, _T.c.partition, _T.c.exact_hash, _T.c.query_text, _T.c.expires_at).where(
            _T.c.expires_at > now
        )
        chunks: list[list[int]] | list[None] = [None] if ids is None else _id_chunks(ids)
        try:
            with self.engine.connect() as conn:
                for chunk in chunks:
                    chunk_query = query if chunk is None else query.where(_T.c.id.in_(chunk))
                    for row in conn.execute(chunk_query.order_by(_T.c.id)):
                        yield EntryMeta(int(row[0]), row[1], row[2], row[3], float(row[4]))
        except SQLAlchemyError as exc:
            raise self._wrap("read entries", exc) from exc

    def recent_ids(self, *, after_id: int, created_after: float | None, now: float) -> set[int]:
        """Ids of live rows with `id > after_id` or created after `created_after` (cheap: ids only;
        without `created_after` a range of the primary key, not a scan of the table)."""
        newer = _T.c.id > after_id
        query = sa.select(_T.c.id).where(
            _T.c.expires_at > now, newer if created_after is None else sa.or_(newer, _T.c.created_at > created_after)
        )
        try:
            with self.engine.connect() as conn:
                return {int(r[0]) for r in conn.execute(query)}
        except SQLAlchemyError as exc:
            raise self._wrap("read entries", exc) from exc

    def vectors(self, ids: Iterable[int], dimensions: int | None, *, first: bool = False
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(ids, vectors, models) of the given rows that hold a vector, in id order: the full
        model's (`vector`, `vector_model`) or the first look's (`first_vector`, `first_model`).
        Rows without one, or of other dimensions, are left out (dimensions None: as stored)."""
        column, model = (_T.c.first_vector, _T.c.first_model) if first else (_T.c.vector, _T.c.vector_model)
        out_ids: list[int] = []
        out_vecs: list[np.ndarray] = []
        out_models: list[str] = []
        try:
            with self.engine.connect() as conn:
                for chunk in _id_chunks(ids):
                    for row_id, blob, name in conn.execute(
                        sa.select(_T.c.id, column, model).where(_T.c.id.in_(chunk)).order_by(_T.c.id)
                    ):
                        if not blob:
                            continue
                        vec = np.frombuffer(blob, dtype="<f4")
                        dimensions = dimensions or len(vec)
                        if vec.shape == (dimensions,):
                            out_ids.append(int(row_id))
                            out_vecs.append(vec)
                            out_models.append(name or "")
        except SQLAlchemyError as exc:
            raise self._wrap("read vectors", exc) from exc
        vecs = np.vstack(out_vecs).astype(np.float32) if out_vecs else np.zeros((0, dimensions or 0), np.float32)
        return np.asarray(out_ids, dtype=np.int64), vecs, out_models

    def set_vectors(self, updates: dict[int, tuple[bytes, str]], *, first: bool = False) -> None:
        """Record vectors computed after the rows were stored: row id -> (float32 bytes, model).
        Only a row that holds none, or one of an unrecorded model, is changed: a vector another
        replica computed with its own model is never overwritten."""
        if not updates:
            return
        column, model = ("first_vector", "first_model") if first else ("vector", "vector_model")
        statement = (_T.update().where(_T.c.id == sa.bindparam("row_id"), _T.c[model] == "")
                     .values({column: sa.bindparam("blob"), model: sa.bindparam("name")}))
        try:
            with self.engine.begin() as conn:
                conn.execute(statement, [{"row_id": k, "blob": v, "name": n} for k, (v, n) in updates.items()])
        except SQLAlchemyError as exc:
            raise self._wrap("record vectors", exc) from exc

    def live_ids(self, now: float) -> set[int]:
        try:
            with self.engine.connect() as conn:
                return {int(r[0]) for r in conn.execute(sa.select(_T.c.id).where(_T.c.expires_at > now))}
        except SQLAlchemyError as exc:
            raise self._wrap("list entries", exc) from exc

    def touch(self, last_used: dict[int, float]) -> None:
        """Record hits for LRU order (batched: called on sync, not per hit)."""
        if not last_used:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    _T.update().where(_T.c.id == sa.bindparam("row_id")).values(last_used_at=sa.bindparam("ts")),
                    [{"row_id": k, "ts": v} for k, v in last_used.items()],
                )
        except SQLAlchemyError as exc:
            raise self._wrap("record hits", exc) from exc

    def delete_expired(self, now: float) -> int:
        try:
            with self.engine.begin() as conn:
                return int(conn.execute(_T.delete().where(_T.c.expires_at <= now)).rowcount or 0)
        except SQLAlchemyError as exc:
            raise self._wrap("delete expired entries", exc) from exc

    def count(self, now: float) -> int:
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(_T).where(_T.c.expires_at > now)).scalar_one())
        except SQLAlchemyError as exc:
            raise self._wrap("count entries", exc) from exc

    def evict_lru(self, how_many: int) -> list[int]:
        """Delete the `how_many` least recently used rows in one statement; returns their ids."""
        if how_many <= 0:
            return []
        try:
            with self.engine.begin() as conn:
                ids = [
                    int(r[0])
                    for r in conn.execute(
                        sa.select(_T.c.id).order_by(_T.c.last_used_at, _T.c.id).limit(how_many)
                    )
                ]
                if ids:
                    conn.execute(_T.delete().where(_T.c.id.in_(ids)))
                return ids
        except SQLAlchemyError as exc:
            raise self._wrap("evict entries", exc) from exc

    def delete_scope(self, scope: str) -> int:
        """Remove every entry of one tenant (project deleted, or a test cleaning up)."""
        try:
            with self.engine.begin() as conn:
                return int(conn.execute(_T.delete().where(_T.c.scope == scope)).rowcount or 0)
        except SQLAlchemyError as exc:
            raise self._wrap("delete a scope", exc) from exc

"""SemanticCache: exact layer, per-partition FAISS search, near-miss guards, durable rows."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from sqlalchemy.engine import Engine

from adaptive_plugin import metrics
from adaptive_plugin._files import private_dir
from adaptive_plugin.cache._guards import near_miss_reason
from adaptive_plugin.cache._index import PartitionIndex
from adaptive_plugin.cache._request import KeyedRequest, RequestKey, bypass_reason, keyed_request, unstorable_reason
from adaptive_plugin.cache._store import EntryMeta, EntryStore
from adaptive_plugin.cache._verifier import Verifier
from adaptive_plugin.embedding import EMBED_MAX_CHARS, embedding_text
from adaptive_plugin.errors import AdaptiveError, CacheError, CacheIndexError

__all__ = ["CacheResult", "Outcome", "SemanticCache"]

log = logging.getLogger(__name__)

Outcome = Literal["hit-exact", "hit-semantic", "miss", "bypass"]
_METRIC_OUTCOME = {"hit-exact": "hit_exact", "hit-semantic": "hit_semantic", "miss": "miss", "bypass": "bypass"}


class _Embedder(Protocol):
    dimensions: int

    def embed_one(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class CacheResult:
    """The outcome of one lookup; `response` is set on hits only."""

    outcome: Outcome
    response: dict[str, Any] | None
    similarity: float | None
    reason: str
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)  # computed by this lookup
    keyed: KeyedRequest | None = field(default=None, repr=False, compare=False)  # for the store that follows

    @property
    def hit(self) -> bool:
        return self.outcome in ("hit-exact", "hit-semantic")


class SemanticCache:
    """A tenant-scoped semantic cache of chat completions, durable in a SQL database.

    >>> cache = SemanticCache("/var/lib/adaptive/cache")                      # doctest: +SKIP
    >>> msgs = [{"role": "user", "content": "What is the capital of France?"}]
    >>> cache.put("project-1", msgs, response, {"model": "gpt-4o-mini"})     # doctest: +SKIP
    >>> cache.get("project-1", [{"role": "user", "content": "What's France's capital city?"}],
    ...           {"model": "gpt-4o-mini"})                                   # doctest: +SKIP
    {'id': ..., 'object': 'chat.completion', ...}

    `verifier=True` adds the learned pair verifier (`_verifier.py`) after the hard guards;
    a candidate is served only if its score reaches `accept_threshold` (default: the
    artifact's calibrated value).

    `store(..., wait=False)` (what the proxy uses) queues the row and returns: a writer thread
    inserts queued rows in one transaction every `write_delay` seconds, so an answer becomes a
    hit about that much later and the request path never waits on the database's write lock.
    `flush()` and `close()` write what is queued; a crash loses at most that window of entries.

    Entries never cross scopes, models, system prompts, earlier turns, tools or sampling
    parameters. Several workers or replicas sharing one database see each other's entries
    within `sync_interval` seconds.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        engine: Engine | None = None,
        embedder: _Embedder | None = None,
        ttl_seconds: float = 7 * 24 * 3600,
        max_entries: int = 200_000,
        evict_fraction: float = 0.05,
        similarity_threshold: float = 0.90,
        max_temperature: float = 1.0,
        candidates: int = 4,
        sync_interval: float = 1.0,
        reconcile_interval: float = 60.0,
        save_interval: float = 60.0,
        hnsw_min: int = 20_000,
        guards: bool = True,
        verifier: bool | Verifier = False,
        accept_threshold: float | None = None,
        faiss_threads: int | None = 1,
        write_delay: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from adaptive_plugin.db import make_engine, migrate

        if faiss_threads is not None:
            # One query per search: OpenMP fan-out only adds contention (10k flat: 0.3 ms on
            # one thread, 1.2 ms on two). Note this is process-wide FAISS state.
            import faiss

            faiss.omp_set_num_threads(faiss_threads)

        self.directory = Path(directory)
        private_dir(self.directory)  # entries' vectors and index files: owner only
        self._index_dir = self.directory / "index"
        self.engine = engine if engine is not None else make_engine(f"sqlite:///{self.directory / 'cache.db'}")
        migrate(self.engine)
        self._store = EntryStore(self.engine)
        self._embedder = embedder
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.evict_fraction = evict_fraction
        self.similarity_threshold = similarity_threshold
        self.max_temperature = max_temperature
        self.candidates = candidates
        self.sync_interval = sync_interval
        self.reconcile_interval = reconcile_interval
        self.save_interval = save_interval
        self.hnsw_min = hnsw_min
        self.guards = guards
        # The learned pair verifier (off by default: on the held-out pairs it did not beat
        # cosine + guards at precision >= 0.95; see README.md). True loads the shipped artifact.
        self.verifier: Verifier | None = (
            verifier if isinstance(verifier, Verifier) else Verifier.load() if verifier else None
        )
        self.accept_threshold = (
            accept_threshold
            if accept_threshold is not None
            else self.verifier.accept_threshold if self.verifier is not None else 0.0
        )
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[int, EntryMeta] = {}
        self._exact: dict[str, int] = {}
        self._indexes: dict[str, PartitionIndex] = {}
        self._touched: dict[int, float] = {}
        self._last_id = 0
        # store(wait=False) queues rows here; a writer thread inserts them in batches
        self.write_delay = write_delay
        self._pending: dict[str, dict[str, Any]] = {}
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._last_sync = self._last_reconcile = self._last_save = 0.0
        self.rebuilt_partitions = 0
        self._dimensions: int | None = embedder.dimensions if embedder is not None else None
        self._load()

    # --- set-up -------------------------------------------------------------------------

    @property
    def embedder(self) -> _Embedder:
        if self._embedder is None:
            from adaptive_plugin.embedding import Embedder, default_model_dir

            self._embedder = Embedder.from_directory(default_model_dir())
            self._dimensions = self._embedder.dimensions
        return self._embedder

    def _dims(self, vector: np.ndarray | None = None) -> int:
        if self._dimensions is None:
            self._dimensions = int(vector.shape[-1]) if vector is not None else self.embedder.dimensions
        return self._dimensions

    def _new_index(self) -> PartitionIndex:
        return PartitionIndex(self._dims(), hnsw_min=self.hnsw_min)

    def _index_path(self, partition: str) -> Path:
        return self._index_dir / f"{partition}.idx"

    def _load(self) -> None:
        """Read every live row's metadata, then each partition's index file or rebuild it."""
        now = self._clock()
        by_partition: dict[str, list[EntryMeta]] = {}
        with self._lock:
            for meta in self._store.metas(now=now):
                self._remember(meta)
                by_partition.setdefault(meta.partition, []).append(meta)
            for partition, metas in by_partition.items():
                self._open_partition(partition, {m.id for m in metas})
            self._last_sync = self._last_reconcile = self._last_save = now
            self._set_entries_gauge()

    def _open_partition(self, partition: str, live: set[int]) -> None:
        """Load the partition's index file if valid; add rows it lacks, drop rows it has extra."""
        if self._dimensions is None:
            ids, vecs = self._store.vectors(sorted(live)[:1], None)
            if not len(ids):
                return
            self._dimensions = int(vecs.shape[1])
        index = self._new_index()
        path = self._index_path(partition)
        if path.exists():
            try:
                index.load(path)
            except CacheIndexError as exc:
                log.warning("rebuilding semantic cache partition from the database: %s", exc)
                index = self._new_index()
                self.rebuilt_partitions += 1
        else:
            self.rebuilt_partitions += 1
        stale = index.ids() - live
        if stale:
            index.remove(stale)
        missing = live - index.ids()
        if missing:
            ids, vecs = self._store.vectors(missing, self._dims())
            index.add(ids, vecs)
        self._indexes[partition] = index
        if index.dirty or not path.exists():
            index.save(path)

    def _remember(self, meta: EntryMeta) -> None:
        self._entries[meta.id] = meta
        self._exact.setdefault(meta.exact_hash, meta.id)
        self._last_id = max(self._last_id, meta.id)

    def _forget(self, ids: list[int] | set[int]) -> None:
        per_partition: dict[str, list[int]] = {}
        for row_id in ids:
            meta = self._entries.pop(row_id, None)
            if meta is None:
                continue
            if self._exact.get(meta.exact_hash) == row_id:
                del self._exact[meta.exact_hash]
            per_partition.setdefault(meta.partition, []).append(row_id)
            self._touched.pop(row_id, None)
        for partition, row_ids in per_partition.items():
            index = self._indexes.get(partition)
            if index is not None:
                index.remove(row_ids)
                if not len(index):
                    del self._indexes[partition]
                    self._index_path(partition).unlink(missing_ok=True)

    def _set_entries_gauge(self) -> None:
        metrics.CACHE_ENTRIES.set(len(self._entries))

    # --- synchronisation ------------------------------------------------------------------

    def sync(self, *, force: bool = True) -> int:
        """Pull rows other workers stored; returns how many were added to this worker's indexes.

        Runs by itself on lookup/store when `sync_interval` seconds have passed. Rows are
        fetched by `id > last seen id`, plus rows created in the last 30 s, which catches
        ids that committed out of order on PostgreSQL.
        """
        now = self._clock()
        if not force and now - self._last_sync < self.sync_interval:
            return 0
        with self._lock:
            self._last_sync = now
            if self._touched:
                touched, self._touched = self._touched, {}
                self._store.touch(touched)
            unknown = self._store.recent_ids(after_id=self._last_id, created_after=now - 30.0, now=now)
            unknown.difference_update(self._entries)
            fresh = list(self._store.metas(ids=unknown, now=now)) if unknown else []
            by_partition: dict[str, list[int]] = {}
            for meta in fresh:
                self._remember(meta)
                by_partition.setdefault(meta.partition, []).append(meta.id)
            for partition, row_ids in by_partition.items():
                ids, vecs = self._store.vectors(row_ids, self._dims())
                if not len(ids):
                    continue
                self._dims(vecs[0])
                self._indexes.setdefault(partition, self._new_index()).add(ids, vecs)
            if now - self._last_reconcile >= self.reconcile_interval:
                self._reconcile(now)
            if now - self._last_save >= self.save_interval:
                self.save()
            self._set_entries_gauge()
            return len(fresh)

    def _reconcile(self, now: float) -> None:
        """Delete expired rows, drop entries another worker evicted, enforce max_entries."""
        self._last_reconcile = now
        expired = self._store.delete_expired(now)
        if expired:
            metrics.CACHE_EVICTIONS.labels(reason="ttl").inc(expired)
        live = self._store.live_ids(now)
        gone = [row_id for row_id in self._entries if row_id not in live]
        self._forget(gone)
        self._enforce_capacity(len(live))

    def _enforce_capacity(self, count: int) -> None:
        if count <= self.max_entries:
            return
        if self._touched:  # LRU order must see this worker's recent hits
            touched, self._touched = self._touched, {}
            self._store.touch(touched)
        batch = max(1, int(self.max_entries * self.evict_fraction))
        evicted = self._store.evict_lru(count - self.max_entries + batch)
        self._forget(evicted)
        metrics.CACHE_EVICTIONS.labels(reason="capacity").inc(len(evicted))

    def save(self) -> None:
        """Write changed partition index files atomically (also done every `save_interval`)."""
        with self._lock:
            self._last_save = self._clock()
            for partition, index in self._indexes.items():
                if index.dirty:
                    index.save(self._index_path(partition))

    def close(self) -> None:
        """Write queued entries, pending hit times and index files; later stores write at once."""
        self._closing = True
        self._wake.set()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=10)
        self.flush()
        with self._lock:
            if self._touched:
                touched, self._touched = self._touched, {}
                self._store.touch(touched)
            self.save()

    # --- lookup -----------------------------------------------------------------------------

    def lookup(
        self,
        scope: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any] | None = None,
        *,
        embedding: np.ndarray | None = None,
        keyed: KeyedRequest | None = None,
    ) -> CacheResult:
        """Serve a cached response for this request if one answers it; never raises on a miss.

        `embedding` is the precomputed vector of `embedding_text(query_text(messages))`; without it the
        cache embeds the text itself, but only after the exact layer has missed. `keyed`: this
        request's key from an earlier call (`keyed`, `needs_embedding`), used if it still matches;
        the result carries the key for the store.
        """
        started = time.perf_counter()
        try:
            result = self._lookup(scope, messages, params, embedding, keyed)
        finally:
            metrics.CACHE_LOOKUP_SECONDS.observe(time.perf_counter() - started)
        metrics.CACHE_LOOKUPS.labels(outcome=_METRIC_OUTCOME[result.outcome]).inc()
        return result

    def _lookup(
        self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None, embedding: np.ndarray | None,
        keyed: KeyedRequest | None,
    ) -> CacheResult:
        reason = bypass_reason(messages, params, max_temperature=self.max_temperature, store=False)
        if reason is not None:
            return CacheResult("bypass", None, None, reason)
        keyed = keyed_request(scope, messages, params, keyed)
        key = keyed.key
        self.sync(force=False)
        now = self._clock()
        with self._lock:
            row_id = self._exact.get(key.exact)
        if row_id is not None:
            response = self._serve(row_id, now)
            if response is not None:
                return CacheResult("hit-exact", response, 1.0, "identical request", keyed=keyed)
        with self._lock:
            index = self._indexes.get(key.partition)
            if index is None:
                return CacheResult("miss", None, None, "nothing cached for this partition", keyed=keyed)
        vector = embedding if embedding is not None else self.embedder.embed_one(embedding_text(key.query))
        with self._lock:
            hits = index.search(vector, self.candidates)
        best: float | None = hits[0][1] if hits else None
        why = "no entry above the similarity threshold"
        for row_id, similarity in hits:
            if similarity < self.similarity_threshold:
                break
            with self._lock:
                meta = self._entries.get(row_id)
            if meta is None or meta.expires_at <= now:
                continue
            if key.query[EMBED_MAX_CHARS:] != meta.query_text[EMBED_MAX_CHARS:]:
                # only the first EMBED_MAX_CHARS characters are embedded: beyond them, texts must match
                why = f"texts differ beyond the embedded first {EMBED_MAX_CHARS} characters"
                continue
            if self.guards:
                near = near_miss_reason(key.query, meta.query_text)
                if near is not None:
                    why = f"near miss ({near}) at similarity {similarity:.3f}"
                    continue
            if self.verifier is not None:
                score = self.verifier.score(key.query, meta.query_text, similarity)
                if score < self.accept_threshold:
                    why = f"verifier rejected ({score:.2f} < {self.accept_threshold:.2f}) at similarity {similarity:.3f}"
                    continue
            response = self._serve(row_id, now)
            if response is not None:
                return CacheResult("hit-semantic", response, similarity, f"similar request ({similarity:.3f})",
                                   keyed=keyed)
        return CacheResult("miss", None, best, why, embedding=vector, keyed=keyed)

    def keyed(self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None = None,
              known: KeyedRequest | None = None) -> KeyedRequest:
        """This request's key: `known` while the request still matches it, else computed (and
        hashed) now. Pass it to `needs_embedding`, `lookup` and `store`: one hash per request."""
        return keyed_request(scope, messages, params, known)

    def needs_embedding(self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None = None, *,
                        keyed: KeyedRequest | None = None) -> bool:
        """Whether `lookup` would embed this request's query: not bypassed, no exact hit, and
        something cached in its partition. Cheap (hashing and dict reads, no lock, no database):
        callers use it to start the embedding early, overlapped with other work."""
        if bypass_reason(messages, params, max_temperature=self.max_temperature, store=False) is not None:
            return False
        key = keyed_request(scope, messages, params, keyed).key
        return key.exact not in self._exact and key.partition in self._indexes

    def _serve(self, row_id: int, now: float) -> dict[str, Any] | None:
        """The stored response, or None (and the entry dropped) if another worker removed it."""
        text = self._store.response(row_id, now)
        if text is None:
            with self._lock:
                self._forget([row_id])
            return None
        with self._lock:
            self._touched[row_id] = now
        response: dict[str, Any] = json.loads(text)
        return response

    # --- store ------------------------------------------------------------------------------

    def store(
        self,
        scope: str,
        messages: list[dict[str, Any]],
        response: dict[str, Any],
        params: dict[str, Any] | None = None,
        *,
        embedding: np.ndarray | None = None,
        wait: bool = True,
        keyed: KeyedRequest | None = None,
    ) -> bool:
        """Cache a successful response; returns False when it is skipped (and why is logged).

        With `wait=False` the row is queued for the writer thread (see the class docstring).
        `keyed`: the request's key from its lookup (`CacheResult.keyed`), used if it still matches.
        """
        key, reason = self._store_key(scope, messages, response, params, keyed)
        text = None
        if key is not None:
            try:  # serialised once: the row stores this text
                text = json.dumps(response, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError):
                key, reason = None, "response is not JSON-serialisable"
        if key is None or text is None:
            log.debug("semantic cache skipped a store: %s", reason)
            metrics.CACHE_STORES.labels(result="skipped").inc()
            return False
        vector = embedding if embedding is not None else self.embedder.embed_one(embedding_text(key.query))
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise CacheError("the query embedding is zero or not finite")
        vector = vector / norm
        now = self._clock()
        row = {
            "scope": scope,
            "partition": key.partition,
            "exact_hash": key.exact,
            "query_text": key.query,
            "vector": vector.astype("<f4").tobytes(),
            "response_json": text,
            "created_at": now,
            "last_used_at": now,
            "expires_at": now + self.ttl_seconds,
        }
        if wait or self._closing:
            self._write([row])
            return True
        with self._pending_lock:
            self._pending[key.exact] = row
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="adaptive-cache-writer", daemon=True)
                self._writer.start()
        self._wake.set()
        return True

    def storable(
        self, scope: str, messages: list[dict[str, Any]], response: dict[str, Any], params: dict[str, Any] | None = None,
        *, keyed: KeyedRequest | None = None,
    ) -> bool:
        """Whether `store` would keep this answer (so it is worth embedding the query first)."""
        return self._store_key(scope, messages, response, params, keyed)[0] is not None

    def _store_key(
        self, scope: str, messages: list[dict[str, Any]], response: dict[str, Any], params: dict[str, Any] | None,
        keyed: KeyedRequest | None = None,
    ) -> tuple[RequestKey | None, str | None]:
        reason = bypass_reason(messages, params, max_temperature=self.max_temperature, store=True)
        reason = reason or unstorable_reason(response)
        if reason is not None:
            return None, reason
        key = keyed_request(scope, messages, params, keyed).key
        cached = key.exact in self._exact  # a dict read: no lock, so the event loop never waits on sync()
        with self._pending_lock:
            if cached or key.exact in self._pending:
                return None, "already cached"
        return key, None

    def flush(self) -> int:
        """Write every queued entry now; returns how many were written."""
        with self._pending_lock:
            rows, self._pending = list(self._pending.values()), {}
        if rows:
            self._write(rows)
        return len(rows)

    def _write_loop(self) -> None:
        while not self._closing:
            self._wake.wait()
            if not self._closing:
                time.sleep(self.write_delay)  # gather a batch: one transaction for all of it
            self._wake.clear()
            try:
                self.flush()
            except AdaptiveError as exc:  # the answers were delivered; only their cache entries are lost
                log.error("semantic cache could not write queued entries: %s", exc)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows in one transaction, then add them to this worker's indexes."""
        try:
            ids = self._store.insert(rows)
        except AdaptiveError:
            metrics.CACHE_STORES.labels(result="failed").inc(len(rows))
            raise
        with self._lock:
            for row_id, row in zip(ids, rows):
                if row_id in self._entries:  # a concurrent sync() already picked it up
                    continue
                vector = np.frombuffer(row["vector"], dtype="<f4")
                self._remember(EntryMeta(row_id, row["partition"], row["exact_hash"], row["query_text"], row["expires_at"]))
                self._dims(vector)
                self._indexes.setdefault(row["partition"], self._new_index()).add(
                    np.array([row_id], dtype=np.int64), vector.reshape(1, -1)
                )
            if len(self._entries) > self.max_entries:
                self._enforce_capacity(len(self._entries))
            self._set_entries_gauge()
        metrics.CACHE_STORES.labels(result="stored").inc(len(rows))
        self.sync(force=False)

    # --- the simple API -------------------------------------------------------------------------

    def get(self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The cached response for this request, or None."""
        return self.lookup(scope, messages, params).response

    def put(
        self, scope: str, messages: list[dict[str, Any]], response: dict[str, Any], params: dict[str, Any] | None = None
    ) -> None:
        """Cache `response` for this request if it is cacheable."""
        self.store(scope, messages, response, params)

    async def aget(
        self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.get, scope, messages, params)

    async def aput(
        self, scope: str, messages: list[dict[str, Any]], response: dict[str, Any], params: dict[str, Any] | None = None
    ) -> None:
        await asyncio.to_thread(self.put, scope, messages, response, params)

    async def alookup(
        self,
        scope: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any] | None = None,
        *,
        embedding: np.ndarray | None = None,
    ) -> CacheResult:
        return await asyncio.to_thread(self.lookup, scope, messages, params, embedding=embedding)

    async def astore(
        self,
        scope: str,
        messages: list[dict[str, Any]],
        response: dict[str, Any],
        params: dict[str, Any] | None = None,
        *,
        embedding: np.ndarray | None = None,
    ) -> bool:
        return await asyncio.to_thread(self.store, scope, messages, response, params, embedding=embedding)

    def clear_scope(self, scope: str) -> int:
        """Delete every entry of one tenant from the database and this worker's indexes."""
        deleted = self._store.delete_scope(scope)
        with self._lock:
            self._reconcile(self._clock())
            self._set_entries_gauge()
        return deleted

    def stats(self) -> dict[str, int]:
        """Entry, partition and rebuild counts of this worker (for health endpoints and tests)."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "partitions": len(self._indexes),
                "rebuilt_partitions": self.rebuilt_partitions,
                "last_id": self._last_id,
            }

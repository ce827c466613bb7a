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
from adaptive_plugin.cache._index import PartitionIndex, write_index_file
from adaptive_plugin.cache._request import KeyedRequest, RequestKey, bypass_reason, keyed_request, unstorable_reason
from adaptive_plugin.cache._store import EntryMeta, EntryStore
from adaptive_plugin.cache._vectors import Partitions, VectorSpace
from adaptive_plugin.cache._verifier import Verifier
from adaptive_plugin.embedding import EMBED_MAX_CHARS, embedding_text
from adaptive_plugin.errors import AdaptiveError, CacheError, CacheIndexError

__all__ = ["CacheResult", "Outcome", "SemanticCache"]

log = logging.getLogger(__name__)

Outcome = Literal["hit-exact", "hit-semantic", "miss", "bypass"]
# How long the event loop's first look waits for the indexes another thread holds (adding a
# batch of stored rows, a sync's bookkeeping: well under this) before leaving the lookup to a
# thread; that way costs a thread hand-off and, from authentication, a full embedding.
_LOOP_WAIT = 0.002
_BUSY_BATCH = 8  # rows per batch from which the writer's longer window pays (see SemanticCache)
_METRIC_OUTCOME = {"hit-exact": "hit_exact", "hit-semantic": "hit_semantic", "miss": "miss", "bypass": "bypass"}


class _Embedder(Protocol):
    dimensions: int

    def embed_one(self, text: str) -> np.ndarray: ...


# The first look's threshold: a lookup whose nearest entry by the static table is below it is a
# miss without a full embedding. Chosen on the tune half of the cache data as the highest value
# that loses no hit the full model alone would make (bench/RESULTS.md, "Cheap misses").
FIRST_LOOK_THRESHOLD = 0.62


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
    inserts queued rows in one transaction after `write_delay` seconds (default 0: a quiet
    cache writes each answer as it comes, so a paraphrase sent right after its first answer is
    a hit), and the request path never waits on the database's write lock.
    While answers arrive fast enough to fill batches of `_BUSY_BATCH` rows in `busy_write_delay`
    seconds, the writer gathers them that long instead: most of a transaction's CPU is its
    commit (SQLite, one row at a time: about 300 us per row; 16 at once: 50-85 us per row).
    `flush()` and `close()` write what is queued; a crash loses at most that window of entries.

    Entries never cross scopes, models, system prompts, earlier turns, tools or sampling
    parameters. Several workers or replicas sharing one database see each other's entries
    within `sync_interval` seconds.

    `first_look` (a `StaticEmbedder`): the cascade. Every entry gets a first-look vector when it
    is stored; a lookup searches those first and is a miss, with no full embedding, when no entry
    is within `first_look_threshold` or every one that is fails a guard. Otherwise the query is
    embedded fully and the nearest of `first_look_candidates` is decided as without the cascade:
    full-model similarity, threshold, guards, verifier. An entry's full vector is computed when
    its request was embedded anyway, else the first time a lookup comes near it (at most
    `entry_embeddings` per lookup). See `_vectors.py` for the vectors' identities.
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
        first_look: Any = None,
        first_look_threshold: float = FIRST_LOOK_THRESHOLD,
        first_look_candidates: int = 4,
        entry_embeddings: int = 4,
        faiss_threads: int | None = 1,
        write_delay: float = 0.0,
        busy_write_delay: float = 0.25,
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
        self.first_look = first_look
        self.first_look_threshold = first_look_threshold
        self.first_look_candidates = first_look_candidates
        self.entry_embeddings = entry_embeddings
        full_space = VectorSpace(first=False, identity=getattr(embedder, "identity", ""),
                                 dimensions=embedder.dimensions if embedder is not None else None,
                                 embed=lambda text: self.embedder.embed_one(text), hnsw_min=hnsw_min)
        first_space = None if first_look is None else VectorSpace(
            first=True, identity=first_look.identity, dimensions=first_look.dimensions, embed=first_look.embed_one,
            hnsw_min=hnsw_min)
        self._parts = Partitions(self._store, self._index_dir, full_space, first_space)
        self._clock = clock
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()  # one sync() at a time (it reads the database outside _lock)
        self._save_lock = threading.Lock()  # one save() at a time (it writes files outside _lock)
        self._entries: dict[int, EntryMeta] = {}
        self._exact: dict[str, int] = {}
        # each partition's searched vectors: the first look's with the cascade, else the full model's
        self._indexes = self._parts.searched
        self._touched: dict[int, float] = {}
        self._last_id = 0
        # store(wait=False) queues rows here; a writer thread inserts them in batches
        self.write_delay = write_delay
        self.busy_write_delay = busy_write_delay
        self._write_rate = 0.0  # rows per second of the last batch (see _window)
        self._last_write = time.monotonic()
        self._pending: dict[str, dict[str, Any]] = {}
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._last_sync = self._last_reconcile = self._last_save = 0.0
        self._load()

    # --- set-up -------------------------------------------------------------------------

    @property
    def embedder(self) -> _Embedder:
        if self._embedder is None:
            from adaptive_plugin.embedding import Embedder, default_model_dir

            self._embedder = Embedder.from_directory(default_model_dir())
            self._parts.full_space.dimensions = self._parts.full_space.dimensions or self._embedder.dimensions
        return self._embedder

    @property
    def rebuilt_partitions(self) -> int:
        """Partitions whose index file was missing, damaged or of other vectors (rebuilt from the rows)."""
        return self._parts.rebuilt

    def _load(self) -> None:
        """Read every live row's metadata, then each partition's index file or rebuild it."""
        now = self._clock()
        by_partition: dict[str, list[EntryMeta]] = {}
        with self._lock:
            for meta in self._store.metas(now=now):
                self._remember(meta)
                by_partition.setdefault(meta.partition, []).append(meta)
            for partition, metas in by_partition.items():
                self._open_partition(partition, {m.id: m.query_text for m in metas})
            self._last_sync = self._last_reconcile = self._last_save = now
            self._set_entries_gauge()

    def _open_partition(self, partition: str, live: dict[int, str]) -> None:
        self._parts.open(partition, live)
        self._wake_writer_for_updates()

    def _wake_writer_for_updates(self) -> None:
        if self._parts.has_updates():
            self._start_writer()
            self._wake.set()

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
            self._parts.remove(partition, row_ids)

    def _set_entries_gauge(self) -> None:
        metrics.CACHE_ENTRIES.set(len(self._entries))

    # --- synchronisation ------------------------------------------------------------------

    def sync(self, *, force: bool = True) -> int:
        """Pull rows other workers stored; returns how many were added to this worker's indexes.

        Runs by itself on lookup/store when `sync_interval` seconds have passed. Rows are
        fetched by `id > last seen id`, plus, on PostgreSQL, rows created in the last 30 s, which
        catches ids that committed out of order (SQLite commits one writer at a time, in id order).
        """
        now = self._clock()
        if not force and now - self._last_sync < self.sync_interval:
            return 0
        # The database is read and written outside `_lock`: the event loop's first look waits at
        # most _LOOP_WAIT for that lock, and a lookup that finds it held longer goes the slow way
        # (a thread, a full embedding). One sync at a time (`_sync_lock`); an unforced one skips
        # while another runs.
        if not self._sync_lock.acquire(blocking=force):
            return 0
        try:
            with self._lock:
                self._last_sync = now
                touched, self._touched = self._touched, {}
                after_id = self._last_id
            if touched:
                self._store.touch(touched)
            # PostgreSQL hands out ids before commit, so a lower id can appear later; SQLite commits in id order
            window = 30.0 if self.engine.dialect.name == "postgresql" else 0.0
            recent = self._store.recent_ids(after_id=after_id, created_after=now - window if window else None, now=now)
            with self._lock:
                unknown = recent.difference(self._entries)
            fresh = list(self._store.metas(ids=unknown, now=now)) if unknown else []
            with self._lock:
                by_partition: dict[str, list[int]] = {}
                for meta in fresh:
                    if meta.id in self._entries:  # this worker's writer added it meanwhile
                        continue
                    self._remember(meta)
                    by_partition.setdefault(meta.partition, []).append(meta.id)
                for partition, row_ids in by_partition.items():
                    self._parts.add_known(partition, {i: self._entries[i].query_text for i in row_ids})
                self._wake_writer_for_updates()
            if now - self._last_reconcile >= self.reconcile_interval:
                self._reconcile(now)
            if now - self._last_save >= self.save_interval:
                self.save()
            with self._lock:
                self._set_entries_gauge()
            return len(fresh)
        finally:
            self._sync_lock.release()

    def _reconcile(self, now: float) -> None:
        """Delete expired rows, drop entries another worker evicted, enforce max_entries.

        The database work runs outside `_lock`; only entries known before the live ids were read
        can be missing from them (a row this worker stores meanwhile is not dropped)."""
        self._last_reconcile = now
        expired = self._store.delete_expired(now)
        if expired:
            metrics.CACHE_EVICTIONS.labels(reason="ttl").inc(expired)
        with self._lock:
            known = set(self._entries)
        live = self._store.live_ids(now)
        with self._lock:
            self._forget([row_id for row_id in known if row_id not in live])  # _forget skips ids dropped meanwhile
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
        """Write changed partition index files atomically (also done every `save_interval`).

        The indexes are serialised under `_lock` (a memory copy), written and synced to disk
        outside it; saves take turns, so an older snapshot never replaces a newer file."""
        with self._save_lock:
            with self._lock:
                self._last_save = self._clock()
                files = self._parts.snapshots()
            for done, (path, data, _index) in enumerate(files):
                try:
                    write_index_file(path, data)
                except OSError:
                    for _path, _data, unwritten in files[done:]:
                        unwritten.dirty = True  # written at the next save
                    raise

    def close(self) -> None:
        """Write queued entries, pending hit times and index files; later stores write at once."""
        self._closing = True
        self._wake.set()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=10)
        self.flush()
        with self._lock:
            touched, self._touched = self._touched, {}
        if touched:
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
        first: np.ndarray | None = None,
    ) -> CacheResult:
        """Serve a cached response for this request if one answers it; never raises on a miss.

        `embedding` is the precomputed vector of `embedding_text(query_text(messages))`; without it the
        cache embeds the text itself, but only after the exact layer (and, with the cascade, the
        first look) has missed. `first`: the precomputed first-look vector (benchmarks). `keyed`:
        this request's key from an earlier call (`keyed`, `needs_embedding`), used if it still
        matches; the result carries the key for the store.
        """
        started = time.perf_counter()
        try:
            result = self._lookup(scope, messages, params, embedding, keyed, first)
        finally:
            metrics.CACHE_LOOKUP_SECONDS.observe(time.perf_counter() - started)
        metrics.CACHE_LOOKUPS.labels(outcome=_METRIC_OUTCOME[result.outcome]).inc()
        return result

    def lookup_now(
        self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None = None, *,
        keyed: KeyedRequest | None = None,
    ) -> CacheResult | None:
        """`lookup`'s answer when it needs no database read, no long lock wait and no full embedding
        (a bypass, an empty partition, a miss by the first look); None otherwise: then call
        `lookup` (off the event loop). Most misses are decided here, on the event loop, in tens
        of microseconds: a thread hand-off per request cost more CPU than the lookup itself."""
        started = time.perf_counter()
        result = self._decided_now(scope, messages, params, keyed)
        if result is not None:
            metrics.CACHE_LOOKUP_SECONDS.observe(time.perf_counter() - started)
            metrics.CACHE_LOOKUPS.labels(outcome=_METRIC_OUTCOME[result.outcome]).inc()
        return result

    def _decided_now(self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None,
                     keyed: KeyedRequest | None) -> CacheResult | None:
        reason = bypass_reason(messages, params, max_temperature=self.max_temperature, store=False)
        if reason is not None:
            return CacheResult("bypass", None, None, reason)
        keyed = keyed_request(scope, messages, params, keyed)
        key = keyed.key
        now = self._clock()
        if now - self._last_sync >= self.sync_interval or key.exact in self._exact:
            return None  # a sync is due, or an exact hit: both read the database
        index = self._indexes.get(key.partition)
        if index is None:
            return CacheResult("miss", None, None, "nothing cached for this partition", keyed=keyed)
        if self.first_look is None:
            return None
        looked = self._first_look(key, keyed, index, now, None, wait=_LOOP_WAIT)
        if looked is None or looked[0]:
            return None
        metrics.CACHE_FIRST_LOOK.labels(result="miss").inc()
        return CacheResult("miss", None, None, looked[1], keyed=keyed)

    def _lookup(
        self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None, embedding: np.ndarray | None,
        keyed: KeyedRequest | None, first: np.ndarray | None = None,
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
        if self.first_look is not None:
            return self._cascade(key, keyed, index, now, embedding, first)
        vector = embedding if embedding is not None else self.embedder.embed_one(embedding_text(key.query))
        with self._lock:
            hits = index.search(vector, self.candidates)
        return self._decide(key, keyed, hits, now, vector)

    def _cascade(self, key: RequestKey, keyed: KeyedRequest, index: PartitionIndex, now: float,
                 embedding: np.ndarray | None, first: np.ndarray | None) -> CacheResult:
        """The first look, then the full model for the entries it found near (see the class doc)."""
        near, why = self._first_look(key, keyed, index, now, first) or ([], "")
        if not near:
            metrics.CACHE_FIRST_LOOK.labels(result="miss").inc()
            return CacheResult("miss", None, None, why, keyed=keyed)
        metrics.CACHE_FIRST_LOOK.labels(result="embedded").inc()
        vector = embedding if embedding is not None else self.embedder.embed_one(embedding_text(key.query))
        hits: list[tuple[int, float]] = []
        computed = 0
        for row_id in near:
            with self._lock:
                meta = self._entries.get(row_id)
                known = self._parts.full_vector(key.partition, row_id)
            if known is None and meta is not None and computed < self.entry_embeddings:
                known = self._parts.full_space.vector_of(meta.query_text)  # outside the lock: milliseconds
                computed += 1
                self._keep_full_vector(key.partition, row_id, known)
            if known is not None:
                hits.append((row_id, round(float(np.asarray(known) @ vector), 6)))
        hits.sort(key=lambda hit: -hit[1])
        return self._decide(key, keyed, hits[: self.candidates], now, vector, guarded=True)

    def _first_look(self, key: RequestKey, keyed: KeyedRequest, index: PartitionIndex, now: float,
                    first: np.ndarray | None, *, wait: float | None = None) -> tuple[list[int], str] | None:
        """The entries near enough by the first look that pass the text checks, and why none if
        none; None if another thread held the indexes for `wait` seconds (None: wait for them)."""
        assert self.first_look is not None
        seen = keyed.memo.get("look")
        if seen is not None and seen[0] is index and seen[1] == index.version:
            return seen[2]  # this request looked already, and the partition has not changed since
        vector = first if first is not None else keyed.memo.get("first")
        if vector is None:
            vector = keyed.memo["first"] = self.first_look.embed_one(embedding_text(key.query))
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            return None
        version = index.version
        try:
            found = index.search(vector, self.first_look_candidates)
        finally:
            self._lock.release()
        if not found or found[0][1] < self.first_look_threshold:
            best = f"{found[0][1]:.3f}" if found else "none"
            return [], f"no entry near it (first look: nearest {best} < {self.first_look_threshold:.2f})"
        near: list[int] = []
        why = ""
        for row_id, similarity in found:
            if similarity < self.first_look_threshold:
                break
            meta = self._entries.get(row_id)  # a dict read: no lock (needs_embedding runs on the event loop)
            if meta is None or meta.expires_at <= now:
                continue
            reason = self._text_reason(key.query, meta.query_text)
            if reason is not None:
                why = why or f"every near entry differs: {reason} (first look {similarity:.3f})"
                continue
            near.append(row_id)
        keyed.memo["look"] = (index, version, (near, why))
        return near, why

    def _keep_full_vector(self, partition: str, row_id: int, vector: np.ndarray) -> None:
        """Remember an entry's full vector computed by a lookup, and write it back if the row has none."""
        with self._lock:
            if row_id not in self._entries:
                return
            self._parts.keep_full(partition, row_id, vector)
        self._wake_writer_for_updates()

    def _text_reason(self, query: str, cached: str) -> str | None:
        """Why `cached` cannot answer `query` whatever their similarity (None: it may)."""
        if query[EMBED_MAX_CHARS:] != cached[EMBED_MAX_CHARS:]:
            # only the first EMBED_MAX_CHARS characters are embedded: beyond them, texts must match
            return f"texts differ beyond the embedded first {EMBED_MAX_CHARS} characters"
        if self.guards:
            near = near_miss_reason(query, cached)
            if near is not None:
                return f"near miss ({near})"
        return None

    def _decide(self, key: RequestKey, keyed: KeyedRequest, hits: list[tuple[int, float]], now: float,
                vector: np.ndarray, *, guarded: bool = False) -> CacheResult:
        """Serve the first of `hits` (row id, full-model similarity; best first) that answers the
        request; `guarded`: their text checks have passed already."""
        best: float | None = hits[0][1] if hits else None
        why = "no entry above the similarity threshold"
        for row_id, similarity in hits:
            if similarity < self.similarity_threshold:
                break
            with self._lock:
                meta = self._entries.get(row_id)
            if meta is None or meta.expires_at <= now:
                continue
            reason = None if guarded else self._text_reason(key.query, meta.query_text)
            if reason is not None:
                why = f"{reason} at similarity {similarity:.3f}" if reason.startswith("near miss") else reason
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
        """Whether `lookup` would embed this request's query with the full model: not bypassed, no
        exact hit, something cached in its partition and, with the cascade, an entry near it by
        the first look that passes the text checks. Cheap (hashing, dict reads, the first look's
        tens of microseconds; no database): callers use it to start the embedding early,
        overlapped with other work."""
        if bypass_reason(messages, params, max_temperature=self.max_temperature, store=False) is not None:
            return False
        keyed = keyed_request(scope, messages, params, keyed)
        key = keyed.key
        if key.exact in self._exact:
            return False
        index = self._indexes.get(key.partition)
        if index is None:
            return False
        if self.first_look is None:
            return True
        looked = self._first_look(key, keyed, index, self._clock(), None, wait=_LOOP_WAIT)
        return looked is None or bool(looked[0])  # busy indexes: start the embedding, the lookup decides

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
        first: np.ndarray | None = None,
    ) -> bool:
        """Cache a successful response; returns False when it is skipped (and why is logged).

        With `wait=False` the row is queued for the writer thread (see the class docstring).
        `keyed`: the request's key from its lookup (`CacheResult.keyed`), used if it still matches.
        With the cascade, the query is not embedded fully for the store: `embedding` is kept if
        given, else the entry's full vector is computed when a lookup first comes near it.
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
        if embedding is None and self.first_look is None:
            embedding = self.embedder.embed_one(embedding_text(key.query))
        vector = None if embedding is None else _unit(embedding, "the query embedding")
        first_vector = None
        if self.first_look is not None:
            known = first if first is not None else keyed.memo.get("first") if keyed is not None else None
            first_vector = np.asarray(known if known is not None else self.first_look.embed_one(embedding_text(key.query)),
                                      dtype=np.float32).reshape(-1)
        now = self._clock()
        row = {
            "scope": scope,
            "partition": key.partition,
            "exact_hash": key.exact,
            "query_text": key.query,
            "vector": b"" if vector is None else vector.astype("<f4").tobytes(),
            "vector_model": "" if vector is None else self._parts.full_space.identity,
            "first_vector": None if first_vector is None else first_vector.astype("<f4").tobytes(),
            "first_model": "" if self.first_look is None else self.first_look.identity,
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
        self._start_writer()
        self._wake.set()
        return True

    def _start_writer(self) -> None:
        with self._pending_lock:
            if self._closing:
                return
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="adaptive-cache-writer", daemon=True)
                self._writer.start()

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
        """Write every queued entry now (and vectors computed for stored ones); returns how many entries."""
        with self._pending_lock:
            rows, self._pending = list(self._pending.values()), {}
        if rows:
            self._write(rows)
        with self._lock:
            updates = self._parts.take_updates()
        for space, changed in updates:
            self._store.set_vectors(changed, first=space.first)
        return len(rows)

    def _window(self) -> float:
        """How long the writer gathers rows: `busy_write_delay` while the last batch came at a rate
        that fills `_BUSY_BATCH` rows in it, else `write_delay` (a quiet cache's answers are hits
        soon after; a busy one's commits are spread over more rows)."""
        if self._write_rate * self.busy_write_delay >= _BUSY_BATCH:
            return max(self.write_delay, self.busy_write_delay)
        return self.write_delay

    def _write_loop(self) -> None:
        while not self._closing:
            self._wake.wait()
            if not self._closing:
                time.sleep(self._window())  # gather a batch: one transaction for all of it
            self._wake.clear()
            try:
                written = self.flush()
                now = time.monotonic()
                self._write_rate, self._last_write = written / max(now - self._last_write, 1e-3), now
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
                self._remember(EntryMeta(row_id, row["partition"], row["exact_hash"], row["query_text"], row["expires_at"]))
                self._parts.add_stored(row["partition"], row_id, row["vector"], row["first_vector"])
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

    @property
    def embeds_to_store(self) -> bool:
        """Whether `store` embeds a query that no lookup embedded (no cascade: every entry needs its
        full vector at once), so a caller with a faster embedding path should pass one."""
        return self.first_look is None

    def stats(self) -> dict[str, int]:
        """Entry, partition and rebuild counts of this worker (for health endpoints and tests)."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "partitions": len(self._indexes),
                "rebuilt_partitions": self.rebuilt_partitions,
                "last_id": self._last_id,
            }


def _unit(vector: np.ndarray, what: str) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise CacheError(f"{what} is zero or not finite")
    return vector / norm

"""The two kinds of vectors a cache entry has, and how a partition's index of each is filled.

* `first`: the first look's (the static token table, `embedding/_static.py`): computed for
  every entry when it is stored (microseconds), and searched first by every lookup.
* `full`: the full model's: computed when the request was embedded anyway (`model: auto`, or a
  lookup that came near an entry), or later, the first time a lookup comes near the entry.

Each vector is stored with the identity of what computed it (`vector_model`, `first_model`),
and each index file records the identity of its vectors. A vector of another identity (another
model, kernel or table, or a row written before identities were recorded) is never compared with
this process's. A first-look vector is computed again from the entry's text at once; a full one
when a lookup first comes near the entry (with the cascade; without it, such an entry answers
exact repeats only: re-embedding a whole cache at start-up would hold the proxy for minutes).
A computed vector is written back only where the row named no model (a vector another replica
computed with its own model is left alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adaptive_plugin import metrics
from adaptive_plugin.cache._index import PartitionIndex
from adaptive_plugin.cache._store import EntryStore
from adaptive_plugin.embedding import embedding_text
from adaptive_plugin.errors import CacheIndexError

__all__ = ["Partitions", "VectorSpace"]

log = logging.getLogger("adaptive_plugin.cache")


@dataclass
class VectorSpace:
    """One kind of entry vector: its identity, its dimensions and how to compute one from text."""

    first: bool  # the first look's columns (`first_vector`, `first_model`), else the full model's
    identity: str
    dimensions: int | None
    embed: Callable[[str], np.ndarray] | None  # from an entry's query text; None: cannot compute
    hnsw_min: int = 20_000
    # vectors computed here for rows that named no model: row id -> (bytes, identity), written by the writer
    updates: dict[int, tuple[bytes, str]] = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        return ".first.idx" if self.first else ".idx"

    def new_index(self) -> PartitionIndex:
        assert self.dimensions is not None
        return PartitionIndex(self.dimensions, hnsw_min=self.hnsw_min, identity=self.identity)

    def vector_of(self, text: str) -> np.ndarray:
        """This space's unit vector of an entry's query text (only if `embed` is set)."""
        assert self.embed is not None
        vector = np.asarray(self.embed(embedding_text(text)), dtype=np.float32).reshape(-1)
        if not self.first:
            metrics.CACHE_ENTRY_EMBEDDINGS.inc()
        return vector

    def fill(self, store: EntryStore, index: PartitionIndex, ids: Iterable[int], texts: dict[int, str]) -> int:
        """Add to `index` the vectors of rows `ids`: stored ones of this identity as they are; the
        others, for the first look, computed from `texts` (queued for writing back where the row
        named no model). Returns how many rows are left without a vector of this identity."""
        wanted = sorted(set(ids) - index.ids())
        if not wanted:
            return 0
        found, vectors, models = store.vectors(wanted, self.dimensions, first=self.first)
        keep = np.array([m == self.identity for m in models], dtype=bool)
        if keep.any():
            if self.dimensions is None:
                self.dimensions = int(vectors.shape[1])
            index.add(found[keep], vectors[keep])
        if not self.first or self.embed is None:
            return len(wanted) - int(keep.sum())
        named = {int(i): m for i, m in zip(found.tolist(), models, strict=True)}
        have = {int(i) for i in found[keep].tolist()}
        for row_id in wanted:
            if row_id in have or row_id not in texts:
                continue
            vector = self.vector_of(texts[row_id])
            index.add(np.array([row_id], dtype=np.int64), vector.reshape(1, -1))
            if not named.get(row_id):
                self.updates[row_id] = (vector.astype("<f4").tobytes(), self.identity)
        return 0


class Partitions:
    """Every partition's indexes in one worker: the searched one (the first look's vectors with
    the cascade, else the full model's) and, with the cascade, the full vectors known so far.
    Index files are `<partition>.first.idx` / `<partition>.idx`; the caller holds its lock."""

    def __init__(self, store: EntryStore, directory: Path, full: VectorSpace, first: VectorSpace | None) -> None:
        self._store = store
        self._directory = directory
        self.full_space, self.first_space = full, first
        self.searched_space = first if first is not None else full
        self.searched: dict[str, PartitionIndex] = {}
        self.full: dict[str, PartitionIndex] = {}  # with the cascade only (else `searched` holds them)
        self.rebuilt = 0

    def _spaces(self) -> list[VectorSpace]:
        return [self.searched_space] + ([self.full_space] if self.first_space is not None else [])

    def _path(self, partition: str, space: VectorSpace) -> Path:
        return self._directory / f"{partition}{space.suffix}"

    def _table(self, space: VectorSpace) -> dict[str, PartitionIndex]:
        return self.searched if space is self.searched_space else self.full

    def _learn_dimensions(self, space: VectorSpace, ids: Iterable[int]) -> bool:
        """No embedder was given: take the dimensions from a stored vector (False if none is)."""
        if space.dimensions is None:
            _ids, vectors, _models = self._store.vectors(sorted(ids)[:16], None, first=space.first)
            if not len(vectors):
                return False
            space.dimensions = int(vectors.shape[1])
        return True

    def open(self, partition: str, live: dict[int, str]) -> None:
        """Load the partition's index files if valid; add the rows they lack (`live`: row id ->
        query text), drop the rows they have extra; write them back if they changed."""
        for space in self._spaces():
            if not self._learn_dimensions(space, live):
                continue
            path = self._path(partition, space)
            index = space.new_index()
            if path.exists():
                try:
                    index.load(path)
                except CacheIndexError as exc:
                    log.warning("rebuilding semantic cache partition from the database: %s", exc)
                    index = space.new_index()
                    self.rebuilt += 1
            elif space is self.searched_space:
                self.rebuilt += 1
            stale = index.ids() - live.keys()
            if stale:
                index.remove(stale)
            lacking = space.fill(self._store, index, live.keys(), live)
            if lacking and space is self.searched_space:
                log.warning("semantic cache: %d entries of a partition were embedded by another model than %s; "
                            "they answer identical requests only, until they expire", lacking, space.identity)
            self._table(space)[partition] = index
            if index.dirty or not path.exists():
                index.save(path)

    def add_known(self, partition: str, texts: dict[int, str]) -> None:
        """Add rows another worker stored (`texts`: row id -> query text)."""
        for space in self._spaces():
            if not self._learn_dimensions(space, texts):
                continue
            table = self._table(space)
            if partition not in table:
                table[partition] = space.new_index()
            space.fill(self._store, table[partition], texts.keys(), texts)

    def add_stored(self, partition: str, row_id: int, vector: bytes, first: bytes | None) -> None:
        """Add a row this worker stored, with the vectors it was stored with."""
        one = np.array([row_id], dtype=np.int64)
        for space, blob in ((self.full_space, vector), (self.first_space, first)):
            if space is None or not blob:
                continue
            values = np.frombuffer(blob, dtype="<f4")
            space.dimensions = space.dimensions or len(values)
            table = self._table(space)
            if partition not in table:
                table[partition] = space.new_index()
            table[partition].add(one, values.reshape(1, -1))

    def remove(self, partition: str, row_ids: list[int]) -> None:
        """Drop rows; a partition left empty loses its index files."""
        full = self.full.get(partition)
        if full is not None:
            full.remove(row_ids)
        index = self.searched.get(partition)
        if index is not None:
            index.remove(row_ids)
            if not len(index):
                del self.searched[partition]
                self.full.pop(partition, None)
                for space in self._spaces():
                    self._path(partition, space).unlink(missing_ok=True)

    def full_vector(self, partition: str, row_id: int) -> np.ndarray | None:
        index = self.full.get(partition) if self.first_space is not None else self.searched.get(partition)
        return index.vector(row_id) if index is not None and row_id in index.ids() else None

    def keep_full(self, partition: str, row_id: int, vector: np.ndarray) -> None:
        """A full vector computed after the row was stored: kept, and written back if the row has none."""
        if partition not in self.full:
            self.full[partition] = self.full_space.new_index()
        self.full[partition].add(np.array([row_id], dtype=np.int64), vector.reshape(1, -1))
        self.full_space.updates[row_id] = (vector.astype("<f4").tobytes(), self.full_space.identity)

    def has_updates(self) -> bool:
        return any(space.updates for space in (self.full_space, self.first_space) if space is not None)

    def take_updates(self) -> list[tuple[VectorSpace, dict[int, tuple[bytes, str]]]]:
        out = []
        for space in (self.full_space, self.first_space):
            if space is not None and space.updates:
                out.append((space, space.updates))
                space.updates = {}
        return out

    def snapshots(self) -> list[tuple[Path, bytes, PartitionIndex]]:
        """(file, contents, index) of every changed index, to be written with `write_index_file`."""
        return [(self._path(partition, space), index.snapshot(), index)
                for space in self._spaces() for partition, index in self._table(space).items() if index.dirty]

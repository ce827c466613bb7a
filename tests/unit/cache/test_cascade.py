"""The cascade: the first look decides most misses without the full model, and vectors of
another model are never compared with this process's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from adaptive_plugin.cache import SemanticCache

from .conftest import CountingEmbedder, completion, user

P: dict[str, Any] = {"model": "gpt-4o-mini", "temperature": 0}


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture()
def mode() -> str:
    """These tests are of the cascade (conftest runs the other cache tests both ways)."""
    return "cascade"


@pytest.fixture()
def cascade(make_cache: Any) -> Any:
    return make_cache


def _rows(cache: SemanticCache) -> list[tuple[str, bytes, str, str]]:
    with cache.engine.connect() as conn:
        return [(r[0], bytes(r[1]), r[2], r[3]) for r in conn.execute(sa.text(
            "SELECT query_text, vector, vector_model, first_model FROM adaptive_cache_entries ORDER BY id"))]


def test_a_miss_far_from_every_entry_costs_no_embedding(cascade: Any, embedder: CountingEmbedder) -> None:
    cache = cascade()
    for text in ("How do I reverse a list in Python?", "What is the boiling point of water at sea level?"):
        assert cache.store("p", user(text), completion("stored"), P)
    before = _sample("adaptive_cache_first_look_total", result="miss")
    result = cache.lookup("p", user("Write a limerick about a cat who learns to play the tuba."), P)
    assert result.outcome == "miss" and "first look" in result.reason
    assert embedder.calls == 0  # neither the stores nor the lookup ran the full model
    assert _sample("adaptive_cache_first_look_total", result="miss") == before + 1
    # the store after the miss keeps its first-look vector only; the full one comes later, if ever
    assert cache.store("p", user("Write a limerick about a cat who learns to play the tuba."), completion("x"), P)
    assert embedder.calls == 0
    assert all(vector == b"" and model == "" and first for _q, vector, model, first in _rows(cache))


def test_near_entries_that_fail_a_guard_cost_no_embedding(cascade: Any, embedder: CountingEmbedder) -> None:
    cache = cascade()
    cache.store("p", user("Who won the Super Bowl in 2009?"), completion("the Steelers"), P)
    result = cache.lookup("p", user("Who won the Super Bowl in 2014?"), P)
    assert result.outcome == "miss" and "near miss" in result.reason and "first look" in result.reason
    assert embedder.calls == 0


def test_a_paraphrase_embeds_the_entry_once_and_remembers_it(cascade: Any, embedder: CountingEmbedder,
                                                             tmp_path: Path) -> None:
    cache = cascade(tmp_path / "c")
    cache.store("p", user("How do I reverse a list in Python?"), completion("Use reversed()."), P)
    before = _sample("adaptive_cache_entry_embeddings_total")
    first = cache.lookup("p", user("How can I reverse a Python list?"), P)
    assert first.outcome == "hit-semantic" and first.response == completion("Use reversed().")
    assert embedder.calls == 2  # the query, and the entry the first look found near it
    assert _sample("adaptive_cache_entry_embeddings_total") == before + 1
    assert cache.lookup("p", user("In Python, how to reverse a list?"), P).outcome == "hit-semantic"
    assert embedder.calls == 3  # the query only: the entry's vector is known now
    cache.close()
    (_q, vector, model, _first), = _rows(cache)
    assert len(vector) == 4 * embedder.dimensions and model == embedder.identity  # written back
    reopened = cascade(tmp_path / "c")
    assert reopened.lookup("p", user("Reversing a list in Python: how?"), P).outcome == "hit-semantic"
    assert embedder.calls == 4


def test_a_request_embedded_anyway_stores_its_full_vector(cascade: Any, embedder: CountingEmbedder) -> None:
    """`model: auto` embeds for the router: the store keeps that vector, and no lookup computes it again."""
    cache = cascade()
    vector = embedder.inner.embed_one("How do I reverse a list in Python?")
    cache.store("p", user("How do I reverse a list in Python?"), completion("Use reversed()."), P, embedding=vector)
    assert cache.lookup("p", user("How can I reverse a Python list?"), P).outcome == "hit-semantic"
    assert embedder.calls == 1


def test_a_lookup_embeds_at_most_entry_embeddings_entries(cascade: Any, embedder: CountingEmbedder) -> None:
    cache = cascade(entry_embeddings=2, first_look_threshold=0.0)
    for i, text in enumerate(("Tips for learning to cook at home?", "How to start cooking as a beginner?",
                              "Easy recipes for beginner cooks?", "Cooking basics every beginner should know?")):
        cache.store("p", user(text), completion(f"answer {i}"), P)
    cache.lookup("p", user("I want to get into cooking, where do I begin?"), P)
    assert embedder.calls == 1 + 2


def test_the_cascade_serves_what_the_full_model_alone_serves(cascade: Any, first_look: Any, tmp_path: Path) -> None:
    """The same decisions with and without the cascade on a handful of paraphrases and near misses
    (the dev-data comparison is bench/cache.py's)."""
    pairs = [("How do I reverse a list in Python?", "How can I reverse a Python list?"),
             ("What is the capital of France?", "What's the capital city of France?"),
             ("Is it safe to eat raw chicken?", "Is it unsafe to eat raw chicken?"),
             ("How do I get a job at Google?", "How do I get a job at Microsoft?"),
             ("Best way to learn the guitar as an adult?", "How should an adult start learning guitar?")]
    outcomes = {}
    for cascade_on in (False, True):
        cache = cascade(tmp_path / f"c-{cascade_on}", first_look=first_look if cascade_on else None)
        for i, (stored, _asked) in enumerate(pairs):
            cache.store(f"s{i}", user(stored), completion(stored), P)
        outcomes[cascade_on] = [cache.lookup(f"s{i}", user(asked), P).outcome for i, (_s, asked) in enumerate(pairs)]
    assert outcomes[True] == outcomes[False]
    assert outcomes[True].count("hit-semantic") >= 3


class _OtherModel(CountingEmbedder):
    """The same vectors under another identity: what a changed model or kernel looks like to the cache."""

    def __init__(self, inner: CountingEmbedder, identity: str) -> None:
        super().__init__(inner.inner)
        self.identity = identity


@pytest.mark.parametrize("cascade_on", [False, True], ids=["full", "cascade"])
def test_vectors_of_another_model_are_computed_again_and_left_alone(
    cascade: Any, embedder: CountingEmbedder, first_look: Any, tmp_path: Path, cascade_on: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    static = first_look if cascade_on else None
    texts = ["How do I reverse a list in Python?", "What is the capital of France?"]
    cache = cascade(tmp_path / "c", first_look=static)
    for text in texts:
        cache.store("p", user(text), completion(text), P, embedding=embedder.inner.embed_one(text))
    cache.close()
    stored = _rows(cache)
    other = _OtherModel(embedder, "another-model:model.onnx:1")
    reopened = cascade(tmp_path / "c", embedder=other, first_look=static)
    # the index file records the model of its vectors: refused, the partition rebuilt from the rows
    assert "holds vectors of all-MiniLM-L6-v2" in caplog.text and "not of another-model" in caplog.text
    result = reopened.lookup("p", user("How can I reverse a Python list?"), P)
    if cascade_on:  # the entry's vector computed again with this model, when the lookup came near it
        assert result.outcome == "hit-semantic" and result.response == completion(texts[0])
        assert other.calls == 2
    else:  # refused: no re-embedding of the whole cache at start-up; exact repeats are still served
        assert result.outcome == "miss" and "answer identical requests only" in caplog.text
        assert reopened.lookup("p", user(texts[0]), P).outcome == "hit-exact"
    reopened.close()
    assert _rows(reopened) == stored  # the rows keep the other model's vectors


def test_rows_of_an_older_version_are_embedded_again_and_gain_a_model(
    cascade: Any, embedder: CountingEmbedder, tmp_path: Path
) -> None:
    """A row written before vectors named their model (schema 2): its vector is not trusted (it
    may be another CPU's saturated one); the first lookup near it computes it and records the model."""
    cache = cascade(tmp_path / "c")
    text = "How do I reverse a list in Python?"
    cache.store("p", user(text), completion("Use reversed()."), P)
    cache.close()
    with cache.engine.begin() as conn:
        conn.execute(sa.text("UPDATE adaptive_cache_entries SET vector = :v, vector_model = '', first_vector = NULL, "
                             "first_model = ''"), {"v": np.ones(embedder.dimensions, "<f4").tobytes()})
    for index_file in (tmp_path / "c" / "index").iterdir():  # an older version's files record no model: refused
        index_file.unlink()
    reopened = cascade(tmp_path / "c")
    assert reopened.lookup("p", user("How can I reverse a Python list?"), P).outcome == "hit-semantic"
    reopened.close()
    (_q, vector, model, first), = _rows(reopened)
    assert model == embedder.identity and first == reopened.first_look.identity
    np.testing.assert_allclose(np.frombuffer(vector, "<f4"), embedder.inner.embed_one(text), atol=1e-6)


def test_an_index_file_of_other_vectors_is_refused(tmp_path: Path) -> None:
    from adaptive_plugin.cache._index import PartitionIndex
    from adaptive_plugin.errors import CacheIndexError

    index = PartitionIndex(4, identity="model-a")
    index.add(np.array([1], dtype=np.int64), np.eye(4, dtype=np.float32)[:1])
    index.save(tmp_path / "p.idx")
    PartitionIndex(4, identity="model-a").load(tmp_path / "p.idx")
    with pytest.raises(CacheIndexError, match="holds vectors of model-a, not of model-b"):
        PartitionIndex(4, identity="model-b").load(tmp_path / "p.idx")


@pytest.mark.parametrize("busy", ["sync reads the database", "save writes the index files"])
def test_the_event_loop_decides_a_miss_while_another_thread_waits_on_the_database_or_disk(
    cascade: Any, embedder: CountingEmbedder, clock: Any, monkeypatch: pytest.MonkeyPatch, busy: str,
) -> None:
    """A lookup that finds the indexes locked goes the slow way (a thread, and for the proxy a full
    embedding started at authentication): a sync's queries and a save's fsync must not hold them."""
    import threading

    from adaptive_plugin.cache import _cache

    cache = cascade(sync_interval=3600.0)
    cache.store("p", user("How do I reverse a list in Python?"), completion("stored"), P)
    entered, release = threading.Event(), threading.Event()

    def stalled(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            assert release.wait(10)
            return original(*args, **kwargs)
        return wrapper

    if busy.startswith("sync"):
        monkeypatch.setattr(cache._store, "recent_ids", stalled(cache._store.recent_ids))
        worker = threading.Thread(target=cache.sync)
    else:
        monkeypatch.setattr(_cache, "write_index_file", stalled(_cache.write_index_file))
        worker = threading.Thread(target=cache.save)
    worker.start()
    try:
        assert entered.wait(10)
        result = cache.lookup_now("p", user("Write a limerick about a cat who learns to play the tuba."), P)
        assert result is not None and result.outcome == "miss" and "first look" in result.reason
        assert not cache.needs_embedding("p", user("Name three moons of Jupiter."), P)
    finally:
        release.set()
        worker.join(10)
    assert embedder.calls == 0
    if busy.startswith("save"):  # the file was written after all, and reopens
        assert list((cache.directory / "index").glob("*.first.idx"))


def test_indexes_held_longer_than_the_loops_wait_leave_the_lookup_to_a_thread(cascade: Any) -> None:
    import threading

    cache = cascade(sync_interval=3600.0)
    cache.store("p", user("How do I reverse a list in Python?"), completion("stored"), P)
    query = user("Write a limerick about a cat who learns to play the tuba.")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with cache._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert cache.lookup_now("p", query, P) is None  # undecided: the caller looks up in a thread
        assert cache.needs_embedding("p", query, P)  # and may start the embedding meanwhile
    finally:
        release.set()
        holder.join(10)
    assert cache.lookup("p", query, P).outcome == "miss"

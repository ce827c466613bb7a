"""SemanticCache behaviour end to end with the real embedding model and SQLite."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from adaptive_plugin.cache import SemanticCache
from adaptive_plugin.errors import AdaptiveError

from .conftest import Clock, CountingEmbedder, completion, user

P: dict[str, Any] = {"model": "gpt-4o-mini", "temperature": 0}


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_tenant_isolation_is_absolute(make_cache: Any) -> None:
    cache = make_cache()
    assert cache.store("tenant-a", user("What is the capital of France?"), completion("Paris"), P)
    for q in ("What is the capital of France?", "What's the capital city of France?"):
        result = cache.lookup("tenant-b", user(q), P)
        assert result.outcome == "miss" and result.response is None
    assert cache.get("tenant-a", user("What is the capital of France?"), P) == completion("Paris")


def test_exact_hit_embeds_nothing(make_cache: Any, embedder: CountingEmbedder) -> None:
    cache = make_cache()
    cache.put("p", user("What is the capital of France?"), completion("Paris"), P)
    calls = embedder.calls
    before = _sample("adaptive_cache_lookups_total", outcome="hit_exact")
    result = cache.lookup("p", user("what is the  capital of France?"), P)
    assert result.outcome == "hit-exact" and result.response == completion("Paris")
    assert embedder.calls == calls
    assert _sample("adaptive_cache_lookups_total", outcome="hit_exact") == before + 1


def test_paraphrase_hits_semantically(make_cache: Any, embedder: CountingEmbedder) -> None:
    cache = make_cache()
    cache.put("p", user("How do I reverse a list in Python?"), completion("Use reversed()."), P)
    result = cache.lookup("p", user("How can I reverse a Python list?"), P)
    assert result.outcome == "hit-semantic"
    assert result.response == completion("Use reversed().")
    assert result.similarity is not None and result.similarity >= cache.similarity_threshold


def test_precomputed_embedding_is_used(make_cache: Any, embedder: CountingEmbedder) -> None:
    cache = make_cache()
    vec = embedder.inner.embed_one("How do I reverse a list in Python?")
    assert cache.store("p", user("How do I reverse a list in Python?"), completion("ok"), P, embedding=vec)
    calls = embedder.calls
    q = embedder.inner.embed_one("How can I reverse a Python list?")
    assert cache.lookup("p", user("How can I reverse a Python list?"), P, embedding=q).outcome == "hit-semantic"
    assert embedder.calls == calls


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("Is it safe to eat raw chicken?", "Is it unsafe to eat raw chicken?"),
        ("How do I enable 2FA on my GitHub account?", "How do I disable 2FA on my GitHub account?"),
        ("Should I accept a job offer by email?", "Should I decline a job offer by email?"),
        ("Is it safe to eat raw chicken?", "Is it not safe to eat raw chicken?"),
        ("Who won the Super Bowl in 2009?", "Who won the Super Bowl in 2014?"),
        ("How many calories are in 100 grams of rice?", "How many calories are in 100 ounces of rice?"),
        ("How do I get a job at Google?", "How do I get a job at Microsoft?"),
        ("How do I read a CSV file in Python?", "How do I read a CSV file in Java?"),
    ],
)
def test_near_misses_miss(make_cache: Any, stored: str, asked: str) -> None:
    cache = make_cache()
    cache.put("p", user(stored), completion("the stored answer"), P)
    result = cache.lookup("p", user(asked), P)
    assert result.outcome == "miss", result
    assert result.response is None


@pytest.mark.parametrize(
    ("change_messages", "change_params"),
    [
        (None, {"model": "gpt-4o"}),
        (user("What is the capital of France?", system="Answer in one word."), {}),
        (None, {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]}),
        (None, {"response_format": {"type": "json_object"}}),
        (None, {"temperature": 0.7}),
        (
            user(
                "What is the capital of France?",
                history=[{"role": "user", "content": "Let's talk about Texas."}, {"role": "assistant", "content": "OK."}],
            ),
            {},
        ),
    ],
)
def test_partitions_never_share(make_cache: Any, change_messages: Any, change_params: dict[str, Any]) -> None:
    cache = make_cache()
    cache.put("p", user("What is the capital of France?"), completion("Paris"), P)
    result = cache.lookup("p", change_messages or user("What is the capital of France?"), {**P, **change_params})
    assert result.outcome == "miss"


def test_multi_turn_matches_context_exactly_and_last_message_semantically(make_cache: Any) -> None:
    cache = make_cache()
    history = [{"role": "user", "content": "I use Python 3.12."}, {"role": "assistant", "content": "Noted."}]
    cache.put("p", user("How do I reverse a list?", history=history), completion("reversed()"), P)
    assert cache.lookup("p", user("How can I reverse a list?", history=history), P).outcome == "hit-semantic"
    other = [{"role": "user", "content": "I use Rust."}, {"role": "assistant", "content": "Noted."}]
    assert cache.lookup("p", user("How do I reverse a list?", history=other), P).outcome == "miss"


def test_bypass_is_neither_served_nor_stored(make_cache: Any) -> None:
    cache = make_cache(max_temperature=1.0)
    hot = {**P, "temperature": 1.3}
    assert not cache.store("p", user("Write a poem"), completion("roses"), hot)
    assert cache.lookup("p", user("Write a poem"), hot).outcome == "bypass"
    assert not cache.store("p", user("Write a poem"), completion("roses"), {**P, "n": 2})
    assert cache.lookup("p", user("Write a poem"), {**P, "n": 2}).outcome == "bypass"
    assert cache.stats()["entries"] == 0


def test_errors_and_truncated_are_not_stored(make_cache: Any) -> None:
    cache = make_cache()
    before = _sample("adaptive_cache_stores_total", result="skipped")
    assert not cache.store("p", user("Explain TCP"), completion("TCP is a", finish_reason="length"), P)
    assert not cache.store("p", user("Explain TCP"), {"error": {"message": "boom"}}, P)
    assert not cache.store("p", user("Explain TCP"), {**completion("x"), "choices": []}, P)
    assert cache.lookup("p", user("Explain TCP"), P).outcome == "miss"
    assert _sample("adaptive_cache_stores_total", result="skipped") == before + 3


def test_ttl_expiry(make_cache: Any, clock: Clock) -> None:
    cache = make_cache(ttl_seconds=60)
    before = _sample("adaptive_cache_evictions_total", reason="ttl")
    cache.put("p", user("What is the capital of France?"), completion("Paris"), P)
    clock.now += 59
    assert cache.lookup("p", user("What is the capital of France?"), P).outcome == "hit-exact"
    clock.now += 2
    assert cache.lookup("p", user("What is the capital of France?"), P).outcome == "miss"
    assert cache.lookup("p", user("What's the capital city of France?"), P).outcome == "miss"
    cache.reconcile_interval = 0
    cache.sync()  # reconcile: expired rows are deleted from the database too
    assert cache.stats()["entries"] == 0
    assert _sample("adaptive_cache_evictions_total", reason="ttl") == before + 1


def test_capacity_eviction_is_lru_and_batched(make_cache: Any, clock: Clock) -> None:
    cache = make_cache(max_entries=4, evict_fraction=0.5)
    questions = [f"What is the population of city number {i}?" for i in range(4)]
    for q in questions:
        clock.now += 1
        cache.put("p", user(q), completion(q), P)
    clock.now += 1
    assert cache.lookup("p", user(questions[0]), P).outcome == "hit-exact"  # 0 is now recently used
    before = _sample("adaptive_cache_evictions_total", reason="capacity")
    clock.now += 1
    cache.put("p", user("What is the tallest mountain?"), completion("Everest"), P)
    # 5 > 4: evict 5 - 4 + 2 = 3 least recently used in one batch: questions 1, 2, 3
    assert _sample("adaptive_cache_evictions_total", reason="capacity") == before + 3
    assert cache.stats()["entries"] == 2
    assert cache.lookup("p", user(questions[0]), P).outcome == "hit-exact"
    for q in questions[1:]:
        assert cache.lookup("p", user(q), P).outcome == "miss"


def _corrupt_all(directory: Path) -> int:
    files = list((directory / "index").glob("*.idx"))
    for f in files:
        data = bytearray(f.read_bytes())
        data[-100] ^= 0xFF
        f.write_bytes(bytes(data))
    return len(files)


def test_corrupted_or_missing_index_is_rebuilt_with_nothing_lost(make_cache: Any, tmp_path: Path) -> None:
    directory = tmp_path / "c"
    cache = make_cache(directory)
    qs = ["How do I reverse a list in Python?", "What is the capital of France?", "How tall is Mount Everest?"]
    for q in qs:
        cache.put("p", user(q), completion(q), P)
    cache.put("other", user(qs[0]), completion("other tenant"), P)
    cache.close()
    assert _corrupt_all(directory) == 2
    reopened = make_cache(directory)
    assert reopened.stats()["rebuilt_partitions"] == 2
    assert reopened.stats()["entries"] == 4
    assert reopened.lookup("p", user("How can I reverse a Python list?"), P).response == completion(qs[0])
    assert reopened.lookup("p", user("What's the capital city of France?"), P).response == completion(qs[1])
    assert reopened.get("other", user(qs[0]), P) == completion("other tenant")
    reopened.close()
    for f in (directory / "index").glob("*.idx"):
        f.unlink()
    again = make_cache(directory)
    assert again.stats()["rebuilt_partitions"] == 2
    assert again.lookup("p", user("How tall is Mount Everest exactly?"), P).response == completion(qs[2])
    # a clean reopen loads the files and rebuilds nothing
    again.close()
    assert make_cache(directory).stats()["rebuilt_partitions"] == 0


def test_two_workers_share_entries_through_the_database(make_cache: Any, tmp_path: Path) -> None:
    from adaptive_plugin.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    w1 = make_cache(tmp_path / "w1", engine=engine, sync_interval=0.0)
    w2 = make_cache(tmp_path / "w2", engine=engine, sync_interval=0.0)
    assert w2.lookup("p", user("What is the capital of France?"), P).outcome == "miss"
    w1.put("p", user("What is the capital of France?"), completion("Paris"), P)
    assert w2.lookup("p", user("What is the capital of France?"), P).outcome == "hit-exact"
    assert w2.lookup("p", user("What's the capital city of France?"), P).outcome == "hit-semantic"
    assert w2.lookup("q", user("What is the capital of France?"), P).outcome == "miss"
    # an entry evicted by one worker is dropped by the other on its next hit
    w1.clear_scope("p")
    assert w2.lookup("p", user("What is the capital of France?"), P).outcome == "miss"
    assert w2.stats()["entries"] == 0


async def test_async_variants(make_cache: Any) -> None:
    cache: SemanticCache = make_cache()
    await cache.aput("p", user("What is the capital of France?"), completion("Paris"), P)
    assert await cache.aget("p", user("What's the capital city of France?"), P) == completion("Paris")
    assert (await cache.alookup("p", user("What is the capital of Spain?"), P)).outcome == "miss"
    assert await cache.astore("p", user("What is the capital of Spain?"), completion("Madrid"), P)


def test_default_engine_is_sqlite_in_directory(make_cache: Any, tmp_path: Path) -> None:
    cache = make_cache(tmp_path / "d")
    assert cache.engine.dialect.name == "sqlite"
    assert (tmp_path / "d" / "cache.db").exists()


def test_long_texts_match_only_when_identical_beyond_the_embedded_prefix(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    from adaptive_plugin.cache import SemanticCache
    from adaptive_plugin.embedding import EMBED_MAX_CHARS

    cache = SemanticCache(tmp_path, embedder=embedder)
    prefix = "Please review the following configuration file and tell me what is wrong with it. " * 8
    assert len(prefix) > EMBED_MAX_CHARS
    stored = [{"role": "user", "content": prefix + "The port is 8080 and the host is localhost."}]
    response = {"id": "r", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
    cache.put("s", stored, response, {"model": "m"})
    different_tail = [{"role": "user", "content": prefix + "The port is 9090 and the host is example.org."}]
    assert cache.lookup("s", different_tail, {"model": "m"}).outcome == "miss"
    assert cache.lookup("s", stored, {"model": "m"}).outcome == "hit-exact"
    cache.close()


def test_queued_store_is_written_in_one_batch_and_then_hits(make_cache: Any) -> None:
    cache = make_cache(write_delay=30.0)  # the writer never fires by itself within this test
    questions = ("What is the capital of France?", "How do I reverse a list in Python?", "Explain TCP slow start")
    for q in questions:
        assert cache.store("p", user(q), completion(q.upper()), P, wait=False)
    # queued: not yet visible, and a second store of the same request is not queued twice
    assert cache.lookup("p", user(questions[0]), P).outcome == "miss"
    assert not cache.store("p", user(questions[0]), completion("again"), P, wait=False)
    assert cache.flush() == 3
    assert cache.flush() == 0
    for q in questions:
        assert cache.get("p", user(q), P) == completion(q.upper())
    assert cache.stats()["entries"] == 3


def test_writer_thread_writes_queued_entries_soon(make_cache: Any) -> None:
    cache = make_cache(write_delay=0.01)
    assert cache.store("p", user("What is the capital of France?"), completion("Paris"), P, wait=False)
    deadline = time.monotonic() + 5
    while cache.stats()["entries"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get("p", user("What is the capital of France?"), P) == completion("Paris")



def test_a_quiet_cache_writes_at_once_and_a_busy_one_gathers_a_batch(make_cache: Any) -> None:
    """A paraphrase sent just after its first answer is a hit on a quiet proxy; while answers keep
    coming the writer gathers them for the longer window (one commit for many rows)."""
    cache = make_cache(busy_write_delay=30.0)  # the default quiet window: none

    def written_within(seconds: float, count: int) -> bool:
        deadline = time.monotonic() + seconds
        while cache.stats()["entries"] < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return cache.stats()["entries"] >= count

    assert cache.store("p", user("What is the capital of France?"), completion("Paris"), P, wait=False)
    assert written_within(5, 1)  # the first answer after a quiet time: the short window
    # one row a second or more fills a batch of 8 in 30 s: busy, so the next answers are gathered
    assert cache.store("p", user("How do I reverse a list in Python?"), completion("reversed()"), P, wait=False)
    assert not written_within(0.5, 2)
    assert cache.flush() == 1 and cache.stats()["entries"] == 2

def test_close_writes_queued_entries_durably(make_cache: Any, tmp_path: Path) -> None:
    directory = tmp_path / "durable"
    cache = make_cache(directory, write_delay=30.0)
    assert cache.store("p", user("What is the capital of France?"), completion("Paris"), P, wait=False)
    cache.close()
    reopened = make_cache(directory)
    assert reopened.get("p", user("What is the capital of France?"), P) == completion("Paris")


def test_failed_batch_write_is_counted_and_names_the_database(make_cache: Any) -> None:
    cache = make_cache(write_delay=30.0)
    assert cache.store("p", user("What is the capital of France?"), completion("Paris"), P, wait=False)
    before = _sample("adaptive_cache_stores_total", result="failed")
    cache.engine.dispose()
    with cache.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE adaptive_cache_entries")
    with pytest.raises(AdaptiveError, match=r"cache\.db is unavailable: no such table"):
        cache.flush()
    assert _sample("adaptive_cache_stores_total", result="failed") == before + 1


def test_needs_embedding_only_when_a_lookup_would_embed(make_cache: Any, embedder: CountingEmbedder) -> None:
    cache = make_cache()
    question = user("What is the capital of France?")
    assert not cache.needs_embedding("p", question, P)  # nothing cached in this partition
    cache.put("p", question, completion("Paris"), P)
    calls = embedder.calls
    assert not cache.needs_embedding("p", user("what is the capital of  France?"), P)  # exact hit
    assert cache.needs_embedding("p", user("What's the capital city of France?"), P)
    assert not cache.needs_embedding("p", user("What's the capital city of France?"), {**P, "temperature": 1.5})
    assert not cache.needs_embedding("other-tenant", user("What's the capital city of France?"), P)
    assert embedder.calls == calls  # deciding costs no embedding


def test_a_failed_write_names_no_prompt_or_answer(make_cache: Any) -> None:
    cache = make_cache(write_delay=30.0)
    secret_prompt, secret_answer = "What is my diary entry zq-4471?", "Dear diary zq-9902"
    with cache.engine.begin() as conn:  # any write now violates a constraint
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON adaptive_cache_entries BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    assert cache.store("p", user(secret_prompt), completion(secret_answer), P, wait=False)
    with pytest.raises(AdaptiveError) as info:
        cache.flush()
    message = str(info.value)
    assert "refused" in message
    assert "zq-4471" not in message and "zq-9902" not in message


def test_one_request_is_hashed_once_from_lookup_to_store(make_cache: Any, monkeypatch: pytest.MonkeyPatch,
                                                         mode: str) -> None:
    from adaptive_plugin.cache import _request

    cache = make_cache()
    cache.put("p", user("What is the capital of Italy?"), completion("Rome"), P)  # something in the partition
    hashed: list[str] = []
    real = _request.request_key
    monkeypatch.setattr(_request, "request_key", lambda *a, **k: hashed.append("key") or real(*a, **k))
    messages = user("What is the capital of France?")
    keyed = cache.keyed("p", messages, P)
    # with the cascade, the one entry near it names another country (a guard): no embedding needed
    assert cache.needs_embedding("p", messages, P, keyed=keyed) is (mode == "full")
    result = cache.lookup("p", messages, P, keyed=keyed)
    assert result.outcome == "miss" and result.keyed is keyed
    assert cache.store("p", messages, completion("Paris"), P, keyed=result.keyed)
    assert hashed == ["key"]
    assert cache.lookup("p", messages, P).outcome == "hit-exact"  # and the key it stored under is the real one


def test_an_answer_that_does_not_serialise_is_skipped(make_cache: Any) -> None:
    cache = make_cache()
    answer = completion("fine")
    answer["choices"][0]["message"]["audio"] = object()
    assert not cache.store("p", user("What is the capital of France?"), answer, P)
    assert cache.lookup("p", user("What is the capital of France?"), P).outcome == "miss"

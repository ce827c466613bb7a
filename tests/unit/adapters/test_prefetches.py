"""Embeddings started at authentication wait for their request's pre-call hook, but not forever."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from adaptive_plugin.adapters.cache_backend import Prefetches


@pytest.fixture()
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_claimed_once_and_only_for_the_same_text(loop: asyncio.AbstractEventLoop) -> None:
    waiting = Prefetches()
    future = loop.create_future()
    token = waiting.add("how do I reset my password?", future)
    assert token is not None
    assert waiting.claim("another-token", "how do I reset my password?") is None
    assert waiting.claim(token, "how do I reset my password?") is future
    assert waiting.claim(token, "how do I reset my password?") is None  # claimed: gone
    assert len(waiting) == 0


def test_a_different_text_is_not_served_the_prefetched_vector(loop: asyncio.AbstractEventLoop) -> None:
    waiting = Prefetches()
    future = loop.create_future()
    token = waiting.add("original question", future)
    assert waiting.claim(token, "rewritten question") is None
    assert future.cancelled() and len(waiting) == 0


def test_unclaimed_entries_expire_and_the_number_waiting_is_bounded(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("adaptive_plugin.adapters.cache_backend.time.monotonic", lambda: now[0])
    waiting = Prefetches(max_age=30.0, limit=2)
    stale = waiting.add("a request that failed before its pre-call hook", loop.create_future())
    assert waiting.add("second", loop.create_future()) is not None
    refused = loop.create_future()
    assert waiting.add("third", refused) is None and refused.cancelled()  # full: nothing prefetched
    now[0] += 31
    assert waiting.add("fourth", loop.create_future()) is not None  # both old entries expired
    assert len(waiting) == 1 and waiting.claim(stale, "a request that failed before its pre-call hook") is None


def test_a_request_that_needs_no_embedding_hands_on_its_key() -> None:
    """The first look decided at authentication that no embedding is needed: the pre-call hook
    still takes the key (and the first look's verdict on it) instead of computing them again."""
    waiting = Prefetches()
    keyed = object()
    token = waiting.add("how do I reset my password?", None, keyed)
    assert waiting.claim_keyed(token, "how do I reset my password?") == (None, keyed)
    other = waiting.add("how do I reset my password?", None, keyed)
    assert waiting.claim_keyed(other, "a rewritten question") == (None, None)

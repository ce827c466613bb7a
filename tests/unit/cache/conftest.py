"""Shared fixtures: one real embedding model per session, fresh cache directories per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptive_plugin.cache import SemanticCache
from adaptive_plugin.embedding import Embedder, StaticEmbedder, default_model_dir
from adaptive_plugin.errors import EmbeddingModelError


class CountingEmbedder:
    """Wraps the real embedder and counts calls, to prove the exact layer embeds nothing."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dimensions = inner.dimensions
        self.identity = inner.identity
        self.calls = 0

    def embed_one(self, text: str) -> np.ndarray:
        self.calls += 1
        return self.inner.embed_one(text)


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    try:
        return Embedder.from_directory(default_model_dir())
    except EmbeddingModelError as exc:  # the model is fetched once per machine
        pytest.skip(f"embedding model not available: {exc}")


@pytest.fixture(scope="session")
def first_look() -> StaticEmbedder:
    try:
        return StaticEmbedder.from_directory(default_model_dir())
    except EmbeddingModelError as exc:
        pytest.skip(f"first-look table not available: {exc}")


@pytest.fixture(params=["full", "cascade"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every cache test runs with each lookup embedding fully, and with the cascade (the proxy's default)."""
    return str(request.param)


@pytest.fixture()
def embedder(real_embedder: Embedder) -> CountingEmbedder:
    return CountingEmbedder(real_embedder)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def make_cache(tmp_path: Path, embedder: CountingEmbedder, clock: Clock, mode: str,
               request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[SemanticCache] = []
    static = request.getfixturevalue("first_look") if mode == "cascade" else None

    def _make(directory: Path | None = None, **kwargs: Any) -> SemanticCache:
        kwargs.setdefault("embedder", embedder)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("first_look", static)
        cache = SemanticCache(directory or tmp_path / "cache", **kwargs)
        made.append(cache)
        return cache

    yield _make
    for cache in made:
        cache.engine.dispose()


def user(text: str, *, system: str | None = None, history: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.extend(history or [])
    messages.append({"role": "user", "content": text})
    return messages


def completion(content: str, *, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }

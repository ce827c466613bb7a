"""Shared fixtures: the embedder is loaded once per session, and skipped if not installed."""

from __future__ import annotations

import pytest

from adaptive_plugin.embedding import Embedder, default_model_dir
from adaptive_plugin.errors import EmbeddingModelError


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    try:
        return Embedder.from_directory(default_model_dir())
    except EmbeddingModelError as exc:
        pytest.skip(f"embedding model not installed: {exc.message}")

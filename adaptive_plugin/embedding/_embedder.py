"""The fastembed wrapper: loads once, embeds texts into normalised float32 vectors."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_plugin.errors import EmbeddingModelError

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384


def default_model_dir() -> Path:
    """Where `adaptive-plugin fetch-model` puts the offline model unless told otherwise."""
    env = os.environ.get("ADAPTIVE_EMBEDDING_MODEL_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptive-plugin" / "all-MiniLM-L6-v2-int8"


class Embedder:
    """Embed text with a fastembed model loaded from a local directory or by name.

    >>> e = Embedder.from_directory("/path/to/model")    # doctest: +SKIP
    >>> v = e.embed(["a question", "another"])           # doctest: +SKIP
    >>> v.shape                                          # doctest: +SKIP
    (2, 384)
    """

    def __init__(self, model: Any, *, dimensions: int) -> None:
        self._model = model
        self.dimensions = dimensions
        # onnxruntime sessions are thread-safe for run(), but fastembed's tokenizer
        # wrapper keeps per-call state; serialise to stay on the safe side.
        self._lock = threading.Lock()

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str], *, model_name: str = DEFAULT_MODEL_NAME) -> Embedder:
        """Load the offline model assembled by `fetch_model` (no network)."""
        from adaptive_plugin.embedding._fetch import verify_model_dir

        path = Path(directory)
        verify_model_dir(path)
        try:
            from fastembed import TextEmbedding

            model = TextEmbedding(model_name, specific_model_path=str(path), threads=1)
        except Exception as exc:  # fastembed raises bare exceptions of many kinds
            raise EmbeddingModelError(f"cannot load the embedding model from {path}: {exc}") from exc
        return cls(model, dimensions=DIMENSIONS)

    @classmethod
    def from_name(cls, model_name: str, *, cache_dir: str | None = None) -> Embedder:
        """Load any fastembed model by name (needs internet the first time)."""
        try:
            from fastembed import TextEmbedding

            model = TextEmbedding(model_name, cache_dir=cache_dir, threads=1)
            dims = len(next(iter(model.embed(["dimension probe"]))))
        except Exception as exc:
            raise EmbeddingModelError(f"cannot load the embedding model {model_name!r}: {exc}") from exc
        return cls(model, dimensions=dims)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, d) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:
            rows = list(self._model.embed(list(texts)))
        out = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def embed_one(self, text: str) -> np.ndarray:
        """Return one (d,) float32 unit vector."""
        return self.embed([text])[0]

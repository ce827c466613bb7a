"""The fastembed wrapper: loads once, embeds texts into normalised float32 vectors."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_plugin.errors import EmbeddingModelError

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384
# One query at a time: two onnxruntime threads cut a short prompt's latency on an idle 2-core
# machine (float model, 28 tokens: 8.5 -> 5.8 ms) for about 10% more CPU per embedding.
DEFAULT_THREADS = 2

log = logging.getLogger(__name__)


def _own_session(model: Any, model_file: Path | None, threads: int) -> None:
    """Replace fastembed's onnxruntime session with one on `model_file` whose idle workers sleep.

    fastembed exposes neither the model file of a local directory nor thread spinning. Spinning
    workers burn a core that the proxy's event loop needs: at 16 concurrent requests, two
    spinning threads cost 45 ms of proxy CPU per request against 28 ms with one thread.
    """
    import onnxruntime as ort

    inner = getattr(model, "model", None)
    session = getattr(inner, "model", None)
    path = model_file or getattr(session, "_model_path", None)
    if not isinstance(session, ort.InferenceSession) or not path:
        log.warning("embedding: unknown fastembed layout, keeping its onnxruntime session")
        return
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    inner.model = ort.InferenceSession(str(path), sess_options=options, providers=session.get_providers())


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

    def __init__(self, model: Any, *, dimensions: int, identity: str = "", threads: int = 1) -> None:
        self._model = model
        self.dimensions = dimensions
        # which weights produce the vectors (keys caches of embeddings computed offline)
        self.identity = identity
        # onnxruntime's run() and the Rust tokenizer's encode_batch() are thread-safe and fastembed
        # keeps no per-call state, but embeddings are CPU-bound: at most cores // threads run at
        # once, so that under load they never starve the proxy's event loop (2 cores, 2 threads:
        # one at a time; 8 cores: four).
        self._slots = threading.BoundedSemaphore(max(1, (os.cpu_count() or 1) // max(1, threads)))

    @classmethod
    def from_directory(
        cls,
        directory: str | os.PathLike[str],
        *,
        model_name: str = DEFAULT_MODEL_NAME,
        threads: int = DEFAULT_THREADS,
        quantized: bool = True,
        model_file: Path | None = None,
    ) -> Embedder:
        """Load the offline model assembled by `fetch_model` (no network).

        The integer model derived by `fetch_model` is used when present (`quantized=False`:
        the wheel's model itself); `model_file` names another ONNX file of the same model.
        """
        from adaptive_plugin.embedding._fetch import quantized_model_path, verify_model_dir

        path = Path(directory)
        verify_model_dir(path)
        if model_file is None and quantized:
            model_file = quantized_model_path(path)
            if model_file is None:
                log.warning(
                    "embedding: %s has no derived integer model; embeddings take about twice as long. "
                    "Run `adaptive-plugin fetch-model` to derive it.", path
                )
        try:
            from fastembed import TextEmbedding

            model_file = model_file or path / "model.onnx"
            model = TextEmbedding(model_name, specific_model_path=str(path), threads=threads)
            _own_session(model, model_file, threads)
            identity = f"{model_name}:{model_file.name}:{model_file.stat().st_size}"
        except Exception as exc:  # fastembed raises bare exceptions of many kinds
            raise EmbeddingModelError(f"cannot load the embedding model from {path}: {exc}") from exc
        return cls(model, dimensions=DIMENSIONS, identity=identity, threads=threads)

    @classmethod
    def from_name(cls, model_name: str, *, cache_dir: str | None = None, threads: int = DEFAULT_THREADS) -> Embedder:
        """Load any fastembed model by name (needs internet the first time)."""
        try:
            from fastembed import TextEmbedding

            model = TextEmbedding(model_name, cache_dir=cache_dir, threads=threads)
            _own_session(model, None, threads)
            dims = len(next(iter(model.embed(["dimension probe"]))))
        except Exception as exc:
            raise EmbeddingModelError(f"cannot load the embedding model {model_name!r}: {exc}") from exc
        return cls(model, dimensions=dims, identity=model_name, threads=threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, d) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._slots:
            rows = list(self._model.embed(list(texts)))
        out = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def embed_one(self, text: str) -> np.ndarray:
        """Return one (d,) float32 unit vector."""
        return self.embed([text])[0]

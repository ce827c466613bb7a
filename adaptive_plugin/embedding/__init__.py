"""Local sentence embeddings shared by the semantic cache and the router.

One request is embedded at most once: the adapters compute the vector and hand it to
both capabilities. Vectors are float32, L2-normalised, so inner product is cosine.

    >>> emb = Embedder.from_directory(default_model_dir())     # doctest: +SKIP
    >>> emb.embed_one("hello").shape                             # doctest: +SKIP
    (384,)
"""

from __future__ import annotations

from adaptive_plugin.embedding._embedder import Embedder, default_model_dir
from adaptive_plugin.embedding._fetch import MODEL_FILES, fetch_model, verify_model_dir
from adaptive_plugin.embedding._static import StaticEmbedder
from adaptive_plugin.embedding._text import EMBED_MAX_CHARS, content_text, embedding_text, query_text

__all__ = [
    "EMBED_MAX_CHARS",
    "MODEL_FILES",
    "Embedder",
    "StaticEmbedder",
    "content_text",
    "default_model_dir",
    "embedding_text",
    "fetch_model",
    "query_text",
    "verify_model_dir",
]

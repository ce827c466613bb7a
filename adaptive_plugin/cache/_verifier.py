"""The learned pair verifier: a logistic model on cheap pair features, run after the FAISS search.

It scores a (query, cached) candidate that passed the similarity threshold and the hard
near-miss guards; the cache serves the candidate only if the score reaches
`accept_threshold`. Request-time cost is token work on two short texts plus one dot
product of ~26 numbers (numpy only); see `bench/cache.py` for the measured figure.

    >>> v = Verifier.load()                                                       # doctest: +SKIP
    >>> v.score("How do I reverse a list in Python?", "How can I reverse a Python list?", 0.93)  # doctest: +SKIP
    0.87...

The artifact (`artifacts/verifier.json`) is rebuilt by `python -m adaptive_plugin.cache.train`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_plugin.cache._features import SCALAR_NAMES, Vocabulary, scalar_features
from adaptive_plugin.errors import CacheError

__all__ = ["DEFAULT_ARTIFACT", "Verifier"]

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "verifier.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Verifier:
    """Standardised features -> logistic probability that the cached answer answers the query."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    vocab: Vocabulary
    accept_threshold: float
    similarity_threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, query: str, cached: str, similarity: float) -> float:
        """P(same question) for one candidate; `similarity` is the cosine FAISS returned."""
        x = np.asarray(scalar_features(query, cached, float(similarity), self.vocab), dtype=np.float64)
        z = float(((x - self.mean) / self.scale) @ self.weights) + self.bias
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def accepts(self, query: str, cached: str, similarity: float, threshold: float | None = None) -> bool:
        return self.score(query, cached, similarity) >= (self.accept_threshold if threshold is None else threshold)

    # --- artifact ---------------------------------------------------------------------------

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, rounded floats): rebuilding from the same data gives the same bytes."""
        doc = {
            "format": FORMAT_VERSION,
            "features": list(SCALAR_NAMES),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "bias": round(float(self.bias), 6),
            "accept_threshold": round(float(self.accept_threshold), 4),
            "similarity_threshold": round(float(self.similarity_threshold), 4),
            "unknown_idf": self.vocab.unknown_idf,
            "idf": self.vocab.idf,
            "meta": self.meta,
        }
        return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Verifier:
        """Read an artifact (default: the one shipped in the package); CacheError if unusable."""
        path = Path(path) if path is not None else DEFAULT_ARTIFACT
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CacheError(f"cannot read the cache verifier artifact {path}: {exc}") from exc
        if doc.get("format") != FORMAT_VERSION or doc.get("features") != list(SCALAR_NAMES):
            raise CacheError(f"cache verifier artifact {path} was built for other features; rebuild it")
        n = len(SCALAR_NAMES)
        arrays = [np.asarray(doc[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
        if any(a.shape != (n,) for a in arrays) or not all(np.isfinite(a).all() for a in arrays):
            raise CacheError(f"cache verifier artifact {path} is malformed")
        return cls(
            mean=arrays[0],
            scale=arrays[1],
            weights=arrays[2],
            bias=float(doc["bias"]),
            vocab=Vocabulary({str(k): float(v) for k, v in doc["idf"].items()}, float(doc["unknown_idf"])),
            accept_threshold=float(doc["accept_threshold"]),
            similarity_threshold=float(doc["similarity_threshold"]),
            meta=dict(doc.get("meta", {})),
        )

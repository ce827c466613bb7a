"""Complexity assessment of a chat request: `assess`, `complexity_score`, `task_type`.

The adapters embed `embedding_text(query_text(messages))` (its first 512 characters) once
per request (the semantic cache uses the same vector) and pass it as `embedding=`; `assess`
then costs well under a millisecond.

The adapters also pass LiteLLM's keyword complexity tier of the query (`keyword_tier=`, see
`adapters/keyword_tier.py`); this package never imports litellm. `complexity_score(messages)`
uses the tier source installed with `set_keyword_tier_source` (`adaptive_plugin.complexity_score`
installs LiteLLM's when litellm is importable) and leaves the term out without one.

Without an embedding, `complexity_score` asks `default_embedder()` for the local model.
When that model is not installed it degrades, by design, to the features-only head of the
same artifact: the score stays in [0, 1] and keeps its meaning (a quantile among the
training prompts) but ranks prompts less well; `Assessment.used_embedding` says which
head answered, and a warning is logged once per process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptive_plugin.embedding import embedding_text, query_text
from adaptive_plugin.errors import EmbeddingModelError, RoutingError
from adaptive_plugin.routing._features import FEATURE_NAMES, handcrafted_features, task_of
from adaptive_plugin.routing._model import ComplexityModel, load_model
from adaptive_plugin.routing._task import detect_task_type

if TYPE_CHECKING:
    from adaptive_plugin.embedding import Embedder

logger = logging.getLogger(__name__)

_DEPTH_BONUS_PER_TURN = 0.04
_DEPTH_BONUS_MAX = 0.2
_SIGNALS = {
    "code_tokens": "code",
    "code_fences": "code",
    "latex": "math",
    "equations": "math",
    "reasoning_words": "reasoning",
    "constraints": "constraints",
    "list_items": "multi-part",
}
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
_keyword_tier_source: Callable[[str], float | None] | None = None


def set_keyword_tier_source(source: Callable[[str], float | None] | None) -> None:
    """Install (or with None remove) the function `complexity_score` asks for a query text's
    keyword tier (LiteLLM's tier rank + weighted score / 10; None when it cannot tell)."""
    global _keyword_tier_source
    _keyword_tier_source = source


@dataclass(frozen=True)
class Assessment:
    """How demanding a request is.

    `score` in [0, 1] (higher needs a stronger model); `task_type` one of `TASK_TYPES`;
    `expected_gain` the model's raw prediction (strong-minus-weak quality gain in units of its
    spread over the training prompts, keyword term included); `used_embedding`
    False when the features-only head answered; `signals` short human-readable hints.

    >>> a = assess([{"role": "user", "content": "hi"}], embedding=None)   # doctest: +SKIP
    >>> 0.0 <= a.score <= 1.0, a.task_type                               # doctest: +SKIP
    (True, 'chat')
    """

    score: float
    task_type: str
    expected_gain: float
    used_embedding: bool
    signals: tuple[str, ...] = ()


def assess(
    messages: list[dict[str, Any]],
    *,
    embedding: np.ndarray | None = None,
    embedder: Embedder | None = None,
    model: ComplexityModel | None = None,
    keyword_tier: float | None = None,
) -> Assessment:
    """Score `messages`; `embedding` is the precomputed vector of
    `embedding_text(query_text(messages))` (its first 512 characters, as the model was trained).

    With no `embedding`, `embedder` (if given) computes it; with neither, the features-only
    head is used. `keyword_tier` is LiteLLM's keyword tier of `query_text(messages)` (rank +
    weighted score / 10); it moves prompts that are not multiple-choice questions, and None
    leaves it out. Raise `RoutingError` when `embedding` has the wrong dimension.
    """
    m = model if model is not None else load_model()
    text = query_text(messages)
    feats = handcrafted_features(messages, text=text)
    if embedding is None and embedder is not None and text:
        embedding = embedder.embed_one(embedding_text(text))
    if embedding is not None:
        vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vec.shape[0] != m.embedding_dim:
            raise RoutingError(
                f"the router expects a {m.embedding_dim}-dimensional embedding, got {vec.shape[0]} dimensions"
            )
        x = np.concatenate([vec, feats])
        raw = m.keyword.combine(float(m.full.raw(x)), keyword_tier, feats)
        score = float(m.full.calibrate(raw))
    else:
        raw = m.keyword.combine(float(m.features.raw(feats)), keyword_tier, feats)
        score = float(m.features.calibrate(raw))
    score = _with_depth(score, messages)
    return Assessment(
        score=min(max(score, 0.0), 1.0),
        task_type=task_of(feats),
        expected_gain=raw,
        used_embedding=embedding is not None,
        signals=_signals(feats),
    )


def complexity_score(messages: list[dict[str, Any]]) -> float:
    """Score in [0, 1] for OpenAI-style chat messages; higher needs a stronger model.

    Uses `default_embedder()` when the local model is installed, else the features-only head,
    and the keyword tier source of `set_keyword_tier_source` when one is installed.
    """
    source = _keyword_tier_source
    tier = source(query_text(messages)) if source is not None else None
    return assess(messages, embedder=default_embedder(), keyword_tier=tier).score


def task_type(messages: list[dict[str, Any]]) -> str:
    """The task type (one of `TASK_TYPES`) of the last user message."""
    return detect_task_type(query_text(messages))


@lru_cache(maxsize=1)
def default_embedder() -> Embedder | None:
    """The local embedding model from `default_model_dir()`, loaded once; None if missing.

    Call `default_embedder.cache_clear()` after installing the model to pick it up.
    """
    from adaptive_plugin.embedding import Embedder, default_model_dir

    try:
        return Embedder.from_directory(default_model_dir())
    except EmbeddingModelError as exc:
        logger.warning("complexity routing without embeddings (features-only head): %s", exc.message)
        return None


def _with_depth(score: float, messages: list[dict[str, Any]]) -> float:
    """A prior for multi-turn conversations (the training prompts are all single-turn).

    Each user turn after the first moves the score 4% of the way towards 1, at most 20%.
    """
    user_turns = sum(1 for msg in messages if isinstance(msg, dict) and msg.get("role") == "user")
    bonus = min(_DEPTH_BONUS_PER_TURN * max(user_turns - 1, 0), _DEPTH_BONUS_MAX)
    return score + (1.0 - score) * bonus


def _signals(feats: np.ndarray) -> tuple[str, ...]:
    found = [label for name, label in _SIGNALS.items() if feats[_INDEX[name]] > 0.0]
    if feats[_INDEX["log_query_chars"]] > math.log1p(2000) / 10.0:
        found.append("long")
    return tuple(dict.fromkeys(found))

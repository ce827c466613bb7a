"""Cheap handcrafted features of a chat conversation (no model, a few microseconds).

`handcrafted_features` turns messages into a fixed-length float32 vector whose layout is
`FEATURE_NAMES`. The trained artifact records the names it was trained with, so a change
here that reorders or renames features is caught when the artifact is loaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from adaptive_plugin.embedding import content_text, query_text
from adaptive_plugin.routing import _task as t

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "log_query_chars",
    "log_query_words",
    "comma_rate",
    "log_context_chars",
    "log_turns",
    "has_system",
    "query_lines",
    "code_fences",
    "code_tokens",
    "code_words",
    "code_ask",
    "symbol_ratio",
    "latex",
    "equations",
    "math_words",
    "digit_ratio",
    "numbers",
    "reasoning_words",
    "writing_words",
    "extraction_words",
    "translation",
    "questions",
    "choices",
    "list_items",
    "constraints",
    "compound",
    "greeting",
    "short_query",
    *(f"task_{name}" for name in t.TASK_TYPES),
)
"""The layout of the vector returned by `handcrafted_features`."""

_NUMBER_RE: Final = re.compile(r"\b\d+(?:[.,]\d+)?\b")
_LIST_RE: Final = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)
_CONSTRAINT_RE: Final = re.compile(
    r"\b(must|should not|do not|don't|at least|at most|exactly|no more than|within \d+|only|format|"
    r"json|table|bullet|words|sentences|paragraphs?|step)\b",
    re.IGNORECASE,
)
_SYMBOLS: Final = frozenset("{}[]()<>=;:_\\/|&*^%$#@~`+")
def _squash(count: float, scale: float) -> float:
    """Map a non-negative count into [0, 1) with a soft knee at `scale`."""
    return float(count / (count + scale))


def task_of(features: np.ndarray) -> str:
    """The task type encoded in the one-hot tail of a `handcrafted_features` vector."""
    tail = features[len(FEATURE_NAMES) - len(t.TASK_TYPES) :]
    return t.TASK_TYPES[int(np.argmax(tail))]


def handcrafted_features(messages: Sequence[dict[str, Any]], *, text: str | None = None) -> np.ndarray:
    """Return the feature vector of `messages` (layout `FEATURE_NAMES`), float32.

    `text` is `query_text(messages)` when the caller already has it.
    """
    full_query = query_text(list(messages)) if text is None else text
    found = t.scan(full_query)
    query = found.text
    context_chars = 0
    turns = 0
    has_system = 0.0
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        context_chars += len(content_text(message.get("content")))
        if role == "system":
            has_system = 1.0
        elif role in ("user", "assistant", "tool"):
            turns += 1
    n = max(len(query), 1)
    words = full_query.count(" ") + full_query.count("\n") + 1 if full_query else 0
    task = t.task_from_scan(found)
    symbols = sum(query.count(ch) for ch in _SYMBOLS)
    values = [
        math.log1p(len(full_query)) / 10.0,
        math.log1p(words) / 8.0,
        min(full_query.count(",") / max(words, 1), 1.0),
        math.log1p(context_chars) / 10.0,
        math.log1p(max(turns - 1, 0)) / 3.0,
        has_system,
        _squash(query.count("\n"), 10.0),
        _squash(found.code_fences, 2.0),
        _squash(found.code_tokens, 3.0),
        _squash(found.code_words, 3.0),
        1.0 if found.code_ask else 0.0,
        symbols / n,
        _squash(found.latex, 2.0),
        _squash(found.equations, 2.0),
        _squash(found.math_words, 2.0),
        found.digits / n,
        _squash(len(_NUMBER_RE.findall(query)), 4.0),
        _squash(found.reasoning, 2.0),
        _squash(found.writing, 2.0),
        _squash(found.extraction, 2.0),
        1.0 if found.translation else 0.0,
        _squash(query.count("?"), 2.0),
        _squash(found.choices, 4.0),
        _squash(len(_LIST_RE.findall(query)), 3.0),
        _squash(len(_CONSTRAINT_RE.findall(query)), 3.0),
        _squash(found.compound, 2.0),
        1.0 if found.greeting else 0.0,
        1.0 if len(full_query) < 40 else 0.0,
        *(1.0 if task == name else 0.0 for name in t.TASK_TYPES),
    ]
    return np.asarray(values, dtype=np.float32)

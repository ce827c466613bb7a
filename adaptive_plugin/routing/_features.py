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
from adaptive_plugin.routing._task import scan_window

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "log_query_chars",
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
    query = scan_window(full_query)
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
    task = t.detect_task_type(query)
    symbols = sum(1 for ch in query if ch in _SYMBOLS)
    digits = sum(1 for ch in query if ch.isdigit())
    values = [
        math.log1p(len(full_query)) / 10.0,
        math.log1p(context_chars) / 10.0,
        math.log1p(max(turns - 1, 0)) / 3.0,
        has_system,
        _squash(query.count("\n"), 10.0),
        _squash(len(t.CODE_FENCE_RE.findall(query)), 2.0),
        _squash(len(t.CODE_TOKEN_RE.findall(query)), 3.0),
        _squash(len(t.CODE_WORD_RE.findall(query)), 3.0),
        1.0 if t.CODE_ASK_RE.search(query) else 0.0,
        symbols / n,
        _squash(len(t.LATEX_RE.findall(query)), 2.0),
        _squash(len(t.EQUATION_RE.findall(query)), 2.0),
        _squash(len(t.MATH_WORD_RE.findall(query)), 2.0),
        digits / n,
        _squash(len(_NUMBER_RE.findall(query)), 4.0),
        _squash(len(t.REASONING_RE.findall(query)), 2.0),
        _squash(len(t.WRITING_RE.findall(query)), 2.0),
        _squash(len(t.EXTRACTION_RE.findall(query)), 2.0),
        1.0 if t.TRANSLATION_RE.search(query) else 0.0,
        _squash(query.count("?"), 2.0),
        _squash(len(t.CHOICE_RE.findall(query)), 4.0),
        _squash(len(_LIST_RE.findall(query)), 3.0),
        _squash(len(_CONSTRAINT_RE.findall(query)), 3.0),
        _squash(len(t.COMPOUND_RE.findall(query)), 2.0),
        1.0 if len(query) < 60 and t.GREETING_RE.match(query) else 0.0,
        1.0 if len(full_query) < 40 else 0.0,
        *(1.0 if task == name else 0.0 for name in t.TASK_TYPES),
    ]
    return np.asarray(values, dtype=np.float32)

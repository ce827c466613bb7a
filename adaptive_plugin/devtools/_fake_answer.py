"""The fake provider's deterministic answer to a chat request, whatever wire format carries it.

The answer text is ``[{model}] answer #{hash} to: {last user message, 120 chars}``, where the
hash covers the messages (and a top-level system prompt). Token counts are ``ceil(chars / 4)``
(at least 1) unless the last user message carries the markers ``#tokens=IN,OUT`` (prompt and
completion tokens, IN counting cached tokens) and ``#cached=N`` (cached prompt tokens).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["UNAUTHORISED", "Answer", "build_answer", "dumps", "pieces", "text_of"]

_TOKENS_MARKER: Final = re.compile(r"#tokens=(\d+),(\d+)")
_CACHED_MARKER: Final = re.compile(r"#cached=(\d+)")
_WORDS: Final = re.compile(r"\S+\s*|\s+")
_QUOTED_CHARS: Final = 120
#: Outcomes answered as an invalid key: the `401` behaviour, an unknown key, another provider's key.
UNAUTHORISED: Final = frozenset({"401", "unknown_key", "provider_mismatch"})


@dataclass(frozen=True, slots=True)
class Answer:
    """One deterministic answer: text and token usage (prompt tokens include cached ones)."""

    request_hash: str
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


def text_of(content: Any) -> str:
    """Text of a message content: a string or a list of parts with a ``text`` field."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(part for part in parts if isinstance(part, str))
    return ""


def _tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def build_answer(model: str, messages: list[Any], system: Any = None) -> Answer:
    """The answer to a chat request; `system` is a top-level system prompt (Anthropic, Gemini)."""
    canonical = json.dumps([system, messages], sort_keys=True, separators=(",", ":"), default=str)
    request_hash = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    texts = [text_of(system)] + [text_of(m.get("content")) for m in messages if isinstance(m, dict)]
    last_user = next(
        (text_of(m.get("content")) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
        "",
    )
    text = f"[{model}] answer #{request_hash} to: {last_user[:_QUOTED_CHARS]}"
    prompt_tokens = _tokens(sum(len(t) for t in texts))
    completion_tokens = _tokens(len(text))
    if match := _TOKENS_MARKER.search(last_user):
        prompt_tokens, completion_tokens = int(match[1]), int(match[2])
    cached = _CACHED_MARKER.search(last_user)
    cached_tokens = min(int(cached[1]), prompt_tokens) if cached else 0
    return Answer(request_hash, model, text, prompt_tokens, completion_tokens, cached_tokens)


def pieces(text: str) -> list[str]:
    """Split an answer into stream deltas of about two words each."""
    words = _WORDS.findall(text)
    return ["".join(words[i : i + 2]) for i in range(0, len(words), 2)] or [""]


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))

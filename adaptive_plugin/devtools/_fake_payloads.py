"""Deterministic answers of the fake provider, in OpenAI and Anthropic wire shapes.

The answer text is ``[{model}] answer #{hash} to: {last user message, 120 chars}``, where the
hash covers the messages (and the Anthropic system prompt). Token counts are ``ceil(chars / 4)``
(at least 1) unless the last user message carries the markers ``#tokens=IN,OUT`` (prompt and
completion tokens, IN counting cached tokens) and ``#cached=N`` (cached prompt tokens).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "UNAUTHORISED",
    "Answer",
    "anthropic_error",
    "anthropic_message",
    "anthropic_stream",
    "bad_request",
    "build_answer",
    "error_response",
    "openai_completion",
    "openai_error",
    "openai_stream",
]

_TOKENS_MARKER: Final = re.compile(r"#tokens=(\d+),(\d+)")
_CACHED_MARKER: Final = re.compile(r"#cached=(\d+)")
_WORDS: Final = re.compile(r"\S+\s*|\s+")
_QUOTED_CHARS: Final = 120
#: Outcomes answered with 401: the `401` behaviour, an unknown key, a key of the other provider.
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


def _text_of(content: Any) -> str:
    """Text of an OpenAI or Anthropic message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(part for part in parts if isinstance(part, str))
    return ""


def _tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def build_answer(model: str, messages: list[Any], system: Any = None) -> Answer:
    """The answer to a chat request; `system` is Anthropic's top-level system prompt."""
    canonical = json.dumps([system, messages], sort_keys=True, separators=(",", ":"), default=str)
    request_hash = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    texts = [_text_of(system)] + [_text_of(m.get("content")) for m in messages if isinstance(m, dict)]
    last_user = next(
        (_text_of(m.get("content")) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
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


def _pieces(text: str) -> list[str]:
    """Split an answer into stream deltas of about two words each."""
    words = _WORDS.findall(text)
    return ["".join(words[i : i + 2]) for i in range(0, len(words), 2)] or [""]


def _dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


# --- OpenAI -----------------------------------------------------------------------------------


def _openai_usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_completion(answer: Answer, *, call_id: str) -> dict[str, Any]:
    """A `chat.completion` object."""
    return {
        "id": f"chatcmpl-{call_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _openai_usage(answer),
    }


def openai_stream(answer: Answer, *, call_id: str, include_usage: bool) -> Iterator[bytes]:
    """SSE lines of a streamed chat completion, ending with ``data: [DONE]``."""
    base: dict[str, Any] = {
        "id": f"chatcmpl-{call_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": answer.model,
        "system_fingerprint": "fp_fake",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return f"data: {_dumps({**base, 'choices': [choice]})}\n\n".encode()

    yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
    for piece in _pieces(answer.text):
        yield chunk({"content": piece}, None)
    yield chunk({}, "stop")
    if include_usage:
        yield f"data: {_dumps({**base, 'choices': [], 'usage': _openai_usage(answer)})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def openai_error(message: str, *, type_: str, code: str | None) -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# --- Anthropic --------------------------------------------------------------------------------


def _anthropic_usage(answer: Answer, *, output_tokens: int) -> dict[str, Any]:
    """Anthropic usage: `input_tokens` excludes cache reads, as the real API reports it."""
    return {
        "input_tokens": answer.prompt_tokens - answer.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": answer.cached_tokens,
        "output_tokens": output_tokens,
    }


def anthropic_message(answer: Answer, *, call_id: str) -> dict[str, Any]:
    """A Messages API `message` object."""
    return {
        "id": f"msg_{call_id}",
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(answer, output_tokens=answer.completion_tokens),
    }


def anthropic_stream(answer: Answer, *, call_id: str) -> Iterator[bytes]:
    """SSE events of a streamed message, from message_start to message_stop."""

    def event(name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {_dumps({'type': name, **payload})}\n\n".encode()

    start = {**anthropic_message(answer, call_id=call_id), "content": [], "stop_reason": None}
    start["usage"] = _anthropic_usage(answer, output_tokens=1)
    yield event("message_start", {"message": start})
    yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    yield event("ping", {})
    for piece in _pieces(answer.text):
        yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
    yield event("content_block_stop", {"index": 0})
    yield event(
        "message_delta",
        {
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": answer.completion_tokens},
        },
    )
    yield event("message_stop", {})


def anthropic_error(message: str, *, type_: str) -> dict[str, Any]:
    """Anthropic's error body."""
    return {"type": "error", "error": {"type": type_, "message": message}}


# --- errors of either provider -----------------------------------------------------------------


def error_response(provider: str, outcome: str, *, retry_after: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of an error outcome in `provider`'s shape.

    `insufficient_quota` is OpenAI's 429 with type and code ``insufficient_quota``, and Anthropic's
    400 credit-balance error (which LiteLLM maps to `BadRequestError`).
    """
    if provider == "openai":
        if outcome in UNAUTHORISED:
            body = openai_error("Incorrect API key provided.", type_="invalid_request_error", code="invalid_api_key")
            return 401, body, {}
        if outcome == "429":
            message = "Rate limit reached for requests (fake provider)."
            return 429, openai_error(message, type_="requests", code="rate_limit_exceeded"), _retry(retry_after)
        if outcome == "insufficient_quota":
            message = "You exceeded your current quota, please check your plan and billing details."
            return 429, openai_error(message, type_="insufficient_quota", code="insufficient_quota"), {}
        message = "The server had an error while processing your request. Sorry about that!"
        return 500, openai_error(message, type_="server_error", code="server_error"), {}
    if outcome in UNAUTHORISED:
        return 401, anthropic_error("invalid x-api-key", type_="authentication_error"), {}
    if outcome == "429":
        message = "Number of requests has exceeded your rate limit (fake provider)."
        return 429, anthropic_error(message, type_="rate_limit_error"), _retry(retry_after)
    if outcome == "insufficient_quota":
        message = (
            "Your credit balance is too low to access the Anthropic API. "
            "Please go to Plans & Billing to upgrade or purchase credits."
        )
        return 400, anthropic_error(message, type_="invalid_request_error"), {}
    return 500, anthropic_error("Internal server error", type_="api_error"), {}


def bad_request(provider: str, message: str) -> dict[str, Any]:
    """The body of a 400 for an unusable request."""
    if provider == "openai":
        return openai_error(message, type_="invalid_request_error", code=None)
    return anthropic_error(message, type_="invalid_request_error")


def _retry(seconds: int) -> dict[str, str]:
    return {"retry-after": str(seconds)}

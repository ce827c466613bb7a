"""The fake provider's wire formats: the OpenAI-compatible family (OpenAI, Groq, DeepSeek) and
Anthropic's Messages API; Gemini lives in `_fake_gemini`. Answers come from `_fake_answer`.

What each OpenAI-compatible flavour adds to OpenAI's chat completion, as the real services send it:

* Groq: ``x_groq: {id}``, ``service_tier: "on_demand"`` and ``usage_breakdown: null``; usage
  with ``queue_time``, ``prompt_time``, ``completion_time``, ``total_time``, and
  ``prompt_tokens_details.cached_tokens`` only when a prompt-cache hit happened. A stream's
  finishing chunk carries ``x_groq.usage`` (and ``usage`` when ``stream_options.include_usage``
  is set, followed by a ``choices: []`` usage chunk). LiteLLM's Groq path reads
  ``service_tier`` from every response (a body without it fails inside LiteLLM).
* DeepSeek: a UUID ``id``, usage with ``prompt_cache_hit_tokens`` and
  ``prompt_cache_miss_tokens`` beside ``prompt_tokens_details.cached_tokens``; a stream's
  finishing chunk carries the usage.

Errors are each service's own bodies (`error_response`): see the tables in its docstring.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any, Final

from adaptive_plugin.devtools._fake_answer import UNAUTHORISED, Answer, build_answer, dumps, pieces
from adaptive_plugin.devtools._fake_gemini import gemini_bad_request, gemini_error

__all__ = [
    "OPENAI_COMPATIBLE",
    "UNAUTHORISED",
    "Answer",
    "anthropic_error",
    "anthropic_message",
    "anthropic_stream",
    "bad_request",
    "build_answer",
    "chat_completion",
    "chat_stream",
    "error_response",
    "openai_error",
]

#: Providers answering in OpenAI's chat-completions format.
OPENAI_COMPATIBLE: Final = frozenset({"openai", "groq", "deepseek"})


# --- the OpenAI-compatible family ----------------------------------------------------------------


def _openai_usage(answer: Answer, flavour: str) -> dict[str, Any]:
    prompt, completion = answer.prompt_tokens, answer.completion_tokens
    if flavour == "groq":
        usage: dict[str, Any] = {
            "queue_time": 0.012, "prompt_tokens": prompt, "prompt_time": 0.004, "completion_tokens": completion,
            "completion_time": 0.009, "total_tokens": prompt + completion, "total_time": 0.013,
        }
        if answer.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": answer.cached_tokens}
        return usage
    if flavour == "deepseek":
        return {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": answer.cached_tokens},
            "prompt_cache_hit_tokens": answer.cached_tokens,
            "prompt_cache_miss_tokens": prompt - answer.cached_tokens,
        }
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _completion_id(call_id: str, flavour: str) -> str:
    if flavour == "deepseek":
        return str(uuid.UUID(hashlib.md5(call_id.encode()).hexdigest()))  # noqa: S324 - an id, not security
    if flavour == "groq":
        return f"chatcmpl-{uuid.UUID(hashlib.md5(call_id.encode()).hexdigest())}"  # noqa: S324
    return f"chatcmpl-{call_id}"


def _envelope(answer: Answer, call_id: str, flavour: str, obj: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": _completion_id(call_id, flavour),
        "object": obj,
        "created": int(time.time()),
        "model": answer.model,
        "system_fingerprint": "fp_fake_prod0820_fp8_kvcache" if flavour == "deepseek" else "fp_fake",
    }
    return out


def chat_completion(answer: Answer, *, call_id: str, flavour: str = "openai") -> dict[str, Any]:
    """A `chat.completion` object in `flavour`'s shape (openai, groq or deepseek)."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    if flavour == "openai":
        message["refusal"] = None
    body = {
        **_envelope(answer, call_id, flavour, "chat.completion"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": _openai_usage(answer, flavour),
    }
    if flavour == "groq":
        body["usage_breakdown"] = None
        body["x_groq"] = {"id": f"req_{call_id}"}
        body["service_tier"] = "on_demand"
    return body


def chat_stream(answer: Answer, *, call_id: str, include_usage: bool, flavour: str = "openai") -> Iterator[bytes]:
    """SSE lines of a streamed chat completion in `flavour`'s shape, ending with ``data: [DONE]``."""
    base = _envelope(answer, call_id, flavour, "chat.completion.chunk")
    usage = _openai_usage(answer, flavour)
    if flavour == "openai" and include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish_reason: str | None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return f"data: {dumps({**base, 'choices': [choice], **extra})}\n\n".encode()

    first: dict[str, Any] = {"role": "assistant", "content": ""}
    if flavour == "openai":
        first["refusal"] = None
    yield chunk(first, None, **({"x_groq": {"id": f"req_{call_id}"}} if flavour == "groq" else {}))
    for piece in pieces(answer.text):
        yield chunk({"content": piece}, None)
    if flavour == "groq":
        yield chunk({}, "stop", x_groq={"id": f"req_{call_id}", "usage": usage}, **({"usage": usage} if include_usage else {}))
        if include_usage:
            yield f"data: {dumps({**base, 'choices': [], 'usage': usage, 'service_tier': 'on_demand'})}\n\n".encode()
    elif flavour == "deepseek":
        yield chunk({"content": ""}, "stop", usage=usage)
    else:
        yield chunk({}, "stop")
        if include_usage:
            yield f"data: {dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def openai_error(message: str, *, type_: str, code: str | None, param: bool = True) -> dict[str, Any]:
    """An OpenAI-style error body (also Groq's, without `param`, and DeepSeek's)."""
    body: dict[str, Any] = {"message": message, "type": type_}
    if param:
        body["param"] = None
    if code is not None or param:
        body["code"] = code
    return {"error": body}


# --- Anthropic -----------------------------------------------------------------------------------


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
        return f"event: {name}\ndata: {dumps({'type': name, **payload})}\n\n".encode()

    start = {**anthropic_message(answer, call_id=call_id), "content": [], "stop_reason": None}
    start["usage"] = _anthropic_usage(answer, output_tokens=1)
    yield event("message_start", {"message": start})
    yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    yield event("ping", {})
    for piece in pieces(answer.text):
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


# --- errors --------------------------------------------------------------------------------------


def error_response(
    provider: str, outcome: str, *, retry_after: int, model: str | None = None, key: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of an error outcome in `provider`'s shape.

    ================  ====================  =========================  ======================  ==============
    outcome           OpenAI                Anthropic                  Groq                    DeepSeek
    ================  ====================  =========================  ======================  ==============
    invalid key       401 invalid_api_key   401 authentication_error   401 invalid_api_key     401 Authentication Fails
    429               429 + retry-after     429 + retry-after          429 RPM + retry-after   429 + retry-after
    quota             429 insufficient_quota 400 credit balance        429 tokens per day (TPD) 402 Insufficient Balance
    500               500 server_error      500 api_error              500                     500 Server Error
    ================  ====================  =========================  ======================  ==============

    Gemini: see `_fake_gemini.gemini_error`. `model` goes into Groq's and Gemini's rate-limit
    messages; `key` into DeepSeek's 401 message (its last four characters, as DeepSeek does).
    """
    if provider == "gemini":
        return gemini_error(outcome, model=model or "unknown", retry_after=retry_after)
    if provider == "groq":
        return _groq_error(outcome, model=model or "unknown", retry_after=retry_after)
    if provider == "deepseek":
        return _deepseek_error(outcome, key=key, retry_after=retry_after)
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


def _groq_error(outcome: str, *, model: str, retry_after: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    if outcome in UNAUTHORISED:
        return 401, openai_error("Invalid API Key", type_="invalid_request_error", code="invalid_api_key", param=False), {}
    limit = f"Rate limit reached for model `{model}` in organization `org_fake` service tier `on_demand` on "
    more = " Visit https://console.groq.com/docs/rate-limits for more information."
    if outcome == "429":
        message = f"{limit}requests per minute (RPM): Limit 30, Used 30, Requested 1. Please try again in {retry_after}s.{more}"
        return 429, openai_error(message, type_="requests", code="rate_limit_exceeded", param=False), _retry(retry_after)
    if outcome == "insufficient_quota":
        message = (f"{limit}tokens per day (TPD): Limit 500000, Used 499990, Requested 1018. "
                   f"Please try again in {retry_after}s.{more}")
        return 429, openai_error(message, type_="tokens", code="rate_limit_exceeded", param=False), _retry(retry_after)
    return 500, openai_error("Internal Server Error", type_="internal_server_error", code=None, param=False), {}


def _deepseek_error(outcome: str, *, key: str | None, retry_after: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    if outcome in UNAUTHORISED:
        shown = f"****{key[-4:]}" if key and len(key) > 8 else "****"
        message = f"Authentication Fails, Your api key: {shown} is invalid"
        return 401, openai_error(message, type_="authentication_error", code="invalid_request_error"), {}
    if outcome == "429":
        return 429, openai_error("Rate Limit Reached", type_="rate_limit_error", code="rate_limit_reached"), _retry(retry_after)
    if outcome == "insufficient_quota":
        return 402, openai_error("Insufficient Balance", type_="unknown_error", code="invalid_request_error"), {}
    return 500, openai_error("Server Error", type_="server_error", code="server_error"), {}


def bad_request(provider: str, message: str, *, status: int = 400) -> dict[str, Any]:
    """The body of a 4xx for an unusable request."""
    if provider == "gemini":
        return gemini_bad_request(message, status=status)
    if provider in OPENAI_COMPATIBLE:
        return openai_error(message, type_="invalid_request_error", code=None, param=provider != "groq")
    return anthropic_error(message, type_="invalid_request_error")


def _retry(seconds: int) -> dict[str, str]:
    return {"retry-after": str(seconds)}

"""The fake provider's Google AI Studio (Gemini API) wire format.

    POST /v1beta/models/{model}:generateContent             JSON
    POST /v1beta/models/{model}:streamGenerateContent?alt=sse SSE, events separated by CRLF CRLF

(also under ``/v1alpha`` and ``/v1``). The key comes in the ``x-goog-api-key`` header, as
LiteLLM 1.106.12 sends it, or in the ``key`` query parameter, which the real API also accepts.

Usage is `usageMetadata`: `promptTokenCount` includes `cachedContentTokenCount` (implicit
caching, with `cacheTokensDetails`); every stream event carries `usageMetadata`, the last one the
final counts with `candidatesTokenCount`. Errors are Google's `{"error": {code, message, status,
details}}`: an invalid key is a 400 `INVALID_ARGUMENT` with reason `API_KEY_INVALID` (Google
never answers 401 for a bad key); rate and quota limits are both 429 `RESOURCE_EXHAUSTED` "You
exceeded your current quota", told apart by the quota id in `QuotaFailure`, with the wait in
`RetryInfo.retryDelay` (no Retry-After header).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Final

from adaptive_plugin.devtools._fake_answer import UNAUTHORISED, Answer, dumps, pieces, text_of

__all__ = ["gemini_bad_request", "gemini_error", "gemini_messages", "gemini_response", "gemini_stream", "split_target"]

ACTIONS: Final = ("generateContent", "streamGenerateContent")
_RATE_LIMITS_URL: Final = "https://ai.google.dev/gemini-api/docs/rate-limits"


def split_target(target: str) -> tuple[str, str] | None:
    """``gemini-2.5-flash:generateContent`` -> (model, action), or None for another action."""
    model, sep, action = target.rpartition(":")
    if not sep or not model or action not in ACTIONS:
        return None
    return model, action


def gemini_messages(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The request's `contents` as chat messages (roles user / assistant) and its system text."""
    messages = []
    for content in payload.get("contents") or []:
        if isinstance(content, dict):
            role = "assistant" if content.get("role") == "model" else "user"
            messages.append({"role": role, "content": text_of(content.get("parts"))})
    system = payload.get("systemInstruction") or payload.get("system_instruction")
    return messages, text_of(system.get("parts")) if isinstance(system, dict) else None


def invalid(payload: Any) -> str | None:
    """Why a generateContent body is unusable, or None."""
    if not isinstance(payload, dict):
        return "Invalid JSON payload received."
    contents = payload.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    return None


def _response_id(call_id: str) -> str:
    return hashlib.sha256(call_id.encode()).hexdigest()[:22]


def _usage(answer: Answer, *, final: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": answer.prompt_tokens}
    if final:
        usage["candidatesTokenCount"] = answer.completion_tokens
    usage["totalTokenCount"] = answer.prompt_tokens + (answer.completion_tokens if final else 0)
    if answer.cached_tokens:
        usage["cachedContentTokenCount"] = answer.cached_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.prompt_tokens}]
    if answer.cached_tokens:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.cached_tokens}]
    if final:
        usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.completion_tokens}]
    return usage


def _candidate(text: str, *, finish: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if finish:
        candidate["finishReason"] = "STOP"
    candidate["index"] = 0
    return candidate


def gemini_response(answer: Answer, *, call_id: str) -> dict[str, Any]:
    """A `GenerateContentResponse`."""
    return {
        "candidates": [_candidate(answer.text, finish=True)],
        "usageMetadata": _usage(answer, final=True),
        "modelVersion": answer.model,
        "responseId": _response_id(call_id),
    }


def gemini_stream(answer: Answer, *, call_id: str) -> Iterator[bytes]:
    """SSE events of `streamGenerateContent?alt=sse`; the last one has finishReason and final usage."""
    parts = pieces(answer.text)
    for i, piece in enumerate(parts):
        last = i == len(parts) - 1
        event = {
            "candidates": [_candidate(piece, finish=last)],
            "usageMetadata": _usage(answer, final=last),
            "modelVersion": answer.model,
            "responseId": _response_id(call_id),
        }
        yield f"data: {dumps(event)}\r\n\r\n".encode()


def _error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = details
    return {"error": body}


def _exhausted(model: str, quota_id: str, limit: str, retry_after: int) -> dict[str, Any]:
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        f"this error, head to: {_RATE_LIMITS_URL}. To monitor your current usage, head to: "
        "https://ai.dev/usage?tab=rate-limit."
    )
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": model},
                "quotaValue": limit,
            }],
        },
        {"@type": "type.googleapis.com/google.rpc.Help",
         "links": [{"description": "Learn more about Gemini API quotas", "url": _RATE_LIMITS_URL}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"},
    ]
    return _error(429, "RESOURCE_EXHAUSTED", message, details)


def gemini_error(outcome: str, *, model: str, retry_after: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of an error outcome, as the Gemini API answers it."""
    if outcome in UNAUTHORISED:
        details = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": "API key not valid. Please pass a valid API key."},
        ]
        return 400, _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", details), {}
    if outcome == "429":
        return 429, _exhausted(model, "GenerateRequestsPerMinutePerProjectPerModel", "1000", retry_after), {}
    if outcome == "insufficient_quota":
        return 429, _exhausted(model, "GenerateRequestsPerDayPerProjectPerModel", "10000", retry_after), {}
    message = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
    return 500, _error(500, "INTERNAL", message), {}


def gemini_bad_request(message: str, *, status: int = 400) -> dict[str, Any]:
    return _error(status, "NOT_FOUND" if status == 404 else "INVALID_ARGUMENT", message)

"""What a request's cache key is made of, and which requests and responses may be cached.

A request is split into three parts:

* the **partition**: the tenant scope and everything besides the last user message that
  changes the answer (model, system prompt, earlier turns, tools, tool_choice,
  response_format, sampling parameters). Partitions never share entries.
* the **query text**: the last user message (`adaptive_plugin.embedding.query_text`),
  matched exactly first, then semantically.
* parameters that do not change the answer (`stream`, `user`, `metadata`, ...), ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from adaptive_plugin.embedding import content_text, query_text

__all__ = ["IGNORED_PARAMS", "KeyedRequest", "RequestKey", "bypass_reason", "keyed_request", "request_key",
           "unstorable_reason"]

# Request-body keys that change neither the content nor the shape of the answer.
IGNORED_PARAMS = frozenset(
    {
        "messages", "stream", "stream_options", "user", "metadata", "timeout", "request_timeout",
        "extra_headers", "extra_body", "extra_query", "api_key", "api_base", "base_url", "api_version",
        "organization", "caching", "cache", "store", "service_tier", "num_retries", "max_retries",
        "fallbacks", "context_window_fallbacks", "mock_response", "tags", "proxy_server_request",
        "secret_fields", "n",
    }
)
_IGNORED_PREFIXES = ("litellm_", "_")
_WS = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the form compared by the exact layer."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def _normalise_value(value: Any) -> Any:
    if isinstance(value, str):
        return _WS.sub(" ", unicodedata.normalize("NFKC", value)).strip()
    if isinstance(value, dict):
        return {str(k): _normalise_value(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_normalise_value(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return repr(value)  # unknown objects: a distinct key at worst (a miss), never a wrong hit


def _normalise_message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key == "content":
            if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
                value = content_text(value)
            out[key] = _normalise_value(value)
        elif key in ("cache_control",):
            continue
        else:
            out[key] = _normalise_value(value)
    return out


def _last_user_index(messages: list[dict[str, Any]]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], dict) and messages[i].get("role") == "user":
            return i
    return -1


@dataclass(frozen=True)
class RequestKey:
    """The cache key of one request: partition hash, exact hash and the text to embed."""

    partition: str
    exact: str
    query: str


def request_key(scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None) -> RequestKey:
    """Hash the request's partition (scope + context + answer-changing params) and exact form."""
    last = _last_user_index(messages)
    context = [
        {"_query": True} if i == last else _normalise_message(m) if isinstance(m, dict) else repr(m)
        for i, m in enumerate(messages)
    ]
    kept = {
        k: _normalise_value(v)
        for k, v in (params or {}).items()
        if k not in IGNORED_PARAMS and not k.startswith(_IGNORED_PREFIXES) and v is not None
    }
    blob = json.dumps({"scope": scope, "context": context, "params": kept}, sort_keys=True, ensure_ascii=False)
    partition = hashlib.sha256(blob.encode("utf-8")).hexdigest()
    query = query_text(messages)
    exact = hashlib.sha256(f"{partition}\x00{normalise_text(query)}".encode()).hexdigest()
    return RequestKey(partition=partition, exact=exact, query=query)


@dataclass(frozen=True, eq=False)
class KeyedRequest:
    """A request's key with what it was computed from, so that one request hashes once.

    The proxy asks for the key at authentication (whether to start the embedding), at the
    lookup and at the store; `keyed_request` returns the one it is given while the request
    still matches it: the same scope and parameters, and messages equal to a shallow copy
    taken when the key was computed (a few dict comparisons instead of normalising, dumping
    and hashing the conversation again). Anything else computes a new key.
    """

    scope: str
    messages: tuple[Any, ...]
    params: dict[str, Any]
    key: RequestKey
    # what the cache computed for this request along the way (its first-look vector)
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def matches(self, scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None) -> bool:
        return (scope == self.scope and (params or {}) == self.params and len(messages) == len(self.messages)
                and all(m == s for m, s in zip(messages, self.messages)))


def keyed_request(scope: str, messages: list[dict[str, Any]], params: dict[str, Any] | None,
                  known: KeyedRequest | None = None) -> KeyedRequest:
    """`known` if it is still this request's key (see `KeyedRequest`), else a new one."""
    if known is not None and known.matches(scope, messages, params):
        return known
    snapshot = tuple(dict(m) if isinstance(m, dict) else m for m in messages)
    return KeyedRequest(scope, snapshot, dict(params or {}), request_key(scope, messages, params))


def _cache_control(params: dict[str, Any]) -> dict[str, Any]:
    control = params.get("cache")
    return control if isinstance(control, dict) else {}


def bypass_reason(
    messages: list[dict[str, Any]], params: dict[str, Any] | None, *, max_temperature: float, store: bool
) -> str | None:
    """Why this request must be neither served from nor stored in the cache, or None.

    `store=True` asks on behalf of `store` (honours `cache: {"no-store": true}`), False on
    behalf of `lookup` (honours `no-cache`).
    """
    params = params or {}
    if not isinstance(messages, list) or not messages:
        return "no messages"
    last = _last_user_index(messages)
    if last < 0:
        return "no user message"
    content = messages[last].get("content")
    if isinstance(content, list) and any(not (isinstance(p, dict) and p.get("type") == "text") for p in content):
        return "non-text content"
    if not query_text(messages):
        return "empty user message"
    control = _cache_control(params)
    if not store and control.get("no-cache"):
        return "no-cache requested"
    if store and control.get("no-store"):
        return "no-store requested"
    n = params.get("n")
    if n is not None and n != 1:
        return f"n={n}"
    temperature = params.get("temperature")
    if temperature is not None:
        try:
            t = float(temperature)
        except (TypeError, ValueError):
            return "temperature is not a number"
        if math.isnan(t) or t > max_temperature:
            return f"temperature {t} > {max_temperature}"
    return None


_GOOD_FINISH = frozenset({"stop", "tool_calls", "function_call", "end_turn", "stop_sequence"})


def unstorable_reason(response: Any) -> str | None:
    """Why a response must not be cached (error, truncated, empty), or None if it may be."""
    if not isinstance(response, dict):
        return "response is not a dict"
    if response.get("error") is not None:
        return "error response"
    if response.get("object") not in (None, "chat.completion"):
        return f"object {response.get('object')!r}"
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        return "no choices"
    for choice in choices:
        if not isinstance(choice, dict):
            return "malformed choice"
        finish = choice.get("finish_reason")
        if finish not in _GOOD_FINISH:
            return f"finish_reason {finish!r}"
        message = choice.get("message")
        if not isinstance(message, dict):
            return "choice without message"
        if not content_text(message.get("content")).strip() and not message.get("tool_calls") and not message.get(
            "function_call"
        ):
            return "empty message"
    return None  # whether it serialises is checked where it is serialised (SemanticCache.store)

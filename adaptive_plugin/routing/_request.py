"""Read what a request needs from an OpenAI chat-completions body (a plain dict).

    >>> f = request_features({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]})
    >>> f.needs_tools, f.needs_vision, f.needs_json
    (True, False, False)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adaptive_plugin.embedding import content_text
from adaptive_plugin.routing.selection import RouteRequest

CHARS_PER_TOKEN = 4.0
TOKENS_PER_IMAGE = 800
TOKENS_PER_MESSAGE = 4
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
_JSON_FORMATS = frozenset({"json_object", "json_schema"})


@dataclass(frozen=True)
class RequestFeatures:
    """Needs of a request body: tools, images, JSON output, and a rough input token count."""

    needs_tools: bool
    needs_vision: bool
    needs_json: bool
    estimated_input_tokens: int
    image_parts: int


def request_features(body: Mapping[str, Any]) -> RequestFeatures:
    """Inspect `messages`, `tools`/`functions`, `tool_choice` and `response_format` of `body`.

    The token estimate is characters / 4 plus 4 per message, 800 per image and the
    serialised tool schemas: good enough to compare with a context window, not to bill.
    """
    messages = body.get("messages") or []
    chars = 0
    images = 0
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        chars += len(content_text(content))
        if isinstance(content, list):
            images += sum(1 for p in content if isinstance(p, Mapping) and p.get("type") in _IMAGE_PART_TYPES)
        for call in message.get("tool_calls") or []:
            chars += len(_dumps(call))
    tools = body.get("tools") or body.get("functions") or []
    tool_choice = body.get("tool_choice")
    needs_tools = bool(tools) and tool_choice != "none"
    if needs_tools:
        chars += len(_dumps(tools))
    response_format = body.get("response_format")
    fmt = response_format.get("type") if isinstance(response_format, Mapping) else None
    n_messages = len(messages) if isinstance(messages, list) else 0
    tokens = int(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * n_messages + TOKENS_PER_IMAGE * images
    return RequestFeatures(
        needs_tools=needs_tools,
        needs_vision=images > 0,
        needs_json=fmt in _JSON_FORMATS,
        estimated_input_tokens=tokens,
        image_parts=images,
    )


def route_request(
    body: Mapping[str, Any],
    *,
    cost_bias: float = 0.5,
    allowed_models: frozenset[str] | None = None,
    usable_providers: frozenset[str] | None = None,
) -> RouteRequest:
    """Build the `RouteRequest` of an OpenAI request body (max_tokens sets the output estimate)."""
    feats = request_features(body)
    messages = body.get("messages") or []
    max_out = body.get("max_completion_tokens") or body.get("max_tokens")
    return RouteRequest(
        messages=[m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else [],
        estimated_input_tokens=feats.estimated_input_tokens,
        needs_tools=feats.needs_tools,
        needs_vision=feats.needs_vision,
        needs_json=feats.needs_json,
        cost_bias=cost_bias,
        allowed_models=allowed_models,
        usable_providers=usable_providers,
        expected_output_tokens=min(int(max_out), 4096) if isinstance(max_out, int) and max_out > 0 else 512,
    )


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(value)

"""Which text of a chat request is embedded: shared by the cache and the router."""

from __future__ import annotations

from typing import Any


def content_text(content: Any) -> str:
    """Flatten an OpenAI message `content` (string or list of parts) into plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def query_text(messages: list[dict[str, Any]]) -> str:
    """The last user message's text: the one string embedded per request.

    The semantic cache matches it while partitioning on everything before it; the router
    scores it together with cheap structural features of the whole conversation.
    """
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content")).strip()
    return ""


# Embedding cost grows faster than linearly with length (about 6 ms for a short question and
# tens of ms for 1,000 characters on 2 cores): the request path embeds at most this prefix.
EMBED_MAX_CHARS = 512


def embedding_text(text: str) -> str:
    """The prefix of `text` that is embedded on the request path."""
    return text[:EMBED_MAX_CHARS]

"""What a chat request body may carry, checked before LiteLLM acts on it.

Two kinds of refusal, each a 400 naming the field:

- `ForbiddenParameterError`: a field with which LiteLLM would change where or as whom the
  call goes (credentials, endpoints, provider, retries, fallbacks, mock answers, logging
  destinations, prices). The adapter derives those names from LiteLLM's own parameter lists
  and passes them in; `forbidden_by_pattern` catches the families those lists grow by
  (`aws_*`, `*_api_key`, ...). `ALLOWED_LITELLM_FIELDS` are the reviewed exceptions.
- `InvalidRequestError`: a body that is not a JSON object, or a standard parameter of the
  wrong type or range (`max_tokens: -1`, `temperature: "hot"`, `"content": 42`, a model name
  with control characters, an image or file URL that points inside the network).

Fields this module does not know pass through: providers have parameters of their own.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from adaptive_plugin.errors import ForbiddenParameterError, InvalidRequestError

# LiteLLM-owned names a client may still send: checked below instead of refused
ALLOWED_LITELLM_FIELDS: frozenset[str] = frozenset({"metadata"})

# Families of names that carry credentials, endpoints or LiteLLM internals, whatever LiteLLM
# adds to them later
_FORBIDDEN_PREFIXES = ("_", "litellm_", "aws_", "vertex_", "azure_", "watsonx_", "mock_", "langfuse_", "langsmith_")
_FORBIDDEN_SUFFIXES = (
    "_api_key", "_api_base", "_base_url", "_secret", "_secret_key", "_password", "_token", "_credentials",
    "_endpoint", "_url", "_host",
)

MAX_MODEL_NAME = 256
MAX_OUTPUT_TOKENS = 1 << 20
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_CONTENT_REQUIRED = frozenset({"system", "developer", "user"})
_TOOL_CHOICES = frozenset({"none", "auto", "required"})
_RESERVED_METADATA_PREFIXES = ("_", "litellm", "user_api_key", "adaptive")
_RESERVED_METADATA_KEYS = frozenset({
    "tags", "headers", "requester_metadata", "model_group", "deployment", "model_info", "hidden_params", "endpoint",
    "caching_groups", "guardrails", "prompt_id", "api_base", "api_key",
})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def forbidden_by_pattern(name: str) -> bool:
    """Names of the families that carry credentials, endpoints or LiteLLM internals."""
    lowered = name.lower()
    return lowered.startswith(_FORBIDDEN_PREFIXES) or lowered.endswith(_FORBIDDEN_SUFFIXES)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in text)


def check_model_name(value: Any, *, param: str = "model") -> str:
    """A model name is a short string without control characters (it is echoed in headers)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{param} must be a non-empty string naming a model", param=param)
    if len(value) > MAX_MODEL_NAME:
        raise InvalidRequestError(f"{param} is longer than {MAX_MODEL_NAME} characters", param=param)
    if _has_control(value):
        raise InvalidRequestError(f"{param} must not contain control characters or line breaks", param=param)
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _integer(lo: int, hi: int) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and lo <= value <= hi:
                return
            raise InvalidRequestError(f"{name} must be an integer between {lo} and {hi}, got {_kind(value)}", param=name)
        if not lo <= value <= hi:
            raise InvalidRequestError(f"{name} must be between {lo} and {hi}, got {value}", param=name)
    return check


def _number(lo: float, hi: float) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequestError(f"{name} must be a number between {lo:g} and {hi:g}, got {_kind(value)}", param=name)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise InvalidRequestError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}", param=name)
    return check


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{name} must be true or false, got {_kind(value)}", param=name)


def _string(max_len: int) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str):
            raise InvalidRequestError(f"{name} must be a string, got {_kind(value)}", param=name)
        if len(value) > max_len:
            raise InvalidRequestError(f"{name} is longer than {max_len} characters", param=name)
        if _has_control(value):
            raise InvalidRequestError(f"{name} must not contain control characters", param=name)
    return check


def _stop(name: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or len(value) > 4 or not all(isinstance(s, str) for s in value):
        raise InvalidRequestError(f"{name} must be a string or a list of at most 4 strings", param=name)


def _object(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{name} must be an object, got {_kind(value)}", param=name)


def _stream_options(name: str, value: Any) -> None:
    _object(name, value)
    if "include_usage" in value:
        _boolean(f"{name}.include_usage", value["include_usage"])


def _logit_bias(name: str, value: Any) -> None:
    if not isinstance(value, dict) or len(value) > 1024:
        raise InvalidRequestError(f"{name} must be an object of at most 1024 token ids", param=name)
    for token, bias in value.items():
        try:
            _number(-100, 100)(f"{name}[{token!r}]", bias)
        except InvalidRequestError as exc:
            raise InvalidRequestError(exc.message, param=name) from None


def _tools(name: str, value: Any) -> None:
    if not isinstance(value, list) or len(value) > 128:
        raise InvalidRequestError(f"{name} must be a list of at most 128 tools", param=name)
    for i, tool in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise InvalidRequestError(f"{where} must be an object with a string 'type'", param=name)
        if tool["type"] == "function":
            function = tool.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise InvalidRequestError(f"{where}.function must be an object with a string 'name'", param=name)
            if not _TOOL_NAME.match(function["name"]):
                raise InvalidRequestError(f"{where}.function.name must be 1-128 letters, digits, '_', '.' or '-'", param=name)
            if "parameters" in function and not isinstance(function["parameters"], dict):
                raise InvalidRequestError(f"{where}.function.parameters must be an object", param=name)


def _tool_choice(name: str, value: Any) -> None:
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise InvalidRequestError(f"{name} must be one of {', '.join(sorted(_TOOL_CHOICES))} or an object", param=name)
        return
    _object(name, value)


def _response_format(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise InvalidRequestError(f"{name} must be an object with a string 'type'", param=name)


def _metadata(name: str, value: Any) -> None:
    if not isinstance(value, dict) or len(value) > 16:
        raise InvalidRequestError(f"{name} must be an object of at most 16 string values", param=name)
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > 64 or not isinstance(item, str) or len(item) > 512:
            raise InvalidRequestError(f"{name} keys must be strings of at most 64 characters and values strings of "
                                      "at most 512", param=name)
        lowered = key.lower()
        if lowered.startswith(_RESERVED_METADATA_PREFIXES) or lowered in _RESERVED_METADATA_KEYS:
            raise ForbiddenParameterError(f"{name}.{key} is reserved by the gateway", param=f"{name}.{key}")


# Standard parameters: name -> check. `LIMITS` is the documented table (docs/security.md).
LIMITS: Mapping[str, Callable[[str, Any], None]] = MappingProxyType({
    "max_tokens": _integer(1, MAX_OUTPUT_TOKENS),
    "max_completion_tokens": _integer(1, MAX_OUTPUT_TOKENS),
    "n": _integer(1, 128),
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "cost_bias": _number(0, 1),
    "seed": _integer(-(1 << 63), (1 << 63) - 1),
    "top_logprobs": _integer(0, 20),
    "stream": _boolean,
    "logprobs": _boolean,
    "parallel_tool_calls": _boolean,
    "stream_options": _stream_options,
    "stop": _stop,
    "logit_bias": _logit_bias,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "response_format": _response_format,
    "user": _string(256),
    "reasoning_effort": _string(32),
    "metadata": _metadata,
})


# Anthropic-style content parts whose `source` may be a URL LiteLLM downloads
_SOURCE_PARTS = frozenset({"image", "document"})


def _check_url(where: str, url: Any) -> None:
    """Media the provider (or LiteLLM) fetches must be data: or https: outside the network.

    Names are checked here; the addresses a hostname resolves to are checked by LiteLLM's own
    SSRF guard when it downloads (`user_url_validation`, which the plugin requires on)."""
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"{where} must be a non-empty string", param="messages")
    if url.startswith("data:"):
        return
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidRequestError(f"{where} must be a data: URL or an https:// URL", param="messages")
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        raise InvalidRequestError(f"{where} must not point at a local host", param="messages")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not address.is_global:
        raise InvalidRequestError(f"{where} must not point at a private, loopback or link-local address", param="messages")


def _names_a_url(value: Any) -> bool:
    """A file id LiteLLM would download: it fetches ids that start with or contain a scheme."""
    return isinstance(value, str) and ("://" in value or value.lower().startswith("www."))


def _content_part(where: str, part: Any) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise InvalidRequestError(f"{where} must be an object with a string 'type'", param="messages")
    kind = part["type"]
    if kind == "text" and not isinstance(part.get("text"), str):
        raise InvalidRequestError(f"{where}.text must be a string", param="messages")
    if kind == "image_url":
        image = part.get("image_url")
        _check_url(f"{where}.image_url.url", image.get("url") if isinstance(image, dict) else image)
    elif kind == "file":
        file = part.get("file")
        if not isinstance(file, dict):
            raise InvalidRequestError(f"{where}.file must be an object", param="messages")
        if _names_a_url(file.get("file_id")):
            _check_url(f"{where}.file.file_id", file["file_id"])
    elif kind in _SOURCE_PARTS and isinstance(part.get("source"), dict) and part["source"].get("type") == "url":
        _check_url(f"{where}.source.url", part["source"].get("url"))


def _messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of message objects", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where} must be an object, got {_kind(message)}", param="messages")
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequestError(f"{where}.role must be one of {', '.join(sorted(_ROLES))}", param="messages")
        content = message.get("content")
        if content is None:
            if role in _CONTENT_REQUIRED:
                raise InvalidRequestError(f"{where}.content is required for role {role!r}", param="messages")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                _content_part(f"{where}.content[{j}]", part)
        elif not isinstance(content, str):
            raise InvalidRequestError(
                f"{where}.content must be a string or a list of content parts, got {_kind(content)}", param="messages")
        if "name" in message and not isinstance(message["name"], str):
            raise InvalidRequestError(f"{where}.name must be a string", param="messages")
        if "tool_calls" in message and not isinstance(message["tool_calls"], list):
            raise InvalidRequestError(f"{where}.tool_calls must be a list", param="messages")


def check_chat_body(body: Any, *, forbidden: Collection[str]) -> dict[str, Any]:
    """Refuse a chat body that is not an object, carries a forbidden field or a bad value.

    `forbidden` holds the exact names (from LiteLLM's parameter lists); the patterns and
    `ALLOWED_LITELLM_FIELDS` are applied here. Returns the body.
    """
    if not isinstance(body, dict):
        raise InvalidRequestError(f"the request body must be a JSON object, got {_kind(body)}", param=None)
    for name in body:
        if not isinstance(name, str):
            raise InvalidRequestError("the request body's keys must be strings", param=None)
        if name in ALLOWED_LITELLM_FIELDS:
            continue
        if name in forbidden or forbidden_by_pattern(name):
            raise ForbiddenParameterError(
                f"{name!r} is not accepted: a request cannot choose the credentials, endpoint, provider, retries or "
                "logging of its call (see docs/security.md)", param=name)
    check_model_name(body.get("model"))
    _messages(body.get("messages"))
    for name, check in LIMITS.items():
        if name in body and body[name] is not None:
            check(name, body[name])
    return body

"""A failed provider attempt as a reason: whose fault it was decides what happens next.

Only a failure of the key or the provider (`keys.KEY_FAILURES`: invalid, quota, rate limited,
5xx, timeout, network) moves the request to the project's next key and then the pooled key,
and cools the key down. A provider 400/404/409/413/422 is the request's fault ("request") and
an exception LiteLLM raises itself without a provider answer or a network failure ("internal",
e.g. a transformation that rejects the body): the client gets the error at once, no key is
blamed and no other key (or pooled call) repeats it.

LiteLLM wraps any unexpected exception of a call into `APIConnectionError`, the same class it
uses for a refused or reset connection; the two are told apart by the exception chain.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import litellm

from adaptive_plugin.keys import classify_failure
from adaptive_plugin.keys.resolver import FailureReason

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, ConnectionError, ssl.SSLError, TimeoutError)
try:  # aiohttp is LiteLLM's optional transport
    import aiohttp

    _NETWORK_ERRORS = (*_NETWORK_ERRORS, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
except ImportError:  # pragma: no cover
    pass
_NETWORK_TEXT = ("connection error", "connection reset", "connection aborted", "connection refused",
                 "server disconnected", "remote end closed", "peer closed connection")


def _chain(exc: BaseException, depth: int = 12) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < depth:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([getattr(item, "original_exception", None), item.__context__, item.__cause__])
    return seen


def network_failure(exc: BaseException) -> bool:
    """Whether the network failed somewhere in the exception's chain."""
    for item in _chain(exc):
        if isinstance(item, _NETWORK_ERRORS) and not isinstance(item, httpx.TimeoutException):
            return True
        if type(item).__name__ == "APIConnectionError" and type(item).__module__.startswith("openai"):
            return True  # the openai SDK's own: raised for transport errors only
    return False


def failure_reason(exc: BaseException) -> FailureReason:
    """The reason an attempt failed (see the module docstring)."""
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    timeout = isinstance(exc, (litellm.Timeout, httpx.TimeoutException)) or any(
        isinstance(item, httpx.TimeoutException) for item in _chain(exc))
    connection = False
    internal = False
    if isinstance(exc, litellm.APIConnectionError) or status is None:
        connection = network_failure(exc) or any(t in str(exc).lower() for t in _NETWORK_TEXT)
        internal = not connection
    return classify_failure(status, str(exc), timeout=timeout, connection=connection, internal=internal)


def retry_after(exc: BaseException) -> float | None:
    """The provider's `retry-after` in seconds, if it sent one."""
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def drop_retry_after(exc: BaseException) -> None:
    """Forget the provider's retry-after: the next attempt uses another key, no reason to wait."""
    for headers in (getattr(exc, "litellm_response_headers", None), getattr(getattr(exc, "response", None), "headers", None)):
        if headers is not None:
            for name in ("retry-after", "retry-after-ms"):
                try:
                    if name in headers:
                        del headers[name]
                except (TypeError, KeyError):
                    pass

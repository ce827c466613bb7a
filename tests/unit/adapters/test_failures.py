"""Whose fault a failed attempt was, for the exceptions LiteLLM raises for each provider.

Only key and provider failures move a request to the next key; the request's own faults and
LiteLLM's internal errors reach the client at once, blaming no key.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

import httpx
import litellm
import openai
import pytest

from adaptive_plugin.adapters.failures import failure_reason, network_failure, retry_after
from adaptive_plugin.keys import KEY_FAILURES

PROVIDERS = ["openai", "anthropic", "gemini", "groq", "deepseek"]
REQUEST = httpx.Request("POST", "https://api.example.com/v1/chat/completions")


def response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, request=REQUEST)


def raised_from(cause: BaseException, wrapper: BaseException) -> BaseException:
    """`wrapper` raised while handling `cause`, as LiteLLM's exception mapping does."""
    try:
        try:
            raise cause
        except BaseException:
            raise wrapper  # noqa: B904 - implicit chaining is what LiteLLM relies on
    except BaseException as exc:  # noqa: BLE001
        return exc


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("make, reason", [
    (lambda p: litellm.AuthenticationError("Incorrect API key", llm_provider=p, model="m"), "invalid"),
    (lambda p: litellm.PermissionDeniedError("denied", llm_provider=p, model="m", response=response(403)), "invalid"),
    (lambda p: litellm.RateLimitError("Rate limit reached", llm_provider=p, model="m"), "rate_limited"),
    (lambda p: litellm.RateLimitError("You exceeded your current quota", llm_provider=p, model="m"), "quota"),
    (lambda p: litellm.InternalServerError("boom", llm_provider=p, model="m"), "server_error"),
    (lambda p: litellm.ServiceUnavailableError("overloaded", llm_provider=p, model="m"), "server_error"),
    (lambda p: litellm.Timeout("timed out", model="m", llm_provider=p), "timeout"),
    (lambda p: litellm.BadRequestError("messages: field required", model="m", llm_provider=p), "request"),
    (lambda p: litellm.ContextWindowExceededError("maximum context length", model="m", llm_provider=p), "request"),
    (lambda p: litellm.ContentPolicyViolationError("flagged", model="m", llm_provider=p), "request"),
    (lambda p: litellm.NotFoundError("model not found", model="m", llm_provider=p), "request"),
    (lambda p: litellm.UnprocessableEntityError("unprocessable", model="m", llm_provider=p,
                                                response=response(422)), "request"),
])
def test_provider_errors(provider: str, make: object, reason: str) -> None:
    assert failure_reason(make(provider)) == reason  # type: ignore[operator]


def test_anthropic_credit_balance_400_is_the_keys_quota() -> None:
    exc = litellm.BadRequestError("Your credit balance is too low to access the Anthropic API", model="m",
                                  llm_provider="anthropic")
    assert failure_reason(exc) == "quota"


@pytest.mark.parametrize("cause", [
    httpx.ConnectError("connection refused", request=REQUEST),
    httpx.RemoteProtocolError("peer closed connection without sending complete message body", request=REQUEST),
    openai.APIConnectionError(request=REQUEST),
    ConnectionResetError(104, "Connection reset by peer"),
])
def test_connection_errors_are_the_networks(cause: BaseException) -> None:
    exc = raised_from(cause, litellm.APIConnectionError("APIConnectionError: upstream", llm_provider="openai", model="m"))
    assert network_failure(exc)
    assert failure_reason(exc) == "connection"


@pytest.mark.parametrize("cause", [TypeError("'int' object is not iterable"), KeyError("choices"),
                                   ValueError("could not transform the request")])
def test_litellm_internal_errors_blame_no_key(cause: BaseException) -> None:
    exc = raised_from(cause, litellm.APIConnectionError("litellm could not call the model", llm_provider="groq", model="m"))
    assert not network_failure(exc)
    reason = failure_reason(exc)
    assert reason == "internal" and reason not in KEY_FAILURES


def test_a_timeout_inside_a_connection_error_is_a_timeout() -> None:
    exc = raised_from(httpx.ReadTimeout("read timed out", request=REQUEST),
                      litellm.APIConnectionError("request failed", llm_provider="openai", model="m"))
    assert failure_reason(exc) == "timeout"


def test_retry_after_is_read_from_the_provider_headers() -> None:
    exc = litellm.RateLimitError("slow down", llm_provider="openai", model="m",
                                 response=response(429, {"retry-after": "30"}))
    assert retry_after(exc) == 30.0
    assert retry_after(litellm.RateLimitError("slow down", llm_provider="openai", model="m")) is None


def test_only_key_failures_move_to_the_next_key() -> None:
    assert KEY_FAILURES == {"invalid", "quota", "rate_limited", "server_error", "timeout", "connection"}

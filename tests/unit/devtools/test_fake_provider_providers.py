"""The fake provider's Gemini, Groq and DeepSeek formats as LiteLLM 1.106.12's own providers read them.

Each provider is reached the way `api_bases` says (as config/demo.yaml does); usage, prompt-cache
counts, streaming and every per-key behaviour must come out of LiteLLM's transformation as they
would from the real service, and a key is refused on any other provider's path.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import litellm
import pytest
import pytest_asyncio

from adaptive_plugin.adapters.failures import failure_reason
from adaptive_plugin.devtools.fake_provider import FakeProvider, api_bases
from adaptive_plugin.keys import KEY_FAILURES

MODELS = {"gemini": "gemini/gemini-2.5-flash", "groq": "groq/openai/gpt-oss-20b", "deepseek": "deepseek/deepseek-v4-flash"}
KEYS: dict[str, Any] = {
    "ok-any": {"label": "any-provider"},
    **{f"ok-{p}": {"label": f"ok-{p}", "provider": p} for p in MODELS},
    **{f"{b}-{p}": {"label": f"{b}-{p}", "provider": p, "behaviour": b, "retry_after": 9}
       for p in MODELS for b in ("401", "429", "insufficient_quota", "500", "reset")},
}
CACHED = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarise #tokens=1000,40 #cached=600"}]

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("ignore:Item 'summary' on TypedDict class 'ChatCompletionReasoningItem':UserWarning"),
    pytest.mark.filterwarnings("ignore:Accessing the 'model_.*' attribute on the instance is deprecated"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider(KEYS) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _close_litellm_clients() -> AsyncIterator[None]:
    """LiteLLM caches an HTTP client per event loop: close this module's before its loop ends."""
    yield
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()


@pytest.fixture
def fake(server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    server.reset()
    return server


def args(fake: FakeProvider, provider: str, key: str | None = None) -> dict[str, Any]:
    assert fake.base_url is not None
    return {"model": MODELS[provider], "api_base": api_bases(fake.base_url)[provider],
            "api_key": key or f"ok-{provider}", "max_retries": 0}


@pytest.mark.parametrize("provider", list(MODELS))
async def test_completion_usage_and_prompt_cache(fake: FakeProvider, provider: str) -> None:
    response = await litellm.acompletion(messages=CACHED, **args(fake, provider))
    model = MODELS[provider].split("/", 1)[1]
    assert response.choices[0].message.content.startswith(f"[{model}] answer #")
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (1000, 40)
    assert usage.prompt_tokens_details.cached_tokens == 600
    assert response._hidden_params["response_cost"] > 0  # priced from LiteLLM's cost map
    (call,) = fake.calls()
    assert (call["provider"], call["key_label"], call["model"], call["status"], call["stream"]) == (
        provider, f"ok-{provider}", model, 200, False)


@pytest.mark.parametrize("provider", list(MODELS))
async def test_streamed_usage_and_prompt_cache(fake: FakeProvider, provider: str) -> None:
    stream = await litellm.acompletion(messages=CACHED, stream=True, stream_options={"include_usage": True},
                                       **args(fake, provider))
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("#tokens=1000,40 #cached=600")
    usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
    assert (usage.prompt_tokens, usage.completion_tokens) == (1000, 40)
    assert usage.prompt_tokens_details.cached_tokens == 600
    assert fake.calls()[0]["stream"] is True


async def test_gemini_key_travels_in_the_goog_header_and_query_keys_work(fake: FakeProvider) -> None:
    assert fake.base_url is not None
    await litellm.acompletion(messages=CACHED, **args(fake, "gemini"))
    assert fake.calls()[0]["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    url = f"{fake.base_url}/v1beta/models/gemini-2.5-flash:generateContent"
    assert httpx.post(url, params={"key": "ok-gemini"}, json=body).status_code == 200
    refused = httpx.post(url, headers={"Authorization": "Bearer ok-gemini"}, json=body)
    assert refused.status_code == 400 and refused.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    streamed = httpx.post(url.replace(":generateContent", ":streamGenerateContent"), params={"alt": "sse"},
                          headers={"x-goog-api-key": "ok-gemini"}, json=body)
    events = [e for e in streamed.text.split("\r\n\r\n") if e]
    assert len(events) > 1 and all(e.startswith("data: {") for e in events)


async def test_groq_and_deepseek_bodies_carry_their_own_fields(fake: FakeProvider) -> None:
    assert fake.base_url is not None
    bases = api_bases(fake.base_url)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi #tokens=10,5 #cached=4"}]}
    groq = httpx.post(f"{bases['groq']}/chat/completions", json=body, headers={"Authorization": "Bearer ok-groq"}).json()
    assert groq["service_tier"] == "on_demand" and groq["x_groq"]["id"].startswith("req_")
    assert groq["usage"]["queue_time"] > 0 and groq["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}
    deepseek = httpx.post(f"{bases['deepseek']}/chat/completions", json=body,
                          headers={"Authorization": "Bearer ok-deepseek"}).json()
    assert (deepseek["usage"]["prompt_cache_hit_tokens"], deepseek["usage"]["prompt_cache_miss_tokens"]) == (4, 6)


async def test_groq_response_without_service_tier_fails_inside_litellm(fake: FakeProvider) -> None:
    """Why the fake's Groq answers carry `service_tier`: LiteLLM's Groq path reads it unconditionally,
    and a body without it (the fake's OpenAI shape, before Groq had its own) fails after a 200."""
    assert fake.base_url is not None
    with pytest.raises(litellm.APIConnectionError, match="service_tier") as caught:
        await litellm.acompletion(messages=CACHED, **{**args(fake, "groq", "ok-any"), "api_base": f"{fake.base_url}/v1"})
    assert [(c["provider"], c["status"]) for c in fake.calls()] == [("openai", 200)]
    assert failure_reason(caught.value) == "internal"  # LiteLLM's own failure: no key is blamed


EXPECTED = {
    # provider, behaviour: LiteLLM's exception, its status, the plugin's fallback reason
    ("gemini", "401"): (litellm.AuthenticationError, 401, "invalid"),  # Google answers 400 API_KEY_INVALID
    ("gemini", "429"): (litellm.RateLimitError, 429, "rate_limited"),  # quota id ...PerMinute...
    ("gemini", "insufficient_quota"): (litellm.RateLimitError, 429, "quota"),  # quota id ...PerDay...
    ("gemini", "500"): (litellm.InternalServerError, 500, "server_error"),
    ("groq", "401"): (litellm.BadRequestError, 401, "invalid"),  # its body says invalid_request_error
    ("groq", "429"): (litellm.RateLimitError, 429, "rate_limited"),
    ("groq", "insufficient_quota"): (litellm.RateLimitError, 429, "quota"),  # tokens per day (TPD)
    ("groq", "500"): (litellm.InternalServerError, 500, "server_error"),
    ("deepseek", "401"): (litellm.BadRequestError, 401, "invalid"),
    ("deepseek", "429"): (litellm.RateLimitError, 429, "rate_limited"),
    ("deepseek", "insufficient_quota"): (litellm.BadRequestError, 402, "quota"),  # Insufficient Balance
    ("deepseek", "500"): (litellm.InternalServerError, 500, "server_error"),
}


@pytest.mark.parametrize(("provider", "behaviour"), list(EXPECTED))
async def test_errors_map_to_litellm_exceptions_and_fallback_reasons(fake: FakeProvider, provider: str, behaviour: str) -> None:
    error, status, reason = EXPECTED[(provider, behaviour)]
    with pytest.raises(error) as caught:
        await litellm.acompletion(messages=CACHED, **args(fake, provider, f"{behaviour}-{provider}"))
    assert caught.value.status_code == status
    assert failure_reason(caught.value) == reason  # as the plugin's failure hook classifies it
    assert len(fake.calls()) == 1


@pytest.mark.parametrize("provider", list(MODELS))
async def test_key_of_another_provider_is_refused(fake: FakeProvider, provider: str) -> None:
    other = next(p for p in MODELS if p != provider)
    with pytest.raises((litellm.AuthenticationError, litellm.BadRequestError)):
        await litellm.acompletion(messages=CACHED, **args(fake, provider, f"ok-{other}"))
    assert [c["outcome"] for c in fake.calls()] == ["provider_mismatch"]


async def test_gemini_rate_limit_carries_its_retry_delay(fake: FakeProvider) -> None:
    from adaptive_plugin.providers import retry_delay_seconds

    with pytest.raises(litellm.RateLimitError) as caught:
        await litellm.acompletion(messages=CACHED, **args(fake, "gemini", "429-gemini"))
    assert retry_delay_seconds(str(caught.value)) == 9.0


@pytest.mark.parametrize("provider", ["groq", "deepseek"])
async def test_rate_limit_sends_retry_after(fake: FakeProvider, provider: str) -> None:
    with pytest.raises(litellm.RateLimitError) as caught:
        await litellm.acompletion(messages=CACHED, **args(fake, provider, f"429-{provider}"))
    headers = getattr(caught.value, "litellm_response_headers", None) or caught.value.response.headers
    assert headers.get("retry-after") == "9"


@pytest.mark.parametrize("provider", list(MODELS))
async def test_connection_reset_is_a_connection_failure(fake: FakeProvider, provider: str) -> None:
    with pytest.raises((litellm.InternalServerError, litellm.APIConnectionError)) as caught:
        await litellm.acompletion(messages=CACHED, **args(fake, provider, f"reset-{provider}"))
    # a key failure: the next key is tried (LiteLLM's own HTTP handler reports the reset as a 500
    # InternalServerError on these providers' path, an APIConnectionError on Gemini's)
    assert failure_reason(caught.value) in KEY_FAILURES, str(caught.value)
    # LiteLLM's own HTTP handler (these providers' path) sends a POST again once after a reset
    assert [c["outcome"] for c in fake.calls()] == ["reset", "reset"]


@pytest.mark.parametrize("provider", list(MODELS))
async def test_slow_key_times_out(fake: FakeProvider, provider: str) -> None:
    fake.set_keys({**KEYS, f"slow-{provider}": {"label": "slow", "behaviour": "slow", "delay_s": 2.0}})
    with pytest.raises(litellm.Timeout):
        await litellm.acompletion(messages=CACHED, timeout=0.3, **args(fake, provider, f"slow-{provider}"))


@pytest.mark.parametrize("provider", list(MODELS))
async def test_request_fault_marker_is_the_requests_fault_on_every_provider(fake: FakeProvider, provider: str) -> None:
    messages = [{"role": "user", "content": "refuse me [fake-provider:404]"}]
    # LiteLLM raises BadRequestError for any body typed invalid_request_error (Groq, DeepSeek)
    with pytest.raises((litellm.NotFoundError, litellm.BadRequestError)) as caught:
        await litellm.acompletion(messages=messages, **args(fake, provider))
    assert caught.value.status_code == 404
    assert failure_reason(caught.value) == "request"  # no key is blamed
    assert [(c["outcome"], c["status"]) for c in fake.calls()] == [("bad_request", 404)]

"""The fake provider as LiteLLM's openai and anthropic providers see it.

LiteLLM reaches the fake with ``api_base=<base>/v1`` (openai, POST /v1/chat/completions) and
``api_base=<base>`` (anthropic, POST /v1/messages).
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
import pytest
import pytest_asyncio

from adaptive_plugin.devtools.fake_provider import FakeProvider

KEYS: dict[str, Any] = {
    "sk-oai": {"label": "oai", "provider": "openai"},
    "sk-ant": {"label": "ant", "provider": "anthropic"},
    "sk-429": {"label": "limited", "behaviour": "429", "retry_after": 3},
    "sk-quota": {"label": "broke", "behaviour": "insufficient_quota"},
    "sk-500": {"label": "broken", "behaviour": "500"},
    "sk-reset": {"label": "reset", "behaviour": "reset"},
}
OPENAI_MODEL = "openai/gpt-4o-mini"
ANTHROPIC_MODEL = "anthropic/claude-3-5-haiku-20241022"
CACHED = [{"role": "user", "content": "Summarise the doc #tokens=1000,40 #cached=600"}]

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),  # litellm caches its HTTP clients per event loop
    # litellm 1.106.12's own warnings, raised lazily inside calls:
    pytest.mark.filterwarnings("ignore:Item 'summary' on TypedDict class 'ChatCompletionReasoningItem':UserWarning"),
    pytest.mark.filterwarnings("ignore:Accessing the 'model_.*' attribute on the instance is deprecated"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider(KEYS) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _close_litellm_clients() -> AsyncIterator[None]:
    """LiteLLM caches an HTTP client per event loop: close this module's before its loop ends
    (left open, a later module's garbage collection reports them as unclosed sockets)."""
    yield
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()


@pytest.fixture
def fake(server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    server.reset()
    return server


def openai_args(fake: FakeProvider, key: str = "sk-oai") -> dict[str, Any]:
    return {"model": OPENAI_MODEL, "api_base": f"{fake.base_url}/v1", "api_key": key, "max_retries": 0}


def anthropic_args(fake: FakeProvider, key: str = "sk-ant") -> dict[str, Any]:
    return {"model": ANTHROPIC_MODEL, "api_base": fake.base_url, "api_key": key, "max_retries": 0}


async def test_openai_completion_with_cached_tokens(fake: FakeProvider) -> None:
    response = await litellm.acompletion(messages=CACHED, **openai_args(fake))
    assert response.choices[0].message.content.startswith("[gpt-4o-mini] answer #")
    assert response.model.endswith("gpt-4o-mini")
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (1000, 40)
    assert usage.prompt_tokens_details.cached_tokens == 600
    (call,) = fake.calls()
    assert (call["path"], call["key_label"], call["model"], call["status"]) == (
        "/v1/chat/completions",
        "oai",
        "gpt-4o-mini",
        200,
    )


async def test_openai_api_base_without_v1_uses_bare_path(fake: FakeProvider) -> None:
    args = {**openai_args(fake), "api_base": fake.base_url}
    response = await litellm.acompletion(messages=CACHED, **args)
    assert response.choices[0].message.content
    assert fake.calls()[0]["path"] == "/chat/completions"


async def test_openai_streaming_usage(fake: FakeProvider) -> None:
    stream = await litellm.acompletion(
        messages=CACHED, stream=True, stream_options={"include_usage": True}, **openai_args(fake)
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("[gpt-4o-mini] answer #") and text.endswith("#cached=600")
    usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
    assert (usage.prompt_tokens, usage.completion_tokens) == (1000, 40)
    assert usage.prompt_tokens_details.cached_tokens == 600
    assert fake.calls()[0]["stream"] is True


async def test_anthropic_completion_with_cache_read(fake: FakeProvider) -> None:
    response = await litellm.acompletion(messages=CACHED, **anthropic_args(fake))
    assert response.choices[0].message.content.startswith("[claude-3-5-haiku-20241022] answer #")
    usage = response.usage
    # The fake reports input_tokens=400 (cache reads excluded); litellm adds the 600 back.
    assert (usage.prompt_tokens, usage.completion_tokens) == (1000, 40)
    assert usage.cache_read_input_tokens == 600
    assert usage.prompt_tokens_details.cached_tokens == 600
    (call,) = fake.calls()
    assert (call["path"], call["provider"], call["key_label"], call["status"]) == ("/v1/messages", "anthropic", "ant", 200)


async def test_anthropic_streaming_usage(fake: FakeProvider) -> None:
    stream = await litellm.acompletion(
        messages=CACHED, stream=True, stream_options={"include_usage": True}, **anthropic_args(fake)
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("[claude-3-5-haiku-20241022] answer #")
    usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
    assert (usage.prompt_tokens, usage.completion_tokens) == (1000, 40)
    assert usage.cache_read_input_tokens == 600
    assert usage.prompt_tokens_details.cached_tokens == 600


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("sk-unknown", litellm.AuthenticationError),
        ("sk-ant", litellm.AuthenticationError),  # provider mismatch
        ("sk-429", litellm.RateLimitError),
        ("sk-quota", litellm.RateLimitError),
        ("sk-500", litellm.InternalServerError),
        ("sk-reset", litellm.InternalServerError),  # litellm maps a connection reset to a 500
    ],
)
async def test_openai_errors_map_to_litellm_exceptions(fake: FakeProvider, key: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        await litellm.acompletion(messages=CACHED, **openai_args(fake, key))
    assert len(fake.calls()) == 1  # no hidden retries
    if key == "sk-reset":
        assert "Connection error" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("sk-unknown", litellm.AuthenticationError),
        ("sk-oai", litellm.AuthenticationError),  # provider mismatch
        ("sk-429", litellm.RateLimitError),
        ("sk-quota", litellm.BadRequestError),  # Anthropic's credit-balance error is a 400
        ("sk-500", litellm.InternalServerError),
        ("sk-reset", litellm.InternalServerError),
    ],
)
async def test_anthropic_errors_map_to_litellm_exceptions(fake: FakeProvider, key: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        await litellm.acompletion(messages=CACHED, **anthropic_args(fake, key))
    if key == "sk-reset":
        # litellm's own HTTP handler (used for anthropic, not for openai) re-sends a POST once
        # on a connection error, whatever max_retries says.
        assert len(fake.calls()) == 2
        assert "Connection reset by peer" in str(caught.value)
    else:
        assert len(fake.calls()) == 1

"""The provider registry: names and aliases, LiteLLM prefixes, key-format guard, error shapes."""

from __future__ import annotations

import pytest

from adaptive_plugin import providers
from adaptive_plugin.errors import KeyFormatError, UnknownProviderError


def test_the_five_providers_the_product_names() -> None:
    assert providers.supported_names() == ["openai", "anthropic", "gemini", "groq", "deepseek"]


@pytest.mark.parametrize("name, expected", [
    ("openai", "openai"), (" OpenAI ", "openai"), ("google", "gemini"), ("Google", "gemini"),
    ("google_ai_studio", "gemini"), ("gemini", "gemini"), ("groq", "groq"), ("deepseek", "deepseek"),
    ("opneai", None), ("vertex_ai", None), ("azure", None), ("", None),
])
def test_canonical(name: str, expected: str | None) -> None:
    assert providers.canonical(name) == expected


def test_unknown_provider_lists_the_supported_names_and_aliases() -> None:
    with pytest.raises(UnknownProviderError) as err:
        providers.require("opneai")
    assert err.value.status_code == 400 and err.value.code == "unknown_provider"
    for name in providers.supported_names():
        assert name in err.value.message
    assert "google" in err.value.message


@pytest.mark.parametrize("provider, key, looks_like", [
    ("openai", "sk-ant-api03-abcdefgh", "anthropic"),
    ("deepseek", "gsk_0123456789abcdef", "groq"),
    ("groq", "AIzaSyA-0123456789abcdefghijklmnopqrstu", "gemini"),
    ("gemini", "sk-ant-api03-abcdefgh", "anthropic"),
])
def test_a_key_with_another_providers_prefix_is_refused(provider: str, key: str, looks_like: str) -> None:
    with pytest.raises(KeyFormatError, match=f"add it with provider '{looks_like}'") as err:
        providers.require(provider, api_key=key)
    assert key not in err.value.message


@pytest.mark.parametrize("provider, key", [
    ("openai", "sk-proj-abcdefgh"), ("deepseek", "sk-0123456789abcdef0123456789abcdef"),
    ("anthropic", "sk-ant-api03-abcdefgh"), ("gemini", "AIzaSyA-0123456789"), ("groq", "gsk_abcdefgh"),
    ("openai", "a-key-in-a-format-nobody-claims"),
])
def test_keys_of_their_own_provider_or_no_known_format_are_accepted(provider: str, key: str) -> None:
    assert providers.require(provider, api_key=key) == provider


@pytest.mark.parametrize("litellm_provider, expected", [
    ("openai", "openai"), ("text-completion-openai", "openai"), ("anthropic", "anthropic"), ("gemini", "gemini"),
    ("groq", "groq"), ("deepseek", "deepseek"), ("vertex_ai", "vertex_ai"), ("mistral", "mistral"),
])
def test_litellm_provider_prefixes(litellm_provider: str, expected: str) -> None:
    assert providers.for_litellm(litellm_provider) == expected


def test_every_provider_says_where_cached_input_is_reported() -> None:
    for spec in providers.PROVIDERS.values():
        assert spec.cached_input and spec.cache_writes and spec.key_hint and spec.api_base.startswith("https://")


def test_gemini_retry_delay_is_read_from_the_error_body() -> None:
    text = 'GeminiException - {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}]}}'
    assert providers.retry_delay_seconds(text) == 26.0
    assert providers.retry_delay_seconds("'retryDelay': '1.5s'") == 1.5
    assert providers.retry_delay_seconds("no delay here") is None

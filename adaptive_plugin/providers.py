"""The providers the gateway serves by name: one registry for key intake, deployments, billing and tests.

    >>> canonical("google")
    'gemini'
    >>> require("opneai")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    UnknownProviderError: unknown provider 'opneai'; supported: openai, anthropic, gemini, groq, deepseek ...

Each `ProviderSpec` says what the plugin relies on for one provider:

* `name`, the canonical name stored with a project's keys, and the `aliases` accepted for it
  on input (``google`` is Gemini);
* `litellm_providers`: the LiteLLM provider prefixes (``custom_llm_provider``) whose
  deployments take this provider's keys. A deployment of any other LiteLLM provider never gets
  a project's key: it is served by its pooled key only;
* `key_hint` (what a key looks like) and `key_prefixes`, the prefixes only this provider's keys
  start with: a key with another provider's prefix is refused on input, since it would be sent
  to the wrong provider;
* `cached_input` and `cache_writes`: where the provider reports input tokens served from its
  prompt cache (free of the gateway fee) and how its cache writes are billed;
* `error_rules`: provider-specific error texts and the key-fallback reason they mean, where the
  HTTP status alone would mislead (Gemini says "quota" for a per-minute limit, DeepSeek answers
  402 for an empty balance, Groq's daily token limit is a 429).

Pure data and string functions: no LiteLLM import (the adapters map LiteLLM's names here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from adaptive_plugin.errors import KeyFormatError, UnknownProviderError

__all__ = [
    "PROVIDERS",
    "ProviderSpec",
    "canonical",
    "error_reason",
    "for_litellm",
    "require",
    "retry_delay_seconds",
    "supported_names",
]

Reason = Literal["invalid", "quota", "rate_limited", "server_error"]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What the plugin knows about one provider (see the module docstring)."""

    name: str
    title: str
    aliases: tuple[str, ...]
    litellm_providers: tuple[str, ...]
    api_base: str
    key_hint: str
    key_prefixes: tuple[str, ...]
    cached_input: str
    cache_writes: str
    error_rules: tuple[tuple[str, Reason], ...] = ()


_SPECS: Final = (
    ProviderSpec(
        name="openai",
        title="OpenAI",
        aliases=(),
        litellm_providers=("openai", "text-completion-openai"),
        api_base="https://api.openai.com/v1",
        key_hint="starts with sk- (sk-proj-..., sk-svcacct-...)",
        key_prefixes=(),
        cached_input="usage.prompt_tokens_details.cached_tokens",
        cache_writes="no separate write: uncached input is billed as input",
        error_rules=(("insufficient_quota", "quota"),),
    ),
    ProviderSpec(
        name="anthropic",
        title="Anthropic",
        aliases=(),
        litellm_providers=("anthropic", "anthropic_text"),
        api_base="https://api.anthropic.com",
        key_hint="starts with sk-ant- (sk-ant-api03-...)",
        key_prefixes=("sk-ant-",),
        cached_input="usage.cache_read_input_tokens (its input_tokens leaves cache reads and writes out)",
        cache_writes=(
            "usage.cache_creation_input_tokens count as input: the gateway fee applies to them, and the "
            "model cost of a pooled request prices them at LiteLLM's cache-creation price (1.25x input)"
        ),
        error_rules=(("credit balance is too low", "quota"),),
    ),
    ProviderSpec(
        name="gemini",
        title="Google Gemini (AI Studio)",
        aliases=("google", "google_ai_studio", "google-ai-studio", "googleai"),
        litellm_providers=("gemini",),
        api_base="https://generativelanguage.googleapis.com/v1beta",
        key_hint="starts with AIza (39 characters)",
        key_prefixes=("AIza",),
        cached_input="usageMetadata.cachedContentTokenCount (part of promptTokenCount)",
        cache_writes="implicit caching has no write charge; uncached input is billed as input",
        error_rules=(
            ("api_key_invalid", "invalid"),
            ("api key not valid", "invalid"),
            ("api key expired", "invalid"),
            # RESOURCE_EXHAUSTED says "You exceeded your current quota" for every limit; the
            # quota id in its details tells a per-minute limit from a daily or billing one
            ("perminute", "rate_limited"),
            ("perday", "quota"),
        ),
    ),
    ProviderSpec(
        name="groq",
        title="Groq",
        aliases=(),
        litellm_providers=("groq",),
        api_base="https://api.groq.com/openai/v1",
        key_hint="starts with gsk_",
        key_prefixes=("gsk_",),
        cached_input="usage.prompt_tokens_details.cached_tokens (models with prompt caching)",
        cache_writes="no write charge; uncached input is billed as input",
        error_rules=(
            ("tokens per day (tpd)", "quota"),
            ("requests per day (rpd)", "quota"),
            ("organization has been restricted", "invalid"),
        ),
    ),
    ProviderSpec(
        name="deepseek",
        title="DeepSeek",
        aliases=(),
        litellm_providers=("deepseek",),
        api_base="https://api.deepseek.com",
        key_hint="starts with sk- followed by 32 hex characters",
        key_prefixes=(),
        cached_input="usage.prompt_cache_hit_tokens (also prompt_tokens_details.cached_tokens)",
        cache_writes="no write charge: cache misses (prompt_cache_miss_tokens) are billed as input",
        error_rules=(("insufficient balance", "quota"),),
    ),
)

#: Canonical name -> spec, in the order the product lists them.
PROVIDERS: Final[Mapping[str, ProviderSpec]] = MappingProxyType({spec.name: spec for spec in _SPECS})

_BY_INPUT: Final[Mapping[str, str]] = MappingProxyType(
    {alias: spec.name for spec in _SPECS for alias in (spec.name, *spec.aliases)}
)
_BY_LITELLM: Final[Mapping[str, str]] = MappingProxyType(
    {prefix: spec.name for spec in _SPECS for prefix in spec.litellm_providers}
)
_RETRY_DELAY: Final = re.compile(r"""["']?retryDelay["']?\s*:\s*["'](\d+(?:\.\d+)?)s["']""")


def supported_names() -> list[str]:
    """The canonical provider names, in the product's order."""
    return list(PROVIDERS)


def canonical(name: str) -> str | None:
    """The canonical name for a provider name or alias (any case), or None when unknown."""
    return _BY_INPUT.get(name.strip().lower())


def require(name: str, *, api_key: str | None = None) -> str:
    """The canonical name, or `UnknownProviderError` listing the supported ones.

    With `api_key`, also refuses a key that starts with another provider's distinctive prefix
    (`KeyFormatError`): stored under this provider it would be sent to the wrong one.
    """
    found = canonical(name)
    if found is None:
        accepted = ", ".join(f"{spec.name} ({', '.join(spec.aliases)})" if spec.aliases else spec.name
                             for spec in _SPECS)
        raise UnknownProviderError(f"unknown provider {name.strip()!r}; supported: {accepted}")
    if api_key is not None:
        for other in _SPECS:
            if other.name != found and any(api_key.startswith(p) for p in other.key_prefixes):
                raise KeyFormatError(
                    f"this looks like a key for {other.title} ({other.key_hint}), not for {PROVIDERS[found].title} "
                    f"({PROVIDERS[found].key_hint}); add it with provider {other.name!r}"
                )
    return found


def for_litellm(litellm_provider: str) -> str:
    """The canonical provider whose keys a LiteLLM provider takes, or the LiteLLM name itself
    (a provider outside the registry: its deployments are served by pooled keys only)."""
    return _BY_LITELLM.get(litellm_provider, litellm_provider)


def error_reason(message: str) -> Reason | None:
    """The key-fallback reason a provider-specific error text means, if any (case-insensitive)."""
    text = message.lower()
    for spec in _SPECS:
        for needle, reason in spec.error_rules:
            if needle in text:
                return reason
    return None


def retry_delay_seconds(message: str) -> float | None:
    """Gemini's `RetryInfo.retryDelay` ("26s") from an error text: it sends no Retry-After header."""
    match = _RETRY_DELAY.search(message)
    return float(match[1]) if match else None

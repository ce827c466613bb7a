"""The overhead-only fee, in exact integer micro-dollars.

    >>> rates = FeeRates()
    >>> compute_fee(Usage(input_tokens=100_000, output_tokens=50_000), key_source="byok", cache="miss", rates=rates)
    Fee(overhead_micros=20000, model_cost_micros=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

MICROS_PER_USD = 1_000_000
CACHE_HITS = frozenset({"hit-exact", "hit-semantic"})


@dataclass(frozen=True, slots=True)
class FeeRates:
    """USD per 1M tokens (equal to micro-dollars per token) and the cache-hit discount."""

    input_usd_per_mtok: Decimal = Decimal("0.10")
    output_usd_per_mtok: Decimal = Decimal("0.20")
    cache_hit_discount: Decimal = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # input tokens served from the provider's prompt cache


@dataclass(frozen=True, slots=True)
class Fee:
    overhead_micros: int
    model_cost_micros: int

    @property
    def total_micros(self) -> int:
        return self.overhead_micros + self.model_cost_micros


def usd_to_micros(value: Decimal | float | str | None) -> int:
    """Exact conversion; floats go through their shortest repr, never binary arithmetic."""
    if value is None:
        return 0
    dec = value if isinstance(value, Decimal) else Decimal(str(value))
    return int((dec * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micros_to_usd(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_USD).quantize(Decimal("0.000001"))


def compute_fee(usage: Usage, *, key_source: str, cache: str, rates: FeeRates, model_cost_usd: Any = None) -> Fee:
    """Overhead on non-prompt-cached input and on output; model cost only on pooled, uncached calls."""
    billable_in = max(usage.input_tokens - max(usage.cached_tokens, 0), 0)
    overhead = Decimal(billable_in) * rates.input_usd_per_mtok + Decimal(max(usage.output_tokens, 0)) * rates.output_usd_per_mtok
    hit = cache in CACHE_HITS
    if hit:
        overhead *= Decimal(1) - rates.cache_hit_discount
    overhead_micros = int(overhead.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    model_cost = 0 if hit or key_source != "pooled" else usd_to_micros(model_cost_usd)
    return Fee(overhead_micros=overhead_micros, model_cost_micros=model_cost)


def usage_from_response(usage: Any) -> Usage:
    """Read tokens from a usage object or dict of any provider the gateway serves.

    Input tokens served from the provider's prompt cache (free of the gateway fee) are read from
    each provider's own field, the largest found:

    * OpenAI, Groq, and every usage LiteLLM has normalised: `prompt_tokens_details.cached_tokens`;
    * Anthropic: `cache_read_input_tokens`. Anthropic's own `input_tokens` leaves cache reads and
      cache writes out, so both are added to the input count: cache writes are ordinary billed
      input (`cache_creation_input_tokens`), never free;
    * DeepSeek: `prompt_cache_hit_tokens` (its `prompt_tokens` already includes them);
    * Gemini: `usageMetadata.cachedContentTokenCount` (part of `promptTokenCount`); a raw
      `usageMetadata` (or the response holding it) is read as well.
    """
    if usage is None:
        return Usage()

    def get(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    gemini = get(usage, "usageMetadata")
    if gemini is not None or get(usage, "promptTokenCount") is not None:
        return _gemini_usage(gemini if gemini is not None else usage, get)
    prompt = get(usage, "prompt_tokens")
    if prompt is None:
        prompt = get(usage, "input_tokens")
        if get(usage, "cache_read_input_tokens") is not None or get(usage, "cache_creation_input_tokens") is not None:
            # Anthropic's own usage: input_tokens excludes cache reads and writes
            prompt = (_int(prompt) + _int(get(usage, "cache_read_input_tokens"))
                      + _int(get(usage, "cache_creation_input_tokens")))
    completion = get(usage, "completion_tokens")
    if completion is None:
        completion = get(usage, "output_tokens")
    details = get(usage, "prompt_tokens_details")
    cached = max(
        _int(get(details, "cached_tokens") if details is not None else None),
        _int(get(usage, "cache_read_input_tokens")),
        _int(get(usage, "prompt_cache_hit_tokens")),
    )
    prompt_i = _int(prompt)
    return Usage(input_tokens=prompt_i, output_tokens=_int(completion), cached_tokens=min(cached, prompt_i))


def _gemini_usage(meta: Any, get: Any) -> Usage:
    """Gemini's `usageMetadata`: thinking tokens are output, tool-use prompt tokens input."""
    prompt = _int(get(meta, "promptTokenCount")) + _int(get(meta, "toolUsePromptTokenCount"))
    output = _int(get(meta, "candidatesTokenCount")) + _int(get(meta, "thoughtsTokenCount"))
    cached = _int(get(meta, "cachedContentTokenCount"))
    return Usage(input_tokens=prompt, output_tokens=output, cached_tokens=min(cached, prompt))


def _int(value: Any) -> int:
    """A token count: a number (or numeric string); missing, negative or malformed counts as 0."""
    if value is None or isinstance(value, bool):
        return 0
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0

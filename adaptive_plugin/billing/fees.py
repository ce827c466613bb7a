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
    """Read tokens from an OpenAI- or Anthropic-style usage object or dict.

    Cached prompt tokens come from `prompt_tokens_details.cached_tokens` (OpenAI) or
    `cache_read_input_tokens` (Anthropic); the larger is used if both are present. Anthropic's
    own `input_tokens` excludes cache reads and writes, so those are added to the input count.
    """
    if usage is None:
        return Usage()

    def get(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    prompt = get(usage, "prompt_tokens")
    if prompt is None:
        prompt = get(usage, "input_tokens")
        if get(usage, "cache_read_input_tokens") is not None or get(usage, "cache_creation_input_tokens") is not None:
            # Anthropic's own usage: input_tokens excludes cache reads and writes
            prompt = (int(prompt or 0) + int(get(usage, "cache_read_input_tokens") or 0)
                      + int(get(usage, "cache_creation_input_tokens") or 0))
    completion = get(usage, "completion_tokens")
    if completion is None:
        completion = get(usage, "output_tokens")
    details = get(usage, "prompt_tokens_details")
    cached_openai = get(details, "cached_tokens") if details is not None else None
    cached_anthropic = get(usage, "cache_read_input_tokens")
    cached = max(int(cached_openai or 0), int(cached_anthropic or 0))
    prompt_i = int(prompt or 0)
    return Usage(input_tokens=prompt_i, output_tokens=int(completion or 0), cached_tokens=min(cached, prompt_i))

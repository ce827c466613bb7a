"""The overhead-only fee: exact integer micro-dollars, as the pricing page promises."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

from adaptive_plugin.billing import Fee, FeeRates, Usage, compute_fee, micros_to_usd, usage_from_response, usd_to_micros

RATES = FeeRates()


def fee(usage: Usage, *, key_source: str = "byok", cache: str = "miss", model_cost_usd: object = None) -> Fee:
    return compute_fee(usage, key_source=key_source, cache=cache, rates=RATES, model_cost_usd=model_cost_usd)


def test_documented_example_byok_is_two_cents() -> None:
    # "100K input + 50K output tokens on BYOK = $0.02"
    f = fee(Usage(input_tokens=100_000, output_tokens=50_000))
    assert f == Fee(overhead_micros=20_000, model_cost_micros=0)
    assert micros_to_usd(f.total_micros) == Decimal("0.02")


def test_rates_are_per_million_tokens() -> None:
    assert fee(Usage(input_tokens=1_000_000)).overhead_micros == 100_000  # $0.10
    assert fee(Usage(output_tokens=1_000_000)).overhead_micros == 200_000  # $0.20


def test_byok_never_bills_model_cost() -> None:
    f = fee(Usage(input_tokens=1000, output_tokens=1000), key_source="byok", model_cost_usd="1.50")
    assert f.model_cost_micros == 0
    assert f.overhead_micros == 300


def test_pooled_is_model_cost_plus_overhead() -> None:
    f = fee(Usage(input_tokens=100_000, output_tokens=50_000), key_source="pooled", model_cost_usd=0.0375)
    assert f == Fee(overhead_micros=20_000, model_cost_micros=37_500)
    assert f.total_micros == 57_500


@pytest.mark.parametrize("cache", ["hit-exact", "hit-semantic"])
@pytest.mark.parametrize("key_source", ["byok", "pooled"])
def test_cache_hit_is_half_the_overhead_and_no_model_cost(cache: str, key_source: str) -> None:
    f = fee(Usage(input_tokens=100_000, output_tokens=50_000), key_source=key_source, cache=cache, model_cost_usd="0.05")
    assert f == Fee(overhead_micros=10_000, model_cost_micros=0)


@pytest.mark.parametrize("cache", ["miss", "bypass"])
def test_miss_and_bypass_pay_full_overhead(cache: str) -> None:
    assert fee(Usage(input_tokens=100_000, output_tokens=50_000), cache=cache).overhead_micros == 20_000


def test_configured_discount_and_rates_are_used() -> None:
    rates = FeeRates(input_usd_per_mtok=Decimal("1"), output_usd_per_mtok=Decimal("2"), cache_hit_discount=Decimal("0.25"))
    f = compute_fee(Usage(input_tokens=1000, output_tokens=1000), key_source="byok", cache="hit-exact", rates=rates)
    assert f.overhead_micros == 2250  # (1000 + 2000) * 0.75


def test_prompt_cached_input_tokens_carry_no_overhead() -> None:
    f = fee(Usage(input_tokens=100_000, cached_tokens=80_000, output_tokens=0))
    assert f.overhead_micros == 2_000  # only 20K billable input tokens


def test_fully_prompt_cached_input_is_free_and_never_negative() -> None:
    assert fee(Usage(input_tokens=1000, cached_tokens=1000)).overhead_micros == 0
    assert fee(Usage(input_tokens=1000, cached_tokens=5000)).overhead_micros == 0
    assert fee(Usage(input_tokens=-5, output_tokens=-5)).overhead_micros == 0


def test_fractional_micros_round_half_up() -> None:
    assert fee(Usage(input_tokens=5)).overhead_micros == 1  # 0.5 micro-dollars
    assert fee(Usage(input_tokens=4)).overhead_micros == 0  # 0.4
    assert fee(Usage(input_tokens=5), cache="hit-semantic").overhead_micros == 0  # 0.25


def test_usd_to_micros_is_exact_for_floats() -> None:
    assert usd_to_micros(0.1 + 0.2) == 300_000  # repr is 0.30000000000000004
    assert usd_to_micros(1e-6) == 1
    assert usd_to_micros("0.0000005") == 1
    assert usd_to_micros(Decimal("12.345678")) == 12_345_678
    assert usd_to_micros(None) == 0


def test_micros_to_usd_round_trips() -> None:
    assert micros_to_usd(1) == Decimal("0.000001")
    assert micros_to_usd(20_000) == Decimal("0.02")
    assert usd_to_micros(micros_to_usd(123_456_789)) == 123_456_789


def test_many_small_fees_sum_without_drift() -> None:
    fees = [fee(Usage(input_tokens=7, output_tokens=3), key_source="pooled", model_cost_usd=0.1) for _ in range(20_000)]
    assert sum(0.1 for _ in range(20_000)) != 2_000.0  # what float dollars would do
    total = sum(f.total_micros for f in fees)
    # per request: overhead 0.7 + 0.6 = 1.3 -> 1 micro-dollar, model cost 100_000 micro-dollars
    assert total == 20_000 * 100_001
    assert micros_to_usd(total) == Decimal("2000.02")


# -- reading usage from provider responses ------------------------------------------------


def test_openai_usage_dict() -> None:
    u = usage_from_response({"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200})
    assert u == Usage(input_tokens=1000, output_tokens=200, cached_tokens=0)


def test_openai_prompt_tokens_details_cached_tokens_are_free() -> None:
    u = usage_from_response({"prompt_tokens": 1000, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 800}})
    assert u.cached_tokens == 800
    assert fee(u).overhead_micros == 20  # 200 billable input tokens


def test_cache_read_input_tokens_on_openai_shaped_usage_are_free() -> None:
    # LiteLLM's Usage for Anthropic: prompt_tokens includes the cache reads, also reported apart
    u = usage_from_response({"prompt_tokens": 1000, "completion_tokens": 0, "cache_read_input_tokens": 800})
    assert u == Usage(input_tokens=1000, output_tokens=0, cached_tokens=800)
    assert fee(u).overhead_micros == 20


def test_native_anthropic_usage_counts_cache_reads_as_input() -> None:
    # Anthropic's own usage: input_tokens EXCLUDES cache reads (and cache writes)
    u = usage_from_response(
        {"input_tokens": 200, "cache_read_input_tokens": 800, "cache_creation_input_tokens": 0, "output_tokens": 50}
    )
    assert u == Usage(input_tokens=1000, output_tokens=50, cached_tokens=800)
    assert fee(u).overhead_micros == 20 + 10  # 200 uncached input + 50 output


def test_native_anthropic_cache_writes_are_billable_input() -> None:
    u = usage_from_response(
        {"input_tokens": 100, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 900, "output_tokens": 0}
    )
    assert u == Usage(input_tokens=1000, output_tokens=0, cached_tokens=0)


def test_usage_as_object_and_both_cache_styles_take_the_larger() -> None:
    obj = SimpleNamespace(
        prompt_tokens=1000, completion_tokens=10,
        prompt_tokens_details=SimpleNamespace(cached_tokens=300), cache_read_input_tokens=600,
    )
    assert usage_from_response(obj) == Usage(input_tokens=1000, output_tokens=10, cached_tokens=600)


def test_missing_or_null_usage_is_zero() -> None:
    assert usage_from_response(None) == Usage()
    assert usage_from_response({}) == Usage()
    assert usage_from_response({"prompt_tokens": None, "completion_tokens": None, "prompt_tokens_details": None}) == Usage()


def test_cached_tokens_never_exceed_input() -> None:
    u = usage_from_response({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50}})
    assert u.cached_tokens == 10


def test_deepseek_prompt_cache_hit_tokens_are_free() -> None:
    # DeepSeek's own usage: prompt_tokens includes the hits, prompt_cache_miss_tokens the rest
    u = usage_from_response({"prompt_tokens": 1000, "completion_tokens": 40, "total_tokens": 1040,
                             "prompt_cache_hit_tokens": 700, "prompt_cache_miss_tokens": 300})
    assert u == Usage(input_tokens=1000, output_tokens=40, cached_tokens=700)
    fee = compute_fee(u, key_source="byok", cache="miss", rates=FeeRates())
    assert fee.overhead_micros == 38  # 300 * 0.10 + 40 * 0.20 micro-dollars


def test_gemini_usage_metadata_cached_content_is_free() -> None:
    meta = {"promptTokenCount": 1000, "candidatesTokenCount": 30, "thoughtsTokenCount": 10, "totalTokenCount": 1040,
            "cachedContentTokenCount": 600, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1000}]}
    expected = Usage(input_tokens=1000, output_tokens=40, cached_tokens=600)
    assert usage_from_response(meta) == expected
    assert usage_from_response({"usageMetadata": meta, "candidates": []}) == expected


def test_groq_usage_with_timings_and_cached_tokens() -> None:
    u = usage_from_response({"queue_time": 0.16, "prompt_tokens": 900, "prompt_time": 0.01, "completion_tokens": 4,
                             "completion_time": 0.009, "total_tokens": 904, "total_time": 0.02,
                             "prompt_tokens_details": {"cached_tokens": 512}})
    assert u == Usage(input_tokens=900, output_tokens=4, cached_tokens=512)


def test_malformed_counts_are_zero_not_an_error() -> None:
    u = usage_from_response({"prompt_tokens": "12", "completion_tokens": -3, "prompt_cache_hit_tokens": "many"})
    assert u == Usage(input_tokens=12, output_tokens=0, cached_tokens=0)

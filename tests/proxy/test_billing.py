"""Overhead-only billing end to end: fee in the ledger, the response header and /metrics (issue 6)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from tests.proxy.gateway import Gateway, byok_key, chat, settle

MICRO = Decimal("0.000001")


def overhead_metric(text: str) -> Decimal:
    total = Decimal(0)
    for line in text.splitlines():
        if line.startswith("adaptive_billing_overhead_fee_usd_total{"):
            total += Decimal(line.rsplit(" ", 1)[1])
    return total.quantize(MICRO)


def price(model: str) -> tuple[Decimal, Decimal, Decimal]:
    import os

    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    info = litellm.model_cost[model]
    cached = info.get("cache_read_input_token_cost", info["input_cost_per_token"])
    return Decimal(str(info["input_cost_per_token"])), Decimal(str(info["output_cost_per_token"])), Decimal(str(cached))


def test_byok_request_is_billed_only_the_overhead(gateway: Gateway) -> None:
    project = gateway.project(keys=[("openai", byok_key("bill-byok"), 1)])
    before = overhead_metric(gateway.metrics())
    _, headers = chat(gateway.client(project.api_key), "bill me #tokens=100000,50000", extra_headers={"Cache-Control": "no-store"})
    # $0.10 per 1M input + $0.20 per 1M output: 100K in + 50K out = $0.02
    assert headers["x-adaptive-key-source"] == "byok"
    assert Decimal(headers["x-adaptive-overhead-fee-usd"]) == Decimal("0.02")
    assert Decimal(headers["x-adaptive-model-cost-usd"]) == 0
    [row] = gateway.ledger_rows(project.id)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (100_000, 50_000, 0)
    assert row["overhead_fee_micros"] == 20_000 and row["model_cost_micros"] == 0
    assert overhead_metric(gateway.metrics()) - before == Decimal("0.02")


def test_pooled_request_is_billed_model_cost_plus_overhead(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    _, headers = chat(gateway.client(project.api_key), "pooled bill #tokens=100000,50000", extra_headers={"Cache-Control": "no-store"})
    inp, out, _ = price("gpt-4o-mini")
    expected_model = (inp * 100_000 + out * 50_000).quantize(MICRO)
    assert headers["x-adaptive-key-source"] == "pooled"
    assert Decimal(headers["x-adaptive-overhead-fee-usd"]) == Decimal("0.02")
    assert Decimal(headers["x-adaptive-model-cost-usd"]) == expected_model
    [row] = gateway.ledger_rows(project.id)
    assert row["model_cost_micros"] == int(expected_model / MICRO)
    assert row["key_source"] == "pooled"


def test_cache_hit_is_half_the_overhead_and_no_model_cost(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    _, first = chat(client, "What is the boiling point of water at sea level? #tokens=100000,50000")
    settle()
    _, second = chat(client, "What is the boiling point of water at sea level? #tokens=100000,50000")
    assert len(gateway.calls_since(mark)) == 1
    assert first["x-adaptive-cache"] == "miss" and second["x-adaptive-cache"] == "hit-exact"
    assert Decimal(second["x-adaptive-overhead-fee-usd"]) == Decimal("0.01")
    assert Decimal(second["x-adaptive-model-cost-usd"]) == 0
    rows = {r["cache"]: r for r in gateway.ledger_rows(project.id, wait_for=2)}
    assert rows["hit-exact"]["overhead_fee_micros"] == 10_000 and rows["hit-exact"]["model_cost_micros"] == 0
    assert rows["hit-exact"]["key_source"] == "cache"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])
def test_prompt_cached_input_tokens_carry_no_overhead(gateway: Gateway, model: str) -> None:
    provider = "openai" if model.startswith("gpt") else "anthropic"
    project = gateway.project(keys=[(provider, byok_key(f"prompt-cache-{provider}", provider=provider), 1)])
    _, headers = chat(gateway.client(project.api_key), "long context #tokens=100000,50000 #cached=80000",
                      model=model, extra_headers={"Cache-Control": "no-store"})
    # only the 20K uncached input tokens are billed: 20K * $0.10/M + 50K * $0.20/M = $0.012
    assert Decimal(headers["x-adaptive-overhead-fee-usd"]) == Decimal("0.012")
    [row] = gateway.ledger_rows(project.id)
    assert row["cached_tokens"] == 80_000 and row["overhead_fee_micros"] == 12_000


def test_failed_request_costs_nothing_and_only_the_answering_attempt_is_billed(gateway: Gateway) -> None:
    bad = byok_key("bill-429", "429", retry_after=30)
    project = gateway.project(keys=[("openai", bad, 1)])
    _, headers = chat(gateway.client(project.api_key), "fallback bill #tokens=1000,1000", extra_headers={"Cache-Control": "no-store"})
    [row] = gateway.ledger_rows(project.id)
    assert row["key_source"] == "pooled" and headers["x-adaptive-key-source"] == "pooled"
    assert row["overhead_fee_micros"] == 300  # 1000 * 0.10 + 1000 * 0.20 micro-dollars
    assert '"reason": "rate_limited"' in row["fallbacks"]


def test_streamed_response_is_billed_from_final_usage(gateway: Gateway) -> None:
    project = gateway.project(keys=[("openai", byok_key("bill-stream"), 1)])
    stream = gateway.client(project.api_key).chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream bill #tokens=100000,50000"}],
        extra_headers={"Cache-Control": "no-store"},
    )
    list(stream)
    [row] = gateway.ledger_rows(project.id)
    assert row["overhead_fee_micros"] == 20_000 and row["output_tokens"] == 50_000


def test_usage_totals_equal_the_sum_of_rows(gateway: Gateway) -> None:
    project = gateway.project(keys=[("openai", byok_key("bill-totals"), 1)])
    client = gateway.client(project.api_key)
    for i in range(7):
        chat(client, f"totals {i} #tokens={1000 + 137 * i},{333 * i + 1}", extra_headers={"Cache-Control": "no-store"})
    rows = gateway.ledger_rows(project.id, wait_for=7)
    totals = gateway.admin("GET", "/adaptive/usage", params={"project_id": project.id, "group_by": "project_id,day,provider,key_source"}, expect=200).json()
    assert sum(t["overhead_fee_micros"] for t in totals) == sum(r["overhead_fee_micros"] for r in rows)
    assert sum(t["requests"] for t in totals) == 7
    assert re.fullmatch(r"\d+\.\d{6}", totals[0]["overhead_fee_usd"])

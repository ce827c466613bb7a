"""Every provider the product names, end to end through the real proxy and the openai SDK (issue 19).

For OpenAI, Anthropic, Google Gemini, Groq and DeepSeek, against the fake provider speaking each
one's own API: a project's own key is used, a failing key moves to the next and then to the
pooled key, streamed and non-streamed requests are billed from the provider's usage, prompt-cache
hits are free of the fee, and no key ever reaches another provider.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.proxy.gateway import FAKE_KEYS, POOLED_KEYS, Gateway, byok_key, chat

NO_STORE = {"Cache-Control": "no-store, no-cache"}
MICRO = Decimal("0.000001")
# one named model group per provider (config/demo.yaml)
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash",
          "groq": "gpt-oss-20b", "deepseek": "deepseek-v4-flash"}
UPSTREAM = {"gemini-2.5-flash": "gemini/gemini-2.5-flash", "gpt-oss-20b": "groq/openai/gpt-oss-20b",
            "deepseek-v4-flash": "deepseek/deepseek-v4-flash", "gpt-4o-mini": "gpt-4o-mini",
            "claude-haiku-4-5": "claude-haiku-4-5"}
NEW = ["gemini", "groq", "deepseek"]
# the fallback reason each provider's error shape must give (adaptive_plugin.providers)
REASONS = {"429": "rate_limited", "401": "invalid", "insufficient_quota": "quota"}


def labels(gateway: Gateway, mark: int) -> list[tuple[str, str | None]]:
    return [(c["provider"], c["key_label"]) for c in gateway.calls_since(mark)]


def _prices(model_group: str, at: datetime) -> tuple[Decimal, Decimal, Decimal]:
    """(input, output, cache-read) USD per token as LiteLLM bills `model_group` at `at`."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm
    from litellm.litellm_core_utils.llm_cost_calc.utils import _is_off_peak

    info = dict(litellm.model_cost[UPSTREAM[model_group]])
    off_peak = info.get("off_peak_pricing")
    if isinstance(off_peak, dict) and _is_off_peak(off_peak, at):  # DeepSeek's off-peak hours
        info.update({k: v for k, v in off_peak.items() if k != "windows"})
    cached = info.get("cache_read_input_token_cost", info["input_cost_per_token"])
    return (Decimal(str(info["input_cost_per_token"])), Decimal(str(info["output_cost_per_token"])),
            Decimal(str(cached)))


def expected_model_cost(model_group: str, before: datetime, after: datetime, *, prompt: int, cached: int,
                        output: int) -> set[Decimal]:
    """The model cost at the prices in force when the request ran (two if a price window changed)."""
    out = set()
    for at in (before, after):
        inp, outp, cache = _prices(model_group, at)
        out.add(((prompt - cached) * inp + cached * cache + output * outp).quantize(MICRO))
    return out


def now() -> datetime:
    return datetime.now(timezone.utc)


# -- BYOK -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(MODELS))
def test_own_key_serves_its_provider_and_pays_only_the_fee(gateway: Gateway, provider: str) -> None:
    mine = byok_key(f"own-{provider}", provider=provider)
    project = gateway.project(keys=[(provider, mine, 1)])
    mark = gateway.mark()
    completion, headers = chat(gateway.client(project.api_key), f"hello {provider} #tokens=100000,50000",
                               model=MODELS[provider], extra_headers=NO_STORE)
    assert completion.choices[0].message.content.endswith(f"hello {provider} #tokens=100000,50000")
    assert labels(gateway, mark) == [(provider, f"own-{provider}")]
    assert headers["x-adaptive-provider"] == provider and headers["x-adaptive-key-source"] == "byok"
    assert headers["x-adaptive-key-fingerprint"] == project.keys[0]["fingerprint"]
    assert Decimal(headers["x-adaptive-overhead-fee-usd"]) == Decimal("0.02")  # 100K in, 50K out
    assert Decimal(headers["x-adaptive-model-cost-usd"]) == 0
    assert mine not in str(headers)


@pytest.mark.parametrize("behaviour", list(REASONS))
@pytest.mark.parametrize("provider", NEW)
def test_failing_key_moves_to_the_next_key_then_to_pooled(gateway: Gateway, provider: str, behaviour: str) -> None:
    bad = byok_key(f"bad-{behaviour}-{provider}", behaviour, provider=provider, retry_after=30)
    good = byok_key(f"good-{behaviour}-{provider}", provider=provider)
    project = gateway.project(keys=[(provider, bad, 1), (provider, good, 2)])
    mark = gateway.mark()
    _, headers = chat(gateway.client(project.api_key), f"fallback {behaviour}", model=MODELS[provider],
                      extra_headers=NO_STORE)
    assert labels(gateway, mark) == [(provider, f"bad-{behaviour}-{provider}"), (provider, f"good-{behaviour}-{provider}")]
    assert headers["x-adaptive-key-source"] == "byok"
    assert headers["x-adaptive-fallbacks"] == f"{project.keys[0]['fingerprint']}:{REASONS[behaviour]}"

    worse = byok_key(f"worse-{behaviour}-{provider}", behaviour, provider=provider, retry_after=30)
    alone = gateway.project(keys=[(provider, worse, 1)])
    mark = gateway.mark()
    started = time.monotonic()
    _, headers = chat(gateway.client(alone.api_key), f"pooled after {behaviour}", model=MODELS[provider],
                      extra_headers=NO_STORE)
    assert labels(gateway, mark) == [(provider, f"worse-{behaviour}-{provider}"), (provider, f"pooled-{provider}")]
    assert headers["x-adaptive-key-source"] == "pooled"
    # the next key is tried at once: no wait for the failing key's retry-after (30 s)
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("provider", NEW)
def test_streamed_request_falls_back_and_is_billed_from_final_usage(gateway: Gateway, provider: str) -> None:
    bad = byok_key(f"stream-429-{provider}", "429", provider=provider, retry_after=30)
    good = byok_key(f"stream-ok-{provider}", provider=provider)
    project = gateway.project(keys=[(provider, bad, 1), (provider, good, 2)])
    mark = gateway.mark()
    stream = gateway.client(project.api_key).chat.completions.create(
        model=MODELS[provider], stream=True, extra_headers=NO_STORE,
        messages=[{"role": "user", "content": f"stream {provider} #tokens=100000,50000 #cached=30000"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.endswith(f"stream {provider} #tokens=100000,50000 #cached=30000")
    assert labels(gateway, mark) == [(provider, f"stream-429-{provider}"), (provider, f"stream-ok-{provider}")]
    [row] = gateway.ledger_rows(project.id)
    assert (row["provider"], row["key_source"]) == (provider, "byok")
    assert (row["input_tokens"], row["cached_tokens"], row["output_tokens"]) == (100_000, 30_000, 50_000)
    assert row["overhead_fee_micros"] == 17_000 and row["model_cost_micros"] == 0  # 70K * 0.10 + 50K * 0.20


# -- pooled billing and prompt-cache fees ----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", NEW)
def test_pooled_request_bills_the_model_cost_at_litellms_price(gateway: Gateway, provider: str, stream: bool) -> None:
    project = gateway.project(plan="developer")
    model = MODELS[provider]
    prompt = f"pooled {provider} {stream} #tokens=100000,50000 #cached=40000"
    before = now()
    if stream:
        chunks = gateway.client(project.api_key).chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": prompt}], extra_headers=NO_STORE)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        headers: dict[str, str] = {}
    else:
        _, headers = chat(gateway.client(project.api_key), prompt, model=model, extra_headers=NO_STORE)
    after = now()
    expected = expected_model_cost(model, before, after, prompt=100_000, cached=40_000, output=50_000)
    [row] = gateway.ledger_rows(project.id)
    assert (row["provider"], row["key_source"], row["cached_tokens"]) == (provider, "pooled", 40_000)
    assert row["overhead_fee_micros"] == 16_000  # 60K uncached * 0.10 + 50K * 0.20
    assert row["model_cost_micros"] * MICRO in expected
    assert row["provider_cost_micros"] == row["model_cost_micros"]
    if not stream:
        assert Decimal(headers["x-adaptive-model-cost-usd"]) == row["model_cost_micros"] * MICRO
        assert Decimal(headers["x-adaptive-overhead-fee-usd"]) == Decimal("0.016")


@pytest.mark.parametrize("provider", NEW)
def test_prompt_cached_input_carries_no_fee(gateway: Gateway, provider: str) -> None:
    project = gateway.project(keys=[(provider, byok_key(f"prompt-cache-{provider}", provider=provider), 1)])
    _, headers = chat(gateway.client(project.api_key), "long context #tokens=100000,50000 #cached=80000",
                      model=MODELS[provider], extra_headers=NO_STORE)
    # 20K uncached * $0.10/M + 50K * $0.20/M = $0.012
    assert Decimal(headers["x-adaptive-overhead-fee-usd"]) == Decimal("0.012")
    [row] = gateway.ledger_rows(project.id)
    assert row["cached_tokens"] == 80_000 and row["overhead_fee_micros"] == 12_000


# -- isolation --------------------------------------------------------------------------------------


def test_no_key_ever_reaches_another_provider(gateway: Gateway) -> None:
    keys = {p: byok_key(f"iso-{p}", provider=p) for p in MODELS}
    everything = gateway.project(keys=[(p, k, 1) for p, k in keys.items()])
    only_gemini = gateway.project(keys=[("gemini", keys["gemini"], 1)])
    mark = gateway.mark()
    for provider, model in MODELS.items():
        for stream in (False, True):
            for project in (everything, only_gemini):
                response = gateway.client(project.api_key).chat.completions.create(
                    model=model, stream=stream, messages=[{"role": "user", "content": f"iso {provider} {stream}"}],
                    extra_headers=NO_STORE)
                if stream:
                    list(response)
    calls = gateway.calls_since(mark)
    assert len(calls) == 20 and all(c["status"] == 200 for c in calls)
    for call in calls:
        # every call reached its provider with that provider's key: the project's, or the pooled one
        assert call["key_label"] in (f"iso-{call['provider']}", f"pooled-{call['provider']}")
    seen = {(c["provider"], c["key_label"]) for c in calls}
    assert seen == {(p, f"iso-{p}") for p in MODELS} | {(p, f"pooled-{p}") for p in MODELS if p != "gemini"}


def test_model_fallback_to_another_provider_takes_that_providers_key(gateway: Gateway) -> None:
    """The trap of DESIGN.md: a key injected for one provider must not follow the request to the next."""
    broken = byok_key("fallback-gemini-500", "500", provider="gemini")
    groq = byok_key("fallback-groq-ok", provider="groq")
    project = gateway.project(fallback="byok_only", keys=[("gemini", broken, 1), ("groq", groq, 1)])
    mark = gateway.mark()
    completion, headers = chat(gateway.client(project.api_key), "Prove that the square root of 2 is irrational, "
                               "step by step, then generalise the proof to every prime.", model="auto",
                               extra_headers=NO_STORE, extra_body={"cost_bias": 1.0})
    assert completion.choices[0].message.content
    calls = labels(gateway, mark)
    assert calls[0] == ("gemini", "fallback-gemini-500") and calls[-1] == ("groq", "fallback-groq-ok")
    assert set(calls) == {("gemini", "fallback-gemini-500"), ("groq", "fallback-groq-ok")}
    assert headers["x-adaptive-provider"] == "groq" and headers["x-adaptive-route-fallback"].startswith("gemini-")


def test_auto_picks_among_the_providers_the_project_has_keys_for(gateway: Gateway) -> None:
    hard = ("Implement a thread-safe LRU cache in Python with O(1) get and put, TTL per entry, unit tests for "
            "eviction and concurrency, and explain the complexity step by step.\n```python\nclass LRU: ...\n```")
    for provider in NEW:
        project = gateway.project(fallback="byok_only", keys=[(provider, byok_key(f"auto-{provider}", provider=provider), 1)])
        mark = gateway.mark()
        for prompt in ("Hi there! How are you?", hard):
            _, headers = chat(gateway.client(project.api_key), prompt, model="auto", extra_headers=NO_STORE)
            assert headers["x-adaptive-routed"] == "true" and headers["x-adaptive-provider"] == provider
        assert labels(gateway, mark) == [(provider, f"auto-{provider}")] * 2
    # pooled keys for every provider: the cheapest model serves a greeting, whatever its provider
    developer = gateway.project(plan="developer")
    _, headers = chat(gateway.client(developer.api_key), "Hi there!", model="auto", extra_headers=NO_STORE,
                      extra_body={"cost_bias": 0.0})
    assert headers["x-adaptive-model-group"] == "gpt-oss-20b" and headers["x-adaptive-provider"] == "groq"


# -- key intake ------------------------------------------------------------------------------------


def test_unknown_provider_is_a_400_listing_the_supported_names(gateway: Gateway) -> None:
    project = gateway.project()
    r = gateway.admin("POST", f"/adaptive/projects/{project.id}/provider-keys",
                      json={"environment": "production", "provider": "opneai", "api_key": byok_key("typo")})
    assert r.status_code == 400, r.text
    assert r.json()["detail"]["code"] == "unknown_provider"
    assert all(name in r.text for name in ("openai", "anthropic", "gemini", "groq", "deepseek"))
    secret = byok_key("via-alias", provider="gemini")
    view = gateway.admin("POST", f"/adaptive/projects/{project.id}/provider-keys", expect=201,
                         json={"environment": "production", "provider": "google", "api_key": secret}).json()
    assert view["provider"] == "gemini"
    gateway.fake.set_keys(FAKE_KEYS)  # the fake learns the key added after the project
    mark = gateway.mark()
    chat(gateway.client(project.api_key), "alias works", model=MODELS["gemini"], extra_headers=NO_STORE)
    assert labels(gateway, mark) == [("gemini", "via-alias")]


def test_another_providers_key_is_refused(gateway: Gateway) -> None:
    project = gateway.project()
    r = gateway.admin("POST", f"/adaptive/projects/{project.id}/provider-keys",
                      json={"environment": "production", "provider": "deepseek", "api_key": byok_key("x", provider="groq")})
    assert r.status_code == 400 and r.json()["detail"]["code"] == "key_format_mismatch"
    assert "groq" in r.text and "S3CRET" not in r.text


# -- plan changes -----------------------------------------------------------------------------------


def test_developer_plan_turns_byok_off_and_says_so(gateway: Gateway) -> None:
    mine = byok_key("plan-change", provider="deepseek")
    project = gateway.project(keys=[("deepseek", mine, 1)])
    client = gateway.client(project.api_key)
    _, headers = chat(client, "on the team plan", model=MODELS["deepseek"], extra_headers=NO_STORE)
    assert headers["x-adaptive-key-source"] == "byok" and "x-adaptive-byok" not in headers

    view = gateway.admin("PATCH", f"/adaptive/projects/{project.id}", json={"plan": "developer"}, expect=200).json()
    assert view["byok"] == "off-by-plan"
    time.sleep(1.2)  # other workers re-read the project within the sync interval
    mark = gateway.mark()
    _, headers = chat(client, "on the developer plan #tokens=1000,1000", model=MODELS["deepseek"], extra_headers=NO_STORE)
    assert labels(gateway, mark) == [("deepseek", "pooled-deepseek")]
    assert headers["x-adaptive-key-source"] == "pooled" and headers["x-adaptive-byok"] == "off-by-plan"
    assert Decimal(headers["x-adaptive-model-cost-usd"]) > 0
    # a provider the project keeps no key for: nothing was switched off
    _, headers = chat(client, "anthropic on the developer plan", model=MODELS["anthropic"], extra_headers=NO_STORE)
    assert "x-adaptive-byok" not in headers
    rows = gateway.ledger_rows(project.id, wait_for=3)
    assert [r["byok_off_by_plan"] for r in sorted(rows, key=lambda r: r["id"])] == [False, True, False]
    assert gateway.admin("GET", f"/adaptive/projects/{project.id}", expect=200).json()["byok"] == "off-by-plan"


def test_byok_only_project_on_the_developer_plan_is_refused_with_the_plan_message(gateway: Gateway) -> None:
    project = gateway.project(fallback="byok_only", keys=[("gemini", byok_key("plan-refused", provider="gemini"), 1)])
    gateway.admin("PATCH", f"/adaptive/projects/{project.id}", json={"plan": "developer"}, expect=200)
    time.sleep(1.2)
    mark = gateway.mark()
    for model in (MODELS["gemini"], "auto"):
        with pytest.raises(openai.PermissionDeniedError) as err:
            chat(gateway.client(project.api_key), "refused", model=model, extra_headers=NO_STORE)
        assert "developer plan" in str(err.value) and "byok_only" in str(err.value)
    assert gateway.calls_since(mark) == []


def test_pooled_keys_of_the_fixture_are_each_providers_own() -> None:
    for provider, key in POOLED_KEYS.items():
        assert FAKE_KEYS[key]["provider"] == provider


def test_models_endpoint_lists_every_provider(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.base_url}/v1/models", headers={"Authorization": f"Bearer {gateway.master}"}, timeout=30)
    listed = {m["id"] for m in r.json()["data"]}
    assert set(MODELS.values()) <= listed



"""Complexity-based model selection through the real proxy (issue 4)."""

from __future__ import annotations

import openai
import pytest

from tests.proxy.gateway import Gateway, byok_key, chat

NO_CACHE = {"Cache-Control": "no-store, no-cache"}
SIMPLE = "Hi there! How are you today?"
HARD_CODE = (
    "Implement a thread-safe LRU cache in Python with O(1) get and put, supporting TTL expiry per entry, "
    "and write unit tests covering eviction order, concurrent access from multiple threads and expiry. "
    "Explain the time and space complexity of each operation step by step.\n\n```python\n"
    "class LRUCache:\n    def __init__(self, capacity: int, ttl: float):\n        ...\n```"
)
HARD_MATH = (
    "Solve the system of equations step by step: 3x + 2y - z = 1, 2x - 2y + 4z = -2, -x + 0.5y - z = 0. "
    "Then verify the solution by substitution, compute the determinant of the coefficient matrix, and explain "
    "whether the system has a unique solution."
)


def _tiers() -> dict[str, int]:
    import yaml

    from adaptive_plugin.devtools.launcher import demo_config

    models = yaml.safe_load(demo_config().read_text())["model_list"]
    return {m["model_name"]: m["model_info"]["adaptive"]["tier"] for m in models
            if (m.get("model_info") or {}).get("adaptive", {}).get("routable")}


TIERS = _tiers()  # model group -> tier, of every routable group in config/demo.yaml (all five providers)
TIER_1 = {group for group, tier in TIERS.items() if tier == 1}
TIER_3 = {group for group, tier in TIERS.items() if tier == 3}


def routed(gateway: Gateway, api_key: str, content: str, **kw: object) -> dict[str, str]:
    _, headers = chat(gateway.client(api_key), content, model="auto", extra_headers=NO_CACHE, **kw)  # type: ignore[arg-type]
    assert headers["x-adaptive-routed"] == "true"
    return headers


def test_simple_prompt_goes_to_a_cheap_model_and_hard_ones_to_a_strong_one(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    simple = routed(gateway, project.api_key, SIMPLE)
    code = routed(gateway, project.api_key, HARD_CODE)
    math = routed(gateway, project.api_key, HARD_MATH)
    assert simple["x-adaptive-model-group"] in TIER_1
    # hard prompts go to a stronger tier: tier 2 with the task among its strengths (gpt-oss-120b,
    # deepseek-v4-flash) or tier 3, whichever the price weighs in favour of
    for hard in (code, math):
        assert TIERS[hard["x-adaptive-model-group"]] >= 2, hard["x-adaptive-model-group"]
    assert float(simple["x-adaptive-route-score"]) < float(code["x-adaptive-route-score"])
    assert code["x-adaptive-task-type"] == "code" and math["x-adaptive-task-type"] == "math"


def test_cost_bias_changes_the_outcome(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    prompt = "Explain the difference between a process and a thread, with an example of when to prefer each."
    cheap = routed(gateway, project.api_key, prompt, extra_body={"cost_bias": 0.0})
    best = routed(gateway, project.api_key, prompt, extra_body={"cost_bias": 1.0})
    assert cheap["x-adaptive-model-group"] in TIER_1
    assert best["x-adaptive-model-group"] in TIER_3
    via_header = chat(gateway.client(project.api_key), prompt, model="auto",
                      extra_headers={**NO_CACHE, "x-adaptive-cost-bias": "1"})[1]
    assert via_header["x-adaptive-model-group"] in TIER_3


def test_bad_cost_bias_is_a_clear_400(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    with pytest.raises(openai.BadRequestError) as err:
        chat(gateway.client(project.api_key), SIMPLE, model="auto", extra_body={"cost_bias": 7})
    assert "cost_bias" in str(err.value)


def test_project_is_never_routed_to_a_provider_it_cannot_use(gateway: Gateway) -> None:
    project = gateway.project(fallback="byok_only", keys=[("anthropic", byok_key("route-ant", provider="anthropic"), 1)])
    mark = gateway.mark()
    for prompt in (SIMPLE, HARD_CODE):
        headers = routed(gateway, project.api_key, prompt)
        assert headers["x-adaptive-provider"] == "anthropic"
    assert {c["provider"] for c in gateway.calls_since(mark)} == {"anthropic"}


def test_allowed_models_limit_the_choice(gateway: Gateway) -> None:
    project = gateway.project(plan="developer", allowed_models=["gpt-4o-mini", "claude-haiku-4-5"])
    assert routed(gateway, project.api_key, HARD_CODE)["x-adaptive-model-group"] in TIER_1
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway.client(project.api_key), SIMPLE, model="gpt-4o")


def test_failure_of_the_chosen_model_falls_back_to_the_next_candidate(gateway: Gateway) -> None:
    broken = byok_key("route-broken", "500")
    working = byok_key("route-working", provider="anthropic")
    project = gateway.project(fallback="byok_only", keys=[("openai", broken, 1), ("anthropic", working, 1)])
    mark = gateway.mark()
    completion, headers = chat(gateway.client(project.api_key), SIMPLE, model="auto", extra_headers=NO_CACHE,
                               extra_body={"cost_bias": 0.0})
    labels = [c["key_label"] for c in gateway.calls_since(mark)]
    assert labels[0] == "route-broken" and labels[-1] == "route-working"
    assert headers["x-adaptive-provider"] == "anthropic"
    assert headers["x-adaptive-route-fallback"].startswith("gpt-4o-mini->claude-")
    assert completion.choices[0].message.content


def test_named_model_is_respected(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    _, headers = chat(gateway.client(project.api_key), HARD_CODE, model="gpt-4o-mini", extra_headers=NO_CACHE)
    assert headers["x-adaptive-model-group"] == "gpt-4o-mini" and "x-adaptive-routed" not in headers


def test_select_model_endpoint_decides_without_calling_a_provider(gateway: Gateway) -> None:
    import httpx

    project = gateway.project(plan="developer")
    mark = gateway.mark()
    r = httpx.post(f"{gateway.base_url}/adaptive/select-model", headers={"Authorization": f"Bearer {project.api_key}"},
                   json={"model": "auto", "messages": [{"role": "user", "content": HARD_MATH}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] in TIER_3 and body["task_type"] == "math" and 0 <= body["score"] <= 1
    assert set(body["fallbacks"]) | {body["model"]} == set(TIERS)
    assert gateway.calls_since(mark) == []
    r = httpx.post(f"{gateway.base_url}/adaptive/select-model", headers={"Authorization": "Bearer ak-prd-nope"}, json={})
    assert r.status_code == 401

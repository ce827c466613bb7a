"""Filtering and the quality-versus-price choice of `select`."""

from __future__ import annotations

import pytest

from adaptive_plugin.errors import NoCandidateError, RoutingError
from adaptive_plugin.routing import Assessment, Candidate, RouteRequest, request_features, route_request, select

MINI = Candidate("mini", "openai", 1, frozenset(), 1.5e-7, 6e-7, 128_000, True, True, True)
MID = Candidate("flash", "google", 2, frozenset({"math"}), 1e-6, 4e-6, 1_000_000, True, True, True)
BIG = Candidate("opus", "anthropic", 3, frozenset({"code"}), 1.5e-5, 7.5e-5, 200_000, True, True, False)
NOTOOLS = Candidate("local", "ollama", 1, frozenset(), 0.0, 0.0, 8_000, False, False, False)
ALL = [MINI, MID, BIG, NOTOOLS]


def _req(**kw: object) -> RouteRequest:
    base: dict[str, object] = {"messages": [{"role": "user", "content": "x"}], "estimated_input_tokens": 1000}
    base.update(kw)
    return RouteRequest(**base)  # type: ignore[arg-type]


def _a(score: float, task: str = "chat") -> Assessment:
    return Assessment(score=score, task_type=task, expected_gain=0.0, used_embedding=True)


def test_simple_prompt_goes_cheap_hard_prompt_goes_strong() -> None:
    req = _req(usable_providers=frozenset({"openai", "anthropic"}))
    assert select(req, ALL, _a(0.1)).chosen is MINI
    assert select(req, ALL, _a(0.95, "code")).chosen is BIG


def test_cost_bias_changes_the_choice() -> None:
    pool = [MINI, BIG]
    chosen = {bias: select(_req(cost_bias=bias), pool, _a(0.75)).chosen for bias in (0.0, 0.2, 0.5, 0.8, 1.0)}
    assert chosen[0.0] is MINI and chosen[1.0] is BIG
    assert chosen[0.2] is MINI and chosen[0.8] is BIG
    # monotone: once cost_bias prefers the strong model it keeps preferring it
    tiers = [chosen[b].tier for b in sorted(chosen)]
    assert tiers == sorted(tiers)


def test_strength_matching_the_task_raises_the_choice() -> None:
    weak_coder = Candidate("a", "p", 2, frozenset(), 1e-6, 1e-6, None, True, True, True)
    strong_coder = Candidate("b", "p", 2, frozenset({"code"}), 1e-6, 1e-6, None, True, True, True)
    assert select(_req(), [weak_coder, strong_coder], _a(0.9, "code")).chosen is strong_coder
    assert select(_req(), [strong_coder, weak_coder], _a(0.9, "chat")).chosen is weak_coder  # tie -> name order


def test_ordered_is_a_full_fallback_order() -> None:
    d = select(_req(), ALL, _a(0.5))
    assert d.ordered[0] is d.chosen
    assert sorted(c.model_group for c in d.ordered) == sorted(c.model_group for c in ALL)
    assert d.chosen.model_group in d.reason and "0.50" in d.reason


def test_allow_list_and_providers_filter() -> None:
    d = select(_req(allowed_models=frozenset({"opus", "flash"})), ALL, _a(0.1))
    assert {c.model_group for c in d.ordered} == {"opus", "flash"}
    d = select(_req(usable_providers=frozenset({"anthropic"})), ALL, _a(0.1))
    assert [c.model_group for c in d.ordered] == ["opus"]


def test_context_window_and_capabilities_filter() -> None:
    d = select(_req(estimated_input_tokens=150_000), ALL, _a(0.1))
    assert {c.model_group for c in d.ordered} == {"flash", "opus"}
    d = select(_req(needs_tools=True), ALL, _a(0.1))
    assert NOTOOLS not in d.ordered
    d = select(_req(needs_json=True, needs_vision=True), ALL, _a(0.99))
    assert BIG not in d.ordered and NOTOOLS not in d.ordered


def test_no_candidate_error_names_why() -> None:
    req = _req(estimated_input_tokens=128_000 * 2, needs_tools=True, usable_providers=frozenset({"openai"}))
    with pytest.raises(NoCandidateError) as info:
        select(req, ALL, _a(0.5))
    msg = str(info.value)
    assert "supports tools" in msg and "256000" in msg and "providers you have keys for (openai)" in msg
    assert info.value.status_code == 400 and info.value.code == "no_candidate_model"
    with pytest.raises(NoCandidateError, match="no routable model is configured"):
        select(_req(), [], _a(0.5))


def test_invalid_inputs_are_routing_errors() -> None:
    with pytest.raises(RoutingError):
        _req(cost_bias=1.5)
    with pytest.raises(RoutingError):
        Candidate("x", "p", 4)


def test_request_features_from_openai_body() -> None:
    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is in this picture? " * 40},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ]},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"},
        "max_tokens": 100,
    }
    f = request_features(body)
    assert f.needs_tools and f.needs_vision and f.needs_json and f.image_parts == 1
    assert 800 + 200 < f.estimated_input_tokens < 800 + 400
    req = route_request(body, cost_bias=0.3, usable_providers=frozenset({"openai"}))
    assert req.needs_tools and req.expected_output_tokens == 100 and req.cost_bias == 0.3
    assert not request_features({**body, "tool_choice": "none"}).needs_tools
    plain = request_features({"messages": [{"role": "user", "content": "hi"}]})
    assert not (plain.needs_tools or plain.needs_vision or plain.needs_json)

"""Partition keys, bypass rules and which responses may be stored."""

from __future__ import annotations

from typing import Any

import pytest

from adaptive_plugin.cache import bypass_reason, request_key, unstorable_reason

from .conftest import completion, user

BASE: dict[str, Any] = {"model": "gpt-4o-mini", "temperature": 0}


def _partition(scope: str = "p1", messages: list[dict[str, Any]] | None = None, **params: Any) -> str:
    return request_key(scope, messages or user("What is Rust?"), {**BASE, **params}).partition


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.5},
        {"top_p": 0.5},
        {"max_tokens": 20},
        {"stop": ["\n"]},
        {"seed": 7},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"reasoning_effort": "high"},
    ],
)
def test_answer_changing_params_partition(change: dict[str, Any]) -> None:
    assert _partition(**change) != _partition()


def test_scope_system_prompt_and_history_partition() -> None:
    assert _partition("p2") != _partition("p1")
    assert _partition(messages=user("What is Rust?", system="Answer in French.")) != _partition()
    history = [{"role": "user", "content": "Tell me about games."}, {"role": "assistant", "content": "Sure."}]
    assert _partition(messages=user("What is Rust?", history=history)) != _partition()


def test_irrelevant_params_and_whitespace_do_not_partition() -> None:
    a = request_key("p1", user("What  is Rust?"), {**BASE, "stream": True, "user": "u-1", "metadata": {"x": 1}})
    b = request_key("p1", user("what is rust? "), BASE)
    assert a.partition == b.partition
    assert a.exact == b.exact
    assert request_key("p1", user("What is Go?"), BASE).exact != b.exact


@pytest.mark.parametrize(
    ("params", "messages", "expected"),
    [
        ({"temperature": 1.5}, user("hi"), "temperature"),
        ({"n": 3}, user("hi"), "n=3"),
        ({}, [{"role": "system", "content": "x"}], "no user message"),
        ({}, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "non-text"),
        ({"cache": {"no-cache": True}}, user("hi"), "no-cache"),
    ],
)
def test_bypass_rules(params: dict[str, Any], messages: list[dict[str, Any]], expected: str) -> None:
    reason = bypass_reason(messages, params, max_temperature=1.0, store=False)
    assert reason is not None and expected in reason


def test_cacheable_requests_are_not_bypassed() -> None:
    assert bypass_reason(user("hi"), {"temperature": 0.7, "n": 1}, max_temperature=1.0, store=False) is None
    assert bypass_reason(user("hi"), {"cache": {"no-store": True}}, max_temperature=1.0, store=False) is None
    assert bypass_reason(user("hi"), {"cache": {"no-store": True}}, max_temperature=1.0, store=True) is not None


@pytest.mark.parametrize(
    "response",
    [
        completion("cut off", finish_reason="length"),
        completion("filtered", finish_reason="content_filter"),
        {**completion("x"), "choices": []},
        {"error": {"message": "rate limited", "type": "rate_limit"}},
        completion(""),
        "not a dict",
    ],
)
def test_errors_and_truncated_responses_are_unstorable(response: Any) -> None:
    assert unstorable_reason(response) is not None


def test_good_responses_are_storable() -> None:
    assert unstorable_reason(completion("fine")) is None
    tool = completion("")
    tool["choices"][0]["finish_reason"] = "tool_calls"
    tool["choices"][0]["message"]["tool_calls"] = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert unstorable_reason(tool) is None


def test_a_requests_key_is_reused_while_the_request_still_matches_it() -> None:
    from adaptive_plugin.cache import keyed_request

    messages = user("What is the capital of France?")
    params = {"model": "gpt-4o-mini", "temperature": 0}
    first = keyed_request("p", messages, params)
    assert first.key == request_key("p", messages, params)
    assert keyed_request("p", messages, dict(params), first) is first
    assert keyed_request("p", [dict(m) for m in messages], params, first) is first  # equal copies match


@pytest.mark.parametrize(
    "change",
    [
        lambda m, p: ("other-project", m, p),
        lambda m, p: ("p", m, {**p, "model": "gpt-4o"}),  # a fallback to another model group
        lambda m, p: ("p", [{"role": "system", "content": "Answer in French."}, *m], p),
        lambda m, p: ("p", [{**m[0], "content": "What is the capital of Spain?"}], p),
    ],
)
def test_a_changed_request_gets_its_own_key(change: Any) -> None:
    from adaptive_plugin.cache import keyed_request

    messages, params = user("What is the capital of France?"), {"model": "gpt-4o-mini"}
    first = keyed_request("p", messages, params)
    scope, changed, changed_params = change(messages, params)
    again = keyed_request(scope, changed, changed_params, first)
    assert again is not first and again.key == request_key(scope, changed, changed_params)
    assert again.key.partition != first.key.partition or again.key.exact != first.key.exact


def test_a_message_changed_in_place_is_not_served_the_old_key() -> None:
    from adaptive_plugin.cache import keyed_request

    messages = user("What is the capital of France?", system="Be brief.")
    first = keyed_request("p", messages, {})
    messages[0]["content"] = "Answer in French."  # the same list and dict objects, other content
    again = keyed_request("p", messages, {}, first)
    assert again is not first and again.key.partition != first.key.partition

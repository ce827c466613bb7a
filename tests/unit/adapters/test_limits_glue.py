"""The limits glue's reading of a request: output budget and input tokens."""

from __future__ import annotations

from adaptive_plugin.adapters.limits import count_input_tokens, max_output_tokens


def test_output_budget_is_max_tokens_else_the_model_limit_else_the_default() -> None:
    assert max_output_tokens({"max_tokens": 64}, "openai/gpt-4o-mini", 4096) == 64
    assert max_output_tokens({"max_completion_tokens": 80, "max_tokens": 64}, "openai/gpt-4o-mini", 4096) == 80
    assert max_output_tokens({"max_tokens": 64, "n": 3}, "openai/gpt-4o-mini", 4096) == 192
    assert max_output_tokens({}, "openai/gpt-4o-mini", 4096) == 16384  # LiteLLM's map
    assert max_output_tokens({"model_info": {"max_output_tokens": 1000}}, "openai/gpt-4o-mini", 4096) == 1000
    assert max_output_tokens({}, "openai/no-such-model-anywhere", 4096) == 4096
    for bad in (-1, 0, "abc", True, 1.5):
        assert max_output_tokens({"max_tokens": bad}, "openai/no-such-model-anywhere", 4096) == 4096


def test_input_tokens_by_the_model_counter_or_an_upper_bound() -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    counted = count_input_tokens("openai/gpt-4o-mini", {"messages": messages})
    assert 7 <= counted <= 20
    odd = [{"role": "user", "content": object()}]
    assert count_input_tokens("openai/gpt-4o-mini", {"messages": odd}) > 0  # the counter fails: byte length

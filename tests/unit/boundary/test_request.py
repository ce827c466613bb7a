"""What a chat body may carry: forbidden fields by name and by family, types and ranges."""

from __future__ import annotations

from typing import Any

import pytest

from adaptive_plugin.boundary import LIMITS, check_chat_body, check_model_name, forbidden_by_pattern
from adaptive_plugin.errors import ForbiddenParameterError, InvalidRequestError

FORBIDDEN = frozenset({"api_key", "api_base", "custom_llm_provider", "mock_response", "fallbacks", "user_config"})


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], **extra}


def refused(payload: Any, error: type[Exception] = InvalidRequestError) -> Exception:
    with pytest.raises(error) as info:
        check_chat_body(payload, forbidden=FORBIDDEN)
    return info.value


def test_a_plain_chat_body_passes_with_provider_specific_fields() -> None:
    ok = body(temperature=0.2, max_tokens=64, stream=True, stream_options={"include_usage": True}, stop=["\n"],
              tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
              tool_choice="auto", response_format={"type": "json_object"}, user="u-1", seed=7, top_k=40,
              thinking={"type": "enabled", "budget_tokens": 1024}, metadata={"order": "42"}, cost_bias=0.3)
    assert check_chat_body(ok, forbidden=FORBIDDEN) is ok


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_named_fields_are_refused_naming_the_field(name: str) -> None:
    error = refused(body(**{name: "x"}), ForbiddenParameterError)
    assert getattr(error, "param") == name and name in str(error)


@pytest.mark.parametrize("name", [
    "aws_access_key_id", "vertex_credentials", "azure_ad_token", "watsonx_region_name", "langfuse_secret",
    "litellm_credential_name", "_litellm_internal", "mock_testing_fallbacks", "openrouter_api_key", "my_secret",
    "custom_api_base", "proxy_base_url", "service_token", "db_password", "gcs_credentials", "callback_url",
])
def test_families_of_credential_and_endpoint_names_are_refused(name: str) -> None:
    assert forbidden_by_pattern(name)
    refused(body(**{name: "x"}), ForbiddenParameterError)


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens", "prompt_cache_key", "top_logprobs",
                                  "reasoning_effort", "web_search_options", "safety_identifier", "service_tier"])
def test_model_parameters_are_not_mistaken_for_credentials(name: str) -> None:
    assert not forbidden_by_pattern(name)


@pytest.mark.parametrize("payload, param", [
    ([1], None), ("x", None), (None, None), (42, None),
    (body(model="gpt\r\nX-Evil: 1"), "model"), (body(model=""), "model"), (body(model=7), "model"),
    (body(model="m" * 300), "model"), (body(model="gpt\u2028x"), "model"),
    ({"model": "gpt-4o-mini"}, "messages"), (body(messages=[]), "messages"), (body(messages="hi"), "messages"),
    (body(messages=[1]), "messages"), (body(messages=[{"role": "robot", "content": "x"}]), "messages"),
    (body(messages=[{"role": "user", "content": 42}]), "messages"),
    (body(messages=[{"role": "user"}]), "messages"),
    (body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]), "messages"),
    (body(max_tokens=-1), "max_tokens"), (body(max_tokens=1e30), "max_tokens"), (body(max_tokens="abc"), "max_tokens"),
    (body(max_tokens=True), "max_tokens"), (body(temperature="hot"), "temperature"), (body(temperature=3), "temperature"),
    (body(temperature=float("nan")), "temperature"), (body(top_p=1.5), "top_p"), (body(n=1e9), "n"), (body(n=0), "n"),
    (body(stream="yes"), "stream"), (body(stop=["a", "b", "c", "d", "e"]), "stop"), (body(stop=3), "stop"),
    (body(tools="none"), "tools"), (body(tools=[{"type": "function"}]), "tools"),
    (body(tools=[{"type": "function", "function": {"name": "bad name!"}}]), "tools"),
    (body(tool_choice="sometimes"), "tool_choice"), (body(response_format="json"), "response_format"),
    (body(logit_bias={"50256": 500}), "logit_bias"), (body(user="x" * 300), "user"), (body(cost_bias=2), "cost_bias"),
    (body(stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (body(metadata={"a": 1}), "metadata"), (body(metadata=["a"]), "metadata"),
])
def test_wrong_types_and_ranges_are_refused_naming_the_field(payload: Any, param: str | None) -> None:
    error = refused(payload)
    assert getattr(error, "param") == param, str(error)


@pytest.mark.parametrize("key", ["tags", "user_api_key_user_id", "litellm_parent_otel_span", "adaptive_rid", "_x"])
def test_metadata_keys_the_gateway_reads_are_reserved(key: str) -> None:
    refused(body(metadata={key: "spoof"}), ForbiddenParameterError)


@pytest.mark.parametrize("url", [
    "http://example.com/cat.png", "file:///etc/passwd", "https://127.0.0.1/x.png", "https://10.0.0.7/x.png",
    "https://169.254.169.254/latest/meta-data", "https://[::1]/x.png", "https://localhost/x.png",
    "https://metadata.google.internal/x", "gopher://example.com/", "",
])
def test_image_urls_that_point_inside_the_network_are_refused(url: str) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    refused(body(messages=[{"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]}]))


@pytest.mark.parametrize("url", ["https://upload.wikimedia.org/cat.png", "data:image/png;base64,iVBORw0KGgo="])
def test_public_and_inline_images_pass(url: str) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    check_chat_body(body(messages=[{"role": "user", "content": [part]}]), forbidden=FORBIDDEN)


MEDIA_PARTS = {
    "file id": lambda url: {"type": "file", "file": {"file_id": url}},
    "image source": lambda url: {"type": "image", "source": {"type": "url", "url": url}},
    "document source": lambda url: {"type": "document", "source": {"type": "url", "url": url}},
}


INSIDE_URLS = ["http://example.com/a.pdf", "https://10.0.0.7/a.pdf", "https://[fd00::1]/a.pdf", "https://host.internal/a.pdf"]


# LiteLLM fetches a file id that starts with `www.` too (as a URL without its scheme)
@pytest.mark.parametrize("form, url", [(form, url) for form in sorted(MEDIA_PARTS) for url in INSIDE_URLS]
                         + [("file id", "www.example.com/a.pdf")])
def test_file_and_source_urls_that_leave_https_or_point_inside_are_refused(form: str, url: str) -> None:
    part = MEDIA_PARTS[form](url)
    with pytest.raises(InvalidRequestError) as err:
        check_chat_body(body(messages=[{"role": "user", "content": [part]}]), forbidden=FORBIDDEN)
    assert "messages[0].content[0]." + ("file.file_id" if form == "file id" else "source.url") in str(err.value)


@pytest.mark.parametrize("part", [
    {"type": "file", "file": {"file_id": "file-abc123"}},
    {"type": "file", "file": {"file_id": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
    {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
])
def test_provider_file_ids_public_urls_and_inline_media_pass(part: dict) -> None:
    check_chat_body(body(messages=[{"role": "user", "content": [part]}]), forbidden=FORBIDDEN)


def test_a_file_part_needs_a_file_object() -> None:
    refused(body(messages=[{"role": "user", "content": [{"type": "file", "file": "https://example.com/a.pdf"}]}]))


def test_assistant_turns_may_carry_tool_calls_without_content() -> None:
    messages = [{"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function",
                                                                       "function": {"name": "w", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "1", "content": "sunny"}]
    check_chat_body(body(messages=messages), forbidden=FORBIDDEN)


def test_every_limit_refuses_a_value_of_the_wrong_type() -> None:
    for name, check in LIMITS.items():
        with pytest.raises(InvalidRequestError):
            check(name, object())


def test_model_names_keep_their_punctuation() -> None:
    for name in ("gpt-4o-mini", "anthropic/claude-haiku-4-5", "llama-3.1-8b", "models/gemini-1.5-flash:001", "模型"):
        assert check_model_name(name) == name

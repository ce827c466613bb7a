"""A chat completion and a streamed completion through the plugin-enabled proxy (issue 2)."""

from __future__ import annotations

from tests.proxy.gateway import Gateway, chat


def test_completion_through_the_plugin_reaches_the_fake_provider(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    mark = gateway.mark()
    completion, headers = chat(gateway.client(project.api_key), "Name a primary colour. run-a1", extra_headers={"Cache-Control": "no-store"})
    assert completion.choices[0].message.content.startswith("[gpt-4o-mini] answer")
    assert "run-a1" in completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 0
    calls = gateway.calls_since(mark)
    assert [c["key_label"] for c in calls] == ["pooled-openai"]
    assert headers["x-adaptive-key-source"] == "pooled"
    assert headers["x-adaptive-provider"] == "openai"
    assert headers["x-adaptive-model-group"] == "gpt-4o-mini"


def test_streamed_completion_is_a_proper_sse_stream(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    stream = client.chat.completions.create(
        model="claude-haiku-4-5", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Stream me a short answer. run-s1"}],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "run-s1" in text and text.startswith("[claude-haiku-4-5")
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens > 0
    assert [c["key_label"] for c in gateway.calls_since(mark)] == ["pooled-anthropic"]


def test_unknown_and_malformed_api_keys_get_401_with_a_clear_message(gateway: Gateway) -> None:
    import openai
    import pytest

    for token, fragment in (("ak-prd-doesnotexist", "unknown API key"), ("not-a-project-key", "malformed API key")):
        with pytest.raises(openai.AuthenticationError) as err:
            chat(gateway.client(token), "hello")
        assert fragment in str(err.value)


def test_revoked_api_key_is_refused(gateway: Gateway) -> None:
    import openai
    import pytest

    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    chat(client, "before revocation", extra_headers={"Cache-Control": "no-store"})
    keys = gateway.admin("GET", f"/adaptive/projects/{project.id}/api-keys", expect=200).json()
    gateway.admin("POST", f"/adaptive/projects/{project.id}/api-keys/{keys[0]['id']}/revoke", expect=200)
    # no wait: a revocation applies everywhere before its call returns (tests/security/test_revocation.py)
    with pytest.raises(openai.AuthenticationError) as err:
        chat(client, "after revocation")
    assert "revoked" in str(err.value)

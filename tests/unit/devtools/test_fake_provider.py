"""The fake provider against the official openai SDK, raw HTTP and its command line."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest

from adaptive_plugin.devtools.fake_provider import FakeProvider, KeySpec

KEYS: dict[str, Any] = {
    "sk-ok": {"label": "ok-key"},
    "sk-openai-only": KeySpec("openai-only", "ok", provider="openai"),
    "sk-ant": {"label": "ant-key", "provider": "anthropic"},
    "sk-401": {"label": "revoked", "behaviour": "401"},
    "sk-429": {"label": "limited", "behaviour": "429", "retry_after": 7},
    "sk-quota": {"label": "broke", "behaviour": "insufficient_quota"},
    "sk-500": {"label": "broken", "behaviour": "500"},
    "sk-slow": {"label": "slow", "behaviour": "slow", "delay_s": 0.3},
    "sk-reset": {"label": "reset", "behaviour": "reset"},
    "sk-flaky": {"label": "flaky", "behaviour": "flaky", "p_429": 0.2, "p_500": 0.1, "p_reset": 0.1},
}
USER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider(KEYS, seed=1) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.set_keys(KEYS)
    server.reset()
    return server


def client(fake: FakeProvider, key: str = "sk-ok", **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{fake.base_url}/v1", api_key=key, max_retries=0, **kwargs)


def anthropic_post(fake: FakeProvider, body: dict[str, Any], key: str = "sk-ant") -> httpx.Response:
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return httpx.post(f"{fake.base_url}/v1/messages", json=body, headers=headers)


# --- OpenAI -----------------------------------------------------------------------------------


def test_chat_completion_is_deterministic_and_names_model_and_question(fake: FakeProvider) -> None:
    first = client(fake).chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    again = client(fake).chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    other = client(fake).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])

    text = first.choices[0].message.content
    assert text is not None and text.startswith("[gpt-4o-mini] answer #")
    assert text.endswith(" to: What is the capital of France?")
    assert again.choices[0].message.content == text
    assert other.model == "gpt-4o" and other.choices[0].message.content != text
    assert first.model == "gpt-4o-mini" and first.choices[0].finish_reason == "stop"
    assert first.usage is not None
    assert first.usage.prompt_tokens == math.ceil(len(USER[0]["content"]) / 4)
    assert first.usage.completion_tokens == math.ceil(len(text) / 4)
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_long_question_is_truncated_in_the_answer(fake: FakeProvider) -> None:
    question = "x" * 500
    reply = client(fake).chat.completions.create(model="m", messages=[{"role": "user", "content": question}])
    assert reply.choices[0].message.content is not None
    assert reply.choices[0].message.content.endswith(" to: " + "x" * 120)


def test_token_and_cached_markers_set_usage(fake: FakeProvider) -> None:
    messages = [{"role": "user", "content": "cache me #tokens=1000,50 #cached=800"}]
    reply = client(fake).chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (1000, 50, 1050)
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 800


def test_path_without_v1_is_served(fake: FakeProvider) -> None:
    bare = openai.OpenAI(base_url=str(fake.base_url), api_key="sk-ok", max_retries=0)
    reply = bare.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    assert reply.choices[0].message.content is not None
    assert fake.calls()[-1]["path"] == "/chat/completions"


def test_streaming_with_include_usage(fake: FakeProvider) -> None:
    plain = client(fake).chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    chunks = list(
        client(fake).chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len(chunks) > 3 and all(c.model == "gpt-4o-mini" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])
    assert fake.calls()[-1]["stream"] is True


def test_streaming_without_include_usage_has_no_usage_chunk(fake: FakeProvider) -> None:
    with httpx.stream(
        "POST",
        f"{fake.base_url}/v1/chat/completions",
        json={"model": "m", "messages": USER, "stream": True},
        headers={"Authorization": "Bearer sk-ok"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)


@pytest.mark.parametrize(
    ("key", "error", "status", "code"),
    [
        ("sk-unknown", openai.AuthenticationError, 401, "invalid_api_key"),
        ("sk-401", openai.AuthenticationError, 401, "invalid_api_key"),
        ("sk-ant", openai.AuthenticationError, 401, "invalid_api_key"),  # provider mismatch
        ("sk-429", openai.RateLimitError, 429, "rate_limit_exceeded"),
        ("sk-quota", openai.RateLimitError, 429, "insufficient_quota"),
        ("sk-500", openai.InternalServerError, 500, "server_error"),
    ],
)
def test_openai_errors(fake: FakeProvider, key: str, error: type[openai.APIStatusError], status: int, code: str) -> None:
    with pytest.raises(error) as caught:
        client(fake, key).chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == status
    assert caught.value.code == code
    body = caught.value.response.json()
    assert set(body["error"]) >= {"message", "type", "code"}
    if code == "insufficient_quota":
        assert body["error"]["type"] == "insufficient_quota"
    if key == "sk-429":
        assert caught.value.response.headers["retry-after"] == "7"
    assert fake.calls()[-1]["status"] == status


def test_reset_surfaces_as_connection_error(fake: FakeProvider) -> None:
    with pytest.raises(openai.APIConnectionError):
        client(fake, "sk-reset").chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    (call,) = fake.calls()
    assert (call["key_label"], call["outcome"], call["status"]) == ("reset", "reset", None)


def test_slow_key_waits_then_answers_and_a_timeout_is_logged(fake: FakeProvider) -> None:
    started = time.monotonic()
    reply = client(fake, "sk-slow").chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.3
    assert reply.choices[0].message.content is not None

    with pytest.raises(openai.APITimeoutError):
        client(fake, "sk-slow", timeout=0.05).chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert [c["key_label"] for c in fake.calls()] == ["slow", "slow"]


def test_models_endpoint(fake: FakeProvider) -> None:
    models = client(fake).models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]
    with pytest.raises(openai.AuthenticationError):
        client(fake, "sk-nope").models.list()


# --- Anthropic --------------------------------------------------------------------------------


def test_anthropic_message_and_cache_read_usage(fake: FakeProvider) -> None:
    body = {
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello #tokens=500,9 #cached=300"}]}],
    }
    response = anthropic_post(fake, body)
    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message" and message["model"] == "claude-3-5-haiku-20241022"
    assert message["content"][0]["text"].startswith("[claude-3-5-haiku-20241022] answer #")
    assert message["content"][0]["text"].endswith(" to: Hello #tokens=500,9 #cached=300")
    assert message["stop_reason"] == "end_turn"
    usage = message["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["output_tokens"]) == (200, 300, 9)
    assert response.headers["request-id"].startswith("req_")


def test_anthropic_accepts_bearer_auth(fake: FakeProvider) -> None:
    body = {"model": "claude-3-5-haiku-20241022", "max_tokens": 8, "messages": USER}
    response = httpx.post(f"{fake.base_url}/v1/messages", json=body, headers={"Authorization": "Bearer sk-ant"})
    assert response.status_code == 200


def test_anthropic_stream_events(fake: FakeProvider) -> None:
    body = {"model": "claude-3-5-haiku-20241022", "max_tokens": 64, "messages": USER, "stream": True}
    plain = anthropic_post(fake, {**body, "stream": False}).json()
    headers = {"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{fake.base_url}/v1/messages", json=body, headers=headers) as response:
        lines = [line for line in response.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert [n for n in names if n != "content_block_delta"] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["type"] for d in data] == names
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert text == plain["content"][0]["text"]
    assert data[0]["message"]["usage"]["input_tokens"] == plain["usage"]["input_tokens"]
    assert data[-2]["usage"]["output_tokens"] == plain["usage"]["output_tokens"]


@pytest.mark.parametrize(
    ("key", "status", "error_type"),
    [
        ("sk-unknown", 401, "authentication_error"),
        ("sk-openai-only", 401, "authentication_error"),  # provider mismatch
        ("sk-429", 429, "rate_limit_error"),
        ("sk-quota", 400, "invalid_request_error"),
        ("sk-500", 500, "api_error"),
    ],
)
def test_anthropic_errors(fake: FakeProvider, key: str, status: int, error_type: str) -> None:
    body = {"model": "claude-3-5-haiku-20241022", "max_tokens": 8, "messages": USER}
    response = anthropic_post(fake, body, key)
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == error_type
    if key == "sk-quota":
        assert "credit balance is too low" in payload["error"]["message"]
    if key == "sk-429":
        assert response.headers["retry-after"] == "7"


def test_bad_request_body_gets_400_in_provider_shape(fake: FakeProvider) -> None:
    response = anthropic_post(fake, {"model": "claude-3-5-haiku-20241022", "messages": USER})  # no max_tokens
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client(fake).chat.completions.create(model="gpt-4o-mini", messages=[])
    assert [c["outcome"] for c in fake.calls()] == ["bad_request", "bad_request"]


# --- call log and control endpoints -----------------------------------------------------------


def test_call_log_records_labels_never_keys(fake: FakeProvider) -> None:
    client(fake).chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        client(fake, "sk-unknown").chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    anthropic_post(fake, {"model": "claude-3-5-haiku-20241022", "max_tokens": 8, "messages": USER})

    calls = fake.calls()
    assert [
        (c["seq"], c["path"], c["provider"], c["model"], c["key_label"], c["behaviour"], c["status"]) for c in calls
    ] == [
        (1, "/v1/chat/completions", "openai", "gpt-4o-mini", "ok-key", "ok", 200),
        (2, "/v1/chat/completions", "openai", "gpt-4o", None, None, 401),
        (3, "/v1/messages", "anthropic", "claude-3-5-haiku-20241022", "ant-key", "ok", 200),
    ]
    assert all(c["stream"] is False and isinstance(c["ts"], float) for c in calls)
    over_http = httpx.get(f"{fake.base_url}/_fake/calls").json()
    assert over_http == calls
    assert "sk-" not in json.dumps(over_http)


def test_control_endpoints_reset_and_replace_keys(fake: FakeProvider) -> None:
    client(fake).chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    assert httpx.post(f"{fake.base_url}/_fake/reset").json() == {"ok": True}
    assert fake.calls() == []

    new_keys = {"sk-new": {"label": "new", "behaviour": "ok", "provider": "openai"}}
    assert httpx.post(f"{fake.base_url}/_fake/keys", json=new_keys).status_code == 200
    assert client(fake, "sk-new").chat.completions.create(model="m", messages=USER).model == "m"  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        client(fake).chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]

    rejected = httpx.post(f"{fake.base_url}/_fake/keys", json={"sk-x": {"label": "x", "behaviour": "explode"}})
    assert rejected.status_code == 400 and "explode" in rejected.json()["error"]
    assert httpx.get(f"{fake.base_url}/_fake/health").json() == {"ok": True}


def test_flaky_outcomes_are_deterministic_given_the_seed() -> None:
    def run(seed: int) -> list[str]:
        with FakeProvider({"sk-flaky": KEYS["sk-flaky"]}, seed=seed) as other:
            with httpx.Client(base_url=str(other.base_url), headers={"Authorization": "Bearer sk-flaky"}) as http:
                for _ in range(100):
                    try:
                        http.post("/v1/chat/completions", json={"model": "m", "messages": USER})
                    except httpx.TransportError:
                        pass
            return [c["outcome"] for c in other.calls()]

    first, again, other_seed = run(1), run(1), run(2)
    assert first == again != other_seed
    counts = {outcome: first.count(outcome) for outcome in set(first)}
    assert set(counts) == {"ok", "429", "500", "reset"}
    assert 40 < counts["ok"] < 80 and 8 < counts["429"] < 35


def test_key_spec_validation() -> None:
    with pytest.raises(ValueError, match="behaviour"):
        KeySpec("x", "teapot")
    with pytest.raises(ValueError, match="provider"):
        KeySpec("x", provider="azure")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probabilities"):
        KeySpec("x", "flaky", p_429=0.7, p_500=0.7)
    with pytest.raises(ValueError, match="unknown KeySpec fields"):
        FakeProvider({"sk": {"label": "x", "colour": "red"}})
    assert KeySpec.from_dict({"label": "n", "behaviour": 429}).behaviour == "429"  # type: ignore[dict-item]


# --- latency, concurrency, lifecycle ------------------------------------------------------------


async def test_global_latency_and_concurrency() -> None:
    async with FakeProvider({"sk": {"label": "bench"}}, latency_ms=100) as fake:
        connector = aiohttp.TCPConnector(limit=64)
        headers = {"Authorization": "Bearer sk"}
        async with aiohttp.ClientSession(str(fake.base_url), connector=connector, headers=headers) as http:

            async def one(i: int) -> int:
                body = {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}
                async with http.post("/v1/chat/completions", json=body) as response:
                    await response.read()
                    return response.status

            # the suite's heap (LiteLLM and all, ~900k objects once every test module is imported)
            # is frozen, as the proxy freezes its start-up heap: a full collection during the burst
            # would otherwise cost 0.3-1 s on a loaded machine and time the heap, not the fake
            gc.collect()
            gc.freeze()
            try:
                started = time.monotonic()
                statuses = await asyncio.gather(*(one(i) for i in range(192)))
                elapsed = time.monotonic() - started
            finally:
                gc.unfreeze()
        assert statuses == [200] * 192
        # three waves of 64 concurrent 0.1 s calls (0.3 s), not 192 sequential ones (19.2 s): the
        # upper bound leaves a slow or busy machine its HTTP overhead, and still fails sequential calls
        assert 0.3 <= elapsed < 8
        assert len(fake.calls()) == 192


def test_cli_writes_port_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"sk-cli": {"label": "cli"}}))
    port_file = tmp_path / "port"
    command = [sys.executable, "-m", "adaptive_plugin.devtools.fake_provider", "--port", "0"]
    command += ["--keys", str(keys), "--port-file", str(port_file), "--latency-ms", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "fake provider did not start"
            time.sleep(0.02)
        port = int(port_file.read_text())
        body = {"model": "m", "messages": USER}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-cli"})
        assert reply.json()["choices"][0]["message"]["content"].startswith("[m] answer #")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert out.strip() == f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_start_in_thread_and_stop() -> None:
    fake = FakeProvider({})
    base_url = fake.start_in_thread()
    assert httpx.get(f"{base_url}/_fake/health").status_code == 200
    with pytest.raises(RuntimeError):
        fake.start_in_thread()
    fake.stop()
    fake.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/_fake/health")


def test_import_has_no_side_effects() -> None:
    code = (
        "import threading, adaptive_plugin.devtools.fake_provider as m; "
        "assert threading.active_count() == 1; print(m.FakeProvider.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "FakeProvider" and result.stderr == ""

"""Attack class: malformed input. Bad input never gets a 500, and nothing a client sends is
reflected unescaped into a header.

Seen before this was closed: body `[1]` or `"x"` gave a 500 with a traceback in the log; a
model name with CR LF dropped the connection (it was reflected into a response header);
invalid UTF-8 was reported as "messages must be a non-empty list"; `max_tokens` -1 / 1e30 /
"abc", `temperature` "hot", `n` 1e9 and `stream` "yes" passed through unchecked; `"content":
42` failed after 4 attempts as a "connection" failure, cooled the tenant's healthy key down for
30 s and billed its next request as pooled.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.proxy.gateway import Gateway, byok_key, chat

pytestmark = pytest.mark.proxy


def base(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "bad input probe"}], **extra}


RAW_BODIES: list[tuple[str, bytes, str | None]] = [
    ("a list", b"[1]", None),
    ("a string", b'"x"', None),
    ("a number", b"42", None),
    ("null", b"null", None),
    ("empty", b"", None),
    ("not JSON", b"{model: gpt}", None),
    ("invalid UTF-8", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\xff\xfe"}]}', None),
    ("a lone surrogate", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800"}]}', None),
]

BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("max_tokens -1", base(max_tokens=-1), "max_tokens"),
    ("max_tokens 1e30", base(max_tokens=1e30), "max_tokens"),
    ("max_tokens abc", base(max_tokens="abc"), "max_tokens"),
    ("temperature hot", base(temperature="hot"), "temperature"),
    ("top_p 7", base(top_p=7), "top_p"),
    ("n 1e9", base(n=1e9), "n"),
    ("stream yes", base(stream="yes"), "stream"),
    ("stop object", base(stop={"a": 1}), "stop"),
    ("tools string", base(tools="all of them"), "tools"),
    ("content 42", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 42}]}, "messages"),
    ("messages object", {"model": "gpt-4o-mini", "messages": {"role": "user"}}, "messages"),
    ("model CRLF", base(model="gpt-4o-mini\r\nSet-Cookie: stolen=1"), "model"),
    ("model NUL", base(model="gpt-4o-mini\x00"), "model"),
    ("image from the metadata service", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://169.254.169.254/latest/meta-data/"}}]}]}, "messages"),
]


def post_raw(gw: Gateway, key: str, content: bytes, content_type: str = "application/json") -> httpx.Response:
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        return client.post("/v1/chat/completions", content=content,
                           headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})


@pytest.mark.parametrize("name, content, param", RAW_BODIES, ids=[n for n, _, _ in RAW_BODIES])
def test_unusable_bodies_get_400_not_500(gateway: Gateway, name: str, content: bytes, param: str | None) -> None:
    project = gateway.project(plan="developer")
    mark = gateway.mark()
    response = post_raw(gateway, project.api_key, content)
    assert response.status_code == 400, (name, response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["type"] == "invalid_parameter" and error["param"] == param
    assert gateway.calls_since(mark) == []


@pytest.mark.parametrize("name, body, param", BAD_FIELDS, ids=[n for n, _, _ in BAD_FIELDS])
def test_bad_parameters_get_400_naming_the_field(gateway: Gateway, name: str, body: dict[str, Any], param: str) -> None:
    project = gateway.project(plan="developer")
    mark = gateway.mark()
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        response = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {project.api_key}"})
    assert response.status_code == 400, (name, response.status_code, response.text[:300])
    assert response.json()["error"]["param"] == param
    assert all("\r" not in v and "\n" not in v for v in response.headers.values())
    assert "set-cookie" not in {k.lower() for k in response.headers}
    assert gateway.calls_since(mark) == []


def test_form_bodies_on_the_chat_route_are_refused(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    response = post_raw(gateway, project.api_key, b"model=gpt-4o-mini&api_key=STOLEN",
                        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_a_bad_request_blames_no_key_and_the_gateway_keeps_serving(gateway: Gateway) -> None:
    key = byok_key("bad-input-healthy")
    project = gateway.project(keys=[("openai", key, 1)])
    client = gateway.client(project.api_key)
    for body in (b"[1]", b'"x"', b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":42}]}'):
        assert post_raw(gateway, project.api_key, body).status_code == 400
    mark = gateway.mark()
    _, headers = chat(client, "a valid request after the bad ones", extra_headers={"Cache-Control": "no-store"})
    assert headers["x-adaptive-key-source"] == "byok"  # the healthy key was not cooled down
    assert [c["key_label"] for c in gateway.calls_since(mark)] == ["bad-input-healthy"]
    assert "Traceback" not in gateway.proxy.output()[-20000:]


def test_unicode_in_the_model_name_is_never_reflected_raw(gateway: Gateway) -> None:
    """A model name that is not configured is a 4xx; whatever we echo in headers is plain ASCII."""
    project = gateway.project(plan="developer")
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        response = client.post("/v1/chat/completions", json=base(model="gpt-4o-mini-ünïcode\"<script>"),
                               headers={"Authorization": f"Bearer {project.api_key}"})
    assert 400 <= response.status_code < 500, response.text
    for name, value in response.headers.items():
        assert value.isascii() and "\r" not in value and "\n" not in value, (name, value)

"""Attack class: request fields. A request carries no credentials or endpoints of its own.

Seen before this was closed: a developer-plan project sent another project's provider key in
`api_key` and the provider call was made with it (billed as pooled); `api_base` gave a 500.
Every field with which LiteLLM changes where or as whom a call goes is now a 400 naming the
field, before any provider call, for every form a client can send it in.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.proxy.gateway import Gateway, byok_key, chat

pytestmark = pytest.mark.proxy

# (field, value): credentials, endpoints, provider choice, retries and fallbacks, mock answers,
# stored credentials, per-request logging destinations and prices
FIELDS: list[tuple[str, Any]] = [
    ("api_key", "STOLEN"),
    ("api_base", "http://127.0.0.1:1/v1"),
    ("base_url", "http://127.0.0.1:1/v1"),
    ("api_version", "2024-02-01"),
    ("organization", "org-someone-else"),
    ("deployment_id", "gpt-4o"),
    ("aws_access_key_id", "AKIAXXXXXXXX"),
    ("aws_secret_access_key", "secret"),
    ("vertex_credentials", "{}"),
    ("vertex_project", "someone-elses"),
    ("azure_ad_token", "token"),
    ("extra_headers", {"Authorization": "Bearer STOLEN"}),
    ("headers", {"Authorization": "Bearer STOLEN"}),
    ("default_headers", {"x-api-key": "STOLEN"}),
    ("custom_llm_provider", "openai"),
    ("mock_response", "I am a mocked answer"),
    ("mock_testing_fallbacks", True),
    ("fallbacks", [{"model": "gpt-4o", "api_key": "STOLEN"}]),
    ("num_retries", 50),
    ("max_retries", 50),
    ("timeout", 0.001),
    ("user_config", {"model_list": [{"model_name": "x", "litellm_params": {"model": "openai/x", "api_key": "STOLEN"}}]}),
    ("model_list", []),
    ("litellm_credential_name", "operator-openai"),
    ("langfuse_secret", "sk-lf"),
    ("langfuse_host", "http://attacker.example"),
    ("input_cost_per_token", 0),
    ("output_cost_per_token", 0),
    ("caching", False),
    ("cache_key", "another-tenants-entry"),
    ("tags", ["premium"]),
    ("litellm_metadata", {"user_api_key": "x"}),
    ("proxy_server_request", {"headers": {}}),
    ("secret_fields", {"raw_headers": {}}),
]


def post(gw: Gateway, key: str, body: Any) -> httpx.Response:
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        return client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def base(content: str = "hello") -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize("field, value", FIELDS, ids=[f for f, _ in FIELDS])
def test_field_is_refused_naming_it_with_no_provider_call(gateway: Gateway, field: str, value: Any) -> None:
    project = gateway.project(plan="developer")
    mark = gateway.mark()
    response = post(gateway, project.api_key, {**base(f"field {field}"), field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "forbidden_parameter" and error["param"] == field
    assert field in error["message"]
    assert gateway.calls_since(mark) == []


def test_another_projects_provider_key_in_the_body_is_never_used(gateway: Gateway) -> None:
    victim_key = byok_key("victim-openai")
    gateway.project(keys=[("openai", victim_key, 1)])
    attacker = gateway.project(plan="developer")
    client = gateway.client(attacker.api_key)
    mark = gateway.mark()
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, "use the victim's key", extra_body={"api_key": victim_key})
    assert "api_key" in str(err.value)
    assert victim_key not in str(err.value)
    assert [c["key_label"] for c in gateway.calls_since(mark)] == []
    # the same key sent in a nested form is refused too
    for nested in ({"extra_body": {"api_key": victim_key}}, {"metadata": {"api_key": victim_key}}):
        response = post(gateway, attacker.api_key, {**base("nested"), **nested})
        assert response.status_code == 400, response.text
    assert gateway.calls_since(mark) == []


def test_spoofed_metadata_is_refused_and_plain_metadata_passes(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    for spoof in ({"user_api_key_user_id": "prj_other/production"}, {"tags": "premium"},
                  {"adaptive_rid": "0" * 24}, {"model_group": "gpt-4o"}):
        response = post(gateway, project.api_key, {**base("spoof"), "metadata": spoof})
        assert response.status_code == 400, (spoof, response.text)
        assert response.json()["error"]["type"] == "forbidden_parameter"
    response = post(gateway, project.api_key, {**base("plain metadata"), "metadata": {"order": "A-17"}})
    assert response.status_code == 200, response.text
    rows = gateway.ledger_rows(project.id, wait_for=1)
    assert {r["project_id"] for r in rows} == {project.id}


def test_path_and_query_forms_of_the_model_are_checked_too(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {project.api_key}"}
        response = client.post("/engines/gpt-4o-mini%0d%0aX-Evil:%201/chat/completions", json=base(), headers=headers)
        assert response.status_code == 400 and response.json()["error"]["param"] == "model", response.text
        response = client.post("/v1/chat/completions", params={"model": "gpt\r\nX-Evil: 1"}, json=base(), headers=headers)
        assert response.status_code == 400 and response.json()["error"]["param"] == "model", response.text
        assert "x-evil" not in {k.lower() for k in response.headers}


def test_the_operator_keeps_its_own_request_options(gateway: Gateway) -> None:
    """The master key is the operator's: it is not a tenant, and its requests are not refused for
    the options a tenant may not set."""
    response = post(gateway, gateway.master, {**base("operator retries"), "num_retries": 1})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("header, value", [
    ("x-litellm-num-retries", "50"), ("x-litellm-timeout", "0.001"), ("x-litellm-tags", "premium"),
    ("x-litellm-spend-logs-metadata", '{"project": "someone-else"}'), ("x-litellm-stream-timeout", "0.001"),
])
def test_litellm_control_headers_are_refused(gateway: Gateway, header: str, value: str) -> None:
    project = gateway.project(plan="developer")
    mark = gateway.mark()
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        response = client.post("/v1/chat/completions", json=base("header"),
                               headers={"Authorization": f"Bearer {project.api_key}", header: value})
    assert response.status_code == 400 and response.json()["error"]["param"] == header, response.text
    assert gateway.calls_since(mark) == []


def test_a_provider_credential_beside_the_project_key_is_refused(gateway: Gateway) -> None:
    """LiteLLM forwards an Anthropic OAuth token in Authorization to Anthropic when the key it
    authenticates arrived in x-litellm-api-key: the call would go out as the client chose."""
    project = gateway.project(plan="developer")
    mark = gateway.mark()
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        response = client.post("/v1/chat/completions", json={**base("oauth"), "model": "claude-haiku-4-5"},
                               headers={"x-litellm-api-key": project.api_key,
                                        "Authorization": "Bearer sk-ant-oat01-someone-elses-oauth-token"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "authorization", response.text
    assert gateway.calls_since(mark) == []

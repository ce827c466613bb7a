"""The route guard as an ASGI layer, on a small app with LiteLLM's auth dependency."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth

from adaptive_plugin.adapters.guard import check_url_validation, forbidden_body_fields, install_guard, route_table
from adaptive_plugin.errors import ConfigError

MASTER = "sk-master-" + "x" * 32
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def build_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions", dependencies=[Depends(user_api_key_auth)])
    async def chat(request: Request) -> dict[str, Any]:
        return {"echo": (await request.body()).decode()}

    @app.get("/settings", dependencies=[Depends(user_api_key_auth)])
    async def settings() -> dict[str, str]:
        return {"secret": "settings"}

    @app.get("/sso/key/generate")
    async def sso() -> dict[str, str]:
        return {"unauthenticated": "yes"}

    @app.get("/health/liveliness")
    async def alive() -> str:
        return "I'm alive!"

    @app.post("/adaptive/select-model")
    async def own() -> dict[str, str]:
        return {"own": "route"}

    install_guard(app, master_key=lambda: MASTER, forbidden=forbidden_body_fields())
    return app


@pytest.fixture()
def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app()), base_url="http://gw")


async def test_route_table_sees_which_routes_authenticate() -> None:
    table = {(r.template, r.methods): r.authenticates for r in route_table(build_app())}
    assert table[("/v1/chat/completions", ("POST",))] is True
    assert table[("/sso/key/generate", ("GET",))] is False


async def test_unauthenticated_routes_answer_the_operator_only(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer ak-prd-x"}, {"Authorization": "Bearer sk-wrong"}):
        response = await client.get("/sso/key/generate", headers=headers)
        assert response.status_code == 403 and response.headers["x-adaptive-error-code"] == "route_not_allowed"
    assert (await client.get("/sso/key/generate", headers={"Authorization": f"Bearer {MASTER}"})).status_code == 200
    assert (await client.get("/sso/key/generate", headers={"x-litellm-api-key": MASTER})).status_code == 200
    assert (await client.get("/health/liveliness")).status_code == 200


@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "api-key", "x-goog-api-key", "x-litellm-api-key"])
async def test_a_project_key_in_any_header_is_refused_off_the_project_routes(client: httpx.AsyncClient, header: str) -> None:
    value = "Bearer ak-prd-abc" if header == "Authorization" else "ak-prd-abc"
    response = await client.get("/settings", headers={header: value})
    assert response.status_code == 403 and response.headers["x-adaptive-error-code"] == "route_not_allowed"
    response = await client.get("/settings", params={"key": "ak-prd-abc"})
    assert response.status_code == 403
    assert (await client.post("/adaptive/select-model", headers={header: value})).status_code == 200


async def test_chat_bodies_are_checked_and_handed_on_unchanged(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": "Bearer ak-prd-abc"}
    response = await client.post("/v1/chat/completions", json={**CHAT, "api_base": "http://evil"}, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "api_base"
    response = await client.post("/v1/chat/completions", content=b"[1]", headers=headers)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_parameter"
    raw = httpx.Request("POST", "http://gw", json=CHAT).read()
    response = await client.post("/v1/chat/completions", content=raw, headers={**headers, "content-type": "application/json"})
    assert response.status_code == 200 and response.json()["echo"] == raw.decode()


async def test_the_operator_may_send_what_a_tenant_may_not(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "num_retries": 2},
                                 headers={"Authorization": f"Bearer {MASTER}"})
    assert response.status_code == 200


async def test_bodies_of_other_routes_must_be_objects_without_forbidden_fields(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": "Bearer sk-not-a-project-key"}
    response = await client.post("/settings", content=b"[1]", headers=headers)
    assert response.status_code == 400
    response = await client.post("/settings", json={"api_base": "http://x"}, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "api_base"


async def test_the_plugins_own_routes_validate_their_own_bodies(client: httpx.AsyncClient) -> None:
    """A provider key is added with `api_key` in the body: the guard leaves /adaptive/* alone."""
    response = await client.post("/adaptive/select-model", json={"api_key": "sk-provider-key"},
                                 headers={"Authorization": "Bearer pak-admin"})
    assert response.status_code == 200


@pytest.mark.parametrize("header", ["x-litellm-timeout", "x-litellm-num-retries", "x-litellm-tags",
                                    "x-litellm-spend-logs-metadata", "typesafe-danger-zone-authorization"])
async def test_litellm_control_headers_are_refused(client: httpx.AsyncClient, header: str) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT,
                                 headers={"Authorization": "Bearer ak-prd-abc", header: "1"})
    assert response.status_code == 400 and response.json()["error"]["param"] == header


async def test_a_second_credential_is_refused(client: httpx.AsyncClient) -> None:
    """An OAuth token in Authorization beside the project key elsewhere would go to the provider."""
    response = await client.post("/v1/chat/completions", json=CHAT, headers={
        "x-litellm-api-key": "ak-prd-abc", "Authorization": "Bearer sk-ant-oat01-client-oauth-token"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "authorization"
    same = await client.post("/v1/chat/completions", json=CHAT,
                             headers={"x-litellm-api-key": "ak-prd-abc", "Authorization": "Bearer ak-prd-abc"})
    assert same.status_code == 200


@pytest.mark.parametrize("settings", [{}, {"user_url_validation": True}, {"user_url_validation": "true"},
                                      {"user_url_allowed_hosts": ["media.internal"]}])
def test_litellms_download_guard_on_or_unset_is_accepted(settings: dict) -> None:
    check_url_validation(settings)


@pytest.mark.parametrize("value", [False, None, "false", "off", 0])
def test_litellms_download_guard_turned_off_stops_start_up(value: object) -> None:
    with pytest.raises(ConfigError, match="litellm_settings.user_url_validation is off"):
        check_url_validation({"user_url_validation": value})


def test_the_download_guard_turned_off_in_litellm_itself_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="user_url_allowed_hosts"):
        check_url_validation({}, live=False)

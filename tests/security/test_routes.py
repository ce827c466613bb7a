"""Attack class: routes. A project key reaches only the chat API it pays for.

The proxy's real route table, read after start-up with every lazy feature router loaded
(`LITELLM_DISABLE_LAZY_ROUTES`), is probed route by route and method by method with a project
key: each must be allowed (chat completions, model list), refused with 403
`route_not_allowed`, public by review (`boundary.PUBLIC_ROUTES`) or one of the plugin's own.
A LiteLLM upgrade that adds a route cannot open a door silently: the new route is refused by
the custom auth (if it authenticates) or by the guard (if it does not), or this test fails.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from adaptive_plugin.boundary import PUBLIC_ROUTES, project_may_call
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import Gateway

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

REFUSED = "route_not_allowed"


@pytest.fixture(scope="module")
def full_gateway(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A proxy with every lazily registered feature router loaded at start-up."""
    state = tmp_path_factory.mktemp("routes")
    env = gateway_env(fake_provider, state, LITELLM_DISABLE_LAZY_ROUTES="true")
    proxy = ProxyProcess(demo_config(), env=env, log_path=state / "proxy.log").start()
    gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=state,
                 database_url=f"sqlite:///{state / 'adaptive.db'}", env=env)
    yield gw
    gw.close_clients()
    proxy.stop()


def concrete(template: str) -> str:
    """A path that the template matches: every parameter filled with a harmless value."""
    path = re.sub(r"\{[^}]+:path\}", "probe/x", template)
    return re.sub(r"\{[^}]+\}", "probe", path)


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and response.headers.get("x-adaptive-error-code") == REFUSED


def probe(client: httpx.Client, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
    if path.endswith("/chat/completions"):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "route probe"}],
                "max_tokens": 5}
    return client.request(method, path, headers=headers, json=body)


async def websocket_refused(base_url: str, path: str, key: str) -> bool:
    url = base_url.replace("http://", "ws://") + path
    try:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10):
            return False
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code == 403
    except websockets.exceptions.ConnectionClosed as exc:
        return exc.rcvd is not None and exc.rcvd.code == 1008


def test_every_route_is_allowed_refused_or_public_by_review(full_gateway: Gateway) -> None:
    gw = full_gateway
    project = gw.project(keys=[])
    table = gw.admin("GET", "/adaptive/routes", expect=200).json()
    assert len(table) > 500, "the route table looks incomplete: were the lazy feature routers loaded?"
    mark = gw.mark()
    problems: list[str] = []
    probed = 0
    dispatched: set[tuple[str, str]] = set()  # the first route of a path and method serves it
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        for route in table:
            template, access, kind = route["path"], route["access"], route["kind"]
            if access == "own":
                continue  # the plugin's admin API: its own authentication, tested in tests/proxy
            if kind == "websocket":
                if not asyncio.run(websocket_refused(gw.base_url, concrete(template), project.api_key)):
                    problems.append(f"WS {template}: a project key opened the socket")
                probed += 1
                continue
            if kind == "mount":
                path = template.rstrip("/") + "/probe"
                response = probe(client, "GET", path, project.api_key)
                probed += 1
                if access == "public" and template in PUBLIC_ROUTES:
                    continue
                if not refused(response):
                    problems.append(f"GET {path} ({access} mount): {response.status_code}")
                continue
            for method in route["methods"]:
                if method in ("HEAD", "OPTIONS") or (method, template) in dispatched:
                    continue
                dispatched.add((method, template))
                response = probe(client, method, concrete(template), project.api_key)
                probed += 1
                if project_may_call(method, template):
                    if refused(response):
                        problems.append(f"{method} {template}: allowed for projects but refused")
                elif access == "public":
                    if template not in PUBLIC_ROUTES:
                        problems.append(f"{method} {template}: public but not reviewed in PUBLIC_ROUTES")
                    elif refused(response):
                        problems.append(f"{method} {template}: public but refused")
                elif not refused(response):
                    problems.append(f"{method} {template} ({access}): answered {response.status_code}, not refused")
    assert probed > 500
    assert problems == [], "\n".join(problems[:50])
    # the only provider calls were the chat probes' own (at most one per chat route)
    calls = gw.calls_since(mark)
    assert len(calls) <= 4 and all(c["path"].endswith("/chat/completions") for c in calls), calls


def test_refused_routes_stay_refused_without_a_key_or_with_a_wrong_one(full_gateway: Gateway) -> None:
    gw = full_gateway
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        for path in ("/sso/key/generate", "/public/providers", "/onboarding/get_token", "/get_image"):
            for key in (None, "ak-prd-not-a-real-key", "sk-anything"):
                response = probe(client, "GET", path, key)
                assert refused(response), (path, key, response.status_code, response.text[:200])
        # the operator keeps them
        response = probe(client, "GET", "/public/providers", gw.master)
        assert not refused(response)


def test_operator_keeps_the_routes_project_keys_lose(full_gateway: Gateway) -> None:
    gw = full_gateway
    project = gw.project(keys=[])
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        for path in ("/routes", "/settings", "/model/info", "/router/settings", "/get/config/callbacks"):
            assert refused(probe(client, "GET", path, project.api_key)), path
            operator = probe(client, "GET", path, gw.master)
            assert operator.status_code == 200, (path, operator.status_code, operator.text[:200])


def test_pass_through_and_health_routes_make_no_provider_call_for_a_project(full_gateway: Gateway) -> None:
    gw = full_gateway
    project = gw.project(plan="developer")
    mark = gw.mark()
    anthropic = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {project.api_key}"}
        for method, path, body in (("POST", "/anthropic/v1/messages", anthropic),
                                   ("POST", "/openai/v1/chat/completions", chat),
                                   ("POST", "/v1/messages", anthropic), ("POST", "/v1/responses", {**chat, "input": "hi"}),
                                   ("GET", "/health", None), ("GET", "/health/latest", None)):
            response = client.request(method, path, headers=headers, json=body)
            assert refused(response), (path, response.status_code, response.text[:200])
            # the anthropic-style header carries the key for the Anthropic routes
            response = client.request(method, path, headers={"x-api-key": project.api_key}, json=body)
            assert response.status_code in (401, 403), (path, response.status_code)
        assert client.get("/health/liveliness").status_code == 200
        assert client.get("/health/readiness").status_code == 200
    assert gw.calls_since(mark) == []


def test_model_list_shows_a_project_only_what_it_may_use(full_gateway: Gateway) -> None:
    gw = full_gateway
    limited = gw.project(plan="developer", allowed_models=["gpt-4o-mini", "claude-haiku-4-5"])
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        listed = client.get("/v1/models", headers={"Authorization": f"Bearer {limited.api_key}"}).json()
        assert sorted(m["id"] for m in listed["data"]) == ["claude-haiku-4-5", "gpt-4o-mini"]
        hidden = client.get("/v1/models/gpt-4o", headers={"Authorization": f"Bearer {limited.api_key}"})
        assert hidden.status_code == 404
        everything = client.get("/v1/models", headers={"Authorization": f"Bearer {gw.master}"}).json()
        assert {"gpt-4o", "claude-sonnet-4-5"} <= {m["id"] for m in everything["data"]}
    byok_only = gw.project(plan="team", fallback="byok_only")
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        listed = client.get("/v1/models", headers={"Authorization": f"Bearer {byok_only.api_key}"}).json()
        assert listed["data"] == []  # no own key for any provider, and no pooled fallback


def test_route_table_endpoint_is_operator_only(full_gateway: Gateway, tmp_path: Path) -> None:
    gw = full_gateway
    project = gw.project(keys=[])
    with httpx.Client(base_url=gw.base_url, timeout=30) as client:
        assert client.get("/adaptive/routes", headers={"Authorization": f"Bearer {project.api_key}"}).status_code == 401
        assert client.get("/adaptive/routes").status_code == 401

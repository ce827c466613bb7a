"""Project self-service end to end (issue 20): a project admin key (`pak-...`) runs the product's
setup and monitoring without the master key, and sees and changes nothing of anyone else's."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.proxy.gateway import FAKE_KEYS, Gateway, byok_key, chat
from tests.proxy.selfservice import admin_project

NO_STORE = {"Cache-Control": "no-store, no-cache"}


def test_a_project_admin_sets_up_and_monitors_without_the_master_key(gateway: Gateway) -> None:
    p = admin_project(gateway)
    secret, view = p.add_key("self-first", priority=1)
    assert secret not in str(view) and view["last4"] == secret[-4:] and "master_key_id" not in view
    client = gateway.client(p.chat_key())

    mark = gateway.mark()
    _, headers = chat(client, "self-service first request", extra_headers=NO_STORE)
    assert [c["key_label"] for c in gateway.calls_since(mark)] == ["self-first"]
    assert headers["x-adaptive-key-source"] == "byok"
    assert headers["x-adaptive-key-fingerprint"] == view["fingerprint"]

    [entry] = p.log(wait_for=1)
    assert entry["request_id"] == headers["x-adaptive-request-id"]
    assert (entry["provider"], entry["key_source"], entry["key_fingerprint"]) == ("openai", "byok", view["fingerprint"])
    assert Decimal(entry["overhead_fee_usd"]) == Decimal(headers["x-adaptive-overhead-fee-usd"]) > 0
    assert entry["ts"].endswith("Z") or entry["ts"].endswith("+00:00")
    operator_view = gateway.admin("GET", "/adaptive/requests", params={"project_id": p.id}, expect=200).json()
    assert operator_view[0]["ts"].endswith("+00:00")  # the operator's log carries the timezone too
    [listed] = p.call("GET", "/adaptive/self/provider-keys", expect=200).json()
    assert listed["last_used_at"] is not None and listed["health"] == "ok" and secret not in str(listed)

    # rotation: the new key takes the old one's place at once, the old one is revoked
    rotated_secret = byok_key("self-rotated")
    gateway.fake.set_keys(FAKE_KEYS)
    rotated = p.call("POST", f"/adaptive/self/provider-keys/{view['id']}/rotate", json={"api_key": rotated_secret},
                     expect=200).json()
    assert rotated["revoked"]["status"] == "revoked" and rotated["new"]["priority"] == 1
    assert rotated_secret not in str(rotated) and secret not in str(rotated)
    gateway_sync()
    mark = gateway.mark()
    _, headers = chat(client, "after rotation", extra_headers=NO_STORE)
    assert [c["key_label"] for c in gateway.calls_since(mark)] == ["self-rotated"]
    assert headers["x-adaptive-key-fingerprint"] == rotated["new"]["fingerprint"]

    # revoking the last own key: the project's policy (pooled) takes over
    p.call("POST", f"/adaptive/self/provider-keys/{rotated['new']['id']}/revoke", expect=200)
    gateway_sync()
    _, headers = chat(client, "after revocation", extra_headers=NO_STORE)
    assert headers["x-adaptive-key-source"] == "pooled"

    # usage, by every grouping, adds up to the ledger's figures
    rows = p.log(wait_for=3)
    fee = sum(Decimal(r["overhead_fee_usd"]) for r in rows if r["outcome"] == "success")
    cost = sum(Decimal(r["model_cost_usd"]) for r in rows if r["outcome"] == "success")
    ledger = gateway.admin("GET", "/adaptive/usage", params={"project_id": p.id, "group_by": ""}, expect=200).json()[0]
    assert (Decimal(ledger["overhead_fee_usd"]), Decimal(ledger["model_cost_usd"])) == (fee, cost)
    assert cost > 0  # the pooled request
    for group in ("day", "provider", "key_fingerprint", "key_source", "environment", "day,key_source,provider"):
        report = p.call("GET", "/adaptive/self/usage", params={"group_by": group}, expect=200).json()
        assert sum(Decimal(r["overhead_fee_usd"]) for r in report["rows"]) == fee == Decimal(report["total"]["overhead_fee_usd"])
        assert sum(Decimal(r["model_cost_usd"]) for r in report["rows"]) == cost == Decimal(report["total"]["model_cost_usd"])
    by_source = p.call("GET", "/adaptive/self/usage", params={"group_by": "key_source"}, expect=200).json()["rows"]
    assert {r["key_source"]: r["requests"] for r in by_source} == {"byok": 2, "pooled": 1}


def gateway_sync() -> None:
    """Key changes reach the request path within ADAPTIVE_SYNC_INTERVAL_SECONDS (1 s)."""
    time.sleep(1.2)


def test_settings_fallback_cost_bias_and_allowed_models(gateway: Gateway) -> None:
    p = admin_project(gateway)
    project = p.call("PATCH", "/adaptive/self/project", expect=200, json={
        "fallback": "byok_only", "default_cost_bias": 0.2, "allowed_models": ["gpt-4o-mini"]}).json()
    assert (project["fallback"], project["default_cost_bias"], project["allowed_models"]) == ("byok_only", 0.2, ["gpt-4o-mini"])
    assert "gpt-4o" in project["available_models"]
    r = p.call("PATCH", "/adaptive/self/project", json={"allowed_models": ["gpt-4o-mini", "gpt-5-imaginary"]})
    assert r.status_code == 400 and "unknown model 'gpt-5-imaginary'" in r.text
    r = p.call("PATCH", "/adaptive/self/project", json={"plan": "enterprise"})
    assert r.status_code == 422 and "plan" in r.text
    # the operator's own routes check models the same way
    r = gateway.admin("PATCH", f"/adaptive/projects/{p.id}", json={"allowed_models": ["nope"]})
    assert r.status_code == 400 and "unknown model 'nope'" in r.text
    r = gateway.admin("POST", "/adaptive/projects", json={"name": "p-bad-models", "plan": "team", "allowed_models": ["nope"]})
    assert r.status_code == 400
    assert gateway.admin("GET", f"/adaptive/projects/{p.id}", expect=200).json()["allowed_models"] == ["gpt-4o-mini"]

    client = gateway.client(p.chat_key())
    with pytest.raises(Exception) as err:
        chat(client, "a model outside the list", model="gpt-4o", extra_headers=NO_STORE)
    assert "may not use model 'gpt-4o'" in str(err.value)


def test_provider_key_limits_and_order(gateway: Gateway) -> None:
    p = admin_project(gateway)
    _, first = p.add_key("order-first", priority=1)
    _, second = p.add_key("order-second", priority=2)
    updated = p.call("PATCH", f"/adaptive/self/provider-keys/{second['id']}", expect=200, json={
        "spend_cap_usd": "1.50", "spend_cap_period": "month", "rpm_limit": 100}).json()
    assert (updated["spend_cap_usd"], updated["spend_cap_period"], updated["rpm_limit"]) == ("1.50", "month", 100)
    assert updated["spent_usd"] == "0.000000"
    r = p.call("PATCH", f"/adaptive/self/provider-keys/{second['id']}", json={"spend_cap_period": None})
    assert r.status_code == 400 and "go together" in r.text
    order = p.call("POST", "/adaptive/self/provider-keys/reorder", expect=200, json={
        "environment": "production", "provider": "openai", "key_ids": [second["id"], first["id"]]}).json()
    assert [k["id"] for k in order] == [second["id"], first["id"]]
    gateway_sync()
    mark = gateway.mark()
    chat(gateway.client(p.chat_key()), "which key first", extra_headers=NO_STORE)
    assert [c["key_label"] for c in gateway.calls_since(mark)] == ["order-second"]


def test_chat_api_keys_are_created_listed_and_revoked(gateway: Gateway) -> None:
    p = admin_project(gateway)
    key = p.chat_key("staging")
    [listed] = p.call("GET", "/adaptive/self/api-keys", params={"environment": "staging"}, expect=200).json()
    assert key.startswith(listed["prefix"]) and key not in str(listed)
    assert p.call("GET", "/adaptive/self/api-keys", params={"environment": "dev"}, expect=200).json() == []
    p.call("POST", f"/adaptive/self/api-keys/{listed['id']}/revoke", expect=200)
    with pytest.raises(Exception) as err:
        chat(gateway.client(key), "revoked key", extra_headers=NO_STORE)
    assert "revoked" in str(err.value)


def test_request_log_pages_by_cursor_and_filters(gateway: Gateway) -> None:
    p = admin_project(gateway)
    p.add_key("log-own")
    client = gateway.client(p.chat_key())
    for i in range(5):
        chat(client, f"log page question number {i}", extra_headers=NO_STORE)
    everything = p.log(wait_for=5)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = p.call("GET", "/adaptive/self/requests", params=params, expect=200).json()
        seen += [r["request_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["request_id"] for r in everything] and len(seen) == 5
    assert len(p.log(key_source="byok", provider="openai", environment="production")) == 5
    assert p.log(key_source="pooled") == [] and p.log(environment="dev") == [] and p.log(cache="hit-exact") == []
    day = everything[0]["ts"][:10]
    assert len(p.log(since=day, until=day)) == 5 and p.log(until="2001-01-01") == []
    for params, word in (({"since": "yesterday"}, "since"), ({"until": "2026-13-45"}, "until"),
                         ({"since": "2026-01-01T00:00:00"}, "timezone"), ({"cursor": "bogus"}, "cursor"),
                         ({"key_source": "mine"}, "key_source"), ({"limit": -1}, "limit")):
        r = p.call("GET", "/adaptive/self/requests", params=params)
        assert r.status_code in (400, 422) and word in r.text, (params, r.text)
    r = p.call("GET", "/adaptive/self/usage", params={"group_by": "project_id"})
    assert r.status_code == 400 and "cannot group by 'project_id'" in r.text


# -- who may do what --------------------------------------------------------------------------


def _routes(gateway: Gateway) -> list[tuple[str, str]]:
    spec = httpx.get(f"{gateway.base_url}/openapi.json", timeout=30).json()
    return [(method.upper(), path) for path, item in spec["paths"].items() if path.startswith("/adaptive/")
            for method in item if method in ("get", "post", "patch", "put", "delete")]


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_roles_are_enforced_on_every_adaptive_route(gateway: Gateway) -> None:
    a, b = admin_project(gateway), admin_project(gateway)
    _, key_b = b.add_key("other-project-key")
    chat_b = b.chat_key()
    api_key_b = b.call("GET", "/adaptive/self/api-keys", expect=200).json()[0]["id"]
    values = {"project_id": b.id, "key_id": key_b["id"]}
    routes = _routes(gateway)
    assert ("GET", "/adaptive/self/usage") in routes and ("POST", "/adaptive/projects/{project_id}/admin-keys") in routes
    body = {"environment": "production", "provider": "openai", "api_key": "sk-should-never-be-stored-123",
            "key_ids": [key_b["id"]], "fallback": "pooled", "messages": [{"role": "user", "content": "x"}]}
    for method, path in routes:
        url = _fill(path, values)
        if path.startswith("/adaptive/self/"):
            # A's admin naming B, B's chat key, no credential: never allowed
            for key, params, allowed in ((a.admin_key, {"project_id": b.id}, (403,)), (chat_b, {}, (403,)),
                                         ("", {}, (401,))):
                r = a.call(method, url, key=key, params={**params, "environment": "production"}, json=body)
                assert r.status_code in allowed, (method, path, key[:4], r.status_code, r.text)
        elif path != "/adaptive/select-model":
            # the operator's routes: an admin key is not the master key
            r = a.call(method, url, params={"environment": "production"}, json=body)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
    # nothing of B changed: its key is active, its chat key works, no key was added anywhere
    assert b.call("GET", "/adaptive/self/provider-keys", expect=200).json()[0]["status"] == "active"
    assert [k["revoked_at"] for k in b.call("GET", "/adaptive/self/api-keys", expect=200).json()] == [None]
    assert a.call("GET", "/adaptive/self/provider-keys", expect=200).json() == []
    assert api_key_b


def test_a_project_admin_sees_and_changes_nothing_of_another_project(gateway: Gateway) -> None:
    a, b = admin_project(gateway), admin_project(gateway)
    _, key_a = a.add_key("isolated-a")
    chat(gateway.client(a.chat_key()), "a's private request", extra_headers=NO_STORE)
    a.log(wait_for=1)
    api_key_a = a.call("GET", "/adaptive/self/api-keys", expect=200).json()[0]["id"]
    for path in ("/adaptive/self/provider-keys", "/adaptive/self/api-keys"):
        assert b.call("GET", path, expect=200).json() == []
    assert b.call("GET", "/adaptive/self/requests", expect=200).json()["items"] == []
    usage = b.call("GET", "/adaptive/self/usage", params={"group_by": "key_fingerprint"}, expect=200).json()
    assert usage["rows"] == [] and usage["total"]["requests"] == 0
    assert b.call("GET", "/adaptive/self/project", expect=200).json()["id"] == b.id
    for method, path, body in (("POST", f"/adaptive/self/provider-keys/{key_a['id']}/revoke", None),
                               ("POST", f"/adaptive/self/provider-keys/{key_a['id']}/rotate", {"api_key": "sk-replace-123456"}),
                               ("PATCH", f"/adaptive/self/provider-keys/{key_a['id']}", {"priority": 1}),
                               ("POST", f"/adaptive/self/api-keys/{api_key_a}/revoke", None)):
        r = b.call(method, path, json=body)
        assert r.status_code == 404, (path, r.text)
    assert a.call("GET", "/adaptive/self/provider-keys", expect=200).json()[0]["status"] == "active"
    assert a.call("GET", "/adaptive/self/api-keys", expect=200).json()[0]["revoked_at"] is None


def test_admin_keys_call_no_model_and_no_litellm_route(gateway: Gateway) -> None:
    p = admin_project(gateway)
    for method, path in (("POST", "/v1/chat/completions"), ("POST", "/chat/completions"), ("GET", "/v1/models"),
                         ("POST", "/v1/embeddings"), ("POST", "/key/generate"), ("GET", "/key/list"),
                         ("GET", "/model/info"), ("GET", "/user/info"), ("POST", "/adaptive/select-model")):
        r = p.call(method, path, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 401, (method, path, r.status_code, r.text)


def test_operator_issues_and_revokes_admin_keys(gateway: Gateway) -> None:
    p = admin_project(gateway)
    keys = gateway.admin("GET", f"/adaptive/projects/{p.id}/admin-keys", expect=200).json()
    assert len(keys) == 1 and p.admin_key not in str(keys) and keys[0]["last_used_at"] is None
    p.call("GET", "/adaptive/self/project", expect=200)
    assert gateway.admin("GET", f"/adaptive/projects/{p.id}/admin-keys", expect=200).json()[0]["last_used_at"]
    gateway.admin("POST", f"/adaptive/projects/{p.id}/admin-keys/{keys[0]['id']}/revoke", expect=200)
    r = p.call("GET", "/adaptive/self/project")
    assert r.status_code == 401 and "revoked" in r.text
    # the master key acts on the project it names
    r = gateway.admin("GET", "/adaptive/self/project")
    assert r.status_code == 400 and "project_id" in r.text
    assert gateway.admin("GET", "/adaptive/self/project", params={"project_id": p.id}, expect=200).json()["name"] == p.name


def test_self_service_api_is_in_the_openapi_document(gateway: Gateway) -> None:
    spec = httpx.get(f"{gateway.base_url}/openapi.json", timeout=30).json()
    documented = {path for path in spec["paths"] if path.startswith("/adaptive/self/")}
    assert documented == {"/adaptive/self/project", "/adaptive/self/provider-keys", "/adaptive/self/provider-keys/reorder",
                          "/adaptive/self/provider-keys/{key_id}", "/adaptive/self/provider-keys/{key_id}/rotate",
                          "/adaptive/self/provider-keys/{key_id}/revoke", "/adaptive/self/api-keys",
                          "/adaptive/self/api-keys/{key_id}/revoke", "/adaptive/self/requests", "/adaptive/self/usage"}
    for path in documented:
        for op in spec["paths"][path].values():
            assert op.get("summary") and "self-service" in op.get("tags", [])
    assert not any(path.startswith("/adaptive/ui") for path in spec["paths"])

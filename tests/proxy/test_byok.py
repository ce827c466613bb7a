"""Bring Your Own Keys end to end: own key first, fallback on failure, policies, isolation (issue 3)."""

from __future__ import annotations

import time

import openai
import pytest

from tests.proxy.gateway import FAKE_KEYS, Gateway, byok_key, chat

NO_STORE = {"Cache-Control": "no-store, no-cache"}


def test_team_project_request_runs_on_its_own_key(gateway: Gateway) -> None:
    mine = byok_key("own-ok")
    project = gateway.project(keys=[("openai", mine, 1)])
    mark = gateway.mark()
    _, headers = chat(gateway.client(project.api_key), "own key please", extra_headers=NO_STORE)
    assert [c["key_label"] for c in gateway.calls_since(mark)] == ["own-ok"]
    assert headers["x-adaptive-key-source"] == "byok"
    assert headers["x-adaptive-key-fingerprint"] == project.keys[0]["fingerprint"]
    assert mine not in str(headers)


@pytest.mark.parametrize("behaviour,reason", [("429", "rate_limited"), ("401", "invalid"), ("insufficient_quota", "quota")])
def test_failing_own_key_falls_back_to_next_own_key_then_pooled(gateway: Gateway, behaviour: str, reason: str) -> None:
    bad = byok_key(f"bad-{behaviour}", behaviour, retry_after=30)
    good = byok_key(f"good-after-{behaviour}")
    project = gateway.project(keys=[("openai", bad, 1), ("openai", good, 2)])
    client = gateway.client(project.api_key)

    mark = gateway.mark()
    completion, headers = chat(client, f"fallback {behaviour}", extra_headers=NO_STORE)
    assert completion.choices[0].message.content
    assert [c["key_label"] for c in gateway.calls_since(mark)] == [f"bad-{behaviour}", f"good-after-{behaviour}"]
    assert headers["x-adaptive-key-source"] == "byok"
    assert headers["x-adaptive-fallbacks"] == f"{project.keys[0]['fingerprint']}:{reason}"

    # the failing key now sits out (cooldown or invalid): the next request goes straight to the good one
    mark = gateway.mark()
    chat(client, f"second {behaviour}", extra_headers=NO_STORE)
    assert [c["key_label"] for c in gateway.calls_since(mark)] == [f"good-after-{behaviour}"]

    # both own keys failing: the pooled key answers within the same client request
    worse = byok_key(f"worse-{behaviour}", behaviour, retry_after=30)
    project2 = gateway.project(keys=[("openai", worse, 1)])
    mark = gateway.mark()
    _, headers = chat(gateway.client(project2.api_key), f"pooled after {behaviour}", extra_headers=NO_STORE)
    assert [c["key_label"] for c in gateway.calls_since(mark)] == [f"worse-{behaviour}", "pooled-openai"]
    assert headers["x-adaptive-key-source"] == "pooled"


def test_invalid_key_is_marked_for_the_operator(gateway: Gateway) -> None:
    bad = byok_key("revoked-upstream", "401")
    project = gateway.project(keys=[("openai", bad, 1)])
    chat(gateway.client(project.api_key), "mark me", extra_headers=NO_STORE)
    views = gateway.admin("GET", f"/adaptive/projects/{project.id}/provider-keys", expect=200).json()
    assert views[0]["status"] == "invalid" and "401" in views[0]["status_reason"]


def test_byok_only_project_gets_a_clear_error_instead_of_pooled(gateway: Gateway) -> None:
    bad = byok_key("byok-only-429", "429", retry_after=30)
    project = gateway.project(fallback="byok_only", keys=[("openai", bad, 1)])
    mark = gateway.mark()
    with pytest.raises(openai.APIStatusError) as err:
        chat(gateway.client(project.api_key), "no pooled for me", extra_headers=NO_STORE)
    assert 400 <= err.value.status_code < 500
    assert "byok_only" in str(err.value)
    assert "pooled-openai" not in [c["key_label"] for c in gateway.calls_since(mark)]


def test_developer_plan_cannot_add_provider_keys(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    r = gateway.admin("POST", f"/adaptive/projects/{project.id}/provider-keys", json={
        "environment": "production", "provider": "openai", "api_key": byok_key("dev-plan")})
    assert r.status_code == 403
    assert "team or enterprise plan" in r.text


def test_another_projects_key_is_never_used(gateway: Gateway) -> None:
    theirs = byok_key("other-project-key")
    gateway.project(keys=[("openai", theirs, 1)])
    mine = gateway.project(keys=[])
    mark = gateway.mark()
    for i in range(3):
        chat(gateway.client(mine.api_key), f"isolation {i}", extra_headers=NO_STORE)
    labels = [c["key_label"] for c in gateway.calls_since(mark)]
    assert labels == ["pooled-openai"] * 3


def test_key_is_never_sent_to_another_provider(gateway: Gateway) -> None:
    openai_key = byok_key("openai-only")
    project = gateway.project(keys=[("openai", openai_key, 1)])
    mark = gateway.mark()
    chat(gateway.client(project.api_key), "anthropic please", model="claude-haiku-4-5", extra_headers=NO_STORE)
    calls = gateway.calls_since(mark)
    assert [(c["provider"], c["key_label"]) for c in calls] == [("anthropic", "pooled-anthropic")]


def test_revoked_provider_key_stops_being_used(gateway: Gateway) -> None:
    first = byok_key("to-revoke")
    second = byok_key("stays")
    project = gateway.project(keys=[("openai", first, 1), ("openai", second, 2)])
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    chat(client, "before revoke", extra_headers=NO_STORE)
    gateway.admin("POST", f"/adaptive/projects/{project.id}/provider-keys/{project.keys[0]['id']}/revoke", expect=200)
    chat(client, "after revoke", extra_headers=NO_STORE)  # at once: no sync interval to wait for
    assert [c["key_label"] for c in gateway.calls_since(mark)] == ["to-revoke", "stays"]


def test_provider_key_views_never_contain_the_key(gateway: Gateway) -> None:
    secret = byok_key("view-check")
    project = gateway.project(keys=[("openai", secret, 1)])
    listing = gateway.admin("GET", f"/adaptive/projects/{project.id}/provider-keys", expect=200).text
    assert secret not in listing
    assert secret[-4:] in listing  # the last four characters are shown


def test_admin_api_needs_the_master_key_and_validates_input(gateway: Gateway) -> None:
    import httpx

    r = httpx.get(f"{gateway.base_url}/adaptive/projects", headers={"Authorization": "Bearer wrong-master-key"})
    assert r.status_code == 401 and "master key" in r.text
    r = gateway.admin("POST", "/adaptive/projects", json={"name": "x", "plan": "platinum"})
    assert r.status_code == 422 and "plan" in r.text
    project = gateway.project(plan="team")
    r = gateway.admin("POST", f"/adaptive/projects/{project.id}/provider-keys", json={"environment": "moon", "provider": "openai", "api_key": "sk-abcdefgh"})
    assert r.status_code == 422 and "environment" in r.text


@pytest.mark.parametrize("model,provider", [("gpt-4o-mini", "openai"), ("claude-haiku-4-5", "anthropic")])
def test_streamed_request_falls_back_to_the_next_key(gateway: Gateway, model: str, provider: str) -> None:
    bad = byok_key(f"stream-429-{provider}", "429", provider=provider, retry_after=30)
    good = byok_key(f"stream-ok-{provider}", provider=provider)
    project = gateway.project(keys=[(provider, bad, 1), (provider, good, 2)])
    mark = gateway.mark()
    stream = gateway.client(project.api_key).chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": f"stream fallback {provider}"}],
        extra_headers=NO_STORE)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert f"stream fallback {provider}" in text
    assert [c["key_label"] for c in gateway.calls_since(mark)] == [f"stream-429-{provider}", f"stream-ok-{provider}"]


def test_key_over_its_rate_limit_or_spending_cap_is_skipped(gateway: Gateway) -> None:
    """A key's rpm and cap are counted cluster-wide when an attempt is admitted (adaptive_plugin.limits):
    a key without room for the attempt's worst case is skipped for the next one, as a failing key is."""
    project = gateway.project(keys=[])
    # gpt-4o-mini, max_tokens 64: an attempt may cost the key about 41 micro-dollars (its input and 64
    # output tokens); one with 5 + 60 tokens costs 37, so a 60 micro-dollar cap has room for one, not two
    for label, priority, extra in (("rpm-limited", 1, {"rpm_limit": 1}),
                                   ("spend-capped", 2, {"spend_cap_usd": "0.00006", "spend_cap_period": "day"}),
                                   ("cap-backup", 3, {})):
        gateway.admin("POST", f"/adaptive/projects/{project.id}/provider-keys", expect=201, json={
            "environment": "production", "provider": "openai", "api_key": byok_key(label), "priority": priority, **extra})
    gateway.fake.set_keys(FAKE_KEYS)
    views = gateway.admin("GET", f"/adaptive/projects/{project.id}/provider-keys", expect=200).json()
    fingerprints = {v["priority"]: v["fingerprint"] for v in views}
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    chat(client, "first #tokens=5,60", max_tokens=64, extra_headers=NO_STORE)  # the rpm-limited key (1/min) answers
    _, second = chat(client, "second #tokens=5,60", max_tokens=64, extra_headers=NO_STORE)  # over its rpm: the capped key
    _, third = chat(client, "third #tokens=5,60", max_tokens=64, extra_headers=NO_STORE)  # over rpm, no room in the cap
    labels = [c["key_label"] for c in gateway.calls_since(mark)]
    assert labels == ["rpm-limited", "spend-capped", "cap-backup"]
    assert second["x-adaptive-fallbacks"] == f"{fingerprints[1]}:rpm_limit"
    assert third["x-adaptive-fallbacks"] == f"{fingerprints[1]}:rpm_limit,{fingerprints[2]}:spend_cap"

"""Spending caps and rate limits hold exactly across workers and replicas (issue 18, item 3).

A tenant firing many concurrent requests against a cap worth a few requests never gets recorded
spend over the cap, whatever worker or replica serves each request; rpm limits count
cluster-wide; every refusal is a 429 with `Retry-After` and a code the client can act on; a
provider's own 429 that leaves no key passes its retry-after on.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.proxy.gateway import Gateway, Project, byok_key, chat

NO_CACHE = {"Cache-Control": "no-store, no-cache"}
CAP_USD = "0.0002"  # 200 micro-dollars: a pooled gpt-4o-mini request below costs about 40, reserves about 60
BURST = 50


@dataclass
class Outcome:
    status: int
    retry_after: str | None = None
    code: str | None = None
    message: str = ""


def ask(gw: Gateway, project: Project, i: int, **kw: Any) -> Outcome:
    """One chat request through the official SDK (no retries): its status and, if refused, why."""
    try:
        chat(gw.client(project.api_key), f"Please tell me something interesting about the number {i}, briefly.",
             max_tokens=64, extra_headers=NO_CACHE, **kw)
        return Outcome(200)
    except openai.APIStatusError as exc:
        error = exc.response.json().get("error", {})
        code = exc.response.headers.get("x-adaptive-error-code")
        assert code == (error.get("provider_specific_fields") or {}).get("code"), "the header and the body agree"
        return Outcome(exc.status_code, exc.response.headers.get("retry-after"), code, str(error.get("message")))


def burst(gateways: list[Gateway], project: Project, n: int = BURST) -> list[Outcome]:
    """`n` requests at once, spread over the gateways in turn."""
    with ThreadPoolExecutor(max_workers=25) as pool:
        return list(pool.map(lambda i: ask(gateways[i % len(gateways)], project, i), range(n)))


def set_limits(gw: Gateway, project: Project, **body: Any) -> dict[str, Any]:
    return gw.admin("PUT", f"/adaptive/projects/{project.id}/limits", json=body, expect=200).json()  # type: ignore[no-any-return]


def ledger_spend(gw: Gateway, project: Project, successes: int) -> int:
    """The gateway's bill of the project in micro-dollars (fee + pooled model cost), once every
    success has its row."""
    rows = gw.ledger_rows(project.id, wait_for=successes)
    ok = [r for r in rows if r["outcome"] == "success"]
    assert len(ok) == successes
    return sum(r["overhead_fee_micros"] + r["model_cost_micros"] for r in ok)


def counters(gw: Gateway, project: Project) -> dict[str, Any]:
    [scope] = gw.admin("GET", f"/adaptive/projects/{project.id}/limits", expect=200).json()["limits"]
    return scope["usage"]  # type: ignore[no-any-return]


def assert_cap_held(outcomes: list[Outcome]) -> int:
    """Every request either succeeded or got 429 spend_cap_reached with Retry-After; returns the successes."""
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] >= 1, "a cap worth a few requests admits some"
    assert statuses[429] >= BURST - 10, statuses
    for o in outcomes:
        if o.status == 429:
            assert o.code == "spend_cap_reached", o
            assert o.retry_after is not None and int(o.retry_after) >= 1, o
            assert "spending cap" in o.message
    return statuses[200]


def assert_spend_within_cap(gw: Gateway, project: Project, successes: int) -> None:
    spent = ledger_spend(gw, project, successes)
    cap = int(Decimal(CAP_USD) * 1_000_000)
    assert 0 < spent <= cap, f"ledger spend {spent} micro-dollars against a cap of {cap}"
    usage = counters(gw, project)
    # the counter settled to exactly what the ledger recorded, and nothing stays reserved
    assert Decimal(usage["spent_usd"]) * 1_000_000 == spent
    assert Decimal(usage["reserved_usd"]) == 0


# -- one proxy, two workers, SQLite --------------------------------------------------------


@pytest.fixture()
def two_workers(workers_gateway: Gateway) -> Gateway:
    """The session's proxy with two workers on SQLite (tests/proxy/fixtures.py)."""
    return workers_gateway


def test_concurrent_requests_never_push_spend_over_the_cap_on_two_workers(two_workers: Gateway) -> None:
    project = two_workers.project(plan="developer")
    set_limits(two_workers, project, spend_cap_usd=CAP_USD, spend_cap_period="day")
    outcomes = burst([two_workers], project)
    successes = assert_cap_held(outcomes)
    assert_spend_within_cap(two_workers, project, successes)


def test_rpm_limit_admits_exactly_its_count_across_workers(two_workers: Gateway) -> None:
    project = two_workers.project(plan="developer")
    set_limits(two_workers, project, rpm_limit=5)
    outcomes = burst([two_workers], project, n=30)
    assert sum(o.status == 200 for o in outcomes) == 5
    refused = [o for o in outcomes if o.status != 200]
    assert len(refused) == 25
    for o in refused:
        assert (o.status, o.code) == (429, "rate_limited"), o
        assert o.retry_after is not None and 1 <= int(o.retry_after) <= 60


# -- two proxies sharing PostgreSQL, without and with Redis ----------------------------------------


# the session's pairs (tests/proxy/fixtures.py): `pg_replicas` share PostgreSQL alone,
# `redis_replicas` PostgreSQL and the Redis counters


@pytest.mark.postgres
@pytest.mark.parametrize("shared", ["pg_replicas", "redis_replicas"], ids=["postgresql", "redis"])
def test_cap_holds_on_two_proxies_sharing_counters(shared: str, request: pytest.FixtureRequest) -> None:
    replicas: list[Gateway] = request.getfixturevalue(shared)
    project = replicas[0].project(plan="developer")
    set_limits(replicas[1], project, spend_cap_usd=CAP_USD, spend_cap_period="day")
    outcomes = burst(replicas, project)
    successes = assert_cap_held(outcomes)
    assert_spend_within_cap(replicas[0], project, successes)


@pytest.mark.postgres
def test_rpm_limit_counts_across_proxies_sharing_redis(redis_replicas: list[Gateway]) -> None:
    project = redis_replicas[0].project(plan="developer")
    set_limits(redis_replicas[0], project, rpm_limit=5)
    outcomes = burst(redis_replicas, project, n=30)
    assert sum(o.status == 200 for o in outcomes) == 5
    assert all((o.status, o.code) == (429, "rate_limited") and o.retry_after for o in outcomes if o.status != 200)


# -- the session gateway (one worker, SQLite) ---------------------------------------------------


def test_provider_429_on_every_key_passes_its_retry_after_on(gateway: Gateway) -> None:
    project = gateway.project(fallback="byok_only", keys=[("openai", byok_key("caps-429-a", "429", retry_after=30), 1),
                                                         ("openai", byok_key("caps-429-b", "429", retry_after=30), 2)])
    outcome = ask(gateway, project, 1)
    assert (outcome.status, outcome.retry_after, outcome.code) == (429, "30", "rate_limited"), outcome
    assert "byok_only" in outcome.message
    # the keys now cool down: the next request is refused at once, with the time still to wait
    outcome = ask(gateway, project, 2)
    assert outcome.status == 429 and outcome.code == "rate_limited"
    assert outcome.retry_after is not None and 25 <= int(outcome.retry_after) <= 30


def test_environment_cap_refuses_while_another_environment_is_served(gateway: Gateway) -> None:
    production = gateway.project(plan="developer")
    set_limits(gateway, production, environment="production", spend_cap_usd="0.000001", spend_cap_period="month")
    outcome = ask(gateway, production, 1)
    assert (outcome.status, outcome.code) == (429, "spend_cap_reached")
    assert "environment 'production'" in outcome.message and "monthly" in outcome.message
    key = gateway.admin("POST", f"/adaptive/projects/{production.id}/api-keys", params={"environment": "dev"},
                        expect=201).json()["api_key"]
    assert ask(gateway, Project(id=production.id, name=production.name, api_key=key), 2).status == 200


def test_cache_hit_counts_its_discounted_fee_and_holds_nothing(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    set_limits(gateway, project, spend_cap_usd="1", spend_cap_period="day")
    client = gateway.client(project.api_key)
    question = "What is the boiling point of water at sea level in Celsius?"
    chat(client, question, max_tokens=64)
    time.sleep(1.0)  # the answer is stored in the cache after the response
    _, headers = chat(client, question, max_tokens=64)
    assert headers["x-adaptive-cache"].startswith("hit")
    rows = gateway.ledger_rows(project.id, wait_for=2)
    spent = sum(r["overhead_fee_micros"] + r["model_cost_micros"] for r in rows)
    assert [r["cache"] for r in rows].count("miss") == 1
    usage = counters(gateway, project)
    assert Decimal(usage["spent_usd"]) * 1_000_000 == spent
    assert Decimal(usage["reserved_usd"]) == 0


def test_abandoned_stream_leaves_no_reservation(gateway: Gateway) -> None:
    """A client that leaves a slow stream mid-way: the reservation is settled to what was
    streamed (LiteLLM bills the chunks sent) or released; nothing stays held."""
    project = gateway.project(keys=[("openai", byok_key("caps-slow-stream", chunk_delay_s=0.25), 1)])
    set_limits(gateway, project, spend_cap_usd="1", spend_cap_period="day")
    mark = gateway.mark()
    stream = gateway.client(project.api_key).chat.completions.create(
        model="gpt-4o-mini", stream=True, max_tokens=64, extra_headers=NO_CACHE,
        messages=[{"role": "user", "content": "Tell me a long story about a lighthouse keeper and the sea, "
                                              "the storms of the winter and the ships he saved, in detail."}])
    chunks = iter(stream)
    next(chunks)
    next(chunks)
    stream.close()  # about 30 chunks, 0.25 s apart: most are never read
    deadline = time.monotonic() + 20
    usage = counters(gateway, project)
    while time.monotonic() < deadline and Decimal(usage["reserved_usd"] or 1) != 0:
        time.sleep(0.25)
        usage = counters(gateway, project)
    assert Decimal(usage["reserved_usd"]) == 0, usage
    # one call with the slow key (the fake provider is shared: other proxies' calls may interleave)
    assert [c["key_label"] for c in gateway.calls_since(mark)].count("caps-slow-stream") == 1
    assert time.monotonic() < deadline


def test_limits_are_validated_and_need_the_master_key(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    r = gateway.admin("PUT", f"/adaptive/projects/{project.id}/limits", json={"spend_cap_usd": "5"})
    assert r.status_code == 422 and "go together" in r.text
    r = gateway.admin("PUT", f"/adaptive/projects/{project.id}/limits", json={"rpm_limit": -1})
    assert r.status_code == 422
    r = gateway.admin("PUT", "/adaptive/projects/prj_nope/limits", json={"rpm_limit": 5})
    assert r.status_code == 404
    r = httpx.get(f"{gateway.base_url}/adaptive/projects/{project.id}/limits",
                  headers={"Authorization": f"Bearer {project.api_key}"})
    assert r.status_code in (401, 403)

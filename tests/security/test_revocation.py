"""Attack class: using a key after its revocation (a leaked provider key, a fired customer's API key).

When a revoke call returns, no worker or replica starts another provider call with that key: the
very next requests, sent at once through every worker (two workers on SQLite) or every replica
(two proxies sharing PostgreSQL, with and without Redis), are served by the project's next key,
and a revoked project API key gets 401. The same for a provider key deleted, a key that answers
401 (marked invalid by one worker), a reactivated key (back at once) and a plan or fallback
change. Every process has served the project before, so each has it cached. The fake provider
records which key served each call.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.proxy.gateway import FAKE_KEYS, Gateway, Project, byok_key

BURST = 24  # concurrent requests, each on a connection of its own: every worker gets some
NO_STORE = {"Cache-Control": "no-store"}


def _one(client: openai.OpenAI, text: str) -> str:
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}], extra_headers=NO_STORE)
        return raw.headers.get("x-adaptive-key-fingerprint") or raw.headers["x-adaptive-key-source"]
    except openai.APIStatusError as exc:
        return f"error {exc.status_code}"


class Burst:
    """`n` clients of one project, each on a connection of its own spread over the gateways (and
    so over their workers), kept open: after a change, all of them fire at once, within
    milliseconds of the change's call returning, on processes that have served the project."""

    def __init__(self, gateways: list[Gateway], project: Project, n: int = BURST) -> None:
        self.fake = gateways[0].fake
        self.clients = [openai.OpenAI(base_url=f"{gateways[i % len(gateways)].base_url}/v1", api_key=project.api_key,
                                      max_retries=0) for i in range(n)]
        self.pool = ThreadPoolExecutor(max_workers=n)

    def fire(self, tag: str) -> tuple[list[str], list[str]]:
        """Every client at once: (their outcomes, the keys the provider saw)."""
        mark = len(self.fake.calls())
        start = threading.Barrier(len(self.clients))

        def run(i: int) -> str:
            start.wait()
            return _one(self.clients[i], f"{tag} {i}")

        outcomes = list(self.pool.map(run, range(len(self.clients))))
        return outcomes, [c["key_label"] for c in self.fake.calls()[mark:]]

    def close(self) -> None:
        self.pool.shutdown()
        for client in self.clients:
            client.close()


@contextlib.contextmanager
def burst(gateways: list[Gateway], project: Project, n: int = BURST) -> Iterator[Burst]:
    b = Burst(gateways, project, n)
    try:
        yield b
    finally:
        b.close()


def revoke(gw: Gateway, project: Project, key: dict, action: str = "revoke") -> None:
    if action == "delete":
        gw.admin("DELETE", f"/adaptive/projects/{project.id}/provider-keys/{key['id']}", expect=204)
    else:
        gw.admin("POST", f"/adaptive/projects/{project.id}/provider-keys/{key['id']}/{action}", expect=200)


def two_keys(gw: Gateway, tag: str) -> tuple[Project, str, str]:
    tag = f"{tag}-{secrets.token_hex(3)}"  # the fake provider's labels are shared by every test
    first, second = f"{tag}-first", f"{tag}-second"
    project = gw.project(keys=[("openai", byok_key(first), 1), ("openai", byok_key(second), 2)])
    return project, first, second


def check_provider_key_revocation(gateways: list[Gateway], admin: Gateway, tag: str) -> None:
    for action in ("revoke", "delete"):
        project, first, second = two_keys(admin, f"{tag}-{action}")
        with burst(gateways, project) as b:
            assert set(b.fire("warm")[1]) == {first}  # every process has the chain cached with the first key
            revoke(admin, project, project.keys[0], action)
            outcomes, seen = b.fire(f"after {action}")
        assert first not in seen, f"{action}: {seen.count(first)} of {len(seen)} calls used the revoked key"
        assert set(seen) == {second} and len(seen) == BURST, outcomes


def check_reactivation(gateways: list[Gateway], admin: Gateway, tag: str) -> None:
    project, first, second = two_keys(admin, f"{tag}-activate")
    with burst(gateways, project) as b:
        b.fire("warm")
        revoke(admin, project, project.keys[0])
        assert set(b.fire("revoked")[1]) == {second}
        revoke(admin, project, project.keys[0], "activate")
        assert set(b.fire("active again")[1]) == {first}


def check_invalid_key(gateways: list[Gateway], admin: Gateway, tag: str) -> None:
    """A key that starts answering 401: the first process to meet it marks it invalid for all."""
    project, first, second = two_keys(admin, f"{tag}-invalid")
    with burst(gateways, project) as b, burst(gateways[:1], project, n=1) as single:
        b.fire("warm")
        secret = next(s for s, spec in FAKE_KEYS.items() if spec.get("label") == first)
        FAKE_KEYS[secret] = {**FAKE_KEYS[secret], "behaviour": "401"}
        admin.fake.set_keys(FAKE_KEYS)
        outcomes, seen = single.fire("meets the 401")
        assert outcomes == [project.keys[1]["fingerprint"]] and seen == [first, second]
        outcomes, seen = b.fire("after invalid")
    assert set(seen) == {second}, f"{seen.count(first)} calls still tried the invalid key"


def check_plan_and_policy(gateways: list[Gateway], admin: Gateway, tag: str) -> None:
    project, first, _ = two_keys(admin, f"{tag}-plan")
    with burst(gateways, project) as b:
        b.fire("warm")
        admin.admin("PATCH", f"/adaptive/projects/{project.id}", json={"plan": "developer"}, expect=200)
        outcomes, seen = b.fire("developer now")  # no own keys on that plan
    assert set(seen) == {"pooled-openai"} and set(outcomes) == {"pooled"}, outcomes

    project, first, second = two_keys(admin, f"{tag}-policy")
    with burst(gateways, project) as b:
        b.fire("warm")
        revoke(admin, project, project.keys[0])
        b.fire("second key, pooled allowed")
        admin.admin("PATCH", f"/adaptive/projects/{project.id}", json={"fallback": "byok_only"}, expect=200)
        revoke(admin, project, project.keys[1])
        outcomes, seen = b.fire("no pooled for byok_only")
    assert seen == [] and all(o.startswith("error 4") for o in outcomes), outcomes


def check_api_key_revocation(gateways: list[Gateway], admin: Gateway) -> None:
    project = admin.project(plan="developer")
    with burst(gateways, project) as b:
        b.fire("warm")  # every process has the principal cached
        keys = admin.admin("GET", f"/adaptive/projects/{project.id}/api-keys", expect=200).json()
        admin.admin("POST", f"/adaptive/projects/{project.id}/api-keys/{keys[0]['id']}/revoke", expect=200)
        outcomes, seen = b.fire("revoked api key")
    assert seen == [] and set(outcomes) == {"error 401"}, outcomes


CHECKS = [check_provider_key_revocation, check_reactivation, check_invalid_key, check_plan_and_policy]


# -- two workers on SQLite ---------------------------------------------------------------------


@pytest.fixture()
def two_workers(workers_gateway: Gateway) -> Gateway:
    """The session's proxy with two workers on SQLite (tests/proxy/fixtures.py)."""
    return workers_gateway


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_two_workers(two_workers: Gateway, check) -> None:  # type: ignore[no-untyped-def]
    check([two_workers], two_workers, "workers")


def test_two_workers_api_key(two_workers: Gateway) -> None:
    check_api_key_revocation([two_workers], two_workers)


# -- two replicas on PostgreSQL, with and without Redis ----------------------------------------


@pytest.fixture(params=["postgres", "postgres+redis"])
def replicas(request: pytest.FixtureRequest) -> list[Gateway]:
    """The session's pairs (tests/proxy/fixtures.py): PostgreSQL alone (changes pushed by NOTIFY),
    and PostgreSQL with Redis (pushed by pub/sub)."""
    return request.getfixturevalue("pg_replicas" if request.param == "postgres" else "redis_replicas")


@pytest.mark.postgres
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_two_replicas(replicas: list[Gateway], check) -> None:  # type: ignore[no-untyped-def]
    a, b = replicas
    check([a, b], a, "replicas")


@pytest.mark.postgres
def test_two_replicas_api_key(replicas: list[Gateway]) -> None:
    check_api_key_revocation(replicas, replicas[1])


@pytest.mark.postgres
def test_replicas_learn_of_changes_in_the_background(replicas: list[Gateway]) -> None:
    """The push (NOTIFY or pub/sub) reaches the other replica before its next request needs it."""
    a, b = replicas
    project, first, second = two_keys(a, "background")
    with burst([b], project, n=4) as on_b:
        on_b.fire("warm")
        before = _catch_ups(b)
        revoke(a, project, project.keys[0])
        deadline = time.monotonic() + 5
        while _catch_ups(b)["background"] == before["background"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _catch_ups(b)["background"] > before["background"], "no push reached replica b"
        assert set(on_b.fire("after push")[1]) == {second}
    assert _catch_ups(b)["request"] == before["request"]  # the requests found nothing left to reload


def _catch_ups(gw: Gateway) -> dict[str, float]:
    out = {"request": 0.0, "background": 0.0}
    for line in gw.metrics().splitlines():
        if line.startswith("adaptive_changes_catch_ups_total{"):
            where = line.split('where="', 1)[1].split('"', 1)[0]
            out[where] = float(line.rsplit(" ", 1)[1])
    return out


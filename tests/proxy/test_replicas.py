"""Two proxy replicas on one PostgreSQL database and Redis (issue 7's multi-replica promise),
and one proxy with two workers whose /metrics add up to the ledger (issue 6)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import Gateway, byok_key, chat, settle

pytestmark = pytest.mark.postgres


@pytest.fixture()
def replicas(redis_replicas: list[Gateway]) -> tuple[Gateway, Gateway]:
    """The session's two proxies on one PostgreSQL schema and Redis (tests/proxy/fixtures.py)."""
    return redis_replicas[0], redis_replicas[1]


def test_provider_key_added_through_one_replica_is_used_by_the_other(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    project = a.project(keys=[("openai", byok_key("replica-key"), 1)])
    mark = b.mark()
    _, headers = chat(b.client(project.api_key), "served by b", extra_headers={"Cache-Control": "no-store"})
    assert headers["x-adaptive-key-source"] == "byok"
    assert [c["key_label"] for c in b.calls_since(mark)] == ["replica-key"]


def test_cache_entry_stored_by_one_replica_is_a_hit_on_the_other(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    project = a.project(plan="developer")
    chat(a.client(project.api_key), "What is the speed of light in vacuum?")
    settle(2.5)  # the other replica re-reads new entries every sync interval (1 s)
    mark = b.mark()
    _, headers = chat(b.client(project.api_key), "What is the speed of light in vacuum?")
    assert headers["x-adaptive-cache"] in ("hit-exact", "hit-semantic")
    assert b.calls_since(mark) == []


def test_revoked_key_on_one_replica_stops_on_the_other_at_once(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    project = a.project(keys=[("openai", byok_key("revoke-first"), 1), ("openai", byok_key("revoke-second"), 2)])
    client_b = b.client(project.api_key)
    chat(client_b, "warm the key cache", extra_headers={"Cache-Control": "no-store"})
    a.admin("POST", f"/adaptive/projects/{project.id}/provider-keys/{project.keys[0]['id']}/revoke", expect=200)
    mark = b.mark()
    chat(client_b, "after revocation on a", extra_headers={"Cache-Control": "no-store"})
    assert [c["key_label"] for c in b.calls_since(mark)] == ["revoke-second"]


def test_ledger_holds_every_request_of_both_replicas_exactly_once(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    project = a.project(keys=[("openai", byok_key("ledger-both"), 1)])
    ids = []
    for i in range(10):
        gw = a if i % 2 else b
        _, headers = chat(gw.client(project.api_key), f"ledger {i} #tokens=1000,500", extra_headers={"Cache-Control": "no-store"})
        ids.append(headers["x-adaptive-request-id"])
    rows = a.ledger_rows(project.id, wait_for=10)
    assert sorted(r["request_id"] for r in rows) == sorted(ids)
    assert sum(r["overhead_fee_micros"] for r in rows) == 10 * 200


def _metric_sum(text: str, name: str) -> Decimal:
    total = Decimal(0)
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += Decimal(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
def test_two_workers_metrics_add_up_to_the_ledger(fake_provider: FakeProvider, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = gateway_env(fake_provider, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    with ProxyProcess(demo_config(), env=env, log_path=tmp_path / "proxy.log", workers=2) as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=tmp_path, database_url="", env=env)
        project = gw.project(keys=[("openai", byok_key("workers"), 1)])
        n = 0
        # concurrent requests on separate connections, until both workers have answered some
        for _batch in range(6):
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda i: chat(gw.client(project.api_key), f"worker request {i} #tokens={1000 + i},{200 + i}",
                                             extra_headers={"Cache-Control": "no-store"}), range(n, n + 16)))
            n += 16
            if len({f.name.split("_")[-1] for f in metrics_dir.glob("counter_*.db")}) >= 2:
                break
        rows = gw.ledger_rows(project.id, wait_for=n)
        text = gw.metrics()
        gw.close_clients()
    pids = {f.name.split("_")[-1] for f in metrics_dir.glob("counter_*.db")}
    assert len(pids) >= 2, "both workers should have written metrics"
    assert len(rows) == n
    ledger_fee = sum(Decimal(r["overhead_fee_micros"]) for r in rows) / Decimal(1_000_000)
    assert _metric_sum(text, "adaptive_billing_overhead_fee_usd_total").quantize(Decimal("0.000001")) == ledger_fee
    assert _metric_sum(text, "adaptive_requests_total") == n

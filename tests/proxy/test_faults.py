"""Load with faults, small and bounded (issue 8): nothing lost, no wrong key, the ledger adds up.

150 requests at concurrency 10 through the session gateway while every customer key is flaky
(429, 500, connection resets, slow answers). The full-size run is `bench/load_faults.py`; both
use the same scenario and verdict (`bench/_common.py`: `fault_plan`, `check_fault_run`).
"""

from __future__ import annotations

import asyncio
import secrets
import time

from bench._common import FaultProject, check_fault_run, fault_plan, fault_request, run_load
from tests.proxy.gateway import FAKE_KEYS, Gateway

REQUESTS = 150
CONCURRENCY = 10


def _ledger(gateway: Gateway, projects: list[FaultProject], want: int, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = []
        for p in projects:
            rows += gateway.admin("GET", "/adaptive/requests", params={"project_id": p.info["id"], "limit": 1000},
                                  expect=200).json()
        if len(rows) >= want:
            break
        time.sleep(0.3)
    return rows


def test_flaky_keys_under_load_lose_nothing_and_bill_exactly(gateway: Gateway) -> None:
    run_tag = "t" + secrets.token_hex(2)
    projects, fault_keys = fault_plan(run_tag, 4, byok_only_every=4)
    FAKE_KEYS.update(fault_keys)  # known to the fake provider, and to the secret scan
    for p in projects:
        made = gateway.project(fallback=p.fallback, keys=p.keys)
        p.info = {"id": made.id, "api_key": made.api_key, "keys": made.keys}
    assert [p.fallback for p in projects].count("byok_only") == 1

    mark = gateway.mark()
    results, wall = asyncio.run(run_load(f"{gateway.base_url}/v1/chat/completions", fault_request(projects, run_tag),
                                         n=REQUESTS, concurrency=CONCURRENCY, timeout_s=60, deadline_s=60))
    calls = gateway.calls_since(mark)
    ledger = _ledger(gateway, projects, len(results))
    report = check_fault_run(projects, results, calls, ledger, FAKE_KEYS, run_tag)

    assert len(results) == REQUESTS, f"the load was cut short after {wall:.0f} s"
    assert report.lost_or_wrong == []
    assert report.wrong_key_calls == []
    assert report.correct + report.clear_errors == REQUESTS
    assert report.ledger_success_rows == report.correct and report.ledger_missing == []
    assert report.fee_ledger_sum_micros == report.fee_header_sum_micros
    assert report.problems == []
    # the faults really happened, and were survived
    outcomes = report.call_outcomes
    assert outcomes.get("429", 0) + outcomes.get("500", 0) + outcomes.get("reset", 0) > 0
    assert report.correct >= REQUESTS * 0.6

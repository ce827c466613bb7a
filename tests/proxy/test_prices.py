"""Honest prices end to end: a pooled deployment without a price stops the proxy, naming it; one
priced in its model_info is billed at exactly those prices, by LiteLLM and in the ledger (issue 19)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import FAKE_KEYS, POOLED_GROQ, byok_key

# starts proxy processes (or derives models) of its own: `-m "not slow"` leaves it out
pytestmark = pytest.mark.slow

MICRO = Decimal("0.000001")
# a Groq model LiteLLM 1.106.12's cost map does not price
UNPRICED = {"model_name": "kimi-k2", "litellm_params": {
    "model": "groq/moonshotai/kimi-k2-instruct-0905", "api_base": "os.environ/FAKE_GROQ_API_BASE",
    "api_key": "os.environ/POOLED_GROQ_KEY"}}
# the operator's price for it, USD per token (test figures)
PRICES = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000003, "cache_read_input_token_cost": 0.0000005}


def config_with(tmp_path: Path, deployment: dict[str, Any]) -> Path:
    config = yaml.safe_load(demo_config().read_text())
    config["model_list"].append(deployment)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_pooled_deployment_without_a_price_stops_the_proxy(fake_provider: FakeProvider, tmp_path: Path) -> None:
    proxy = ProxyProcess(config_with(tmp_path, UNPRICED), env=gateway_env(fake_provider, tmp_path),
                         log_path=tmp_path / "proxy.log")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with code") as err:
        proxy.start(timeout=90)
    assert time.monotonic() - started < 60, "start-up should fail fast"
    assert "pooled deployment(s) without a model price: 'kimi-k2' (groq/moonshotai/kimi-k2-instruct-0905)" in str(err.value)


@pytest.fixture(scope="module")
def priced_proxy(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """demo.yaml plus the unpriced model twice: priced in model_info with a pooled key, and BYOK-only."""
    state = tmp_path_factory.mktemp("priced")
    config = yaml.safe_load(demo_config().read_text())
    byok_only = {"model_name": "kimi-k2-byok",
                 "litellm_params": {k: v for k, v in UNPRICED["litellm_params"].items() if k != "api_key"}}
    config["model_list"] += [{**UNPRICED, "model_info": dict(PRICES)}, byok_only]
    path = state / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with ProxyProcess(path, env=gateway_env(fake_provider, state), log_path=state / "proxy.log") as proxy:
        yield proxy


def project(proxy: ProxyProcess, name: str, plan: str, keys: list[tuple[str, int, dict[str, Any]]] = ()) -> tuple[str, str]:  # type: ignore[assignment]
    with httpx.Client(base_url=proxy.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as c:
        p = c.post("/adaptive/projects", json={"name": name, "plan": plan}).json()
        api_key = c.post(f"/adaptive/projects/{p['id']}/api-keys", params={"environment": "production"}).json()["api_key"]
        for secret, priority, extra in keys:
            r = c.post(f"/adaptive/projects/{p['id']}/provider-keys", json={
                "environment": "production", "provider": "groq", "api_key": secret, "priority": priority, **extra})
            assert r.status_code == 201, r.text
    return p["id"], api_key


def test_byok_only_deployment_needs_no_price(priced_proxy: ProxyProcess) -> None:
    out = priced_proxy.output()
    assert "without a model price" not in out
    assert "'kimi-k2-byok'" in out and "spend caps on project keys cannot count its cost" in out


def test_model_info_prices_are_what_pooled_requests_are_billed(fake_provider: FakeProvider, priced_proxy: ProxyProcess) -> None:
    project_id, api_key = project(priced_proxy, "priced", "developer")
    fake_provider.set_keys(FAKE_KEYS)
    with openai.OpenAI(base_url=f"{priced_proxy.base_url}/v1", api_key=api_key, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="kimi-k2", messages=[{"role": "user", "content": "price me #tokens=100000,50000 #cached=40000"}],
            extra_headers={"Cache-Control": "no-store"})
        stream = client.chat.completions.create(
            model="kimi-k2", stream=True, extra_headers={"Cache-Control": "no-store"},
            messages=[{"role": "user", "content": "stream price me #tokens=100000,50000 #cached=40000"}])
        list(stream)
    # 60K uncached * $1/M + 40K cached * $0.50/M + 50K * $3/M = $0.23
    expected = 60_000 * Decimal("0.000001") + 40_000 * Decimal("0.0000005") + 50_000 * Decimal("0.000003")
    assert expected == Decimal("0.23")
    headers = {k.lower(): v for k, v in raw.headers.items()}
    assert headers["x-adaptive-key-source"] == "pooled" and headers["x-adaptive-provider"] == "groq"
    assert Decimal(headers["x-adaptive-model-cost-usd"]) == expected
    with httpx.Client(base_url=priced_proxy.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as c:
        deadline = time.monotonic() + 10
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(rows) < 2:
            rows = c.get("/adaptive/requests", params={"project_id": project_id}).json()
            time.sleep(0.2)
    assert [r["model_cost_micros"] * MICRO for r in rows] == [expected, expected]
    assert all(r["provider_cost_micros"] == r["model_cost_micros"] for r in rows)


def test_spend_cap_counts_a_model_info_price(fake_provider: FakeProvider, priced_proxy: ProxyProcess) -> None:
    """A BYOK key's spend cap sees the provider cost at the deployment's model_info price."""
    capped, backup = byok_key("kimi-capped", provider="groq"), byok_key("kimi-backup", provider="groq")
    _, api_key = project(priced_proxy, "capped", "team",
                         [(capped, 1, {"spend_cap_usd": "0.2", "spend_cap_period": "day"}), (backup, 2, {})])
    fake_provider.set_keys(FAKE_KEYS)
    mark = len(fake_provider.calls())
    with openai.OpenAI(base_url=f"{priced_proxy.base_url}/v1", api_key=api_key, max_retries=0) as client:
        for i in range(2):
            client.chat.completions.create(model="kimi-k2", extra_headers={"Cache-Control": "no-store"},
                                           messages=[{"role": "user", "content": f"cap {i} #tokens=100000,50000"}])
            time.sleep(1.5)  # ledger flush and the spend refresh
    # the first call cost $0.25 at the model_info price, over the $0.20 cap: the second uses the backup key
    assert [c["key_label"] for c in fake_provider.calls()[mark:]] == ["kimi-capped", "kimi-backup"]
    assert POOLED_GROQ not in priced_proxy.output()

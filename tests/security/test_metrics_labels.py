"""Attack class: reading other tenants' data (or growing the gateway's memory) through `/metrics`.

LiteLLM's prometheus callback labels its series by caller key hash, project, client IP, user
agent and more. After traffic from two projects with odd user agents (long, unicode, many
distinct), the scrape of the shipped config must carry no such label, no tenant's identifiers
anywhere, and as many series as after the same traffic from other projects and other agents.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from adaptive_plugin.adapters.metrics_guard import TENANT_LABELS
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import Gateway, Project, byok_key

ROOT = Path(__file__).resolve().parents[2]

# Every label name the shipped config's /metrics may carry: LiteLLM's deployment, model and
# outcome labels and the plugin's own. A LiteLLM upgrade that adds a label fails here until
# someone decides whether it identifies a tenant.
SAFE_LABELS = frozenset({
    # LiteLLM
    "model", "model_group", "requested_model", "litellm_model_name", "model_id", "api_base", "api_provider",
    "exception_status", "exception_class", "status_code", "fallback_model", "stream", "service_tier",
    "rate_limit_category", "rate_limit_type", "callback_name", "guardrail_name", "status", "error_type",
    "hook_type", "result", "purpose", "file_type",
    # prometheus_client: buckets, and LiteLLM's gauges in multiprocess mode (one series per worker)
    "le", "quantile", "pid",
    # the plugin (adaptive_plugin/metrics.py)
    "provider", "key_source", "cache", "outcome", "kind", "task_type", "reason", "stage", "where",
})

ODD_AGENTS = [
    "Mozilla/5.0 " + "x" * 6000,
    "agent\twith\ttabs and ünïcödé ✓ 客户端",
    "curl/8.0 (tenant-secret-marker)",
]


@pytest.fixture(scope="module")
def metrics_gateway(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The shipped demo config with two workers sharing PROMETHEUS_MULTIPROC_DIR, as the Helm chart runs it."""
    state = tmp_path_factory.mktemp("metrics-labels")
    prom = state / "prom"
    prom.mkdir()
    # embeddings in-process: the worker process's `where="process"` series would appear whenever it
    # is ready, a timing artefact in the series count compared below
    env = gateway_env(fake_provider, state, PROMETHEUS_MULTIPROC_DIR=str(prom), ADAPTIVE_EMBEDDING_PROCESS="false")
    with ProxyProcess(demo_config(), env=env, log_path=state / "proxy.log", workers=2) as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=state,
                     database_url=f"sqlite:///{state / 'adaptive.db'}", env=env)
        yield gw
        gw.close_clients()


def _scrape(gw: Gateway) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    r = httpx.get(f"{gw.base_url}/metrics", timeout=30, follow_redirects=False)
    assert r.status_code == 200, f"/metrics -> {r.status_code} {r.headers.get('location', '')}"
    series = [(s.name, dict(s.labels)) for fam in text_string_to_metric_families(r.text) for s in fam.samples]
    return r.text, series


def _distinct(series: list[tuple[str, dict[str, str]]]) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """LiteLLM's series, worker pids merged: its gauges keep one series per worker that has set them,
    which depends on which worker the kernel gave a connection to, and is bounded by the workers.
    The plugin's own series take fixed value sets only (adaptive_plugin/metrics.py, docs/metrics.md);
    which of those values have occurred yet (a cache store skipped, a background catch-up) depends
    on timing, not on tenants, so they are left out of the count."""
    return {(name, frozenset((k, v) for k, v in labels.items() if k != "pid"))
            for name, labels in series if not name.startswith("adaptive_")}


def _traffic(gw: Gateway, projects: list[Project], agents: list[str], tag: str) -> None:
    """The same mix every round: BYOK, pooled, a cache hit, a refused model, bad keys on odd paths."""
    for p in projects:
        for i, agent in enumerate(agents):
            client = gw.client(p.api_key).with_options(default_headers={"User-Agent": agent})
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"{tag} {p.name} {i}"}],
                user=f"end-user-{secrets.token_hex(4)}", extra_headers={"Cache-Control": "no-store"},
                extra_body={"metadata": {"note": f"tag-{secrets.token_hex(4)}"}},
            )
        # odd agents as raw bytes (unicode, control characters), on the OpenAI route and others
        for agent in ODD_AGENTS:
            headers = {"Authorization": f"Bearer {p.api_key}", "User-Agent": agent.encode("utf-8")}
            body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": f"{tag} {p.name} odd"}]}
            r = httpx.post(f"{gw.base_url}/v1/chat/completions", json=body, headers=headers, timeout=60)
            assert r.status_code == 200, r.text
            r = httpx.post(f"{gw.base_url}/v1/chat/completions", json={**body, "model": "not-a-model"},
                           headers=headers, timeout=60)
            assert r.status_code >= 400
        # a key that does not exist, on paths a client makes up
        for _ in range(3):
            r = httpx.post(f"{gw.base_url}/v1/chat/completions-{secrets.token_hex(6)}",
                           json={"model": "gpt-4o-mini", "messages": []},
                           headers={"Authorization": f"Bearer ak-prd-{secrets.token_hex(8)}",
                                    "User-Agent": f"scanner-{secrets.token_hex(8)}"}, timeout=30)
            assert r.status_code >= 400
    # the master key (LiteLLM would label its unsalted SHA-256)
    master = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0,
                           default_headers={"User-Agent": f"operator-{tag}"})
    master.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"{tag} operator"}],
                                   extra_headers={"Cache-Control": "no-store"})
    master.close()


def _projects(gw: Gateway, n: int) -> list[Project]:
    out = []
    for i in range(n):
        if i % 2:
            out.append(gw.project(plan="developer"))
        else:
            out.append(gw.project(keys=[("openai", byok_key(f"metrics-{secrets.token_hex(3)}"), 1)]))
    return out


@pytest.mark.slow
def test_metrics_carry_no_tenant_labels_and_a_bounded_series_count(metrics_gateway: Gateway) -> None:
    gw = metrics_gateway
    _traffic(gw, _projects(gw, 2), [f"warmup-agent-{i}" for i in range(2)], "warmup")
    _, before = _scrape(gw)

    first = _projects(gw, 2)
    _traffic(gw, first, [f"agent-a-{i}-{secrets.token_hex(3)}" for i in range(10)], "round-a")
    text_a, after_a = _scrape(gw)

    second = _projects(gw, 2)
    _traffic(gw, second, [f"agent-b-{i}-{secrets.token_hex(3)}" for i in range(20)], "round-b")
    text_b, after_b = _scrape(gw)

    names = {label for _, labels in after_b for label in labels}
    assert not names & TENANT_LABELS, f"tenant labels on /metrics: {sorted(names & TENANT_LABELS)}"
    assert names <= SAFE_LABELS, f"labels nobody has classified: {sorted(names - SAFE_LABELS)}"
    assert any(name.startswith("litellm_") for name, _ in after_b), "LiteLLM's series are missing"
    assert any(name.startswith("adaptive_requests") for name, _ in after_b)

    for text in (text_a, text_b):
        for p in first + second:
            assert p.id not in text and p.name not in text and p.api_key not in text
        assert hashlib.sha256(MASTER_KEY.encode()).hexdigest() not in text
        assert MASTER_KEY not in text
        assert "adaptive:" not in text and "end-user-" not in text and "tag-" not in text
        assert "agent-a-" not in text and "agent-b-" not in text and "scanner-" not in text
        assert "tenant-secret-marker" not in text and "xxxxxxxx" not in text and "127.0.0.1\"" not in text

    # more projects and twice as many agents: not one series more
    assert _distinct(after_a) == _distinct(before), sorted(_distinct(after_a) ^ _distinct(before))[:8]
    assert _distinct(after_b) == _distinct(after_a), sorted(_distinct(after_b) ^ _distinct(after_a))[:8]
    # the plugin's own carry no value the traffic brought: the scans above looked for every one


def test_metrics_path_answers_without_a_redirect(gateway: Gateway) -> None:
    for path in ("/metrics", "/metrics/"):
        r = httpx.get(f"{gateway.base_url}{path}", timeout=30, follow_redirects=False)
        assert r.status_code == 200, f"{path} -> {r.status_code}"
        assert "adaptive_requests_total" in r.text or "litellm_" in r.text


def test_shipped_configs_exclude_the_tenant_labels() -> None:
    """The configs say it themselves (the plugin also adds any label left out at start-up)."""
    for path in (ROOT / "config" / "proxy.yaml", ROOT / "config" / "demo.yaml"):
        settings = yaml.safe_load(path.read_text())["litellm_settings"]
        assert TENANT_LABELS <= set(settings["prometheus_exclude_labels"]), path
    values = yaml.safe_load((ROOT / "helm" / "values.yaml").read_text())
    assert TENANT_LABELS <= set(values["proxyConfig"]["litellm_settings"]["prometheus_exclude_labels"])


METRICS_TOKEN = "metrics-scrape-token-" + "5e4d3c2b1a09f8e7d6c5b4a3"


@pytest.fixture(scope="module")
def authed_metrics(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """/metrics behind authentication (as the Helm chart's metrics.auth.enabled), project labels on."""
    state = tmp_path_factory.mktemp("metrics-auth")
    config = yaml.safe_load(demo_config().read_text())
    config["litellm_settings"]["require_auth_for_metrics_endpoint"] = True
    path = state / "metrics-auth.yaml"
    path.write_text(yaml.safe_dump(config))
    env = gateway_env(fake_provider, state, ADAPTIVE_METRICS_TOKEN=METRICS_TOKEN, ADAPTIVE_METRICS_PROJECT_LABELS="true")
    with ProxyProcess(path, env=env, log_path=state / "proxy.log") as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=state, database_url="", env=env)
        yield gw
        gw.close_clients()


@pytest.mark.slow
def test_authenticated_metrics_admit_the_scrape_token_and_the_master_key_only(authed_metrics: Gateway) -> None:
    gw = authed_metrics
    project = gw.project(plan="developer")
    gw.client(project.api_key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "count me"}], extra_headers={"Cache-Control": "no-store"})

    def scrape(token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{gw.base_url}/metrics", headers=headers, timeout=30, follow_redirects=False)

    for token in (None, project.api_key, "wrong-" + METRICS_TOKEN):
        r = scrape(token)
        assert r.status_code == 401, (token, r.status_code)
        assert "adaptive_" not in r.text and project.id not in r.text
    assert "metrics token" in scrape(project.api_key).text  # a tenant's key is refused as such
    for token in (METRICS_TOKEN, MASTER_KEY):
        r = scrape(token)
        assert r.status_code == 200 and "adaptive_requests_total" in r.text
    # the opted-in project label is there, behind authentication
    assert f'project="{project.id}"' in scrape(METRICS_TOKEN).text
    # the scrape token is no key anywhere else
    with pytest.raises(openai.AuthenticationError):
        gw.client(METRICS_TOKEN).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert gw.admin("GET", "/adaptive/projects").status_code == 200
    r = httpx.get(f"{gw.base_url}/adaptive/projects", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    assert r.status_code == 401


@pytest.mark.slow
def test_project_labels_on_an_open_metrics_endpoint_stop_the_start(fake_provider: FakeProvider, tmp_path: Path) -> None:
    env = gateway_env(fake_provider, tmp_path, ADAPTIVE_METRICS_PROJECT_LABELS="true")
    proxy = ProxyProcess(demo_config(), env=env, log_path=tmp_path / "proxy.log")
    with pytest.raises(RuntimeError, match="exited with code") as err:
        proxy.start(timeout=90)
    assert "ADAPTIVE_METRICS_PROJECT_LABELS" in str(err.value) and "require_auth_for_metrics_endpoint" in str(err.value)

"""`adaptive-plugin demo`: the gateway on embedded defaults against the bundled fake provider.

Starts the fake provider and the real proxy (SQLite, local FAISS index, offline embedding
model), creates a team project with its own OpenAI keys (the first one rate-limited), sends a
few requests through the official `openai` SDK and prints what happened to each: the model
chosen, the cache outcome, the key source and the fee. Then it keeps serving until Ctrl-C.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from adaptive_plugin.config import Settings
from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, base_env, demo_config

FAKE_KEYS = {
    "sk-demo-pooled-openai-" + "0" * 16: {"label": "pooled-openai", "behaviour": "ok", "provider": "openai"},
    "sk-ant-demo-pooled-" + "0" * 16: {"label": "pooled-anthropic", "behaviour": "ok", "provider": "anthropic"},
    "sk-demo-team-ratelimited-" + "0" * 12: {"label": "team-openai-1 (429)", "behaviour": "429", "provider": "openai", "retry_after": 30},
    "sk-demo-team-ok-" + "0" * 20: {"label": "team-openai-2", "behaviour": "ok", "provider": "openai"},
}
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("auto", "Hi! How are you today?", {}),
    ("auto", "Implement a thread-safe LRU cache in Python with O(1) get and put and a TTL per entry, write unit "
             "tests for eviction order, concurrent access and expiry, and explain the complexity of each operation "
             "step by step.\n\n```python\nclass LRUCache:\n    def __init__(self, capacity: int, ttl: float):\n"
             "        ...\n```", {}),
    ("auto", "Hello! How are you doing today?", {}),
    ("auto", "A train leaves at 3:40 pm and travels 210 km at 84 km/h, then 95 km at 76 km/h. "
             "Step by step, at what time does it arrive?", {"cost_bias": 0.9}),
    ("gpt-4o-mini", "Summarise the plot of Hamlet in two sentences.", {}),
    ("claude-haiku-4-5", "Translate 'good morning' into French.", {"stream": True}),
]


def _admin(client: httpx.Client, method: str, path: str, **kw: Any) -> Any:
    r = client.request(method, path, **kw)
    r.raise_for_status()
    return r.json() if r.content else None


def _setup_project(base: str, master: str) -> tuple[str, str]:
    """The demo project: its chat API key and its admin key (for the dashboard)."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {master}"}, timeout=30) as c:
        project = _admin(c, "POST", "/adaptive/projects", json={"name": "demo-team", "plan": "team"})
        key = _admin(c, "POST", f"/adaptive/projects/{project['id']}/api-keys", params={"environment": "production"})
        for priority, secret in ((1, "sk-demo-team-ratelimited-" + "0" * 12), (2, "sk-demo-team-ok-" + "0" * 20)):
            _admin(c, "POST", f"/adaptive/projects/{project['id']}/provider-keys",
                   json={"environment": "production", "provider": "openai", "api_key": secret, "priority": priority})
        admin = _admin(c, "POST", f"/adaptive/projects/{project['id']}/admin-keys", json={"label": "demo"})
        return str(key["api_key"]), str(admin["admin_key"])


def _send(client: Any, model: str, prompt: str, extra: dict[str, Any]) -> dict[str, str]:
    body: dict[str, Any] = {}
    if "cost_bias" in extra:
        body["cost_bias"] = extra["cost_bias"]
    messages = [{"role": "user", "content": prompt}]
    if extra.get("stream"):
        with client.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=True, extra_body=body or None
        ) as resp:
            text = "".join(
                (chunk.choices[0].delta.content or "") for chunk in resp.parse() if chunk.choices
            )
            headers = dict(resp.headers)
    else:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, extra_body=body or None)
        headers = dict(raw.headers)
        text = raw.parse().choices[0].message.content or ""
    headers["_text"] = text
    return headers


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(*, port: int = 4000, once: bool = False, state_dir: Path = Path(".adaptive/demo")) -> int:
    import openai

    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    master = "sk-demo-master-" + secrets.token_hex(16)
    fake = FakeProvider(FAKE_KEYS, latency_ms=20)
    fake_url = fake.start_in_thread()
    env = base_env(
        LITELLM_MASTER_KEY=master,
        ADAPTIVE_MASTER_KEYS=Settings.generate_master_key(),
        ADAPTIVE_STATE_DIR=str(state_dir.resolve()),
        FAKE_OPENAI_API_BASE=f"{fake_url}/v1",
        FAKE_ANTHROPIC_API_BASE=fake_url,
        POOLED_OPENAI_KEY="sk-demo-pooled-openai-" + "0" * 16,
        POOLED_ANTHROPIC_KEY="sk-ant-demo-pooled-" + "0" * 16,
    )
    proxy = ProxyProcess(demo_config(), env=env, log_path=state_dir / "proxy.log", port=port)
    print(f"starting the LiteLLM proxy with the Adaptive plugin on {proxy.base_url} (log: {proxy.log_path}) ...")
    try:
        proxy.start()
        api_key, admin_key = _setup_project(proxy.base_url, master)
        client = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=api_key, max_retries=0)
        rows = [["#", "asked for", "prompt", "served by", "cache", "key source", "fallbacks", "fee (USD)"]]
        for i, (model, prompt, extra) in enumerate(REQUESTS, 1):
            h = _send(client, model, prompt, extra)
            rows.append([
                str(i), model + (f" (cost_bias {extra['cost_bias']})" if "cost_bias" in extra else "")
                + (" stream" if extra.get("stream") else ""),
                (prompt[:38] + "...") if len(prompt) > 41 else prompt,
                h.get("x-adaptive-model-group", "?")
                + (f" [{h['x-adaptive-task-type']}, score {h['x-adaptive-route-score']}]" if "x-adaptive-route-score" in h else ""),
                h.get("x-adaptive-cache", "?") + (f" ({h['x-adaptive-cache-similarity']})" if h.get("x-adaptive-cache", "").startswith("hit") else ""),
                h.get("x-adaptive-key-source", "?"),
                h.get("x-adaptive-fallbacks", "-"),
                h.get("x-adaptive-overhead-fee-usd", "in ledger (stream)"),
            ])
        print()
        print(_table(rows))
        print("\nThe fake provider saw these calls (key labels, never keys):")
        for call in fake.calls():
            if not call.get("model"):
                continue  # LiteLLM's own model-list probes
            print(f"  {call.get('provider')!s:9} {call.get('model')!s:28} key={call.get('key_label')!s:22} "
                  f"status={call.get('status')}")
        time.sleep(1.0)  # the ledger writes in batches
        with httpx.Client(base_url=proxy.base_url, headers={"Authorization": f"Bearer {master}"}) as c:
            totals = _admin(c, "GET", "/adaptive/usage", params={"group_by": "key_source,cache"})
        print("\nLedger totals by key source and cache outcome:")
        for t in totals:
            print(f"  {t['key_source']:7} {t['cache']:13} requests={t['requests']:<3} overhead=${t['overhead_fee_usd']} model=${t['model_cost_usd']}")
        if once:
            return 0
        print(f"\nGateway running at {proxy.base_url}  (OpenAI base_url {proxy.base_url}/v1)")
        print(f"  project API key: {api_key}\n  master key:      {master}\n  metrics:         {proxy.base_url}/metrics")
        print(f"  dashboard:       {proxy.base_url}/adaptive/ui/  (sign in with the project admin key {admin_key})")
        print("Ctrl-C to stop.")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while proxy.proc is not None and proxy.proc.poll() is None:
            time.sleep(0.5)
        print("the proxy stopped:\n" + proxy.output()[-3000:])
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        proxy.stop()
        fake.stop()

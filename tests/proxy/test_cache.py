"""The semantic cache through the real proxy (issue 5): right answers only, never across tenants."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import Gateway, chat, settle


def test_paraphrase_is_a_hit_and_the_provider_sees_one_call(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    first, h1 = chat(client, "How do I reverse a list in Python?")
    settle()
    second, h2 = chat(client, "How can I reverse a Python list?")
    assert len(gateway.calls_since(mark)) == 1
    assert h1["x-adaptive-cache"] == "miss"
    assert h2["x-adaptive-cache"] == "hit-semantic" and float(h2["x-adaptive-cache-similarity"]) > 0.8
    assert second.choices[0].message.content == first.choices[0].message.content
    rows = gateway.ledger_rows(project.id, wait_for=2)
    assert sorted(r["cache"] for r in rows) == ["hit-semantic", "miss"]


def test_near_miss_is_not_served_from_cache(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    chat(client, "Is it safe to eat raw chicken?")
    settle()
    mark = gateway.mark()
    answer, headers = chat(client, "Is it unsafe to eat raw chicken?")
    assert headers["x-adaptive-cache"] == "miss"
    assert len(gateway.calls_since(mark)) == 1
    assert "unsafe" in answer.choices[0].message.content


def test_another_projects_identical_prompt_is_a_miss(gateway: Gateway) -> None:
    a = gateway.project(plan="developer")
    b = gateway.project(plan="developer")
    chat(gateway.client(a.api_key), "What is the tallest mountain on Earth?")
    settle()
    mark = gateway.mark()
    _, headers = chat(gateway.client(b.api_key), "What is the tallest mountain on Earth?")
    assert headers["x-adaptive-cache"] == "miss"
    assert len(gateway.calls_since(mark)) == 1


def test_different_model_is_a_different_partition(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    chat(client, "Define entropy in one line.", model="gpt-4o-mini")
    settle()
    _, headers = chat(client, "Define entropy in one line.", model="gpt-4o")
    assert headers["x-adaptive-cache"] == "miss"


def test_cache_control_headers(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    _, h = chat(client, "Who wrote Dune?", extra_headers={"Cache-Control": "no-store"})
    assert h["x-adaptive-cache"] == "miss"
    settle()
    _, h = chat(client, "Who wrote Dune?")  # nothing was stored by the first call
    assert h["x-adaptive-cache"] == "miss"
    mark = gateway.mark()
    _, h = chat(client, "Who wrote Dune?", extra_headers={"Cache-Control": "no-cache"})
    assert h["x-adaptive-cache"] == "bypass" and len(gateway.calls_since(mark)) == 1
    settle()
    _, h = chat(client, "Who wrote Dune?")
    assert h["x-adaptive-cache"] == "hit-exact"


def test_streamed_request_served_from_cache_is_a_proper_stream(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    first, _ = chat(client, "Name three noble gases.")
    settle()
    mark = gateway.mark()
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Name three noble gases."}]
    ) as resp:
        assert resp.headers["x-adaptive-cache"] == "hit-exact"
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == first.choices[0].message.content
    assert gateway.calls_since(mark) == []


def test_high_temperature_requests_bypass_the_cache(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    chat(client, "Tell me a story about a fox.", temperature=1.5)
    settle()
    mark = gateway.mark()
    _, headers = chat(client, "Tell me a story about a fox.", temperature=1.5)
    assert headers["x-adaptive-cache"] == "bypass"
    assert len(gateway.calls_since(mark)) == 1


def test_project_with_cache_disabled_never_hits(gateway: Gateway) -> None:
    project = gateway.project(plan="developer", cache_enabled=False)
    client = gateway.client(project.api_key)
    chat(client, "What is 2+2?")
    settle()
    mark = gateway.mark()
    _, headers = chat(client, "What is 2+2?")
    assert headers["x-adaptive-cache"] == "bypass" and len(gateway.calls_since(mark)) == 1


def test_plugin_request_fields_never_reach_the_provider(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    chat(client, "Name three prime numbers.", extra_headers={"x-adaptive-cost-bias": "0.3"})
    chat(client, "Name three prime numbers, quickly.", model="auto", extra_body={"cost_bias": 0.2})
    calls = gateway.calls_since(mark)
    assert calls and all(call["fields"] for call in calls)
    for call in calls:
        leaked = {"cache_key", "cache", "caching", "cost_bias", "adaptive_rid"} & set(call["fields"])
        assert not leaked, f"sent upstream: {sorted(leaked)} in {call['fields']}"


def _embeddings(gateway: Gateway) -> float:
    found = re.search(r'^adaptive_plugin_latency_seconds_count\{stage="embedding"\} (\S+)$', gateway.metrics(), re.M)
    return float(found[1]) if found else 0.0


def _entry_embeddings(gateway: Gateway) -> float:
    found = re.search(r"^adaptive_cache_entry_embeddings_total (\S+)$", gateway.metrics(), re.M)
    return float(found[1]) if found else 0.0


def test_each_request_is_embedded_at_most_once_and_misses_not_at_all(gateway: Gateway) -> None:
    """The full model runs only where it decides something: a named-model miss far from every
    cached entry costs no embedding (the first look says so), nor does its store; a request near
    an entry is embedded once (at authentication, shared by the lookup and the store), plus the
    entry the first time a lookup comes near it; `model: auto` embeds once, for the router."""
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    steps = [
        # (what, request, outcome, request embeddings, entry embeddings)
        ("first request, empty partition", {"content": "What is the boiling point of water at sea level?"}, "miss", 0, 0),
        ("miss far from the entry", {"content": "How many legs does a spider have?"}, "miss", 0, 0),
        ("exact hit", {"content": "How many legs does a spider have?"}, "hit-exact", 0, 0),
        ("paraphrase: the query and, once, the entry", {"content": "How many legs do spiders have?"}, "hit-semantic", 1, 1),
        ("another paraphrase: the query only", {"content": "Spiders have how many legs?"}, "hit-semantic", 1, 0),
        ("no-cache: stored only", {"content": "Name a river in Peru.", "extra_headers": {"Cache-Control": "no-cache"}},
         "bypass", 0, 0),
        ("no-cache, no-store", {"content": "Name a lake in Chile.", "extra_headers": {"Cache-Control": "no-cache, no-store"}},
         "bypass", 0, 0),
        ("routed by the embedding, then looked up", {"content": "Name a desert in Africa.", "model": "auto"}, "miss", 1, 0),
    ]
    for what, request, outcome, queries, entries in steps:
        before, entries_before = _embeddings(gateway), _entry_embeddings(gateway)
        _, headers = chat(client, **request)  # type: ignore[arg-type]
        settle()
        assert headers["x-adaptive-cache"] == outcome, what
        assert (_embeddings(gateway) - before, _entry_embeddings(gateway) - entries_before) == (queries, entries), what


def _children(pid: int, marker: str) -> list[int]:
    """Processes whose parent is `pid` and whose command line contains `marker` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and marker in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("process", [True, False], ids=["worker-process (default)", "in-process"])
def test_semantic_hits_with_either_embedding_path_and_the_worker_ends_with_the_proxy(
    fake_provider: FakeProvider, tmp_path: Path, process: bool
) -> None:
    import os
    import time

    env = gateway_env(fake_provider, tmp_path, **({} if process else {"ADAPTIVE_EMBEDDING_PROCESS": "false"}))
    with ProxyProcess(demo_config(), env=env, log_path=tmp_path / "proxy.log") as proxy:
        gw = Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=tmp_path,
                     database_url=f"sqlite:///{tmp_path / 'adaptive.db'}", env=env)
        project = gw.project(plan="developer")
        client = gw.client(project.api_key)
        mark = gw.mark()
        chat(client, "How do I reverse a list in Python?")  # stored without a full embedding (the cascade)
        settle()
        for paraphrase in ("How can I reverse a Python list?", "In Python, how do I reverse a list?"):
            _, headers = chat(client, paraphrase)
            assert headers["x-adaptive-cache"] == "hit-semantic"
        assert len(gw.calls_since(mark)) == 1
        assert proxy.proc is not None
        workers = _children(proxy.proc.pid, "adaptive_plugin.embedding._process")
        assert len(workers) == (1 if process else 0)
        # the compute time of each query's embedding, by where it ran (the first may run in-process while the
        # worker loads; the stored entry's, computed by the first lookup near it, is not a request's)
        computed = {where: float(n) for where, n in re.findall(
            r'^adaptive_embedding_seconds_count\{where="(\w+)"\} (\S+)$', gw.metrics(), re.M)}
        assert sum(computed.values()) == 2, computed
        assert computed.get("process", 0) >= 1 if process else "process" not in computed
        gw.close_clients()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers), "the embedding worker outlived the proxy"
    assert "embedding process exited" not in (tmp_path / "proxy.log").read_text()

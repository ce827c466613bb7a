"""Shared helpers of the load benchmarks (`bench/overhead.py`, `bench/load_faults.py`) and of the
load tests in `tests/proxy/` (`test_faults.py`, `test_crash.py`).

* `FakeProviderProcess`: the bundled fake provider in its own process (so the load client and
  the fake do not share a GIL), driven through its `/_fake/*` control endpoints.
* `bare_config`: config/demo.yaml without the plugin (plain LiteLLM, same model list).
* `Admin`: the few `/adaptive/*` admin calls the benchmarks need.
* `run_load`: a bounded aiohttp load generator (count and wall-clock bounded).
* `fault_plan` / `check_fault_run`: the load-with-faults scenario and its verdict, shared by
  the benchmark and the fast test.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adaptive_plugin.devtools.launcher import base_env, demo_config, fake_env  # noqa: E402

MASTER_KEY = "sk-bench-master-" + "0123456789abcdef0123456789abcdef"
POOLED_OPENAI = "sk-bench-pooled-openai-" + "a1b2c3d4e5f6"
POOLED_ANTHROPIC = "sk-ant-bench-pooled-" + "f6e5d4c3b2a1"
POOLED_KEYS: dict[str, dict[str, Any]] = {
    POOLED_OPENAI: {"label": "pooled-openai", "behaviour": "ok", "provider": "openai"},
    POOLED_ANTHROPIC: {"label": "pooled-anthropic", "behaviour": "ok", "provider": "anthropic"},
}


def demo_models() -> list[tuple[str, str, str]]:
    """(model group, provider, upstream model) of every deployment in config/demo.yaml."""
    cfg = yaml.safe_load(demo_config().read_text())
    out = []
    for item in cfg.get("model_list", []):
        provider, _, upstream = str(item["litellm_params"]["model"]).partition("/")
        out.append((str(item["model_name"]), provider, upstream))
    return out


# which provider serves each model group, and the model name the provider sees
MODEL_PROVIDER = {group: provider for group, provider, _ in demo_models()}
UPSTREAM_MODEL = {group: upstream for group, _, upstream in demo_models()}


# --- machine --------------------------------------------------------------------------------


def machine_note() -> str:
    """CPU count, memory, Python and the 1/5/15-minute load averages, for the results file."""
    try:
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal"))
        mem = f"{mem_kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "? GiB"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, {mem}, Python {platform.python_version()}, load average {load}"


def cpu_speed_ms() -> float:
    """A fixed pure-Python loop (5 million additions), best of 3, in ms: the same machine kind has
    been seen 2-3x apart in it on different days, so figures from different runs compare only
    alongside it."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(5_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def loadavg() -> float:
    return os.getloadavg()[0]


# --- the fake provider in its own process ---------------------------------------------------


class FakeProviderProcess:
    """`python -m adaptive_plugin.devtools.fake_provider` as a child process."""

    def __init__(self, keys: dict[str, dict[str, Any]], *, latency_ms: float = 0, seed: int = 0,
                 workdir: Path) -> None:
        self.keys = dict(keys)
        self.latency_ms = latency_ms
        self.seed = seed
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self, timeout: float = 30.0) -> FakeProviderProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        keys_file = self.workdir / f"fake-keys-{secrets.token_hex(3)}.json"
        keys_file.write_text(json.dumps(self.keys))
        port_file = self.workdir / f"fake-port-{secrets.token_hex(3)}"
        log = (self.workdir / "fake.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adaptive_plugin.devtools.fake_provider", "--port", "0", "--keys", str(keys_file),
             "--latency-ms", str(self.latency_ms), "--seed", str(self.seed), "--port-file", str(port_file)],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake provider exited with {self.proc.returncode}")
            if port_file.exists() and port_file.read_text().strip():
                self.base_url = f"http://127.0.0.1:{port_file.read_text().strip()}"
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("fake provider did not start")

    def set_keys(self, keys: dict[str, dict[str, Any]]) -> None:
        self.keys = dict(keys)
        r = httpx.post(f"{self.base_url}/_fake/keys", json=self.keys, timeout=10)
        r.raise_for_status()

    def calls(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.base_url}/_fake/calls", timeout=30)
        r.raise_for_status()
        return list(r.json())

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_fake/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> FakeProviderProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- configs and environments ---------------------------------------------------------------


def bare_config(directory: Path) -> Path:
    """config/demo.yaml with the plugin callback, custom_auth and our retry policy removed."""
    cfg = yaml.safe_load(demo_config().read_text())
    ls = cfg.setdefault("litellm_settings", {})
    ls["callbacks"] = [cb for cb in ls.get("callbacks", []) if not str(cb).startswith("adaptive_plugin")]
    for item in cfg.get("model_list", []):
        item.get("model_info", {}).pop("adaptive", None)
    cfg.pop("router_settings", None)
    cfg.setdefault("general_settings", {}).pop("custom_auth", None)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bare.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def proxy_env(fake_base_url: str, state_dir: Path, **extra: Any) -> dict[str, str]:
    """The environment of a benchmark proxy against `fake_base_url` (plugin settings included)."""
    from adaptive_plugin.config import Settings

    settings: dict[str, Any] = {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "ADAPTIVE_MASTER_KEYS": Settings.generate_master_key(),
        "ADAPTIVE_STATE_DIR": str(state_dir),
        # pooled keys for OpenAI and Anthropic only, as in the earlier rounds: the Gemini, Groq and
        # DeepSeek deployments of config/demo.yaml are BYOK-only here, so `auto` picks as before
        **fake_env(fake_base_url, {"openai": POOLED_OPENAI, "anthropic": POOLED_ANTHROPIC}),
    }
    settings.update(extra)
    return base_env(**settings)


def new_tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# --- admin ----------------------------------------------------------------------------------


class Admin:
    """The `/adaptive/*` admin calls the benchmarks need (master key)."""

    def __init__(self, base_url: str, master: str = MASTER_KEY) -> None:
        self.base_url = base_url
        self.master = master

    def call(self, method: str, path: str, *, expect: int | None = None, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.base_url, timeout=60) as c:
            r = c.request(method, path, headers={"Authorization": f"Bearer {self.master}"}, **kw)
        if expect is not None and r.status_code != expect:
            raise RuntimeError(f"{method} {path} -> {r.status_code}: {r.text[:500]}")
        return r

    def project(self, name: str, *, keys: Sequence[tuple[str, str, int]] = (), plan: str = "team",
                fallback: str = "pooled", environment: str = "production") -> dict[str, Any]:
        """Create a project, an API key and provider keys (provider, secret, priority)."""
        p = self.call("POST", "/adaptive/projects", json={"name": name, "plan": plan, "fallback": fallback},
                      expect=201).json()
        ak = self.call("POST", f"/adaptive/projects/{p['id']}/api-keys", params={"environment": environment},
                       expect=201).json()
        views = [self.call("POST", f"/adaptive/projects/{p['id']}/provider-keys", expect=201, json={
            "environment": environment, "provider": provider, "api_key": secret, "priority": priority}).json()
            for provider, secret, priority in keys]
        return {"id": p["id"], "name": name, "api_key": ak["api_key"], "keys": views}

    def requests(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Every ledger row (of one project), paging through /adaptive/requests by id: the proxy
        may still be writing rows, which would shift offset pages (a row twice, another never)."""
        rows: list[dict[str, Any]] = []
        for _ in range(200):  # bounded: 200k rows at most
            params: dict[str, Any] = {"limit": 1000}
            if project_id is not None:
                params["project_id"] = project_id
            if rows:
                params["before_id"] = rows[-1]["id"]
            batch = self.call("GET", "/adaptive/requests", params=params, expect=200).json()
            rows.extend(batch)
            if len(batch) < 1000:
                break
        return rows


# --- load generator -------------------------------------------------------------------------


@dataclass
class Result:
    index: int
    status: int  # 0 = no HTTP response (connection error, timeout)
    latency_s: float
    done_at: float  # time.time() when the response was complete
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None


RequestFactory = Callable[[int], tuple[dict[str, str], dict[str, Any]]]


async def run_load(url: str, make: RequestFactory, *, n: int, concurrency: int, timeout_s: float = 60.0,
                   deadline_s: float = 600.0, start: int = 0, keep_body: bool = True,
                   results: list[Result] | None = None) -> tuple[list[Result], float]:
    """Send requests `start .. start+n-1` with `concurrency` workers; returns (results, wall seconds).

    Bounded in count (n) and time (`deadline_s` for the whole run, `timeout_s` per request).
    Pass `results` to watch progress from another thread (results are appended as they finish).
    """
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    results = [] if results is None else results
    counter = iter(range(start, start + n))
    stop_at = time.monotonic() + deadline_s

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

        async def one(i: int) -> Result:
            headers, body = make(i)
            t0 = time.perf_counter()
            try:
                async with session.post(url, json=body, headers=headers) as resp:
                    raw = await resp.read()
                    t1 = time.perf_counter()
                    parsed: Any = None
                    if keep_body or resp.status != 200:
                        try:
                            parsed = json.loads(raw)
                        except ValueError:
                            parsed = raw.decode(errors="replace")
                    return Result(i, resp.status, t1 - t0, time.time(), parsed,
                                  {k.lower(): v for k, v in resp.headers.items()})
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                return Result(i, 0, time.perf_counter() - t0, time.time(), None, {}, f"{type(exc).__name__}: {exc}")

        async def worker() -> None:
            for i in counter:
                if time.monotonic() > stop_at:
                    return
                results.append(await one(i))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return results, wall


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on sorted values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


@dataclass
class Stats:
    n: int
    ok: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    rps: float

    @classmethod
    def of(cls, results: Sequence[Result], wall: float) -> Stats:
        lat = [r.latency_s * 1000 for r in results if r.status == 200]
        return cls(len(results), len(lat), pct(lat, 50), pct(lat, 95), pct(lat, 99),
                   statistics.fmean(lat) if lat else float("nan"), len(lat) / wall if wall else float("nan"))


# --- load with faults -----------------------------------------------------------------------


@dataclass
class FaultProject:
    tag: str  # encoded in every key label of the project: "<tag>-openai-1"
    fallback: str
    keys: list[tuple[str, str, int]]  # (provider, secret, priority)
    info: dict[str, Any] = field(default_factory=dict)  # id, api_key, keys (views)

    def label_owner(self, label: str) -> bool:
        return label.startswith(self.tag + "-")


FLAKY = {"behaviour": "flaky", "p_429": 0.15, "p_500": 0.10, "p_reset": 0.05, "p_slow": 0.03, "delay_s": 0.3,
         "retry_after": 1}


def fault_plan(run_tag: str, n_projects: int, *, byok_only_every: int = 3) -> tuple[list[FaultProject],
                                                                                      dict[str, dict[str, Any]]]:
    """Projects each with two flaky OpenAI keys and one flaky Anthropic key; every `byok_only_every`-th
    project is byok_only. Returns the projects and the fake provider's key entries for them."""
    projects: list[FaultProject] = []
    fake_keys: dict[str, dict[str, Any]] = {}
    for p in range(n_projects):
        tag = f"{run_tag}p{p}"
        keys = []
        for provider, prio, spec in (("openai", 1, FLAKY), ("openai", 2, {**FLAKY, "p_429": 0.10}),
                                     ("anthropic", 1, FLAKY)):
            label = f"{tag}-{provider}-{prio}"
            secret = f"sk-{provider[:3]}-byok-S3CRET-{label}-{secrets.token_hex(6)}"
            fake_keys[secret] = {"label": label, "provider": provider, **spec}
            keys.append((provider, secret, prio))
        fallback = "byok_only" if byok_only_every and p % byok_only_every == byok_only_every - 1 else "pooled"
        projects.append(FaultProject(tag, fallback, keys))
    return projects, fake_keys


_OPENAI = [g for g, p in MODEL_PROVIDER.items() if p == "openai"]
_ANTHROPIC = [g for g, p in MODEL_PROVIDER.items() if p == "anthropic"]
#: the mix of the fault load: the first OpenAI group twice, the last one once, the first Anthropic group once
FAULT_MODELS = (_OPENAI[0], _OPENAI[0], _OPENAI[-1], _ANTHROPIC[0])


def fault_request(projects: Sequence[FaultProject], run_tag: str) -> Callable[[int], tuple[dict[str, str], dict[str, Any]]]:
    """Request i: project i % len, a model from FAULT_MODELS, a unique prompt with marker."""

    def make(i: int) -> tuple[dict[str, str], dict[str, Any]]:
        proj = projects[i % len(projects)]
        model = FAULT_MODELS[(i // len(projects)) % len(FAULT_MODELS)]
        marker = f"MARK-{run_tag}-{i:06d}"
        body = {"model": model, "max_tokens": 32,
                "messages": [{"role": "user", "content": f"{marker} say something about number {i}"}]}
        headers = {"Authorization": f"Bearer {proj.info['api_key']}", "Cache-Control": "no-store, no-cache"}
        return headers, body

    return make


@dataclass
class FaultReport:
    requests: int
    correct: int
    clear_errors: int
    lost_or_wrong: list[str]
    error_statuses: dict[str, int]
    calls: int
    call_outcomes: dict[str, int]
    wrong_key_calls: list[str]
    ledger_rows: int
    ledger_success_rows: int
    ledger_missing: list[str]
    fee_header_sum_micros: int
    fee_ledger_sum_micros: int
    key_sources: dict[str, int]
    fallbacks_taken: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        rows = [
            ("requests", self.requests),
            ("correct completions (content echoes own marker)", self.correct),
            ("clear errors (4xx/5xx with JSON error body)", f"{self.clear_errors} {dict(self.error_statuses)}"),
            ("lost / wrong", len(self.lost_or_wrong)),
            ("provider calls (fake log)", f"{self.calls} {dict(self.call_outcomes)}"),
            ("calls with a wrong project's or provider's key", len(self.wrong_key_calls)),
            ("successes by key source", dict(self.key_sources)),
            ("successful requests that took a key fallback", self.fallbacks_taken),
            ("ledger rows (success / all)", f"{self.ledger_success_rows} / {self.ledger_rows}"),
            ("successful responses without a ledger row", len(self.ledger_missing)),
            ("fee: sum of x-adaptive-overhead-fee-usd", f"{self.fee_header_sum_micros / 1e6:.6f} USD"),
            ("fee: ledger sum (success rows)", f"{self.fee_ledger_sum_micros / 1e6:.6f} USD"),
        ]
        return "\n".join(["| check | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def _micros(value: str) -> int:
    return int((Decimal(value) * 1_000_000).to_integral_exact())


def check_fault_run(projects: Sequence[FaultProject], results: Sequence[Result], calls: Sequence[dict[str, Any]],
                    ledger: Sequence[dict[str, Any]], fake_keys: dict[str, dict[str, Any]], run_tag: str) -> FaultReport:
    """Judge a load-with-faults run.

    * correct: 200 whose content quotes this request's own marker and whose model is the asked one;
    * clear error: 4xx/5xx with a JSON body carrying an `error`;
    * lost/wrong: anything else (no response, 200 with another answer, non-JSON error);
    * wrong-key calls: (1) every call in the fake log uses a known key on its own provider's path;
      (2) each successful response's provider call (found by the fake's call id, forwarded by
      LiteLLM as the `llm_provider-(x-)request-id` header) used a key of the requesting project
      or the pooled key of that provider, and the very key the x-adaptive-key-* headers name;
      (3) per key label, the calls in the log equal the attempts the ledger reports for the owning
      project (fallback entries by fingerprint, plus the final key of successful rows), up to one
      silent same-key retry per connection reset;
    * ledger: one success row per 200 (by x-adaptive-request-id), fee sum exact to the micro-dollar.
    """
    problems: list[str] = []
    by_tag = {p.tag: p for p in projects}
    by_key = {p.info["api_key"]: p for p in projects}
    label_provider = {spec["label"]: spec.get("provider", "any") for spec in fake_keys.values()}
    fp_label: dict[str, str] = {}
    for p in projects:
        for view, (provider, secret, _prio) in zip(p.info["keys"], p.keys):
            fp_label[view["fingerprint"]] = fake_keys[secret]["label"]
    make = fault_request(projects, run_tag)

    # responses
    correct = clear = 0
    lost: list[str] = []
    statuses: Counter[str] = Counter()
    key_sources: Counter[str] = Counter()
    fallbacks_taken = 0
    fee_headers = 0
    ok_rids: dict[str, int] = {}
    success_call_seqs: dict[int, int] = {}
    for r in results:
        headers, body = make(r.index)
        marker = f"MARK-{run_tag}-{r.index:06d}"
        if r.status == 200:
            try:
                content = r.body["choices"][0]["message"]["content"]
            except (TypeError, KeyError, IndexError):
                lost.append(f"#{r.index}: 200 without content: {str(r.body)[:200]}")
                continue
            if marker not in content or f"[{_upstream_model(body['model'])}" not in content:
                lost.append(f"#{r.index}: wrong answer {content[:120]!r} for {marker} / {body['model']}")
                continue
            correct += 1
            rid = r.headers.get("x-adaptive-request-id")
            if not rid:
                problems.append(f"#{r.index}: 200 without x-adaptive-request-id")
            else:
                ok_rids[rid] = r.index
            key_sources[r.headers.get("x-adaptive-key-source", "?")] += 1
            if r.headers.get("x-adaptive-fallbacks"):
                fallbacks_taken += 1
            fee = r.headers.get("x-adaptive-overhead-fee-usd")
            if fee is None:
                problems.append(f"#{r.index}: 200 without x-adaptive-overhead-fee-usd")
            else:
                fee_headers += _micros(fee)
            seq = _call_seq(r.headers.get("llm_provider-x-request-id") or r.headers.get("llm_provider-request-id") or "")
            if seq is None:
                problems.append(f"#{r.index}: no provider request id header to find its provider call")
            else:
                success_call_seqs[seq] = r.index
        elif r.status >= 400 and isinstance(r.body, dict) and r.body.get("error"):
            clear += 1
            statuses[str(r.status)] += 1
        else:
            lost.append(f"#{r.index}: status {r.status} {r.error or str(r.body)[:200]}")
    if len(results) != len({r.index for r in results}):
        problems.append("duplicate results")

    # provider calls
    wrong: list[str] = []
    outcomes: Counter[str] = Counter()
    by_seq = {c["seq"]: c for c in calls}
    for c in calls:
        outcomes[str(c.get("outcome"))] += 1
        label = c.get("key_label")
        if label is None or c.get("outcome") in ("unknown_key", "provider_mismatch"):
            wrong.append(f"call {c['seq']}: {c.get('outcome')} key {label} on {c.get('provider')}")
        elif label_provider.get(label, "any") not in ("any", c.get("provider")):
            wrong.append(f"call {c['seq']}: key {label} of {label_provider.get(label)} used on {c.get('provider')}")
    unmatched = 0
    for seq, index in success_call_seqs.items():
        c = by_seq.get(seq)
        headers, body = make(index)
        proj = by_key[headers["Authorization"].split(" ", 1)[1]]
        provider = MODEL_PROVIDER[body["model"]]
        if c is None:
            unmatched += 1
            continue
        label = c.get("key_label") or ""
        if not (proj.label_owner(label) or label == f"pooled-{provider}") or c.get("provider") != provider:
            wrong.append(f"request #{index} of {proj.tag} ({provider}) was answered with key {label} on {c.get('provider')}")
        r_headers = next(r.headers for r in results if r.index == index)
        source, fp = r_headers.get("x-adaptive-key-source"), r_headers.get("x-adaptive-key-fingerprint")
        claimed = fp_label.get(fp or "", f"?{fp}") if source == "byok" else f"pooled-{provider}"
        if claimed != label:
            wrong.append(f"request #{index}: headers say {source} {claimed}, the provider saw key {label}")
    if unmatched:
        problems.append(f"{unmatched} successful responses could not be matched to a provider call by id")

    # ledger
    ledger_by_rid = {row["request_id"]: row for row in ledger}
    missing = [rid for rid in ok_rids if rid not in ledger_by_rid or ledger_by_rid[rid]["outcome"] != "success"]
    success_rows = [row for row in ledger if row["outcome"] == "success"]
    fee_ledger = sum(int(row["overhead_fee_micros"]) for row in success_rows)
    if len(success_rows) != correct:
        problems.append(f"ledger success rows {len(success_rows)} != successful requests {correct}")
    if len(ledger) != len(results):
        problems.append(f"ledger rows {len(ledger)} != requests {len(results)} (errors are logged too)")
    if fee_ledger != fee_headers:
        problems.append(f"fee: ledger {fee_ledger} micro-USD != headers {fee_headers} micro-USD")

    # per-label reconciliation: the log's calls vs. the attempts the ledger reports
    expected: Counter[str] = Counter()
    for row in ledger:
        proj = next((p for p in projects if p.info["id"] == row["project_id"]), None)
        if proj is None:
            continue
        for fb in json.loads(row.get("fallbacks") or "[]"):
            src = fb.get("from", "")
            expected[fp_label.get(src, src.replace("pooled:", "pooled-"))] += 1
        if row["outcome"] == "success":
            if row.get("key_source") == "byok":
                expected[fp_label.get(row.get("key_fingerprint") or "", "?byok")] += 1
            elif row.get("key_source") == "pooled":
                expected[f"pooled-{row.get('provider')}"] += 1
    # LiteLLM's own HTTP handler (the Anthropic path) retries a request once, with the same key,
    # after a connection reset; the plugin never sees that attempt. So each logged reset may be
    # followed by one call that the ledger does not report.
    logged = Counter(str(c.get("key_label")) for c in calls)
    resets = Counter(str(c.get("key_label")) for c in calls if c.get("outcome") == "reset")
    for label in sorted(set(expected) | set(logged)):
        owner = label.split("-", 1)[0]
        if label.startswith("pooled-") or owner in by_tag:
            if not expected[label] <= logged[label] <= expected[label] + resets[label]:
                problems.append(f"key {label}: {logged[label]} calls in the provider log ({resets[label]} resets), "
                                f"{expected[label]} attempts in the ledger")

    if lost:
        problems.append(f"{len(lost)} lost/wrong responses, e.g. {lost[:3]}")
    if wrong:
        problems.append(f"{len(wrong)} wrong-key calls, e.g. {wrong[:3]}")
    if missing:
        problems.append(f"{len(missing)} successful responses without a success ledger row")
    return FaultReport(len(results), correct, clear, lost, dict(statuses), len(calls), dict(outcomes), wrong,
                       len(ledger), len(success_rows), missing, fee_headers, fee_ledger, dict(key_sources),
                       fallbacks_taken, problems)


def _upstream_model(group: str) -> str:
    return UPSTREAM_MODEL.get(group, group)


def _call_seq(response_id: str) -> int | None:
    """The fake provider's call sequence number from its request id `req_<hash8><seq6>`."""
    tail = response_id.rsplit("_", 1)[-1]
    if len(tail) >= 14 and tail[-6:].isdigit():
        return int(tail[8:])
    return None


# --- results file ---------------------------------------------------------------------------

RESULTS = ROOT / "bench" / "RESULTS.md"


def write_section(title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the `## title` section of bench/RESULTS.md, leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    head = f"## {title}"
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == head)
    except StopIteration:
        new = text.rstrip("\n") + f"\n\n{head}\n\n{body.strip()}\n"
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        new_lines = lines[:start] + [head, "", *body.strip().splitlines(), ""] + lines[end:]
        new = "\n".join(new_lines).rstrip("\n") + "\n"
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)

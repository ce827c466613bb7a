"""What the plugin costs per request: bare LiteLLM vs. LiteLLM with the plugin, same fake provider.

    python bench/overhead.py [--requests 300] [--levels 1,16,64] [--latencies 0,50] [--quick] [--write]
                             [--profile FILE.svg [--profile-variant c]]

For each fake-provider latency (a fixed sleep per successful call, provider in its own process)
it starts these `litellm --config` proxies side by side, one worker each:

  (a)  bare LiteLLM: config/demo.yaml minus the plugin callback, custom_auth and our retry
       policy (prometheus callback kept), master-key auth, pooled key;
  (b)  the plugin on: a project API key, a BYOK key, every prompt unique (cache miss: lookup,
       then the answer is stored); embeddings in the worker process (the default; its CPU is
       counted with the proxy's);
  (b') the same with ADAPTIVE_CACHE_ENABLED=false and ADAPTIVE_ROUTING_USE_EMBEDDING=false;
  (b-full) (b) with ADAPTIVE_CACHE_FIRST_LOOK=false: every lookup and every store embeds with the
       full model (what (b) was before the cascade; (b) embeds only near a cached entry);
  (b-inproc) (b) with ADAPTIVE_EMBEDDING_PROCESS=false (embeddings in the proxy process);
  (b-unbatched) (b) with ADAPTIVE_EMBEDDING_BATCH_TEXTS=1 (the worker embeds one text per run);
  (b-l3) (b) on paraphrase-MiniLM-L3-v2 (row-wise, batched; `fetch-model --model` puts it next to
       the default model's directory), not the default: its cache and routing quality are lower;
  (b-auto) `model: "auto"` on (b), when the router answers (skipped with its error otherwise);
  (x-NAME=VALUE+NAME...) (b) with those environment variables set (a bare NAME: 1), for experiments;
  (c)  the cache-hit path on (b): one prompt, stored by a warm-up request, then repeated; in
       the turns of the fastest provider latency, beside bare LiteLLM's fastest calls.

At every concurrency level the same number of requests (after a warm-up of `--warmup`) is sent
by an aiohttp client whose connection pool matches the concurrency, in `--rounds` turns per
variant that alternate between the variants (a, b', b, ..., then b, b', a, ...): slow drift of
the machine (other jobs, CPU clocks) then affects every variant alike instead of whichever
happened to run during it. The idle proxies cost nothing measurable while another is measured.
Printed: p50/p95/p99 latency, throughput, the proxy process's CPU time per measured request
(all its threads, from /proc: on a noisy machine far steadier than a latency percentile), the
ratios (b)/(a) and the differences (pooled, and turn by turn), the local embedding time (p50,
measured from this process on the same kind of prompts the way each variant computes it, before
each of its turns at c=1: a worker process for (b), in-process for (b-inproc)), the same
embedding as it ran beside each of those proxies during their c=1 turns (the p50 of its compute
time from the proxy's adaptive_embedding_seconds: slower than alone, since the other vCPU is
busy and after a 50 ms pause its weights are no longer in the CPU's caches), the proxy's own
adaptive_cache_lookup_seconds / adaptive_plugin_latency_seconds means, and the targets. The
budget "one embedding + 1 ms" is checked against both embedding figures.
With BENCH_THREADS=1 in the environment, each turn also prints the proxy's CPU per request by
thread (the event loop's MainThread, the executor threads, the cache writer, the ledger), the
names read with `py-spy dump`.
`--write` replaces the `## Overhead` section of bench/RESULTS.md. `--profile` runs py-spy on
the (b) proxy (`--profile-variant c`: while it serves the cache hits) during its first turn at
the highest concurrency level (latency 0) and writes a flame graph.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    MASTER_KEY,
    POOLED_KEYS,
    Admin,
    FakeProviderProcess,
    Result,
    Stats,
    bare_config,
    cpu_speed_ms,
    loadavg,
    machine_note,
    new_tempdir,
    pct,
    proxy_env,
    run_load,
    write_section,
)
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config  # noqa: E402

MODEL = "gpt-4o-mini"
BYOK = "sk-ope-byok-bench-" + "5e4d3c2b1a0f"
KEYS = {**POOLED_KEYS, BYOK: {"label": "bench-byok", "behaviour": "ok", "provider": "openai"}}
TOPICS = ("the tides", "photosynthesis", "compound interest", "TCP slow start", "the French revolution",
          "sourdough bread", "black holes", "the Krebs cycle", "binary search", "monsoon rains")


def prompt(tag: str, i: int) -> str:
    """Unique, realistic-length prompts (a cache miss every time)."""
    return f"Request {tag}-{i}: in two sentences, explain {TOPICS[i % len(TOPICS)]} to a curious {10 + i % 60}-year-old."


@dataclass
class Row:
    latency_ms: float
    variant: str
    concurrency: int
    stats: Stats
    errors: int
    load: float
    cpu_ms: float  # the proxy process's CPU time (all threads) per measured request
    worker_cpu_ms: float  # of which its children's (the embedding worker of (b))
    turn_p50s: list[float]  # p50 of each interleaved turn, in turn order


def chat_factory(api_key: str, tag: str, *, model: str = MODEL, fixed: str | None = None):
    headers = {"Authorization": f"Bearer {api_key}"}

    def make(i: int) -> tuple[dict[str, str], dict[str, Any]]:
        content = fixed if fixed is not None else prompt(tag, i)
        return headers, {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": content}]}

    return make


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU time of a process (all threads) and of its running children, such as
    the embedding worker of (b), and the children's share of it (Linux /proc; 0 elsewhere)."""
    total = children = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            total += seconds
            if stat.parent.name != str(pid):
                children += seconds
    return total, children


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid` (Linux /proc)."""
    out = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            f = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[stat.parent.name] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _names(pid: int) -> dict[str, str]:
    """Thread id -> Python thread name, from `py-spy dump` (empty without py-spy)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        text = subprocess.run([exe, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {m[1]: m[2] for m in re.finditer(r'Thread (\d+) \(\w+\): "([^"]+)"', text)}


def measure(url: str, make, *, n: int, concurrency: int, warmup: int, deadline_s: float, pid: int,
            start: int = 0) -> tuple[list[Result], float, float, tuple[float, float]]:
    """Warm up (unmeasured), then send n requests; returns (results, wall seconds, load average,
    the proxy's CPU seconds during the measured requests, and its children's share)."""
    la = loadavg()
    if warmup:
        asyncio.run(run_load(url, make, n=warmup, concurrency=concurrency, start=10_000_000 + start, keep_body=False,
                             deadline_s=deadline_s))
    cpu = process_cpu_seconds(pid)
    t0 = _threads(pid)
    results, wall = asyncio.run(run_load(url, make, n=n, concurrency=concurrency, start=start, keep_body=False,
                                         deadline_s=deadline_s))
    after = process_cpu_seconds(pid)
    if os.environ.get("BENCH_THREADS"):  # where the proxy's CPU went, by thread (names from py-spy)
        t1 = _threads(pid)
        names = _names(pid)
        agg = {}
        for tid, v in t1.items():
            nm = re.sub(r"\d+", "N", names.get(tid, "?"))
            agg[nm] = agg.get(nm, 0) + v - t0.get(tid, 0)
        print("    threads ms/req:", {k: round(1000 * v / n, 2) for k, v in sorted(agg.items(), key=lambda x: -x[1]) if v > 0}, flush=True)
    return results, wall, max(la, loadavg()), (after[0] - cpu[0], after[1] - cpu[1])


def histogram_means(metrics_text: str) -> dict[str, float]:
    """Mean (ms) of the plugin's latency histograms on /metrics."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        m = re.match(r'^(adaptive_cache_lookup_seconds|adaptive_plugin_latency_seconds)_(sum|count)(\{[^}]*\})? ([0-9.e+-]+)$',
                     line)
        if m:
            name = m[1] + (m[3] or "")
            (sums if m[2] == "sum" else counts)[name] = float(m[4])
    return {k: 1000 * sums[k] / counts[k] for k in sums if counts.get(k)}


def first_look_counts(metrics_text: str) -> dict[str, float]:
    """`adaptive_cache_first_look_total` by result, and the cache's entry embeddings."""
    out = {m[1]: float(m[2]) for m in re.finditer(r'^adaptive_cache_first_look_total\{result="(\w+)"\} (\S+)$',
                                                  metrics_text, re.M)}
    entries = re.search(r"^adaptive_cache_entry_embeddings_total (\S+)$", metrics_text, re.M)
    out["entry_embeddings"] = float(entries[1]) if entries else 0.0
    return out


def embedding_buckets(metrics_text: str) -> dict[float, float]:
    """`adaptive_embedding_seconds` on /metrics: cumulative count per bucket bound (ms), summed
    over where the embeddings ran."""
    out: dict[float, float] = {}
    for labels, value in re.findall(r'^adaptive_embedding_seconds_bucket\{([^}]*)\} (\S+)$', metrics_text, re.M):
        bound = dict(re.findall(r'(\w+)="([^"]*)"', labels))["le"]
        le = float("inf") if bound == "+Inf" else 1000 * float(bound)
        out[le] = out.get(le, 0.0) + float(value)
    return out


def bucket_p50(cumulative: dict[float, float]) -> float | None:
    """The median of a histogram from its cumulative bucket counts, interpolated in its bucket."""
    total = cumulative.get(float("inf"), 0.0)
    if total <= 0:
        return None
    low, below = 0.0, 0.0
    for le in sorted(cumulative):
        if cumulative[le] >= total / 2:
            if le == float("inf"):
                return low
            inside = cumulative[le] - below
            return low + (le - low) * ((total / 2 - below) / inside if inside else 1.0)
        low, below = le, cumulative[le]
    return None


class EmbedTimer:
    """One local embedding of a bench prompt as the proxy computes it (`embed_one_async`, awaited
    in an event loop; with `process`, through a worker process of its own, as (b) does), timed
    from this process while the proxies are idle. Sampled before every turn of its variant, so
    that the budget "adds no more than one embedding + 1 ms" is measured in the same minutes as
    the variant itself (this machine's speed drifts by tens of percent within a run)."""

    def __init__(self, *, process: bool) -> None:
        from adaptive_plugin.embedding import Embedder, default_model_dir

        self.embedder = Embedder.from_directory(default_model_dir())
        if process:
            self.embedder.use_process(default_model_dir())
            assert self.embedder.process is not None
            if not asyncio.run(self.embedder.process.until_ready()):
                raise SystemExit("the embedding worker process did not start")
        self.times: list[float] = []
        self.run(10, keep=False)  # warm-up (and, with a worker, its start)

    def run(self, n: int, *, keep: bool = True) -> list[float]:
        async def timed() -> list[float]:
            out = []
            for i in range(n):
                t0 = time.perf_counter()
                await self.embedder.embed_one_async(prompt(f"emb{len(self.times)}", i))
                out.append((time.perf_counter() - t0) * 1000)
            return out

        times = asyncio.run(timed())
        if keep:
            self.times += times
        return times

    def sample(self, n: int = 40) -> float:
        """Time n more embeddings; their p50."""
        return statistics.median(self.run(n))

    def p50(self) -> float:
        return statistics.median(self.times)

    def p95(self) -> float:
        return pct(self.times, 95)


class Profiler:
    def __init__(self, pid: int, out: Path, seconds: float) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.out = out
        self.proc = subprocess.Popen([exe, "record", "-p", str(pid), "-o", str(out), "-d", str(int(seconds)),
                                      "-r", "250", "--nonblocking", "-t"] + (["-f", "raw"] if out.suffix == ".txt" else []),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self) -> None:
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Target:
    """One thing to measure: a proxy URL and the request factory of a variant."""

    variant: str
    url: str
    make_for: Any  # (tag) -> request factory
    pid: int


def start_targets(latency: float, fake: FakeProviderProcess, work: Path, args: argparse.Namespace,
                  stack: ExitStack, notes: dict[str, Any]) -> dict[str, Target]:
    """Start every variant's proxy at once (they are measured in turns, so drift hits all alike)."""
    targets: dict[str, Target] = {}
    for variant in args.variants:
        state = work / f"state-{variant}-{latency:g}"
        extra: dict[str, str] = {}
        if variant == "b'":
            extra = {"ADAPTIVE_CACHE_ENABLED": "false", "ADAPTIVE_ROUTING_USE_EMBEDDING": "false"}
        elif variant == "b-inproc":
            extra = {"ADAPTIVE_EMBEDDING_PROCESS": "false"}
        elif variant == "b-full":
            extra = {"ADAPTIVE_CACHE_FIRST_LOOK": "false"}
        elif variant.startswith("x-"):
            extra = dict(part.split("=", 1) if "=" in part else (part, "1") for part in variant[2:].upper().split("+"))
        elif variant == "b-unbatched":
            extra = {"ADAPTIVE_EMBEDDING_BATCH_TEXTS": "1"}
        elif variant == "b-l3":
            from adaptive_plugin.embedding import default_model_dir
            from adaptive_plugin.embedding._fetch import MODELS

            l3 = default_model_dir().parent / MODELS["paraphrase-MiniLM-L3-v2"].directory_name
            if not l3.is_dir():
                print(f"  (b-l3) skipped: no {l3} (adaptive-plugin fetch-model --model paraphrase-MiniLM-L3-v2 --dir {l3})")
                continue
            extra = {"ADAPTIVE_EMBEDDING_MODEL_DIR": str(l3)}
        config = bare_config(work) if variant == "a" else demo_config()
        proxy = stack.enter_context(ProxyProcess(config, env=proxy_env(fake.base_url, state, **extra),
                                                 log_path=work / f"proxy-{variant}-{latency:g}.log"))
        url = f"{proxy.base_url}/v1/chat/completions"
        if variant == "a":
            api_key = MASTER_KEY
        else:
            admin = Admin(proxy.base_url)
            api_key = admin.project(f"bench-{secrets.token_hex(3)}", keys=[("openai", BYOK, 1)])["api_key"]
        pid = proxy.proc.pid  # type: ignore[union-attr]
        targets[variant] = Target(variant, url, lambda tag, k=api_key: chat_factory(k, tag), pid)
        if variant != "b":
            continue
        notes.setdefault("base_urls", {})[latency] = proxy.base_url
        # (b-auto): only if the router answers
        probe = httpx.post(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30,
                           json={"model": "auto", "messages": [{"role": "user", "content": prompt("probe", 0)}]})
        if probe.status_code == 200:
            targets["b-auto"] = Target("b-auto", url, lambda tag, k=api_key: chat_factory(k, tag, model="auto"), pid)
        else:
            notes["auto_skipped"] = f"{probe.status_code} {probe.text[:160]}"
            print(f"  (b-auto) skipped: model auto answered {notes['auto_skipped']}", flush=True)
        if latency == min(args.latencies):
            # (c): the cache-hit path, one prompt stored by a first request, then repeated; measured
            # in the turns of the fastest provider, so that it is paired with bare's fastest calls
            fixed = prompt(f"hit-{secrets.token_hex(2)}", 0)
            make = chat_factory(api_key, "hit", fixed=fixed)
            httpx.post(url, headers=make(0)[0], json=make(0)[1], timeout=30).raise_for_status()
            time.sleep(0.5)  # the answer is written within the cache's write delay (50 ms)
            check = httpx.post(url, headers=make(0)[0], json=make(0)[1], timeout=30)
            notes["hit_header"] = check.headers.get("x-adaptive-cache")
            targets["c"] = Target("c", url, lambda tag, m=make: m, pid)
    return targets


def run_latency(latency: float, fake: FakeProviderProcess, work: Path, args: argparse.Namespace,
                rows: list[Row], notes: dict[str, Any], timers: dict[str, EmbedTimer]) -> None:
    with ExitStack() as stack:
        targets = start_targets(latency, fake, work, args, stack, notes)
        order = list(targets)
        per_round = max(1, args.requests // args.rounds)
        for conc in args.levels:
            acc: dict[str, tuple[list[Result], float, float, tuple[float, float]]] = {
                v: ([], 0.0, 0.0, (0.0, 0.0)) for v in order}
            turns: dict[str, list[float]] = {}
            for rnd in range(args.rounds):
                # alternate the order so that no variant always runs right after the same one
                for variant in order if rnd % 2 == 0 else order[::-1]:
                    target = targets[variant]
                    if variant in timers and conc == 1:
                        timers[variant].sample()  # the embedding budget, timed beside the variant's own turns
                    profiler = None
                    if (args.profile and variant == args.profile_variant and rnd == 0 and latency == args.latencies[0]
                            and conc == max(args.levels)):
                        profiler = Profiler(target.pid, Path(args.profile), max(5.0, per_round / 60))
                    tag = f"{variant}{latency:g}-{conc}-{rnd}-{secrets.token_hex(2)}"
                    watch = variant in timers and conc == 1  # the embeddings as they ran in this proxy
                    metrics_url = target.url.removesuffix("/v1/chat/completions") + "/metrics/"
                    before = embedding_buckets(httpx.get(metrics_url, timeout=30).text) if watch else {}
                    results, wall, la, cpu = measure(target.url, target.make_for(tag), n=per_round,
                                                     concurrency=conc, warmup=args.warmup if rnd == 0 else 0,
                                                     deadline_s=args.deadline, pid=target.pid, start=rnd * per_round)
                    if watch:  # this turn's embeddings (and the warm-up's, in the first turn)
                        seen = notes.setdefault("in_proxy", {}).setdefault((latency, variant), {})
                        for le, n in embedding_buckets(httpx.get(metrics_url, timeout=30).text).items():
                            seen[le] = seen.get(le, 0.0) + n - before.get(le, 0.0)
                    if profiler is not None:
                        profiler.wait()
                    done, total_wall, load, total_cpu = acc[variant]
                    acc[variant] = (done + results, total_wall + wall, max(load, la),
                                    (total_cpu[0] + cpu[0], total_cpu[1] + cpu[1]))
                    ok_ms = [r.latency_s * 1000 for r in results if r.status == 200]
                    turns.setdefault(variant, []).append(pct(ok_ms, 50))
            for variant in order:
                results, wall, la, cpu = acc[variant]
                stats = Stats.of(results, wall)
                errors = sum(r.status != 200 for r in results)
                if errors:
                    first = next(r for r in results if r.status != 200)
                    print(f"    ({variant}) {errors} errors, e.g. {first.status} {first.error or str(first.body)[:200]}",
                          flush=True)
                cpu_ms = 1000 * cpu[0] / len(results) if results else float("nan")
                worker_ms = 1000 * cpu[1] / len(results) if results else float("nan")
                rows.append(Row(latency, variant, conc, stats, errors, la, cpu_ms, worker_ms, turns.get(variant, [])))
                print(f"  ({variant}) latency {latency:g} ms, c={conc}: p50 {stats.p50_ms:.2f} p95 {stats.p95_ms:.2f} "
                      f"p99 {stats.p99_ms:.2f} ms, {stats.rps:.0f} req/s, proxy CPU {cpu_ms:.2f} ms/req "
                      f"(embedding worker {worker_ms:.2f}), "
                      f"errors {errors}, load {la:.1f}", flush=True)
        base = notes.get("base_urls", {}).get(latency)
        if base:
            text = httpx.get(f"{base}/metrics/", timeout=30).text
            notes.setdefault("metrics", {})[latency] = histogram_means(text)
            notes.setdefault("first_look", {})[latency] = first_look_counts(text)


def find(rows: list[Row], latency: float, variant: str, conc: int) -> Row | None:
    return next((r for r in rows if r.latency_ms == latency and r.variant == variant and r.concurrency == conc), None)


def tables(rows: list[Row], args: argparse.Namespace) -> str:
    out = ["| provider latency | variant | concurrency | p50 ms | p95 ms | p99 ms | req/s | proxy CPU ms/req "
           "| of which embedding worker | errors | load avg |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = "-" if r.variant == "c" else f"{r.latency_ms:g} ms"
        s = r.stats
        out.append(f"| {lat} | ({r.variant}) | {r.concurrency} | {s.p50_ms:.2f} | {s.p95_ms:.2f} | {s.p99_ms:.2f} | "
                   f"{s.rps:.0f} | {r.cpu_ms:.2f} | {r.worker_cpu_ms:.2f} | {r.errors} | {r.load:.1f} |")
    out += ["", "Plugin vs. bare, same provider latency and concurrency (difference in ms; ratio of throughput):", "",
            "| provider latency | concurrency | variant | Δp50 ms | Δp50 per turn: median [min, max] | Δp95 ms "
            "| Δp99 ms | p50 ratio | req/s ratio | Δproxy CPU ms/req | proxy CPU ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for lat in args.latencies:
        for conc in args.levels:
            a = find(rows, lat, "a", conc)
            for v in ("b", "b-full", "b-unbatched", "b-l3", "b-inproc", "b'", "b-auto", "c"):
                b = find(rows, lat, v, conc)
                if a is None or b is None:
                    continue
                out.append(f"| {lat:g} ms | {conc} | ({v}) | {b.stats.p50_ms - a.stats.p50_ms:+.2f} | "
                           f"{turn_diffs(a, b)} | "
                           f"{b.stats.p95_ms - a.stats.p95_ms:+.2f} | {b.stats.p99_ms - a.stats.p99_ms:+.2f} | "
                           f"{b.stats.p50_ms / a.stats.p50_ms:.3f} | {b.stats.rps / a.stats.rps:.3f} | "
                           f"{b.cpu_ms - a.cpu_ms:+.2f} | {b.cpu_ms / a.cpu_ms:.3f} |")
    return "\n".join(out)


def turn_diffs(a: Row, b: Row) -> str:
    """(b)'s p50 minus (a)'s, turn by turn: adjacent turns share the machine's state of the moment,
    so their spread shows how much of a pooled difference is the machine's drift."""
    diffs = sorted(y - x for x, y in zip(a.turn_p50s, b.turn_p50s))
    if not diffs:
        return "-"
    return f"{statistics.median(diffs):+.2f} [{diffs[0]:+.2f}, {diffs[-1]:+.2f}]"


def verdicts(rows: list[Row], args: argparse.Namespace, embs: dict[str, float],
             in_proxy: dict[tuple[float, str], float]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    lat0 = min(args.latencies)
    a1, b1, bp1 = find(rows, lat0, "a", 1), find(rows, lat0, "b", 1), find(rows, lat0, "b'", 1)
    if a1 and bp1:
        d50 = bp1.stats.p50_ms - a1.stats.p50_ms
        d95 = bp1.stats.p95_ms - a1.stats.p95_ms
        out.append(("(b') adds < 1 ms at p50 (c=1)", f"{d50:+.2f} ms", d50 < 1))
        out.append(("(b') adds < 3 ms at p95 (c=1)", f"{d95:+.2f} ms", d95 < 3))
    if a1 and b1:
        out.append(("local embedding < 5 ms p50 (worker process, as (b))", f"{embs['b']:.2f} ms", embs["b"] < 5))
    for variant in ("b", "b-inproc"):
        emb = embs[variant]
        for lat in args.latencies:
            a, b = find(rows, lat, "a", 1), find(rows, lat, variant, 1)
            if a and b:
                d50 = b.stats.p50_ms - a.stats.p50_ms
                ran = in_proxy.get((lat, variant))
                if ran is not None:
                    out.append((f"({variant}) adds <= one embedding + 1 ms at p50 (c=1, {lat:g} ms provider; "
                                "the embedding as it ran beside the proxy)", f"{d50:+.2f} ms vs {ran + 1:.2f} ms",
                                d50 <= ran + 1))
                out.append((f"({variant}) adds <= one embedding + 1 ms at p50 (c=1, {lat:g} ms provider; "
                            "the embedding timed alone)", f"{d50:+.2f} ms vs {emb + 1:.2f} ms", d50 <= emb + 1))
    for lat in args.latencies:
        a16, bp16 = find(rows, lat, "a", 16), find(rows, lat, "b'", 16)
        if a16 and bp16:
            ratio = bp16.stats.rps / a16.stats.rps
            out.append((f"(b') throughput at c=16 >= 0.9x bare ({lat:g} ms provider)", f"{ratio:.3f}x", ratio >= 0.9))
    for lat in args.latencies:  # the miss path, embedding worker included (issues 22 and 27)
        a16, b16 = find(rows, lat, "a", 16), find(rows, lat, "b", 16)
        if a16 and b16:
            ratio = b16.stats.rps / a16.stats.rps
            out.append((f"(b) throughput at c=16 >= 0.95x bare ({lat:g} ms provider)", f"{ratio:.3f}x", ratio >= 0.95))
            cpu = b16.cpu_ms / a16.cpu_ms
            out.append((f"(b) proxy CPU per request at c=16 <= 1.15x bare's, embedding worker included ({lat:g} ms "
                        "provider)", f"{b16.cpu_ms:.2f} vs {a16.cpu_ms:.2f} ms ({cpu:.3f}x)", cpu <= 1.15))
    for conc in args.levels:
        a, c = find(rows, lat0, "a", conc), find(rows, lat0, "c", conc)
        if a and c:
            out.append((f"cache hit faster than bare's fastest provider call (c={conc}, p50)",
                        f"{c.stats.p50_ms:.2f} vs {a.stats.p50_ms:.2f} ms", c.stats.p50_ms < a.stats.p50_ms))
            if conc > 1:  # a saturated proxy: its p50 also depends on how evenly it serves the queue
                out.append((f"cache hit faster than bare's fastest provider call (c={conc}, mean; p95)",
                            f"{c.stats.mean_ms:.2f} vs {a.stats.mean_ms:.2f} ms; {c.stats.p95_ms:.1f} vs "
                            f"{a.stats.p95_ms:.1f} ms", c.stats.mean_ms < a.stats.mean_ms))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="measured requests per variant and level")
    ap.add_argument("--warmup", type=int, default=30, help="unmeasured requests before each level")
    ap.add_argument("--levels", default="1,16,64", help="concurrency levels")
    ap.add_argument("--latencies", default="0,50", help="fake provider latencies, ms")
    ap.add_argument("--variants", default="a,b',b,b-full",
                    help="which of a, b', b, b-full, b-inproc, b-unbatched, b-l3 to run ((c) and (b-auto) ride on b)")
    ap.add_argument("--rounds", type=int, default=6,
                    help="each level is measured in this many turns per variant, interleaved (drift hits all alike)")
    ap.add_argument("--deadline", type=float, default=120.0, help="wall-clock bound per level, seconds")
    ap.add_argument("--quick", action="store_true", help="100 requests, warm-up 10, levels 1,16, latency 0")
    ap.add_argument("--write", action="store_true", help="write the Overhead section of bench/RESULTS.md")
    ap.add_argument("--profile", default=None,
                    help="py-spy flame graph (.svg) or raw stacks (.txt) of one variant's proxy, its first turn at the top level")
    ap.add_argument("--profile-variant", default="b", help="the variant --profile samples (b, b', b-inproc or c)")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.levels, args.latencies = 100, 10, "1,16", "0"
    args.levels = [int(x) for x in str(args.levels).split(",")]
    args.latencies = [float(x) for x in str(args.latencies).split(",")]
    args.variants = [v.strip() for v in args.variants.split(",")]

    started = time.monotonic()
    note_start = machine_note()
    speed = cpu_speed_ms()
    timers = {"b": EmbedTimer(process=True), "b-inproc": EmbedTimer(process=False)}
    start_embs = {v: statistics.median(t.run(200, keep=False)) for v, t in timers.items()}
    print(f"{note_start}\nCPU speed figure: {speed:.0f} ms\nlocal embedding of one bench prompt: p50 "
          f"{start_embs['b']:.2f} ms (worker process), {start_embs['b-inproc']:.2f} ms (in-process)", flush=True)
    work = new_tempdir("adaptive-bench-overhead-")
    rows: list[Row] = []
    notes: dict[str, Any] = {}
    try:
        for latency in args.latencies:
            with FakeProviderProcess(KEYS, latency_ms=latency, workdir=work) as fake:
                run_latency(latency, fake, work, args, rows, notes, timers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        timers["b"].embedder.close_process()
    elapsed = time.monotonic() - started
    note_end = machine_note()
    for timer in timers.values():
        if not timer.times:  # no turns of its variant at c=1: the start-of-run figure
            timer.times = timer.run(200, keep=False)
    embs = {v: t.p50() for v, t in timers.items()}

    in_proxy = {key: p50 for key, seen in notes.get("in_proxy", {}).items() if (p50 := bucket_p50(seen)) is not None}
    table = tables(rows, args)
    checks = verdicts(rows, args, embs, in_proxy)
    check_lines = ["| target | measured | verdict |", "|---|---|---|"] + [
        f"| {name} | {value} | {'PASS' if ok else 'FAIL' if ok is not None else '-'} |" for name, value, ok in checks]
    metrics_lines = [f"- one embedding as it ran beside the ({variant}) proxy at c=1, {lat:g} ms provider (its "
                     f"compute time, `adaptive_embedding_seconds`, p50 interpolated in 1-2 ms buckets): {p50:.2f} ms"
                     for (lat, variant), p50 in sorted(in_proxy.items())]
    for lat, means in notes.get("metrics", {}).items():
        shown = ", ".join(f"{k.replace('adaptive_', '')} {v:.2f} ms" for k, v in sorted(means.items()))
        metrics_lines.append(f"- (b) proxy at {lat:g} ms provider latency, histogram means over the whole run: {shown}")
    for lat, counts in notes.get("first_look", {}).items():
        looked = counts.get("miss", 0.0) + counts.get("embedded", 0.0)
        if looked:
            metrics_lines.append(
                f"- (b) proxy at {lat:g} ms provider latency, the cascade: {counts.get('miss', 0):.0f} of {looked:.0f} "
                f"semantic lookups ({counts.get('miss', 0) / looked:.1%}) decided by the first look without a full "
                f"embedding; {counts['entry_embeddings']:.0f} cached entries embedded later")
    auto = notes.get("auto_skipped")
    print("\n" + table + "\n\n" + "\n".join(check_lines))
    print("\n".join(metrics_lines))
    if auto:
        print(f"(b-auto) skipped: {auto}")
    print(f"elapsed {elapsed:.0f} s; {note_end}")
    if args.write:
        body = f"""`python bench/overhead.py{' --quick' if args.quick else ''} --write`: {args.requests} measured requests per
variant and concurrency level after {args.warmup} warm-up requests, measured in {args.rounds} interleaved turns
per variant (all proxies started side by side; the order alternates between turns), aiohttp client with a
pool sized to the concurrency, one proxy worker each, the fake provider in its own process, {elapsed:.0f} s in all.
Machine: {note_start} at the start; {note_end.split('load average ')[-1]} at the end (the per-row load
average is the 1-minute figure); CPU speed figure {speed:.0f} ms (`bench._common.cpu_speed_ms`: a
5-million-addition Python loop, best of 3; lower is faster; machines of this kind have run 2-3x
apart on different days). (a) bare LiteLLM (demo config minus the plugin callback,
custom_auth and retry policy; master key); (b) plugin on, project key, BYOK key, unique prompts (cache miss,
answer stored), embeddings in the worker process (the default; its CPU counted with the proxy's); (b-inproc) (b)
with `ADAPTIVE_EMBEDDING_PROCESS=false` (embeddings in the proxy process);
(b') plugin with `ADAPTIVE_CACHE_ENABLED=false ADAPTIVE_ROUTING_USE_EMBEDDING=false`; (c) cache
hit on (b) (`x-adaptive-cache: {notes.get('hit_header')}`). Model `{MODEL}`, `max_tokens` 64.
Local embedding of one prompt as the proxy computes it (`embed_one_async` from this process, proxies idle, 40
embeddings before each turn of the variant at c=1): through a worker process, as (b): p50 {embs['b']:.2f} ms,
p95 {timers['b'].p95():.2f} ms ({len(timers['b'].times)} in all; {start_embs['b']:.2f} ms p50 at the start of the run);
in-process, as (b-inproc): p50 {embs['b-inproc']:.2f} ms, p95 {timers['b-inproc'].p95():.2f} ms ({start_embs['b-inproc']:.2f} ms at the start).

{table}

{chr(10).join(metrics_lines)}
{f'- (b-auto) skipped: `model: "auto"` answered {auto}' if auto else ''}

{chr(10).join(check_lines)}
"""
        write_section("Overhead", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

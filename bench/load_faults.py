"""Load with faults: bounded load through the plugin while BYOK keys fail, checking nothing is lost.

    python bench/load_faults.py [--requests 2000] [--concurrency 50] [--projects 6] [--quick] [--write]

One fake provider (its own process) and one `litellm --config config/demo.yaml` proxy with the
plugin. Several projects, each with two flaky OpenAI keys and one flaky Anthropic key (429, 500,
connection resets, slow answers; labels encode the project), pooled fallback except every third
project (byok_only). Requests spread over two OpenAI model groups and one Anthropic group, each with a
unique marker in its prompt, `Cache-Control: no-store, no-cache` (every request reaches a
provider).

Reported (targets in brackets): correct completions (content quotes the request's own marker),
clear errors (4xx/5xx with a JSON error body), lost/wrong [0], calls with a key of another
project or provider [0], ledger rows == requests and success rows == successes, fee total ==
sum of the x-adaptive-overhead-fee-usd headers to the micro-dollar. `--write` puts the table into
the `## Load with faults` section of bench/RESULTS.md. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    POOLED_KEYS,
    FAULT_MODELS,
    Admin,
    FakeProviderProcess,
    check_fault_run,
    fault_plan,
    fault_request,
    loadavg,
    machine_note,
    new_tempdir,
    proxy_env,
    run_load,
    write_section,
)
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config  # noqa: E402


def wait_for_ledger(admin: Admin, project_ids: set[str], want: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = [r for r in admin.requests() if r["project_id"] in project_ids]
        if len(rows) >= want:
            return rows
        time.sleep(0.5)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--projects", type=int, default=6)
    ap.add_argument("--latency-ms", type=float, default=5.0, help="fake provider latency of successful calls")
    ap.add_argument("--key-cooldown", type=float, default=2.0,
                    help="ADAPTIVE_KEY_COOLDOWN_SECONDS (default 30 s would park most flaky keys for the whole run)")
    ap.add_argument("--quick", action="store_true", help="300 requests at concurrency 20")
    ap.add_argument("--write", action="store_true", help="write the Load with faults section of bench/RESULTS.md")
    ap.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.concurrency = 300, 20

    work = new_tempdir("adaptive-bench-faults-")
    run_tag = "f" + secrets.token_hex(2)
    projects, fault_keys = fault_plan(run_tag, args.projects)
    keys = {**POOLED_KEYS, **fault_keys}
    load_before = machine_note()
    with FakeProviderProcess(keys, latency_ms=args.latency_ms, workdir=work) as fake:
        env = proxy_env(fake.base_url, work / "state", ADAPTIVE_LEDGER_FLUSH_SECONDS="0.2",
                        ADAPTIVE_KEY_COOLDOWN_SECONDS=str(args.key_cooldown))
        with ProxyProcess(demo_config(), env=env, log_path=work / "proxy.log") as proxy:
            admin = Admin(proxy.base_url)
            for p in projects:
                p.info = admin.project(p.tag, keys=p.keys, fallback=p.fallback)
            fake.reset()
            url = f"{proxy.base_url}/v1/chat/completions"
            print(f"{args.requests} requests at concurrency {args.concurrency}, {len(projects)} projects "
                  f"({sum(p.fallback == 'byok_only' for p in projects)} byok_only) ...", flush=True)
            la0 = loadavg()
            results, wall = asyncio.run(run_load(url, fault_request(projects, run_tag), n=args.requests,
                                                 concurrency=args.concurrency, timeout_s=90, deadline_s=900))
            la1 = loadavg()
            ids = {p.info["id"] for p in projects}
            ledger = wait_for_ledger(admin, ids, len(results))
            calls = fake.calls()
    report = check_fault_run(projects, results, calls, ledger, keys, run_tag)
    if args.keep:
        import dataclasses
        import json

        dump = {"projects": [dataclasses.asdict(p) for p in projects], "results": [dataclasses.asdict(r) for r in results],
                "calls": calls, "ledger": ledger, "run_tag": run_tag}
        (work / "run.json").write_text(json.dumps(dump, default=str))
    lat = sorted(r.latency_s for r in results)
    summary = (f"{len(results)} requests in {wall:.1f} s ({len(results) / wall:.0f} req/s), latency p50 "
               f"{lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms; load average {la0:.1f} -> {la1:.1f}")
    print(summary)
    print(report.table())
    verdict = "PASS" if report.ok else "FAIL"
    print(f"\n{verdict}")
    for problem in report.problems:
        print(" -", problem)
    if args.write:
        flaky = ", ".join(f"{k}={v}" for k, v in fault_keys[next(iter(fault_keys))].items() if k.startswith(("p_", "delay")))
        body = f"""`python bench/load_faults.py{' --quick' if args.quick else ''} --write` ({load_before} at the start).
One proxy (1 worker, plugin on, SQLite, `ADAPTIVE_KEY_COOLDOWN_SECONDS={args.key_cooldown:g}`), the fake provider in its own process ({args.latency_ms:g} ms per
successful call). {len(projects)} projects, each with two OpenAI keys and one Anthropic key, all flaky
({flaky}; the second OpenAI key p_429=0.10), labels encoding the project; every third project is
`byok_only`, the others fall back to the pooled keys. {args.requests} requests at concurrency
{args.concurrency}, models {' / '.join(dict.fromkeys(FAULT_MODELS))}, each prompt carrying a unique
marker, `Cache-Control: no-store, no-cache`. {summary}.

{report.table()}

**{verdict}**: {'all checks hold' if report.ok else '; '.join(report.problems)}. Wrong-key check: every logged call
uses a known key on its own provider's path; each successful response's call (found by the fake's
call id, which LiteLLM forwards as the `llm_provider-(x-)request-id` header) used the requesting
project's key or the pooled key of that provider, and the very key the x-adaptive-key-* headers name;
and for every key label, the calls in the fake provider's log equal the attempts the ledger
reports for the owning project (fallback entries plus the final key), up to one silent same-key
retry per connection reset (LiteLLM's own HTTP handler on the Anthropic path retries a reset once)."""
        write_section("Load with faults", body)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    else:
        print("state kept in", work)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

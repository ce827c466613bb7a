"""How long the proxy's event loop stalls while one local embedding runs.

    python bench/embed_stall.py [--n 60]

The proxy starts each request's embedding early so that it can run beside LiteLLM's own work
on the event loop. That only helps if the embedding leaves the GIL to the loop. For each way
of running it, this starts one embedding and meanwhile spins a Python loop (standing for the
event loop) for 3 ms, timing the longest gap between two of its iterations, and reports:

* the longest stall of the Python loop while the embedding runs (p50 over `--n` embeddings;
  the loop lets go of the GIL every 0.25 ms, as an event loop does when it polls);
* the Python loop's iterations in its 3 ms (what the "event loop" got done);
* when the embedding was done, from its start.

Ways: `run_async` (onnxruntime's pool thread; what `Embedder.embed_one_soon` uses), a Python
thread calling the blocking `run` (the GIL is released inside), and none (the loop alone).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine_note  # noqa: E402
from bench.overhead import prompt  # noqa: E402


def spin(ms: float, chunk_ms: float = 0.25) -> tuple[int, float]:
    """Iterations of a bare Python loop in `ms` milliseconds, and its longest gap (ms).

    Like an event loop, it lets go of the GIL now and then (`time.sleep(0)` after every
    `chunk_ms` of work, where a loop would poll its sockets); a thread waiting for the GIL
    gets it there, and the gap shows how long it keeps it."""
    now = time.perf_counter()
    end, worst, n = now + ms / 1000, 0.0, 0
    release = now + chunk_ms / 1000
    while now < end:
        if now >= release:
            time.sleep(0)
            release = time.perf_counter() + chunk_ms / 1000
        later = time.perf_counter()
        worst, now, n = max(worst, later - now), later, n + 1
    return n, worst * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="embeddings per way")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: the proxy's)")
    args = ap.parse_args(argv)

    from adaptive_plugin.embedding import Embedder, default_model_dir

    embedder = Embedder.from_directory(default_model_dir(), **({"threads": args.threads} if args.threads else {}))
    session: Any = embedder._session  # the onnxruntime session the proxy runs
    if session is None:
        print("this fastembed layout has no direct session: nothing to measure")
        return 1
    feeds = [embedder._feed([prompt("stall", i)]) for i in range(args.n)]
    for feed in feeds[:10]:
        session.run(None, feed)  # warm-up

    def start(way: str, feed: dict[str, Any], done: threading.Event, box: dict[str, float]) -> None:
        def finished(*_: Any) -> None:
            box["t"] = time.perf_counter()
            done.set()

        if way == "run_async":
            session.run_async(None, feed, finished, None)
        elif way == "thread + run":
            threading.Thread(target=lambda: (session.run(None, feed), finished())).start()
        else:
            finished()

    print(machine_note())
    print("| way | longest loop stall p50 ms | loop iterations in 3 ms, p50 | embedding done after, p50 ms |")
    print("|---|---|---|---|")
    ways = ("none", "run_async", "thread + run") if embedder.runs_async else ("none", "thread + run")
    for way in ways:
        stalls, iterations, took = [], [], []
        for feed in feeds:
            time.sleep(0.01)
            done, box = threading.Event(), {}
            t0 = time.perf_counter()
            start(way, feed, done, box)
            n, worst = spin(3.0)
            done.wait()
            stalls.append(worst)
            iterations.append(n)
            took.append((box["t"] - t0) * 1000)
        print(f"| {way} | {statistics.median(stalls):.3f} | {statistics.median(iterations):.0f} | "
              f"{statistics.median(took):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

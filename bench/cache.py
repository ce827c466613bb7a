"""Semantic cache benchmark: answer quality on held-out paraphrase pairs, latency and memory.

    python bench/cache.py [--data ../shared/data] [--sizes 1000,10000,100000] [--skip-scale]

Quality (data: cache/dev.jsonl, fields a, b, label, source), split deterministically into
tune/report halves by a hash of the pair (thresholds and guards were tuned on `tune`):
* gptcache_mock pairs, GPTCache-benchmark style: one cache filled with every pair's `a`,
  each `b` asked; a hit is correct only if it returns its own pair's answer.
* qqp pairs: each pair in its own scope (store a, ask b); a hit is correct only if label 1.
Compared with a plain cosine-threshold cache (top-1 >= t) on the same embeddings.

Scale: N synthetic unit vectors bulk-loaded into one partition (the worst case: no
partitioning help), then real questions looked up with embedding included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adaptive_plugin.cache import SemanticCache, Verifier, request_key  # noqa: E402
from adaptive_plugin.cache.train import half_of  # noqa: E402
from adaptive_plugin.cache._features import _char3  # noqa: E402
from adaptive_plugin.cache._guards import features  # noqa: E402
from adaptive_plugin.cache._store import EntryStore  # noqa: E402
from adaptive_plugin.embedding import Embedder, StaticEmbedder, default_model_dir, embedding_text  # noqa: E402

P: dict[str, Any] = {"model": "bench-model", "temperature": 0}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def answer(i: int) -> dict[str, Any]:
    return {
        "id": f"a{i}", "object": "chat.completion", "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {i}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class Tally:
    def __init__(self) -> None:
        self.pos = self.pos_hits = self.hits = self.correct = self.neg_hits = 0

    def add(self, *, positive: bool, hit: bool, correct: bool) -> None:
        self.pos += positive
        self.hits += hit
        self.correct += hit and correct
        self.pos_hits += hit and correct and positive
        self.neg_hits += hit and not positive

    def row(self) -> tuple[str, str, str]:
        hr = self.pos_hits / self.pos if self.pos else 0.0
        prec = self.correct / self.hits if self.hits else float("nan")
        return f"{hr:.3f}", f"{prec:.3f}", str(self.hits - self.correct)


def cosine_baseline(rows: list[dict[str, Any]], A: np.ndarray, B: np.ndarray, t: float) -> dict[str, Tally]:
    out = {"gptcache_mock": Tally(), "qqp": Tally(), "all": Tally()}
    g = [i for i, r in enumerate(rows) if r["source"] != "qqp"]
    if g:
        sims = B[g] @ A[g].T
        for k, i in enumerate(g):
            j = int(np.argmax(sims[k]))
            hit = bool(sims[k, j] >= t)
            for name in ("gptcache_mock", "all"):
                out[name].add(positive=True, hit=hit, correct=j == k)
    for i, r in enumerate(rows):
        if r["source"] == "qqp":
            hit = bool(float(A[i] @ B[i]) >= t)
            for name in ("qqp", "all"):
                out[name].add(positive=r["label"] == 1, hit=hit, correct=r["label"] == 1)
    return out


class Cascade:
    """The first look for `guarded`: the static table and its vectors of the pairs' texts."""

    def __init__(self, first_look: StaticEmbedder, rows: list[dict[str, Any]], threshold: float) -> None:
        self.first_look, self.threshold = first_look, threshold
        self.a = np.stack([first_look.embed_one(embedding_text(r["a"])) for r in rows])
        self.b = np.stack([first_look.embed_one(embedding_text(r["b"])) for r in rows])
        self.embedded = self.looked = 0  # lookups that reached the full model / the first look

    def share_embedded(self) -> float:
        return self.embedded / self.looked if self.looked else float("nan")


def _first_look_counts() -> tuple[float, float]:
    from prometheus_client import REGISTRY

    return tuple(REGISTRY.get_sample_value("adaptive_cache_first_look_total", {"result": r}) or 0.0
                 for r in ("embedded", "miss"))  # type: ignore[return-value]


def guarded(
    rows: list[dict[str, Any]], A: np.ndarray, B: np.ndarray, thresholds: list[float], verifier: Verifier | None = None,
    cascade: Cascade | None = None,
) -> dict[float, dict[str, Tally]]:
    """The semantic cache's decisions on the pairs at each threshold (embeddings given: `A`, `B`
    of the full model, and with `cascade` the first look's vectors too)."""
    results: dict[float, dict[str, Tally]] = {t: {"gptcache_mock": Tally(), "qqp": Tally(), "all": Tally()} for t in thresholds}
    extra: dict[str, Any] = {}
    if cascade is not None:
        extra = {"first_look": cascade.first_look, "first_look_threshold": cascade.threshold}
    fa = (lambda i: {"first": cascade.a[i]}) if cascade is not None else (lambda i: {})  # noqa: E731
    fb = (lambda i: {"first": cascade.b[i]}) if cascade is not None else (lambda i: {})  # noqa: E731
    before = _first_look_counts()
    with tempfile.TemporaryDirectory() as tmp:
        cache = SemanticCache(tmp, embedder=None, sync_interval=3600, max_entries=10**7,
                              verifier=verifier if verifier is not None else False, **extra)
        g = [i for i, r in enumerate(rows) if r["source"] != "qqp"]
        for i in g:
            cache.store("gptcache", user(rows[i]["a"]), answer(i), P, embedding=A[i], **fa(i))
        q = [i for i, r in enumerate(rows) if r["source"] == "qqp"]
        for i in q:
            cache.store(f"qqp-{i}", user(rows[i]["a"]), answer(i), P, embedding=A[i], **fa(i))
        for t in thresholds:
            cache.similarity_threshold = t
            for i in g:
                res = cache.lookup("gptcache", user(rows[i]["b"]), P, embedding=B[i], **fb(i))
                ok = res.response is not None and res.response["id"] == f"a{i}"
                for name in ("gptcache_mock", "all"):
                    results[t][name].add(positive=True, hit=res.hit, correct=ok)
            for i in q:
                res = cache.lookup(f"qqp-{i}", user(rows[i]["b"]), P, embedding=B[i], **fb(i))
                for name in ("qqp", "all"):
                    results[t][name].add(positive=rows[i]["label"] == 1, hit=res.hit, correct=rows[i]["label"] == 1)
        cache.engine.dispose()
    if cascade is not None:
        after = _first_look_counts()
        cascade.embedded += int(after[0] - before[0])
        cascade.looked += int(after[0] - before[0] + after[1] - before[1])
    return results


def print_table(title: str, lines: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for line in lines:
        print("| " + " | ".join(line) + " |")


def verifier_cost(rows: list[dict[str, Any]], A: np.ndarray, B: np.ndarray, verifier: Verifier) -> str:
    """Median microseconds per candidate score, on first sight of the texts (token caches cold)."""
    times = []
    for i, r in enumerate(rows[:2000]):
        features.cache_clear()
        _char3.cache_clear()
        t0 = time.perf_counter()
        verifier.score(r["b"], r["a"], float(A[i] @ B[i]))
        times.append(time.perf_counter() - t0)
    us = np.array(times) * 1e6
    return f"verifier cost per candidate (cold token caches): p50 {np.percentile(us, 50):.0f} us, p95 {np.percentile(us, 95):.0f} us"


def quality(data: Path, embedder: Embedder, default_t: float) -> None:
    rows = [json.loads(line) for line in (data / "cache" / "dev.jsonl").read_text().splitlines() if line.strip()]
    started = time.perf_counter()
    A = embedder.embed([r["a"] for r in rows])
    B = embedder.embed([r["b"] for r in rows])
    print(f"embedded {2 * len(rows)} texts in {time.perf_counter() - started:.0f} s")
    verifier = Verifier.load()
    op_t = verifier.similarity_threshold
    print(f"verifier artifact: accept_threshold {verifier.accept_threshold}, calibrated similarity_threshold {op_t}")
    print(verifier_cost(rows, A, B, verifier))
    thresholds = sorted({0.86, 0.88, default_t, 0.92, op_t, 0.94})
    verified_thresholds = sorted({0.80, 0.86, default_t, op_t})
    for part in ("report", "tune", "all"):
        idx = [i for i, r in enumerate(rows) if part == "all" or half_of(r) == part]
        sub = [rows[i] for i in idx]
        a, b = A[idx], B[idx]
        lines: list[tuple[str, ...]] = []
        for t in (0.80, 0.90, 0.95):
            tallies = cosine_baseline(sub, a, b, t)
            lines.append((f"cosine >= {t:.2f}", *(x for s in ("all", "gptcache_mock", "qqp") for x in tallies[s].row())))
        for t, tallies in guarded(sub, a, b, thresholds).items():
            name = f"**SemanticCache t={t:.2f}**" if t == default_t else f"SemanticCache t={t:.2f}"
            lines.append((name, *(x for s in ("all", "gptcache_mock", "qqp") for x in tallies[s].row())))
        for t, tallies in guarded(sub, a, b, verified_thresholds, verifier).items():
            name = f"SemanticCache t={t:.2f} + verifier >= {verifier.accept_threshold:.2f}"
            name = f"**{name} (calibrated)**" if t == op_t else name
            lines.append((name, *(x for s in ("all", "gptcache_mock", "qqp") for x in tallies[s].row())))
        header = ("cache", "hit rate", "precision", "wrong hits", "gpt hit rate", "gpt prec", "gpt wrong",
                  "qqp hit rate", "qqp prec", "qqp label-0 hits")
        print_table(f"quality, {part} half ({len(sub)} pairs)" if part != "all" else f"quality, full set ({len(sub)} pairs)",
                    lines, header)
    print("\n(hit rate = correct hits / true paraphrases; precision = correct hits / hits; wrong hits = hits on "
          "label-0 pairs (qqp) or returning another pair's answer (gptcache_mock))")
    cascade_report(rows, A, B, default_t)


def cascade_report(rows: list[dict[str, Any]], A: np.ndarray, B: np.ndarray, default_t: float) -> None:
    """The cascade against the full model alone at the same threshold, and its threshold's choice:
    the highest first-look threshold whose tune-half hit rate and precision are no lower than
    without the cascade (the default, `FIRST_LOOK_THRESHOLD`, was chosen so)."""
    from adaptive_plugin.cache._cache import FIRST_LOOK_THRESHOLD

    first_look = StaticEmbedder.from_directory(default_model_dir())
    halves = {part: [i for i, r in enumerate(rows) if half_of(r) == part] for part in ("tune", "report")}

    def run(part: str, threshold: float | None, t: float = default_t) -> tuple[tuple[str, str, str], float]:
        idx = halves[part]
        sub = [rows[i] for i in idx]
        cascade = None if threshold is None else Cascade(first_look, sub, threshold)
        tally = guarded(sub, A[idx], B[idx], [t], cascade=cascade)[t]["all"]
        return tally.row(), (cascade.share_embedded() if cascade is not None else 1.0)

    base_tune, _ = run("tune", None)
    lines = []
    chosen = None
    for threshold in [round(0.40 + 0.02 * i, 2) for i in range(21)]:
        row, share = run("tune", threshold)
        ok = float(row[0]) >= float(base_tune[0]) and float(row[1]) >= float(base_tune[1])
        chosen = threshold if ok else chosen
        lines.append((f"{threshold:.2f}", *row, f"{1 - share:.3f}", "yes" if ok else ""))
    print_table(f"first-look threshold on the tune half (t={default_t:.2f}; without the cascade: hit rate "
                f"{base_tune[0]}, precision {base_tune[1]}, wrong {base_tune[2]})", lines,
                ("first-look threshold", "hit rate", "precision", "wrong hits", "lookups without a full embedding",
                 "no worse"))
    print(f"\nhighest threshold no worse on tune: {chosen}; shipped default FIRST_LOOK_THRESHOLD = {FIRST_LOOK_THRESHOLD}")
    out = []
    for part in ("tune", "report"):
        for t in sorted({0.86, default_t, 0.94}):
            base, _ = run(part, None, t)
            row, share = run(part, FIRST_LOOK_THRESHOLD, t)
            out.append((part, f"{t:.2f}", *base, *row, f"{1 - share:.3f}"))
    print_table(f"the cascade (first-look threshold {FIRST_LOOK_THRESHOLD}) against the full model alone",
                out, ("half", "t", "full: hit rate", "precision", "wrong", "cascade: hit rate", "precision", "wrong",
                      "lookups without a full embedding"))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def scale(data: Path, embedder: Embedder, sizes: list[int]) -> None:
    rows = [json.loads(line) for line in (data / "cache" / "dev.jsonl").read_text().splitlines() if line.strip()]
    queries = [r["b"] for r in rows if r["source"] == "qqp"][:300]
    stored = [r["a"] for r in rows if r["source"] == "qqp"][:300]
    rng = np.random.default_rng(0)
    lines: list[tuple[str, ...]] = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            cache0 = SemanticCache(tmp, embedder=embedder)  # creates the schema
            key = request_key("bench", user("x"), P)
            now = time.time()
            store = EntryStore(cache0.engine)
            for start in range(0, n, 20_000):
                m = min(20_000, n - start)
                vecs = rng.standard_normal((m, embedder.dimensions)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                store.insert_many([
                    {"scope": "bench", "partition": key.partition, "exact_hash": f"{start + k:064x}",
                     "query_text": f"synthetic question {start + k}", "vector": vecs[k].tobytes(),
                     "vector_model": embedder.identity,
                     "response_json": json.dumps(answer(start + k)), "created_at": now, "last_used_at": now,
                     "expires_at": now + 86400}
                    for k in range(m)
                ])
            cache0.engine.dispose()
            del cache0
            before = rss_bytes()
            t0 = time.perf_counter()
            cache = SemanticCache(tmp, embedder=embedder, sync_interval=3600, max_entries=10**7)
            build = time.perf_counter() - t0
            mem = (rss_bytes() - before) / n
            reopen_t0 = time.perf_counter()
            cache.close()
            cache.engine.dispose()
            cache = SemanticCache(tmp, embedder=embedder, sync_interval=3600, max_entries=10**7)
            reopen = time.perf_counter() - reopen_t0
            for k, text in enumerate(stored[:100]):
                cache.store("bench", user(text), answer(k), P)
            totals, searches, outcomes = [], [], {"hit-exact": 0, "hit-semantic": 0, "miss": 0, "bypass": 0}
            for text in queries:
                t1 = time.perf_counter()
                res = cache.lookup("bench", user(text), P)
                totals.append(time.perf_counter() - t1)
                outcomes[res.outcome] += 1
            vecs_q = embedder.embed(queries)
            for text, vec in zip(queries, vecs_q):
                t1 = time.perf_counter()
                cache.lookup("bench", user(text), P, embedding=vec)
                searches.append(time.perf_counter() - t1)
            embed_times = []
            for text in queries[:100]:
                t1 = time.perf_counter()
                embedder.embed_one(text)
                embed_times.append(time.perf_counter() - t1)
            kind = next(iter(cache._indexes.values())).kind
            pct = lambda xs, q: f"{1000 * float(np.percentile(xs, q)):.2f}"  # noqa: E731
            lines.append((f"{n:,}", kind, pct(totals, 50), pct(totals, 95), pct(searches, 50), pct(searches, 95),
                          pct(embed_times, 50), f"{mem:,.0f}", f"{build:.1f}", f"{reopen:.1f}",
                          f"{outcomes['hit-semantic'] + outcomes['hit-exact']}/{len(queries)}"))
            cache.engine.dispose()
    print_table("lookup latency and memory (one partition, synthetic fill, real queries)", lines,
                ("entries", "index", "lookup p50 ms", "lookup p95 ms", "no-embed p50 ms", "no-embed p95 ms",
                 "embed p50 ms", "RSS bytes/entry", "cold build s", "reopen s", "hits"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    embedder = Embedder.from_directory(default_model_dir())
    print(f"# semantic cache benchmark (cpu count {os.cpu_count()}, python {sys.version.split()[0]})")
    default_t = SemanticCache.__init__.__kwdefaults__["similarity_threshold"]  # type: ignore[index]
    if not args.skip_quality:
        quality(args.data, embedder, default_t)
    if not args.skip_scale:
        scale(args.data, embedder, [int(s) for s in args.sizes.split(",")])


if __name__ == "__main__":
    main()

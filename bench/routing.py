"""Routing benchmark: our complexity model vs LiteLLM's ComplexityRouter, side by side.

    python bench/routing.py [--data ../shared/data]

For every source of routing/dev.jsonl it prints APGR (area under the recovered-quality-gap
curve; random = 0.5) and CPT(50%) (share of strong calls to recover half the gap; random =
0.5, lower is better). Our figures are held-out: each prompt is scored by a model trained
without its source ("LOSO") or without its category ("LOCO": MMLU subject, AlpacaEval
sub-set; GSM8K is one category, so LOCO = LOSO there). LiteLLM's rule-based score needs no
training: its tier (SIMPLE..REASONING) ranks first, its weighted score breaks ties.
Then it prints decision latency: assess() given a precomputed embedding, the features-only
head, and embedding the 512-character prefix that the request path embeds (`embedding_text`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from adaptive_plugin.embedding import Embedder, default_model_dir, embedding_text, query_text  # noqa: E402
from adaptive_plugin.routing import assess, load_model  # noqa: E402
from adaptive_plugin.routing.train import DEFAULT_DATA, Dataset, cross_validate, load_dataset, per_source  # noqa: E402

TIER_RANK = {"NON_REASONING": 0, "SIMPLE": 1, "MEDIUM": 2, "COMPLEX": 3, "REASONING": 4}


def litellm_scores(ds: Dataset) -> np.ndarray:
    """LiteLLM 1.106.12 ComplexityRouter.classify on each prompt: tier rank + weighted score / 10."""
    from litellm.router_strategy.complexity_router import ComplexityRouter

    router = ComplexityRouter(
        model_name="auto",
        litellm_router_instance=None,  # type: ignore[arg-type]  # classify() never touches it
        complexity_router_config={"tiers": {"SIMPLE": "a", "MEDIUM": "b", "COMPLEX": "c", "REASONING": "d"}},
    )
    out = []
    for messages in ds.messages:
        tier, score, _signals = router.classify(query_text(messages))
        out.append(TIER_RANK[tier.value] + float(score) / 10.0)
    return np.asarray(out)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def latency(ds: Dataset, embedder: Embedder, *, n_assess: int = 2000, n_embed: int = 200) -> dict[str, tuple[float, float]]:
    """p50/p95 in milliseconds of assess(embedding=...), of embedding one query, and of LiteLLM classify."""
    rng = np.random.default_rng(0)
    model = load_model()
    picks = rng.choice(len(ds.messages), size=min(n_assess, len(ds.messages)), replace=False)
    for i in picks[:50]:  # warm-up
        assess(ds.messages[i], embedding=ds.embeddings[i], model=model)
    times = []
    for i in picks:
        t0 = time.perf_counter()
        assess(ds.messages[i], embedding=ds.embeddings[i], model=model)
        times.append(time.perf_counter() - t0)
    features_only = []
    for i in picks:
        t0 = time.perf_counter()
        assess(ds.messages[i], model=model)
        features_only.append(time.perf_counter() - t0)
    embeds = []
    for i in picks[:n_embed]:
        text = embedding_text(query_text(ds.messages[i]))
        t0 = time.perf_counter()
        embedder.embed_one(text)
        embeds.append(time.perf_counter() - t0)
    return {
        "assess(embedding=...)": (_pct(times, 50), _pct(times, 95)),
        "assess() features only": (_pct(features_only, 50), _pct(features_only, 95)),
        "embed_one(first 512 chars)": (_pct(embeds, 50), _pct(embeds, 95)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)

    embedder = Embedder.from_directory(default_model_dir())
    ds = load_dataset(args.data, embedder)
    columns: dict[str, dict[str, tuple[float, float]]] = {"LiteLLM": per_source(ds, litellm_scores(ds))}
    for scheme, label in (("source", "LOSO"), ("category", "LOCO")):
        preds = cross_validate(ds, scheme)
        columns[f"ours {label}"] = per_source(ds, preds["full"])
        columns[f"ours {label} no-emb"] = per_source(ds, preds["features"])

    sources = sorted(next(iter(columns.values())))
    names = list(columns)
    print(f"routing/dev.jsonl: {len(ds.gain)} prompts; APGR / CPT(50%) per source (held-out for ours)\n")
    header = f"{'source':12s} {'n':>5s} " + " ".join(f"{n:>20s}" for n in names)
    print(header)
    print("-" * len(header))
    for src in sources:
        n = int((ds.source == src).sum())
        cells = " ".join(f"{columns[c][src][0]:>11.3f} / {columns[c][src][1]:.2f}" for c in names)
        print(f"{src:12s} {n:>5d} {cells}")
    means = " ".join(
        f"{statistics.mean(columns[c][s][0] for s in sources):>11.3f} / "
        f"{statistics.mean(columns[c][s][1] for s in sources):.2f}"
        for c in names
    )
    print(f"{'mean':12s} {'':>5s} {means}")
    for c in names[1:]:
        delta = statistics.mean(columns[c][s][0] - columns["LiteLLM"][s][0] for s in sources)
        print(f"  mean APGR {c} - LiteLLM: {delta:+.3f}")

    print(f"\nlatency (ms), {os.cpu_count()} cores, one request at a time, load average {os.getloadavg()[0]:.1f}")
    for name, (p50, p95) in latency(ds, embedder).items():
        print(f"  {name:26s} p50 {p50:7.3f}  p95 {p95:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Routing benchmark: our complexity model vs LiteLLM's ComplexityRouter and prompt length, side by side.

    python bench/routing.py [--data ../shared/data] [--targets]

Sources: routing/dev.jsonl (MMLU, GSM8K, AlpacaEval; RouteLLM's Mixtral / GPT-4 labels) and
routing/arena_bench.jsonl (300 Chatbot Arena prompts, 15 models graded by GPT-4; the pair is
Mixtral-8x7B / GPT-4-1106 like the others). For every source it prints APGR (area under the
recovered-quality-gap curve; random = 0.5) and CPT(50%) (share of strong calls to recover half
the gap; random = 0.5, lower is better). Our figures are held-out: each prompt is scored by a
model trained without its source ("LOSO") or without its category ("LOCO": MMLU subject,
AlpacaEval sub-set; GSM8K and Arena are one category each). LiteLLM's rule-based score needs
no training: its tier (SIMPLE..REASONING) ranks first, its weighted score breaks ties.

Then the default: at cost_bias 0.5 (config.py) with a cheap tier-1 and a strong tier-3 model,
the share of strong calls and the share of the weak-to-strong quality gap kept, per source
(held-out scores), on Arena with a three-tier line-up graded by the 15 models, and the share of
strong calls on routerarena.jsonl's unlabelled prompt styles.
`--targets` adds the choice of Arena target and weight in the heads (slow: 16 LOSO fits).
Last, decision latency: LiteLLM's keyword tier, assess() given a precomputed embedding and
tier, select(), and embedding the 512-character prefix the request path embeds.
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

from adaptive_plugin.adapters.keyword_tier import keyword_tier  # noqa: E402
from adaptive_plugin.embedding import Embedder, default_model_dir, embedding_text, query_text  # noqa: E402
from adaptive_plugin.routing import Candidate, RouteRequest, assess, load_model, select  # noqa: E402
from adaptive_plugin.routing.train import (  # noqa: E402
    ARENA,
    ARENA_TARGETS,
    DEFAULT_DATA,
    Dataset,
    cross_validate,
    fit_model,
    held_out_folds,
    load_dataset,
    per_source,
)

CHEAP = Candidate("cheap", "p", 1, frozenset(), 1.5e-7, 6e-7, None, True, True, True)
MIDDLE = Candidate("middle", "p", 2, frozenset(), 8e-7, 4e-6, None, True, True, True)
STRONG = Candidate("strong", "p", 3, frozenset(), 2.5e-6, 1e-5, None, True, True, True)
ARENA_LINE_UP = {1: "mistralai/Mistral-7B-Instruct-v0.1", 2: "mistralai/Mixtral-8x7B-Instruct-v0.1",
                 3: "gpt-4-1106-preview"}
"""Which of Arena's 15 graded models stands for each tier in the three-tier default check."""


def litellm_scores(ds: Dataset) -> np.ndarray:
    """LiteLLM 1.106.12 ComplexityRouter.classify on each whole query (as LiteLLM's router runs it,
    not our 800-character window): tier rank + weighted score / 10."""
    from adaptive_plugin.adapters.keyword_tier import TIER_RANK, _classifier

    out = []
    for messages in ds.messages:
        tier, score, _signals = _classifier().classify(query_text(messages))
        out.append(TIER_RANK[tier.value] + float(score) / 10.0)
    return np.asarray(out)


def length_scores(ds: Dataset) -> np.ndarray:
    return np.asarray([len(query_text(m)) for m in ds.messages], dtype=np.float64)


def held_out_scores(ds: Dataset) -> np.ndarray:
    """Each prompt's score in [0, 1] (head + keyword term, calibrated) by the model without its source."""
    out = np.zeros(len(ds.gain))
    for held in held_out_folds(ds, "source"):
        model = fit_model(ds, np.nonzero(~held)[0])
        raw = model.keyword.combine_many(model.full.raw(ds.full[held]), ds.tiers[held], ds.features[held])
        out[held] = model.full.calibrate(raw)
    return out


def chosen_tiers(scores: np.ndarray, line_up: list[Candidate], cost_bias: float = 0.5) -> np.ndarray:
    """The tier `select` picks for each score (a 200-token prompt; the task type plays no part here)."""
    from adaptive_plugin.routing import Assessment

    request = RouteRequest(messages=[{"role": "user", "content": "x"}], estimated_input_tokens=200, cost_bias=cost_bias)
    return np.asarray([select(request, line_up, Assessment(float(s), "qa", 0.0, True)).chosen.tier for s in scores])


def default_bias_report(ds: Dataset, scores: np.ndarray) -> None:
    tiers = chosen_tiers(scores, [CHEAP, STRONG])
    print("\ndefault cost_bias 0.5, cheap tier 1 + strong tier 3 (held-out scores):")
    shares, kept = [], []
    for src in np.unique(ds.source):
        m = ds.source == src
        strong = tiers[m] == 3
        gain = ds.gain[m]
        shares.append(float(strong.mean()))
        kept.append(float(gain[strong].sum() / gain.sum()))
        print(f"  {src:12s} strong calls {shares[-1]:.2f}  quality gap kept {kept[-1]:.2f}")
    print(f"  {'mean':12s} strong calls {statistics.mean(shares):.2f}  quality gap kept {statistics.mean(kept):.2f}")
    arena = np.nonzero(ds.source == ARENA)[0]
    if ds.grades is None or arena.size == 0:
        return
    tiers3 = chosen_tiers(scores[arena], [CHEAP, MIDDLE, STRONG])
    grade = {t: ds.grades[arena, ds.grade_models.index(name)] for t, name in ARENA_LINE_UP.items()}
    routed = np.choose(tiers3 - 1, [grade[1], grade[2], grade[3]])
    ok = ~np.isnan(routed) & ~np.isnan(grade[1]) & ~np.isnan(grade[3])
    low, high, got = grade[1][ok].mean(), grade[3][ok].mean(), routed[ok].mean()
    counts = {t: float((tiers3 == t).mean()) for t in (1, 2, 3)}
    print(f"  arena, three tiers ({', '.join(f'{t}: {n}' for t, n in ARENA_LINE_UP.items())}): calls "
          + " / ".join(f"{counts[t]:.2f}" for t in (1, 2, 3))
          + f"; mean grade {got:.3f} (all tier 1 {low:.3f}, all tier 3 {high:.3f}: gap kept {(got - low) / (high - low):.2f})")


def styles_report(data_dir: Path, embedder: Embedder) -> None:
    """Prompt styles without labels (RouterArena's mix): the share the default sends to the strong model."""
    import json
    from collections import defaultdict

    from adaptive_plugin.routing.train import embed_texts

    path = data_dir / "routing" / "routerarena.jsonl"
    if not path.is_file():
        return
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [query_text(r["messages"]) for r in rows]
    vectors = embed_texts([embedding_text(t) for t in texts], embedder)
    model = load_model()
    scores = np.asarray([assess(r["messages"], embedding=v, keyword_tier=keyword_tier(t), model=model).score
                         for r, t, v in zip(rows, texts, vectors, strict=True)])
    tiers = chosen_tiers(scores, [CHEAP, STRONG])
    kinds: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        kinds[str(r.get("id", "?")).rsplit("_", 1)[0].split("_")[0]].append(i)
    print(f"\nunlabelled prompt styles (routerarena.jsonl, {len(rows)} prompts), shipped model, strong calls at the default:"
          f" all {float((tiers == 3).mean()):.2f}")
    cells = [f"{k} {float((tiers[idx] == 3).mean()):.2f} ({len(idx)})" for k, idx in
             sorted(kinds.items(), key=lambda kv: -len(kv[1]))]
    for start in range(0, len(cells), 6):
        print("  " + ", ".join(cells[start:start + 6]))


def targets_report(ds: Dataset) -> None:
    print("\nArena target and weight in the heads (LOSO, full head + keyword term):")
    for target in ARENA_TARGETS:
        for weight in (0.0, 0.25, 0.5, 1.0):
            if weight == 0.0 and target != ARENA_TARGETS[0]:
                continue
            figures = per_source(ds, cross_validate(ds, "source", arena_target=target, arena_weight=weight)["full"])
            cells = "  ".join(f"{k} {a:.3f}" for k, (a, _) in figures.items())
            label = "none" if weight == 0.0 else f"{target} x{weight}"
            print(f"  {label:16s} {cells}  mean {statistics.mean(a for a, _ in figures.values()):.3f}")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def latency(ds: Dataset, embedder: Embedder, *, n_assess: int = 2000, n_embed: int = 200) -> dict[str, tuple[float, float]]:
    """p50/p95 in ms of the decision beyond the shared embedding, its parts, and of embedding one query."""
    rng = np.random.default_rng(0)
    model = load_model()
    picks = rng.choice(len(ds.messages), size=min(n_assess, len(ds.messages)), replace=False)
    line_up = [CHEAP, MIDDLE, STRONG]
    for i in picks[:50]:  # warm-up
        assess(ds.messages[i], embedding=ds.embeddings[i], model=model, keyword_tier=keyword_tier(query_text(ds.messages[i])))
    parts: dict[str, list[float]] = {"keyword_tier()": [], "assess(embedding=, keyword_tier=)": [], "select(3 candidates)": [],
                                     "decision: all three": []}
    for i in picks:
        messages = ds.messages[i]
        t0 = time.perf_counter()
        tier = keyword_tier(query_text(messages))
        t1 = time.perf_counter()
        a = assess(messages, embedding=ds.embeddings[i], model=model, keyword_tier=tier)
        t2 = time.perf_counter()
        select(RouteRequest(messages=messages, estimated_input_tokens=200), line_up, a)
        t3 = time.perf_counter()
        for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            parts[name].append(dt)
    embeds = []
    for i in picks[:n_embed]:
        text = embedding_text(query_text(ds.messages[i]))
        t0 = time.perf_counter()
        embedder.embed_one(text)
        embeds.append(time.perf_counter() - t0)
    out = {name: (_pct(v, 50), _pct(v, 95)) for name, v in parts.items()}
    out["embed_one(first 512 chars)"] = (_pct(embeds, 50), _pct(embeds, 95))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--targets", action="store_true", help="also compare Arena targets and weights (slow)")
    args = parser.parse_args(argv)

    embedder = Embedder.from_directory(default_model_dir())
    ds = load_dataset(args.data, embedder)
    columns: dict[str, dict[str, tuple[float, float]]] = {
        "LiteLLM": per_source(ds, litellm_scores(ds)),
        "length": per_source(ds, length_scores(ds)),
    }
    loso = cross_validate(ds, "source")
    columns["ours LOSO"] = per_source(ds, loso["full"])
    columns["LOSO no keyword"] = per_source(ds, loso["full, no keyword"])
    columns["LOSO no embedding"] = per_source(ds, loso["features"])
    columns["ours LOCO"] = per_source(ds, cross_validate(ds, "category")["full"])

    sources = sorted(next(iter(columns.values())))
    names = list(columns)
    print(f"{len(ds.gain)} prompts; APGR / CPT(50%) per source (held-out for ours)\n")
    header = f"{'source':12s} {'n':>5s} " + " ".join(f"{n:>18s}" for n in names)
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
        worst = min(columns[c][s][0] - columns["LiteLLM"][s][0] for s in sources)
        print(f"  {c} - LiteLLM: mean APGR {delta:+.3f}, worst source {worst:+.3f}")

    default_bias_report(ds, held_out_scores(ds))
    styles_report(args.data, embedder)
    if args.targets:
        targets_report(ds)

    print(f"\nlatency (ms), {os.cpu_count()} cores, one request at a time, load average {os.getloadavg()[0]:.1f}")
    for name, (p50, p95) in latency(ds, embedder).items():
        print(f"  {name:36s} p50 {p50:7.3f}  p95 {p95:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

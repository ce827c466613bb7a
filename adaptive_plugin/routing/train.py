"""Rebuild the complexity model from the labelled prompts: `python -m adaptive_plugin.routing.train`.

Reads `routing/dev.jsonl` and `routing/arena_bench.jsonl` under `--data` (default
`../shared/data`, relative to the working directory), embeds the first 512 characters of each
prompt's `query_text` (`embedding_text`, what the request path embeds) with the local model
(cached on disk, keyed by the texts), computes LiteLLM's keyword tier of each query (the
adapters' `keyword_tier`, the one place litellm is imported, lazily), fits two ridge
regressions on the strong-minus-weak quality gain, adds each to a hand-set difficulty prior,
adds the keyword term for prompts that are not multiple-choice, and writes
`adaptive_plugin/routing/artifacts/complexity.npz`. Before writing, it prints cross-validated
APGR with whole sources held out and with whole categories (MMLU subjects, AlpacaEval
sub-sets, GSM8K, Arena) held out. Training only: numpy, no scikit-learn, nothing at request time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_plugin.embedding import Embedder, default_model_dir, embedding_text, query_text
from adaptive_plugin.routing._features import FEATURE_NAMES, handcrafted_features
from adaptive_plugin.routing._model import ARTIFACT_PATH, ComplexityModel, KeywordTerm, LinearHead
from adaptive_plugin.routing.quality import apgr, cpt

DEFAULT_DATA = Path("../shared/data")
FILES = ("dev.jsonl", "arena_bench.jsonl")
ARENA = "arena_bench"
STRONG_CLASS = ("gpt-4-0314", "gpt-4-1106-preview")
"""Arena's strong class: the two GPT-4s; the other 13 graded models are the weak class."""
ARENA_TARGETS = ("pair", "class", "difficulty", "irt")
ARENA_TARGET = "class"
"""What the heads would learn from an Arena prompt (`Dataset.target_for`): `class`, the mean
grade of the two GPT-4s minus the mean grade of the other 13 models. Within Arena it is the best
of the four (10-fold CV, ridge on embedding + features, APGR on the Mixtral / GPT-4-1106 pair:
pair 0.495, class 0.546, difficulty 0.543, irt 0.543). It is only used when `ARENA_WEIGHT` > 0."""
ARENA_WEIGHT = 0.0
"""Weight of Arena's rows in the ridge heads, relative to a source of equal weight. Held out by
source, every Arena target at every weight > 0 lowered every other source (bench/RESULTS.md:
mean 0.583 at 0, 0.579 at 0.25, 0.575 at 1 with the class target): what makes an open-ended
Arena prompt hard for the 13 weaker models does not rank MMLU or GSM8K prompts. Arena's grades
choose `KEYWORD_WEIGHT`, calibrate the score's quantiles and the default cost_bias instead."""
KEYWORD_WEIGHT = 1.0
"""Weight of LiteLLM's keyword tier, standardised on the training prompts (its tier steps are
~3.3 spreads apart), for prompts that are not multiple-choice: the tier leads, our head ranks
within a tier and can still move a prompt across one. Held out by source the mean is flat from
0.5 to 8 (0.582-0.583, 0.577 at 0): Arena gains (0.505 -> 0.525), MMLU (multiple-choice,
untouched) and GSM8K (99% one tier) do not move. Above 1 the quantile scale stretches: a
multi-step maths prompt that LiteLLM calls SIMPLE falls to the cheapest tier at the default
cost_bias (score 0.537 at 2, 0.569 at 1; tier 2 starts at 0.526 in the unit test's line-up)."""
ALPHA_FULL = 300.0
ALPHA_FEATURES = 300.0
N_KNOTS = 101
BLEND_FULL = 0.5
BLEND_FEATURES = 0.25
"""Weight of the learned ranking against the prior, both scaled to unit spread on the training
rows. Chosen with whole sources held out; more weight on the learned part helps the source
it was trained on and hurts the others."""
PRIOR_WEIGHTS: dict[str, float] = {
    "log_query_words": 4.0,
    "compound": 1.0,
    "comma_rate": 1.0,
    "code_tokens": 0.3,
    "code_fences": 0.3,
    "code_ask": 0.2,
    "reasoning_words": 0.5,
    "greeting": -0.5,
    "short_query": -0.3,
}
"""Hand-set difficulty prior on the handcrafted features. Length (in words) is the one signal
that ranks prompts the same way on MMLU and GSM8K; several judgements packed into one question
("Statement 1 | ... Statement 2 | ...") and clause-heavy text (commas per word) add to it;
code and reasoning words ("prove", "step by step", "justify", ...) add a little; greetings and
very short prompts lower it. (Reasoning words went from 0.1 to 0.5 so that a short proof request
leaves the cheapest tier at the default cost_bias without LiteLLM's tier too: 0.51 -> 0.66;
held-out APGR unchanged, GSM8K -0.002.) Maths and "math words" are
left out: they rank MMLU's maths subjects *up* although the weak model wins those more often,
and carry nothing within GSM8K. The labels alone disagree across sources (AlpacaEval: the
strong model wins nearly everything, chit-chat included), so the learned ranking is added to
this prior instead of replacing it."""
OPEN_HEAD_WEIGHT = 0.0
"""Weight of our head beside the keyword term on open prompts that are neither maths nor code
(`_model.HEAD_TASKS`) when a tier is given: LiteLLM's score alone ranked them better held out
(AlpacaEval 0.492 at 0, 0.484 at 0.1-0.25, 0.479 at 1; Arena 0.529 at 0, 0.525 at 1; GSM8K and
MMLU within 0.003). Chosen on the other three sources, 0 won for three of the four held-out
sources (0.5 for AlpacaEval). Without a tier the head ranks them alone."""
CATEGORY_FOLDS = 8


@dataclass(frozen=True)
class Dataset:
    """Labelled prompts with their features: one row per prompt."""

    messages: list[list[dict[str, Any]]]
    source: np.ndarray
    category: np.ndarray
    weak: np.ndarray
    strong: np.ndarray
    features: np.ndarray
    embeddings: np.ndarray
    keyword: np.ndarray | None = None
    """LiteLLM's keyword tier of each query (NaN: unknown)."""
    grades: np.ndarray | None = None
    """Arena's per-model grades (rows x `grade_models`, NaN where missing or not Arena)."""
    grade_models: tuple[str, ...] = ()

    @property
    def gain(self) -> np.ndarray:
        return self.strong - self.weak

    @property
    def tiers(self) -> np.ndarray:
        return np.full(len(self.gain), np.nan) if self.keyword is None else self.keyword

    @property
    def informative(self) -> np.ndarray:
        """Rows where the two models' scores differ: the only ones that say which needs what
        (75% of MMLU rows are ties, both right or both wrong); every Arena row with 15 grades."""
        out = self.gain != 0.0
        if self.grades is not None:
            out |= self.source == ARENA
        return out

    @property
    def target(self) -> np.ndarray:
        return self.target_for(ARENA_TARGET)

    def arena_signal(self, kind: str) -> np.ndarray:
        """Per-row gain with Arena's rows replaced by the `kind` target of its 15 models' grades:
        `pair` Mixtral / GPT-4-1106 (the other sources' pair), `class` strong class minus weak
        class (`STRONG_CLASS`), `difficulty` 1 - mean grade, `irt` the prompt's difficulty in a
        one-parameter logistic model of the grades."""
        out = self.gain.copy()
        rows = np.nonzero(self.source == ARENA)[0]
        if kind == "pair" or self.grades is None or rows.size == 0:
            return out
        g = self.grades[rows]
        strong = [i for i, name in enumerate(self.grade_models) if name in STRONG_CLASS]
        weak = [i for i in range(len(self.grade_models)) if i not in strong]
        with np.errstate(invalid="ignore"):
            if kind == "class":
                value = np.nanmean(g[:, strong], axis=1) - np.nanmean(g[:, weak], axis=1)
            elif kind == "difficulty":
                value = 1.0 - np.nanmean(g, axis=1)
            elif kind == "irt":
                value = irt_difficulty(g)
            else:
                raise ValueError(f"unknown Arena target {kind!r}")
        out[rows] = np.where(np.isnan(value), np.nanmean(value), value)
        return out

    def target_for(self, kind: str) -> np.ndarray:
        """The gain standardised within each source over its informative rows: sources differ
        in how much the strong model wins on average (AlpacaEval: nearly always), which says
        nothing about which prompt of a new source needs it; only the ranking within a source
        is learned.

        Mean and spread come from the informative rows, the only ones the heads are fitted
        on, so each source's fitted targets average zero; with mean and spread of all rows
        (MMLU is 75% ties) they did not, and the ridge's one shared intercept left it to fit
        the per-source offsets with whatever tells the sources apart. Ties get the same affine
        map (they are never fitted). Mean held-out APGR, full / features-only head: +0.007 /
        +0.006 with whole sources held out, +0.005 / +0.004 with whole categories (mostly MMLU).
        """
        out = self.arena_signal(kind)
        for src in np.unique(self.source):
            m = self.source == src
            fit = m & self.informative
            ref = out[fit] if fit.any() else out[m]
            out[m] = (out[m] - ref.mean()) / (ref.std() + 1e-9)
        return out

    @property
    def full(self) -> np.ndarray:
        return np.hstack([self.embeddings, self.features])


def irt_difficulty(grades: np.ndarray, *, iterations: int = 50) -> np.ndarray:
    """Prompt difficulty `b` of `logit(grade) ~ a_model - b_prompt` (grades clipped to
    [0.05, 0.95], missing grades skipped), by alternating least squares."""
    clipped = np.clip(grades, 0.05, 0.95)
    logit = np.log(clipped / (1.0 - clipped))
    seen = ~np.isnan(logit)
    filled = np.where(seen, logit, 0.0)
    ability = np.zeros(grades.shape[1])
    difficulty = np.zeros(grades.shape[0])
    for _ in range(iterations):
        difficulty = ((ability[None, :] - filled) * seen).sum(1) / np.maximum(seen.sum(1), 1)
        ability = ((filled + difficulty[:, None]) * seen).sum(0) / np.maximum(seen.sum(0), 1)
    return difficulty


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of `path` that carry a weak and a strong score."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if row.get("weak_score") is not None and row.get("strong_score") is not None:
                    rows.append(row)
    return rows


def embed_texts(texts: Sequence[str], embedder: Embedder, *, cache_dir: Path | None = None) -> np.ndarray:
    """Embed `texts` shortest-first in batches (less padding); cache the result by content hash."""
    # "request-path": the vectors of `Embedder.embed` since it embeds as requests do (one text per
    # run for a model whose batches are not exact); older caches hold batched vectors
    digest = hashlib.sha256("\x1e".join([getattr(embedder, "identity", ""), "request-path", *texts])
                            .encode("utf-8")).hexdigest()[:24]
    cache = (cache_dir or _cache_dir()) / f"routing-embeddings-{digest}.npy"
    if cache.is_file():
        cached = np.load(cache)
        if cached.shape == (len(texts), embedder.dimensions):
            return cached
    out = np.zeros((len(texts), embedder.dimensions), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), 32):
        idx = order[start : start + 32]
        out[idx] = embedder.embed([texts[i] for i in idx])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def keyword_tiers(texts: Sequence[str]) -> np.ndarray:
    """LiteLLM's keyword tier of each text (`adapters.keyword_tier`; NaN where it has none)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no cost-map download
    from adaptive_plugin.adapters.keyword_tier import keyword_tier

    return np.asarray([np.nan if (v := keyword_tier(t)) is None else v for t in texts], dtype=np.float64)


def load_dataset(
    data_dir: Path, embedder: Embedder, *, cache_dir: Path | None = None, files: Sequence[str] = FILES
) -> Dataset:
    """Read `files` under `data_dir / "routing"`, compute features, embeddings and keyword tiers."""
    rows = [row for name in files for row in read_rows(data_dir / "routing" / name)]
    messages = [r["messages"] for r in rows]
    texts = [query_text(m) for m in messages]
    embedded = [embedding_text(t) for t in texts]
    grade_models = tuple(sorted({name for r in rows for name in (r.get("scores") or {})}))
    grades = np.full((len(rows), len(grade_models)), np.nan)
    for i, r in enumerate(rows):
        for j, name in enumerate(grade_models):
            value = (r.get("scores") or {}).get(name)
            if value is not None:
                grades[i, j] = float(value)
    return Dataset(
        messages=messages,
        source=np.asarray([r["source"] for r in rows]),
        category=np.asarray([f'{r["source"]}/{r.get("category") or r["source"]}' for r in rows]),
        weak=np.asarray([float(r["weak_score"]) for r in rows]),
        strong=np.asarray([float(r["strong_score"]) for r in rows]),
        features=np.stack([handcrafted_features(m, text=t) for m, t in zip(messages, texts, strict=True)]),
        embeddings=embed_texts(embedded, embedder, cache_dir=cache_dir),
        keyword=keyword_tiers(texts),
        grades=grades if grade_models else None,
        grade_models=grade_models,
    )


def balanced_weights(groups: np.ndarray, factors: dict[str, float] | None = None) -> np.ndarray:
    """Sample weights giving every group the same total weight (mean weight 1), times `factors[group]`."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    out = (len(groups) / len(counts)) / counts[inverse]
    for group, factor in (factors or {}).items():
        out = np.where(groups == group, out * factor, out)
    return out


def fit_ridge(x: np.ndarray, y: np.ndarray, *, alpha: float, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted ridge on standardised columns; returns weights and bias for the raw columns."""
    mean = np.average(x, axis=0, weights=weights)
    std = x.std(axis=0) + 1e-6
    z = (x - mean) / std
    y_mean = float(np.average(y, weights=weights))
    gram = z.T @ (z * weights[:, None]) + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, z.T @ (weights * (y - y_mean))) / std
    return coef, y_mean - float(mean @ coef)


def prior_vector(width: int) -> np.ndarray:
    """`PRIOR_WEIGHTS` laid out over the last `len(FEATURE_NAMES)` of `width` inputs."""
    vec = np.zeros(width)
    offset = width - len(FEATURE_NAMES)
    for name, weight in PRIOR_WEIGHTS.items():
        vec[offset + FEATURE_NAMES.index(name)] = weight
    return vec


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    informative: np.ndarray,
    *,
    alpha: float,
    blend: float,
    combine: Callable[[np.ndarray], np.ndarray] | None = None,
    factors: dict[str, float] | None = None,
) -> LinearHead:
    """Fit a ridge head on the informative rows (sources weighted equally, times `factors`;
    a source at factor 0 is not fitted), add it to the prior, scale the sum to unit spread
    over all rows, and calibrate `combine(sum)` (with the keyword term) on all rows.

    Both parts are linear, so the sum `prior / sd(prior) + blend * learned / sd(learned)`
    folds into one weight vector: no extra cost at request time.
    """
    weights = balanced_weights(groups, factors)
    fit = np.nonzero(informative & (weights > 0))[0]
    learned, _ = fit_ridge(x[fit], y[fit], alpha=alpha, weights=balanced_weights(groups[fit], factors))
    prior = prior_vector(x.shape[1])
    coef = prior / ((x @ prior).std() + 1e-9) + blend * learned / ((x @ learned).std() + 1e-9)
    raw = x @ coef
    coef = coef / (raw.std() + 1e-12)
    bias = -float(raw.mean()) / (raw.std() + 1e-12)
    head = x @ coef + bias
    combined = head if combine is None else combine(head)
    knots = weighted_quantiles(combined, balanced_weights(groups), np.linspace(0.0, 1.0, N_KNOTS))
    knots = knots + np.arange(N_KNOTS) * 1e-9  # strictly increasing for np.interp
    return LinearHead(weights=coef.astype(np.float32), bias=bias, knots=knots)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles of `values` where each row counts `weights` times (the ends are min and max)."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w) - 0.5 * w
    cum = (cum - cum[0]) / max(cum[-1] - cum[0], 1e-12)
    return np.interp(levels, cum, v)


def keyword_term(ds: Dataset, rows: np.ndarray, weight: float, open_head_weight: float) -> KeywordTerm:
    """The keyword term standardised over `rows` (those with a tier)."""
    tiers = ds.tiers[rows]
    known = tiers[~np.isnan(tiers)]
    if weight == 0.0 or known.size < 2:
        return KeywordTerm(weight=0.0, mean=0.0, std=1.0)
    return KeywordTerm(weight=float(weight), mean=float(known.mean()), std=float(known.std() + 1e-9),
                       open_head_weight=float(open_head_weight))


def fit_model(
    ds: Dataset,
    rows: np.ndarray | None = None,
    *,
    info: dict[str, Any] | None = None,
    arena_target: str = ARENA_TARGET,
    arena_weight: float = ARENA_WEIGHT,
    keyword_weight: float = KEYWORD_WEIGHT,
    open_head_weight: float = OPEN_HEAD_WEIGHT,
) -> ComplexityModel:
    """Fit both heads and the keyword term on `rows` (all rows by default)."""
    idx = np.arange(len(ds.gain)) if rows is None else rows
    y, groups, informative = ds.target_for(arena_target)[idx], ds.source[idx], ds.informative[idx]
    term = keyword_term(ds, idx, keyword_weight, open_head_weight)
    tiers, feats = ds.tiers[idx], ds.features[idx]

    def combine(head: np.ndarray) -> np.ndarray:
        return term.combine_many(head, tiers, feats)

    factors = {ARENA: arena_weight}
    return ComplexityModel(
        full=fit_head(ds.full[idx], y, groups, informative, alpha=ALPHA_FULL, blend=BLEND_FULL, combine=combine,
                      factors=factors),
        features=fit_head(ds.features[idx], y, groups, informative, alpha=ALPHA_FEATURES, blend=BLEND_FEATURES,
                          combine=combine, factors=factors),
        embedding_dim=ds.embeddings.shape[1],
        feature_names=FEATURE_NAMES,
        info=info or {},
        keyword=term,
    )


def held_out_folds(ds: Dataset, scheme: str) -> list[np.ndarray]:
    """Boolean masks of held-out rows: one per source, or categories in `CATEGORY_FOLDS` groups."""
    if scheme == "source":
        return [ds.source == s for s in np.unique(ds.source)]
    if scheme == "category":
        cats = np.unique(ds.category)
        np.random.default_rng(0).shuffle(cats)
        return [np.isin(ds.category, cats[k::CATEGORY_FOLDS]) for k in range(CATEGORY_FOLDS)]
    raise ValueError(f"unknown scheme {scheme!r}")


def cross_validate(ds: Dataset, scheme: str, **fit: Any) -> dict[str, np.ndarray]:
    """Held-out raw predictions: every row predicted by a model that never saw its group.

    `full` and `features` are what the request path ranks by (head + keyword term);
    `full, no keyword` is the full head alone. `fit` goes to `fit_model`.
    """
    out = {name: np.zeros(len(ds.gain)) for name in ("full", "features", "full, no keyword")}
    for held in held_out_folds(ds, scheme):
        model = fit_model(ds, np.nonzero(~held)[0], **fit)
        tiers, feats = ds.tiers[held], ds.features[held]
        head = model.full.raw(ds.full[held])
        out["full"][held] = model.keyword.combine_many(head, tiers, feats)
        out["full, no keyword"][held] = head
        out["features"][held] = model.keyword.combine_many(model.features.raw(feats), tiers, feats)
    return out


def per_source(ds: Dataset, scores: np.ndarray) -> dict[str, tuple[float, float]]:
    """(APGR, CPT(50%)) of `scores` within each source."""
    out = {}
    for src in np.unique(ds.source):
        m = ds.source == src
        out[str(src)] = (
            apgr(scores[m], weak=ds.weak[m], strong=ds.strong[m]),
            cpt(scores[m], weak=ds.weak[m], strong=ds.strong[m]),
        )
    return out


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptive-plugin"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive_plugin.routing.train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory holding routing/*.jsonl")
    parser.add_argument("--out", type=Path, default=ARTIFACT_PATH, help="artifact to write")
    parser.add_argument("--model-dir", type=Path, default=None, help="embedding model directory")
    parser.add_argument("--no-cv", action="store_true", help="skip the cross-validation report")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    embedder = Embedder.from_directory(args.model_dir or default_model_dir())
    ds = load_dataset(args.data, embedder)
    print(f"{len(ds.gain)} prompts, {ds.full.shape[1]} inputs, loaded in {time.perf_counter() - started:.0f}s")
    info: dict[str, Any] = {
        "rows": int(len(ds.gain)),
        "sources": {str(s): int((ds.source == s).sum()) for s in np.unique(ds.source)},
        "target": "strong_score - weak_score, standardised within each source over the rows with unequal scores (the only rows fitted)",
        "arena_target": ARENA_TARGET,
        "arena_weight": ARENA_WEIGHT,
        "keyword_weight": KEYWORD_WEIGHT,
        "open_head_weight": OPEN_HEAD_WEIGHT,
        "keyword": "LiteLLM ComplexityRouter.classify: tier rank + weighted score / 10, prompts that are not multiple-choice",
        "embedding_text": "first 512 characters of query_text",
        "alpha_full": ALPHA_FULL,
        "alpha_features": ALPHA_FEATURES,
        "weights": "each source equal",
        "blend_full": BLEND_FULL,
        "blend_features": BLEND_FEATURES,
        "prior": PRIOR_WEIGHTS,
    }
    if not args.no_cv:
        for scheme in ("source", "category"):
            preds = cross_validate(ds, scheme)
            for head, scores in preds.items():
                figures = per_source(ds, scores)
                mean = float(np.mean([a for a, _ in figures.values()]))
                info[f"cv_{scheme}_{head.replace(', ', '_').replace(' ', '_')}_apgr"] = {
                    k: round(a, 4) for k, (a, _) in figures.items()
                }
                cells = "  ".join(f"{k} {a:.3f}/{c:.2f}" for k, (a, c) in figures.items())
                print(f"held-out {scheme:8s} {head:16s} APGR/CPT50: {cells}  mean APGR {mean:.3f}")
    model = fit_model(ds, info=info)
    model.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

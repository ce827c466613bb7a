"""Rebuild the cache verifier artifact from the paraphrase pairs (tune half only).

    python -m adaptive_plugin.cache.train [--data ../shared/data] [--out PATH] [--limit N]

Data: `<data>/cache/dev.jsonl` (fields a, b, label, source). Only the `tune` half (a hash of
each pair, the same split `bench/cache.py` reports on) is read for training and calibration.
Candidates are built the way the cache sees them:
* gptcache_mock pairs: every tune `a` in one pool; each `b` is paired with its top-4 nearest
  `a`s at cosine >= 0.70 (label 1 only for its own `a`);
* qqp pairs: (b, a) with the pair's label.
Candidates a hard guard rejects never reach the verifier, so they are left out of training.

Model: L2 logistic regression (Newton's method, numpy only, deterministic) on the features of
`_features.py`. Calibration: 5-fold out-of-fold scores on the tune half; the grid of
(similarity_threshold, accept_threshold) with the highest out-of-fold hit rate at precision
>= --target is stored as the artifact's operating point.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_plugin.cache._features import Vocabulary, scalar_features
from adaptive_plugin.cache._guards import near_miss_reason
from adaptive_plugin.cache._verifier import DEFAULT_ARTIFACT, Verifier

__all__ = ["Candidate", "build_candidates", "calibrate", "fit_logistic", "half_of", "main", "train"]

POOL_GATE = 0.70
POOL_K = 4
FOLDS = 5
SIMILARITY_GRID = tuple(round(0.80 + 0.01 * i, 2) for i in range(18))  # 0.80 .. 0.97
ACCEPT_GRID = tuple(round(0.1 * i, 1) for i in range(10))  # 0.0 .. 0.9


def half_of(row: dict[str, Any]) -> str:
    """The deterministic tune/report split shared with `bench/cache.py`."""
    digest = hashlib.sha256((row["a"] + "\x00" + row["b"]).encode()).hexdigest()
    return "tune" if int(digest, 16) % 2 == 0 else "report"


@dataclass(frozen=True)
class Candidate:
    query: str
    cached: str
    similarity: float
    label: int
    source: str
    pair: int  # index of the query's pair: one lookup, and one cross-validation group


def build_candidates(rows: Sequence[dict[str, Any]], A: np.ndarray, B: np.ndarray) -> list[Candidate]:
    """The (query, cached) pairs a cache filled as in the benchmark would hand to the verifier."""
    out: list[Candidate] = []
    pool = [i for i, r in enumerate(rows) if r["source"] != "qqp"]
    if pool:
        sims = B[pool] @ A[pool].T
        for k, i in enumerate(pool):
            for j in np.argsort(-sims[k], kind="stable")[:POOL_K].tolist():
                if sims[k, j] < POOL_GATE:
                    break
                out.append(Candidate(rows[i]["b"], rows[pool[j]]["a"], float(sims[k, j]), int(j == k), "gpt", i))
    for i, r in enumerate(rows):
        if r["source"] == "qqp":
            out.append(Candidate(r["b"], r["a"], float(A[i] @ B[i]), int(r["label"]), "qqp", i))
    return out


def fit_logistic(X: np.ndarray, y: np.ndarray, *, l2: float = 1.0, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Minimise sum(log-loss) + l2/2 |w|^2 (bias unpenalised) by Newton's method."""
    n, d = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(Xb @ w, -30, 30)))
        grad = Xb.T @ (p - y) + penalty * w
        hess = (Xb * (p * (1 - p))[:, None]).T @ Xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return w[:-1], float(w[-1])


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    return mean, scale


def _fit(X: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mean, scale = _standardise(X)
    w, b = fit_logistic((X - mean) / scale, y, l2=l2)
    return mean, scale, w, b


def _predict(X: np.ndarray, mean: np.ndarray, scale: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(((X - mean) / scale) @ w + b, -30, 30)))


def serve(cands: Sequence[Candidate], scores: np.ndarray, similarity: float, accept: float) -> dict[str, int]:
    """Replay lookups: per query, candidates in similarity order, the first accepted one is served."""
    served: set[tuple[str, int]] = set()
    tally = {"hits": 0, "correct": 0}
    for c, s in zip(cands, scores.tolist()):
        key = (c.source, c.pair)
        if key in served or c.similarity < similarity or s < accept:
            continue
        served.add(key)
        tally["hits"] += 1
        tally["correct"] += c.label
    return tally


def calibrate(
    cands: Sequence[Candidate], scores: np.ndarray, positives: int, *, target: float
) -> dict[str, float]:
    """The grid point with the best hit rate at precision >= target (ties: the earlier point)."""
    best = {"similarity_threshold": 0.95, "accept_threshold": 0.0, "hit_rate": 0.0, "precision": float("nan")}
    for t in SIMILARITY_GRID:
        for v in ACCEPT_GRID:
            tally = serve(cands, scores, t, v)
            if not tally["hits"]:
                continue
            precision = tally["correct"] / tally["hits"]
            hit_rate = tally["correct"] / max(positives, 1)
            if precision >= target and hit_rate > best["hit_rate"]:
                best = {"similarity_threshold": t, "accept_threshold": v, "hit_rate": hit_rate, "precision": precision}
    return {k: round(v, 4) for k, v in best.items()}


def _fold(pair: int) -> int:
    return int(hashlib.sha256(str(pair).encode()).hexdigest(), 16) % FOLDS


def train(
    rows: Sequence[dict[str, Any]], A: np.ndarray, B: np.ndarray, *, l2: float = 1.0, target: float = 0.95
) -> Verifier:
    """Fit and calibrate on `rows` (the caller passes the tune half only)."""
    vocab = Vocabulary.fit(text for r in rows for text in (r["a"], r["b"]))
    cands = [c for c in build_candidates(rows, A, B) if near_miss_reason(c.query, c.cached) is None]
    if not cands:
        raise ValueError("no training candidates")
    X = np.array([scalar_features(c.query, c.cached, c.similarity, vocab) for c in cands], dtype=np.float64)
    y = np.array([c.label for c in cands], dtype=np.float64)
    folds = np.array([_fold(c.pair) for c in cands])
    oof = np.zeros(len(cands))
    for f in range(FOLDS):
        train_mask, test_mask = folds != f, folds == f
        if not test_mask.any() or len(set(y[train_mask].tolist())) < 2:
            continue
        oof[test_mask] = _predict(X[test_mask], *_fit(X[train_mask], y[train_mask], l2))
    positives = sum(1 for r in rows if r["label"] == 1)
    point = calibrate(cands, oof, positives, target=target)
    cosine_only = calibrate(cands, np.ones(len(cands)), positives, target=target)
    mean, scale, w, b = _fit(X, y, l2)
    data_hash = hashlib.sha256("\n".join(json.dumps(r, sort_keys=True) for r in rows).encode()).hexdigest()
    meta = {
        "trained_on": "tune half of cache/dev.jsonl",
        "pairs": len(rows),
        "candidates": len(cands),
        "positives": positives,
        "l2": l2,
        "target_precision": target,
        "oof_operating_point": point,
        "oof_cosine_and_guards_only": cosine_only,
        "data_sha256": data_hash,
    }
    return Verifier(mean=mean, scale=scale, weights=w, bias=b, vocab=vocab,
                    accept_threshold=point["accept_threshold"],
                    similarity_threshold=point["similarity_threshold"], meta=meta)


def load_rows(data: Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    path = data / "cache" / "dev.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    tune = [r for r in rows if half_of(r) == "tune"]
    return tune[:limit] if limit is not None else tune


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="directory holding cache/dev.jsonl")
    parser.add_argument("--out", type=Path, default=DEFAULT_ARTIFACT, help="artifact path to write")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N tune pairs only (tests)")
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=0.95, help="precision the operating point must reach")
    args = parser.parse_args(argv)

    from adaptive_plugin.embedding import Embedder, default_model_dir

    rows = load_rows(args.data, limit=args.limit)
    embedder = Embedder.from_directory(default_model_dir())
    A = embedder.embed([r["a"] for r in rows])
    B = embedder.embed([r["b"] for r in rows])
    verifier = train(rows, A, B, l2=args.l2, target=args.target)
    verifier.save(args.out)
    meta = verifier.meta
    print(f"wrote {args.out}: {meta['pairs']} tune pairs, {meta['candidates']} candidates", file=sys.stderr)
    print(f"out-of-fold operating point: {meta['oof_operating_point']}", file=sys.stderr)
    print(f"cosine + guards only:        {meta['oof_cosine_and_guards_only']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

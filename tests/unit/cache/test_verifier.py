"""The learned pair verifier: artifact, behaviour in the cache, deterministic rebuild."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptive_plugin.cache import SemanticCache, Verifier
from adaptive_plugin.cache._features import SCALAR_NAMES, Vocabulary, scalar_features
from adaptive_plugin.cache._verifier import DEFAULT_ARTIFACT
from adaptive_plugin.cache.train import calibrate, fit_logistic, half_of, load_rows, train
from adaptive_plugin.errors import CacheError

from .conftest import CountingEmbedder, completion, user

P: dict[str, Any] = {"model": "gpt-4o-mini", "temperature": 0}
DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def test_shipped_artifact_loads() -> None:
    v = Verifier.load()
    assert v.weights.shape == (len(SCALAR_NAMES),)
    assert 0.0 <= v.accept_threshold < 1.0 and 0.5 < v.similarity_threshold < 1.0
    assert v.meta["trained_on"] == "tune half of cache/dev.jsonl"
    assert v.meta["target_precision"] == 0.95
    # deterministic serialisation: load -> dump gives the shipped bytes
    assert v.to_json() == DEFAULT_ARTIFACT.read_text(encoding="utf-8")


def test_foreign_or_broken_artifact_is_a_cache_error(tmp_path: Path) -> None:
    bad = tmp_path / "v.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CacheError):
        Verifier.load(bad)
    doc = json.loads(DEFAULT_ARTIFACT.read_text(encoding="utf-8"))
    doc["features"] = doc["features"][:-1]
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CacheError, match="rebuild"):
        Verifier.load(bad)


def test_features_are_symmetric() -> None:
    vocab = Vocabulary.fit(["How do I learn Python?", "How can I learn Python fast?", "What is Rust?"], min_df=1)
    a, b = "How do I reverse a list in Python?", "What's the quickest way to reverse a Python list?"
    assert scalar_features(a, b, 0.9, vocab) == scalar_features(b, a, 0.9, vocab)


def test_scores_rank_paraphrases_above_different_questions() -> None:
    v = Verifier.load()
    same = v.score("How do I reverse a list in Python?", "How can I reverse a Python list?", 0.95)
    other = v.score("How do I reverse a list in Python?", "How do I sort a dictionary by value in Python?", 0.80)
    assert same > other


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("Is it safe to eat raw chicken?", "Is it unsafe to eat raw chicken?"),
        ("How do I enable 2FA on my GitHub account?", "How do I disable 2FA on my GitHub account?"),
    ],
)
def test_design_traps_still_miss_with_the_verifier(make_cache: Any, stored: str, asked: str) -> None:
    cache = make_cache(verifier=True, similarity_threshold=0.80)
    cache.put("p", user(stored), completion("the stored answer"), P)
    result = cache.lookup("p", user(asked), P)
    assert result.outcome == "miss", result


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
        ("What is the capital of France?", "What's the capital city of France?"),
    ],
)
def test_paraphrases_still_hit_with_the_verifier(make_cache: Any, stored: str, asked: str) -> None:
    cache = make_cache(verifier=True)
    assert cache.verifier is not None and cache.accept_threshold == cache.verifier.accept_threshold
    cache.put("p", user(stored), completion("the stored answer"), P)
    result = cache.lookup("p", user(asked), P)
    assert result.outcome == "hit-semantic", result


def test_verifier_rejection_is_reported(make_cache: Any) -> None:
    cache = make_cache(verifier=True, accept_threshold=1.01)  # nothing can pass
    cache.put("p", user("What is the capital of France?"), completion("Paris"), P)
    result = cache.lookup("p", user("What's the capital city of France?"), P)
    assert result.outcome == "miss" and "verifier rejected" in result.reason
    assert cache.lookup("p", user("What is the capital of France?"), P).outcome == "hit-exact"


def test_verifier_is_off_by_default(tmp_path: Path, embedder: CountingEmbedder) -> None:
    cache = SemanticCache(tmp_path / "c", embedder=embedder)
    try:
        assert cache.verifier is None
    finally:
        cache.engine.dispose()


def test_logistic_fit_is_deterministic_and_separates() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = (X[:, 0] + 0.1 * rng.standard_normal(200) > 0).astype(float)
    w1, b1 = fit_logistic(X, y)
    w2, b2 = fit_logistic(X, y)
    assert np.array_equal(w1, w2) and b1 == b2
    assert w1[0] > 5 * max(abs(w1[1]), abs(w1[2]))


def test_training_on_a_small_slice_is_deterministic(real_embedder: Any) -> None:
    if not (DATA / "cache" / "dev.jsonl").exists():
        pytest.skip(f"no training data at {DATA}")
    rows = load_rows(DATA, limit=80)
    assert all(half_of(r) == "tune" for r in rows)
    A = real_embedder.embed([r["a"] for r in rows])
    B = real_embedder.embed([r["b"] for r in rows])
    first, second = train(rows, A, B), train(rows, A, B)
    assert first.to_json() == second.to_json()
    assert first.meta["pairs"] == 80
    reloaded = json.loads(first.to_json())
    assert reloaded["features"] == list(SCALAR_NAMES)


def test_calibration_picks_the_best_point_at_target_precision() -> None:
    from adaptive_plugin.cache.train import Candidate

    cands = [Candidate("q", "c", 0.95, 1, "qqp", i) for i in range(19)] + [Candidate("q", "c", 0.95, 0, "qqp", 99)]
    cands += [Candidate("q", "c", 0.85, 0, "qqp", 100 + i) for i in range(5)]
    point = calibrate(cands, np.ones(len(cands)), 20, target=0.95)
    assert point["precision"] == 0.95 and point["hit_rate"] == 0.95
    assert point["similarity_threshold"] > 0.85

"""Complexity scores and task types on hand-written prompts (real model, no network)."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_plugin.embedding import Embedder, query_text
from adaptive_plugin.errors import RoutingError
from adaptive_plugin.routing import TASK_TYPES, assess, complexity_score, detect_task_type, load_model, task_type

TRIVIAL = [
    "hi",
    "Hello! How are you today?",
    "thanks a lot",
    "What is the capital of France?",
]
LONG_CODE = (
    "I have this Python service and it deadlocks under load. Refactor it to use asyncio, keep the public API, "
    "add proper cancellation and write unit tests for the retry logic.\n```python\n"
    + "\n".join(
        f"class Worker{i}:\n    def __init__(self, q):\n        self.q = q\n        self.lock = threading.Lock()\n"
        f"    def run(self):\n        while True:\n            with self.lock:\n                item = self.q.get()\n"
        f"                if item is None:\n                    return\n                self.handle(item)\n"
        for i in range(12)
    )
    + "\n```"
)
MULTI_STEP_MATH = (
    "A tank holds 1200 litres. Pipe A fills it in 6 hours, pipe B in 8 hours, and a drain empties it in 12 hours. "
    "The tank starts 1/4 full; A and B are opened at 9:00, the drain at 10:30, and B is closed at 12:00. "
    "At what time is the tank full? Then prove that the answer is unique, and compute how many litres the drain "
    "removed in total. Show every step of the calculation."
)
HARD = [LONG_CODE, MULTI_STEP_MATH]


def _msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_scores_are_in_unit_interval_with_and_without_embedding(embedder: Embedder) -> None:
    for text in [*TRIVIAL, *HARD, "", "x" * 50_000]:
        with_emb = assess(_msgs(text), embedder=embedder)
        without = assess(_msgs(text))
        for a in (with_emb, without):
            assert 0.0 <= a.score <= 1.0
            assert a.task_type in TASK_TYPES
        assert without.used_embedding is False


def test_hard_prompts_score_above_trivial_chat(embedder: Embedder) -> None:
    for use_embedding in (True, False):
        def score(text: str) -> float:
            emb = embedder.embed_one(query_text(_msgs(text))) if use_embedding else None
            return assess(_msgs(text), embedding=emb).score

        easiest_hard = min(score(t) for t in HARD)
        hardest_trivial = max(score(t) for t in TRIVIAL)
        assert easiest_hard > hardest_trivial, (use_embedding, easiest_hard, hardest_trivial)


def test_precomputed_embedding_gives_the_same_result_as_the_embedder(embedder: Embedder) -> None:
    messages = _msgs(MULTI_STEP_MATH)
    vec = embedder.embed_one(query_text(messages))
    a = assess(messages, embedding=vec)
    b = assess(messages, embedder=embedder)
    assert a.used_embedding and b.used_embedding
    assert a.score == pytest.approx(b.score, abs=1e-6)


def test_wrong_embedding_dimension_is_a_routing_error() -> None:
    with pytest.raises(RoutingError, match="384-dimensional"):
        assess(_msgs("hello"), embedding=np.zeros(10, dtype=np.float32))


def test_complexity_score_matches_assess_with_default_embedder(embedder: Embedder) -> None:
    messages = _msgs(LONG_CODE)
    assert complexity_score(messages) == pytest.approx(assess(messages, embedder=embedder).score, abs=1e-6)


def test_conversation_depth_raises_the_score() -> None:
    one = _msgs("Can you help me with my essay?")
    many = []
    for i in range(6):
        many += [{"role": "user", "content": f"draft {i}"}, {"role": "assistant", "content": "ok " * 50}]
    many += one
    assert assess(many).score > assess(one).score


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write a Python function that merges two sorted lists.", "code"),
        ("```js\nconsole.log(x)\n```\nwhy is x undefined?", "code"),
        (MULTI_STEP_MATH, "math"),
        ("Solve for x: 3x + 7 = 22", "math"),
        ("Translate 'good morning' into French.", "translation"),
        ("Summarize the following article in three bullet points: ...", "extraction"),
        ("Write a short poem about autumn leaves.", "writing"),
        ("Compare the pros and cons of nuclear and solar power.", "reasoning"),
        ("Who wrote Pride and Prejudice?", "qa"),
        ("hey there", "chat"),
    ],
)
def test_task_types_are_sensible(text: str, expected: str) -> None:
    assert detect_task_type(text) == expected
    assert task_type(_msgs(text)) == expected


def test_shipped_artifact_is_small_and_consistent() -> None:
    from adaptive_plugin.routing import ARTIFACT_PATH

    assert ARTIFACT_PATH.stat().st_size < 1_000_000
    model = load_model()
    assert model.embedding_dim == 384
    assert np.all(np.diff(model.full.knots) > 0)


def test_embedder_path_embeds_the_same_512_character_prefix_as_the_adapters(embedder: Embedder) -> None:
    from adaptive_plugin.embedding import embedding_text

    messages = _msgs(LONG_CODE)
    assert len(query_text(messages)) > 512
    vec = embedder.embed_one(embedding_text(query_text(messages)))
    assert assess(messages, embedding=vec).score == pytest.approx(assess(messages, embedder=embedder).score, abs=1e-6)


def test_multi_part_questions_score_above_a_single_lookup() -> None:
    single = _msgs("Who wrote Pride and Prejudice?")
    compound = _msgs(
        "Statement 1 | Every group of prime order is cyclic. Statement 2 | Every abelian group is cyclic.\n"
        "A. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:"
    )
    assert assess(compound).score > assess(single).score


def test_task_detection_reads_each_pattern_once_through_scan() -> None:
    from adaptive_plugin.routing._task import scan, task_from_scan

    for text in [*TRIVIAL, *HARD, "Solve for x: 3x + 7 = 22", ""]:
        assert task_from_scan(scan(text)) == detect_task_type(text)
    window = scan("x" * 5000).text
    assert len(window) < 1000


def test_artifact_records_how_it_was_trained() -> None:
    info = load_model().info
    assert info["weights"] == "each source equal"
    assert "512" in info["embedding_text"]
    assert set(info["cv_source_full_apgr"]) == {"alpaca_eval", "arena_bench", "gsm8k", "mmlu"}
    assert info["keyword_weight"] == load_model().keyword.weight > 0

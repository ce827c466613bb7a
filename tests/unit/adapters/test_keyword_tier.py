"""LiteLLM's keyword tier as the router reads it: the tier's rank plus its weighted score / 10."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from adaptive_plugin.adapters import keyword_tier as kt  # noqa: E402
from adaptive_plugin.routing import _assess  # noqa: E402


@pytest.fixture()
def no_installed_source() -> Iterator[None]:
    before = _assess._keyword_tier_source
    _assess.set_keyword_tier_source(None)
    yield
    _assess.set_keyword_tier_source(before)


def test_tier_is_litellms_rank_plus_a_tenth_of_its_score() -> None:
    text = "Write a Python function that parses a CSV file and returns a list of dicts, with type hints."
    tier, score, _signals = kt._classifier().classify(text)  # short: the window is the whole text
    assert kt.keyword_tier(text) == pytest.approx(kt.TIER_RANK[tier.value] + score / 10.0)


def test_code_and_reasoning_rank_above_a_greeting() -> None:
    greeting = kt.keyword_tier("hi there")
    code = kt.keyword_tier("Debug this Python function: the algorithm's recursion overflows the stack on large arrays.")
    assert greeting is not None and code is not None
    assert code > greeting


def test_empty_text_and_a_failing_scorer_give_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kt.keyword_tier("") is None

    class Broken:
        def classify(self, text: str) -> None:
            raise RuntimeError("boom")

    monkeypatch.setattr(kt, "_classifier", lambda: Broken())
    assert kt.keyword_tier("Explain recursion") is None


def test_install_hands_the_tier_to_complexity_score(no_installed_source: None) -> None:
    assert _assess._keyword_tier_source is None
    assert kt.install() is True
    assert _assess._keyword_tier_source is kt.keyword_tier


def test_package_level_complexity_score_installs_litellms_tier(no_installed_source: None) -> None:
    import adaptive_plugin

    score = adaptive_plugin.complexity_score
    assert _assess._keyword_tier_source is kt.keyword_tier
    assert 0.0 <= score([{"role": "user", "content": "Prove that sqrt(2) is irrational, step by step."}]) <= 1.0


def test_long_prompts_are_scored_on_the_scan_window(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = kt._classifier()

    class Recorder:
        def classify(self, text: str) -> tuple[object, float, list[str]]:
            seen.append(text)
            return real.classify(text)

    monkeypatch.setattr(kt, "_classifier", lambda: Recorder())
    long_text = "Explain the algorithm. " * 5000
    assert kt.keyword_tier(long_text) is not None
    assert len(seen[0]) < 1000 and seen[0].startswith("Explain the algorithm.")

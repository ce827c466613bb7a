"""The keyword-tier term: it moves open prompts, leaves multiple-choice questions alone, and
`complexity_score` uses the installed tier source."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from adaptive_plugin.routing import _assess, assess, complexity_score, load_model, set_keyword_tier_source
from adaptive_plugin.routing._features import handcrafted_features
from adaptive_plugin.routing._model import is_multiple_choice

OPEN = [{"role": "user", "content": "Help me plan a week of meals for a family of four on a budget."}]
CHOICE = [{"role": "user", "content": (
    "Which gas makes up most of Earth's atmosphere?\nA. Oxygen\nB. Nitrogen\nC. Argon\nD. Carbon dioxide\nAnswer:"
)}]


@pytest.fixture()
def restore_source() -> Iterator[None]:
    before = _assess._keyword_tier_source
    yield
    set_keyword_tier_source(before)


def test_multiple_choice_is_detected_from_the_lettered_options() -> None:
    assert is_multiple_choice(handcrafted_features(CHOICE))
    assert not is_multiple_choice(handcrafted_features(OPEN))


def test_a_higher_tier_raises_an_open_prompt_and_none_is_the_average_tier() -> None:
    model = load_model()
    assert model.keyword.weight > 0
    low, high = assess(OPEN, keyword_tier=1.0).score, assess(OPEN, keyword_tier=3.0).score
    assert high > low
    assert assess(OPEN, keyword_tier=model.keyword.mean).score == pytest.approx(assess(OPEN).score, abs=1e-9)


def test_multiple_choice_questions_ignore_the_tier() -> None:
    assert assess(CHOICE, keyword_tier=1.0).score == assess(CHOICE, keyword_tier=4.0).score == assess(CHOICE).score


def test_complexity_score_asks_the_installed_source(restore_source: None) -> None:
    seen: list[str] = []

    def source(text: str) -> float:
        seen.append(text)
        return 4.0

    set_keyword_tier_source(None)
    without = complexity_score(OPEN)
    set_keyword_tier_source(source)
    with_source = complexity_score(OPEN)
    assert seen == [OPEN[0]["content"]]
    assert with_source > without


def test_keyword_term_values_match_the_single_prompt_path() -> None:
    model = load_model()
    feats = np.stack([handcrafted_features(OPEN), handcrafted_features(CHOICE), handcrafted_features(OPEN)])
    tiers = np.asarray([2.5, 2.5, np.nan])
    expected = [model.keyword.value(2.5, feats[0]), 0.0, 0.0]
    np.testing.assert_allclose(model.keyword.values(tiers, feats), expected)

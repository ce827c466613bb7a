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
MATH = [{"role": "user", "content": "Solve for x: 3x + 7 = 22, then compute x squared."}]
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
    # without a tier the head ranks the prompt alone
    head_alone = model.features.calibrate(model.features.raw(handcrafted_features(OPEN)))
    assert assess(OPEN).score == pytest.approx(float(head_alone), abs=1e-9)


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


def test_the_batch_combination_matches_the_single_prompt_path() -> None:
    term = load_model().keyword
    prompts = [OPEN, CHOICE, OPEN, MATH]
    feats = np.stack([handcrafted_features(p) for p in prompts])
    heads = np.asarray([0.7, -0.2, 1.3, 0.4])
    tiers = np.asarray([2.5, 2.5, np.nan, 1.0])
    expected = [term.combine(h, None if np.isnan(t) else t, f) for h, t, f in zip(heads, tiers, feats, strict=True)]
    np.testing.assert_allclose(term.combine_many(heads, tiers, feats), expected)
    assert expected[1] == -0.2 and expected[2] == 1.3  # multiple-choice, no tier: the head alone


def test_open_prompts_follow_the_tier_while_maths_keeps_the_head() -> None:
    term = load_model().keyword
    open_f, math_f = handcrafted_features(OPEN), handcrafted_features(MATH)
    assert term.combine(0.0, 2.0, open_f) - term.combine(0.0, 1.0, open_f) == pytest.approx(term.weight / term.std)
    # the head moves a maths prompt fully, an open prompt by `open_head_weight`
    assert term.combine(1.0, 1.0, math_f) - term.combine(0.0, 1.0, math_f) == pytest.approx(1.0)
    assert term.combine(1.0, 1.0, open_f) - term.combine(0.0, 1.0, open_f) == pytest.approx(term.open_head_weight)


def test_long_questions_with_ten_options_in_the_middle_are_multiple_choice() -> None:
    stem = "A sealed flask holds a liquid and its vapour at equilibrium. " * 15  # options fall outside the scan window
    options = "\n".join(f"{letter}. option {letter.lower()} about vapour pressure" for letter in "ABCDEFGHIJ")
    text = f"{stem}\n\nOptions:\n{options}\n\n" + "Provide the correct letter choice in \\boxed{X}. " * 6
    assert len(text) > 1200
    assert is_multiple_choice(handcrafted_features([{"role": "user", "content": text}]))
    plain = "Here is my plan:\n- buy flour\n- bake bread\nWhat do you think?"
    assert not is_multiple_choice(handcrafted_features([{"role": "user", "content": plain}]))

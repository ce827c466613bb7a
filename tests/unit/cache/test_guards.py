"""Near misses that embed close together are told apart by the token guards."""

from __future__ import annotations

import pytest

from adaptive_plugin.cache import near_miss_reason

NEAR_MISSES = [
    ("Is it safe to eat raw chicken?", "Is it unsafe to eat raw chicken?", "antonym"),
    ("How do I enable 2FA on GitHub?", "How do I disable 2FA on GitHub?", "antonym"),
    ("Should I accept the job offer?", "Should I decline the job offer?", "antonym"),
    ("Is it safe to eat raw chicken?", "Is it not safe to eat raw chicken?", "negation"),
    ("Why does my code compile?", "Why doesn't my code compile?", "negation"),
    ("What is 15% of 200?", "What is 15% of 300?", "number"),
    ("How many km is 10 miles?", "How many meters is 10 miles?", "unit"),
    ("What happened on July 4 1776?", "What happened on June 4 1776?", "date"),
    ("Who founded Microsoft?", "Who founded Apple?", "entity"),
    ("How do I reverse a list in Python?", "How do I reverse a list in Rust?", "language"),
    ("What should I teach an adult about money?", "What should I teach a kid about money?", "substitution"),
]

PARAPHRASES = [
    ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
    ("What is the capital of France?", "What's the capital city of France?"),
    ("What are good ways to lose weight fast?", "How can I lose weight fast?"),
]


@pytest.mark.parametrize(("a", "b", "reason"), NEAR_MISSES)
def test_near_misses_are_rejected_with_their_reason(a: str, b: str, reason: str) -> None:
    assert near_miss_reason(a, b) == reason
    assert near_miss_reason(b, a) is not None


@pytest.mark.parametrize(("a", "b"), PARAPHRASES)
def test_paraphrases_pass(a: str, b: str) -> None:
    assert near_miss_reason(a, b) is None


# Surface variants the guards used to mistake for a changed meaning (found on the tune half
# of the cache benchmark): contractions, word forms, hyphenation, time words without a number.
SURFACE_VARIANTS = [
    ("Why men do not take divorced woman seriously?", "Why men don't take divorced woman seriously?"),
    ("What is the best advice for a 16 year old?", "What is some advice you would give to a 16-year old?"),
    ("How do I wake myself up when tired during the day?", "How can I wake myself up when I'm tired?"),
    ("What is different between American English and British English?",
     "What are the differences between British English and American English?"),
    ("What are the best techniques used in Off Page SEO?", "What are the best SEO techniques for off-page SEO?"),
    ("The method generate_examples produces the samples.", "The generate_examples method generates the samples."),
]

# ... while the same token classes still separate real near misses.
STILL_NEAR_MISSES = [
    ("How do I plan a 3 day trip to Rome?", "How do I plan a 3 week trip to Rome?", "unit"),
    ("What should I get for a 16-year-old?", "What should I get for a 16-month-old?", "unit"),
    ("Is rs 500 enough for a day in Goa?", "Is rs 1000 enough for a day in Goa?", "number"),
    ("How can I forget the past and focus on the present?", "How can I forget the past and focus on the future?",
     "substitution"),
]


@pytest.mark.parametrize(("a", "b"), SURFACE_VARIANTS)
def test_surface_variants_pass(a: str, b: str) -> None:
    assert near_miss_reason(a, b) is None
    assert near_miss_reason(b, a) is None


@pytest.mark.parametrize(("a", "b", "reason"), STILL_NEAR_MISSES)
def test_refined_guards_still_reject(a: str, b: str, reason: str) -> None:
    assert near_miss_reason(a, b) == reason
    assert near_miss_reason(b, a) == reason


def test_word_forms_are_not_substitutions_but_less_suffix_is() -> None:
    assert near_miss_reason("Why are cancer cells a danger?", "Why are cancer cells dangerous?") is None
    assert near_miss_reason("Does daily office work feel meaning", "Does daily office work feel meaningless") is not None
    assert near_miss_reason("Is my daily office work meaningful?", "Is my daily office work meaningless?") is not None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Should cow slaughter be banned in India or not?", "Should cow slaughter be banned in India?"),
        ("Why should/shouldn't Puerto Rico become a state?", "Should Puerto Rico become a state?"),
        ("Were humans around when dinosaurs lived? Why or why not?", "Were humans around when dinosaurs lived?"),
        ("LOAD_HU is not available in version 2.10.0.", "No, LOAD_HU doesn't exist in version 2.10.0."),
    ],
)
def test_alternative_and_answer_negations_do_not_count(a: str, b: str) -> None:
    assert near_miss_reason(a, b) is None
    assert near_miss_reason(b, a) is None


def test_real_negations_still_count() -> None:
    assert near_miss_reason("Is it safe to eat raw chicken or not?", "Is it not safe to eat raw chicken?") == "negation"
    assert near_miss_reason("Are no dogs allowed in the park?", "Are dogs allowed in the park?") == "negation"

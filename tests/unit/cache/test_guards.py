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

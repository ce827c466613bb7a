"""Pair features for the learned verifier: cosine, lexical overlap, content-word differences, guards.

Everything here is symmetric in the two texts (the verifier must not care which one was
cached) and cheap: the token work reuses the guards' cached `features()`, and the cosine
is the one FAISS already returned. (The element-wise embedding features [u*v, |u-v|] were
tried too and did not help at the precision the cache runs at; see the cache README.)

    >>> x = scalar_features("How do I reverse a list in Python?", "How can I reverse a Python list?", 0.95,
    ...                     Vocabulary.empty())
    >>> len(x) == len(SCALAR_NAMES)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from adaptive_plugin.cache._guards import GUARDS, STOPWORDS, TextFeatures, features

__all__ = ["SCALAR_NAMES", "Vocabulary", "content_stems", "scalar_features"]

_WH = frozenset("what why how when who whom whose which where".split())

SCALAR_NAMES: tuple[str, ...] = (
    "cosine",
    "cosine_sq",
    "stem_jaccard",
    "stem_contain_min",
    "stem_contain_max",
    "content_jaccard",
    "content_contain_min",
    "content_contain_max",
    "idf_diff_share",
    "idf_diff_max",
    "idf_diff_sum",
    "diff_count",
    "diff_unknown",
    "char3_jaccard",
    "len_ratio",
    "len_mean_log",
    "wh_mismatch",
    "first_word_mismatch",
    *(f"guard_{name}" for name, _ in GUARDS),
)


@dataclass(frozen=True)
class Vocabulary:
    """Inverse document frequencies of content stems, learned from the training texts.

    Stems not in the table get `unknown_idf` (the IDF of a stem seen once): rare words are
    the ones that change a question's meaning.
    """

    idf: dict[str, float]
    unknown_idf: float

    @classmethod
    def empty(cls) -> Vocabulary:
        return cls({}, 1.0)

    @classmethod
    def fit(cls, texts: Iterable[str], *, min_df: int = 2) -> Vocabulary:
        """IDF = log((N + 1) / (df + 1)) + 1 over `texts`; stems seen fewer than `min_df` times are dropped."""
        df: dict[str, int] = {}
        n = 0
        for text in texts:
            n += 1
            for stem in content_stems(features(text)):
                df[stem] = df.get(stem, 0) + 1
        idf = {s: round(math.log((n + 1) / (d + 1)) + 1.0, 4) for s, d in sorted(df.items()) if d >= min_df}
        return cls(idf, round(math.log((n + 1) / 2) + 1.0, 4))

    def weight(self, stem: str) -> float:
        return self.idf.get(stem, self.unknown_idf)


def content_stems(f: TextFeatures) -> frozenset[str]:
    return frozenset(s for s in f.stems if s not in STOPWORDS and len(s) > 1)


@lru_cache(maxsize=4096)
def _char3(text: str) -> frozenset[str]:
    t = " " + " ".join(features(text).words) + " "
    return frozenset(t[i : i + 3] for i in range(len(t) - 2))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _contain(a: frozenset[str], b: frozenset[str]) -> tuple[float, float]:
    inter = len(a & b)
    ca = inter / len(a) if a else 1.0
    cb = inter / len(b) if b else 1.0
    return min(ca, cb), max(ca, cb)


def scalar_features(query: str, cached: str, cosine: float, vocab: Vocabulary) -> list[float]:
    """The hand-made features of one pair, in `SCALAR_NAMES` order."""
    a, b = features(query), features(cached)
    sa, sb = a.stems, b.stems
    ca, cb = content_stems(a), content_stems(b)
    diff = ca ^ cb
    weights = [vocab.weight(s) for s in diff]
    total = sum(vocab.weight(s) for s in ca | cb)
    len_a, len_b = max(len(a.words), 1), max(len(b.words), 1)
    wh_a = [w for w in a.words if w in _WH]
    wh_b = [w for w in b.words if w in _WH]
    first_a = wh_a[0] if wh_a else ""
    first_b = wh_b[0] if wh_b else ""
    same_text = a.joined == b.joined
    return [
        cosine,
        cosine * cosine,
        _jaccard(sa, sb),
        *_contain(sa, sb),
        _jaccard(ca, cb),
        *_contain(ca, cb),
        sum(weights) / total if total else 0.0,
        max(weights, default=0.0),
        math.log1p(sum(weights)),
        math.log1p(len(diff)),
        float(sum(1 for s in diff if s not in vocab.idf)),
        _jaccard(_char3(query), _char3(cached)),
        min(len_a, len_b) / max(len_a, len_b),
        math.log((len_a + len_b) / 2),
        float(set(wh_a) != set(wh_b)),
        float(first_a != first_b),
        *(float(not same_text and guard(a, b)) for _, guard in GUARDS),
    ]

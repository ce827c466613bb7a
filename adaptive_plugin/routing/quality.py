"""Router quality measures from RouteLLM: APGR and CPT.

A router ranks prompts by a score; the top share `c` of prompts go to the strong model,
the rest to the weak one. PGR(c) is the share of the weak-to-strong quality gap that this
recovers. APGR is the area under PGR(c) for c in [0, 1] (random order gives 0.5), and
CPT(p) is the smallest share of strong calls whose PGR reaches `p`.

Ties in the score are resolved by their expectation under random tie-breaking, so a
router that gives many prompts the same score is not flattered by the data order.

    >>> apgr([0.9, 0.1], weak=[0.0, 1.0], strong=[1.0, 1.0])
    0.75
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["apgr", "cpt", "pgr_curve"]


def pgr_curve(
    scores: Sequence[float] | np.ndarray,
    *,
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (share of strong calls, PGR) at every k = 0..n prompts sent to the strong model."""
    s = np.asarray(scores, dtype=np.float64)
    gain = np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)
    if s.shape != gain.shape or s.ndim != 1 or s.size == 0:
        raise ValueError("scores, weak and strong must be non-empty 1-d sequences of equal length")
    total = float(gain.sum())
    if total == 0.0:
        raise ValueError("the strong and weak models have the same mean quality: PGR is undefined")
    order = np.argsort(-s, kind="stable")
    s_sorted, g_sorted = s[order], gain[order]
    # Replace each tie group's gains by the group mean: the expected curve under random tie-breaking.
    _, starts, counts = np.unique(-s_sorted, return_index=True, return_counts=True)
    sums = np.add.reduceat(g_sorted, starts)
    g_expected = np.repeat(sums / counts, counts)
    pgr = np.concatenate([[0.0], np.cumsum(g_expected)]) / total
    share = np.arange(s.size + 1, dtype=np.float64) / s.size
    return share, pgr


def apgr(
    scores: Sequence[float] | np.ndarray,
    *,
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
) -> float:
    """Area under the PGR curve (trapezoids over every k); 0.5 for a random router."""
    share, pgr = pgr_curve(scores, weak=weak, strong=strong)
    return float(np.sum((pgr[1:] + pgr[:-1]) * 0.5 * np.diff(share)))


def cpt(
    scores: Sequence[float] | np.ndarray,
    *,
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
    target: float = 0.5,
) -> float:
    """Smallest share of strong-model calls whose PGR reaches `target` (0.5 for a random router)."""
    share, pgr = pgr_curve(scores, weak=weak, strong=strong)
    reached = np.nonzero(pgr >= target - 1e-12)[0]
    return float(share[reached[0]]) if reached.size else 1.0

"""APGR / CPT against hand-computed curves."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_plugin.routing import apgr, cpt


def test_perfect_random_and_reversed_orders() -> None:
    weak = np.array([0, 0, 1, 1, 0, 1], dtype=float)
    strong = np.array([1, 1, 1, 1, 1, 1], dtype=float)
    gain = strong - weak
    assert apgr(gain, weak=weak, strong=strong) > 0.7
    assert apgr(np.zeros(6), weak=weak, strong=strong) == pytest.approx(0.5)
    assert apgr(-gain, weak=weak, strong=strong) < 0.3
    assert cpt(gain, weak=weak, strong=strong) == pytest.approx(2 / 6)
    assert cpt(np.zeros(6), weak=weak, strong=strong) == pytest.approx(0.5)


def test_no_gap_is_an_error() -> None:
    with pytest.raises(ValueError):
        apgr([1.0, 2.0], weak=[1.0, 1.0], strong=[1.0, 1.0])

"""Training target: standardised within each source over the rows the heads are fitted on."""

from __future__ import annotations

import numpy as np

from adaptive_plugin.routing._features import FEATURE_NAMES
from adaptive_plugin.routing.train import Dataset, fit_model


def _dataset(source: list[str], weak: list[float], strong: list[float], *, seed: int = 0) -> Dataset:
    n = len(source)
    rng = np.random.default_rng(seed)
    return Dataset(
        messages=[[{"role": "user", "content": f"q{i}"}] for i in range(n)],
        source=np.asarray(source),
        category=np.asarray(source),
        weak=np.asarray(weak, dtype=float),
        strong=np.asarray(strong, dtype=float),
        features=rng.random((n, len(FEATURE_NAMES))).astype(np.float32),
        embeddings=rng.standard_normal((n, 8)).astype(np.float32),
    )


def test_target_is_centred_and_scaled_on_each_sources_informative_rows() -> None:
    # "a": mostly ties (like MMLU); "b": continuous preferences (like AlpacaEval).
    ds = _dataset(
        ["a"] * 8 + ["b"] * 4,
        weak=[1, 1, 1, 0, 0, 1, 0, 1, 0.1, 0.4, 0.0, 0.3],
        strong=[1, 1, 1, 0, 1, 0, 1, 1, 0.9, 0.6, 1.0, 0.7],
    )
    y = ds.target
    for src in ("a", "b"):
        fitted = (ds.source == src) & ds.informative
        assert abs(float(y[fitted].mean())) < 1e-9
        assert abs(float(y[fitted].std()) - 1.0) < 1e-6
    # Ties follow the same affine map: they sit between a loss and a win of their source.
    ties = (ds.source == "a") & ~ds.informative
    wins = (ds.source == "a") & (ds.gain > 0)
    losses = (ds.source == "a") & (ds.gain < 0)
    assert np.all(y[ties] < y[wins].min()) and np.all(y[ties] > y[losses].max())


def test_target_of_a_source_without_informative_rows_is_finite() -> None:
    ds = _dataset(["a"] * 3 + ["b"] * 3, weak=[1, 0, 1, 0, 1, 0], strong=[1, 0, 1, 1, 0, 1])
    assert np.all(np.isfinite(ds.target))


def test_fit_model_is_deterministic() -> None:
    ds = _dataset(["a"] * 20 + ["b"] * 20, weak=[0, 1] * 20, strong=[1, 1, 0, 1] * 10, seed=3)
    one, two = fit_model(ds), fit_model(ds)
    np.testing.assert_array_equal(one.full.weights, two.full.weights)
    np.testing.assert_array_equal(one.features.knots, two.features.knots)

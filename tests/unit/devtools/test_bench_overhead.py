"""The overhead bench's reading of the proxy's embedding histogram (its budget depends on it)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.overhead import bucket_p50, embedding_buckets


def _exposition(process: list[float], in_process: list[float]) -> str:
    registry = CollectorRegistry()
    histogram = Histogram("adaptive_embedding_seconds", "test", ("where",), registry=registry,
                          buckets=(0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01))
    for where, values in (("process", process), ("in_process", in_process)):
        for value in values:
            histogram.labels(where=where).observe(value)
    return generate_latest(registry).decode()


def test_buckets_are_summed_over_where_the_embeddings_ran() -> None:
    buckets = embedding_buckets(_exposition([0.0035, 0.0045], [0.0095]))
    assert buckets[4.0] == 1 and buckets[5.0] == 2 and buckets[10.0] == 3 and buckets[float("inf")] == 3


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0035] * 10, 3.5),  # all in the (3, 4] ms bucket: its middle
        ([0.0015] * 5 + [0.0045] * 5, 2.0),  # half up to 2 ms: the median is that bound
        ([0.0025] * 4 + [0.0055] * 6, 5.0 + 1.0 / 6),  # one of the six in (5, 6] ms is below it
        ([0.02] * 3, 10.0),  # beyond the last bound: the last bound, not infinity
    ],
)
def test_the_median_is_interpolated_in_its_bucket(values: list[float], expected: float) -> None:
    assert bucket_p50(embedding_buckets(_exposition(values, []))) == pytest.approx(expected)


def test_no_embeddings_no_median() -> None:
    assert bucket_p50(embedding_buckets(_exposition([], []))) is None
    assert bucket_p50({}) is None

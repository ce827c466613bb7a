"""Embeddings in a worker process (`ADAPTIVE_EMBEDDING_PROCESS`): same vectors, failures that
fall back to the proxy process, a stuck worker that is killed, a worker that is restarted and stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adaptive_plugin.embedding import Embedder, default_model_dir
from adaptive_plugin.errors import EmbeddingModelError

TEXTS = [
    "How do I reset my password?",
    "Explain the difference between TCP and UDP in two sentences.",
    "Is it unsafe to eat raw chicken?",
    "",
    "word " * 400,  # longer than the tokenizer's limit
    "Ünïcödé, 汉字 and emoji 🙂 survive the pipe",
]


@pytest.fixture()
def embedder() -> Iterator[Embedder]:
    emb = Embedder.from_directory(default_model_dir())
    emb.use_process(default_model_dir())
    assert emb.process is not None and asyncio.run(emb.process.until_ready())
    yield emb
    emb.close_process()


@pytest.fixture()
def batching(rowwise_dir: Path) -> Iterator[Embedder]:
    """A worker on a model whose batches are exact (row-wise scales): it batches."""
    emb = Embedder.from_directory(rowwise_dir)
    emb.use_process(rowwise_dir)
    assert emb.process is not None and asyncio.run(emb.process.until_ready())
    yield emb
    emb.close_process()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def assert_a_new_worker_answers(embedder: Embedder, old_pid: int, text: str) -> None:
    """The next request starts a new worker (and embeds in-process meanwhile); once it is ready,
    the new worker answers with the proxy process's vector."""
    process = embedder.process
    assert process is not None
    await embedder.embed_one_async(text)
    assert process.pid not in (None, old_pid) and await process.until_ready()
    sent = process.submit(text)
    assert sent is not None
    np.testing.assert_allclose(await asyncio.wait_for(sent, timeout=30), embedder.embed_one(text), atol=1e-5)


def test_no_request_waits_for_the_worker_to_load_its_model() -> None:
    emb = Embedder.from_directory(default_model_dir())
    emb.use_process(default_model_dir())
    process = emb.process
    assert process is not None

    async def scenario() -> None:
        vector = await emb.embed_one_async(TEXTS[0])  # the worker is still loading: in-process
        assert not process.ready  # answered before the worker loaded its model (it takes seconds)
        np.testing.assert_allclose(vector, emb.embed_one(TEXTS[0]), atol=1e-5)
        assert await process.until_ready()
        assert process.submit(TEXTS[0]) is not None  # from now on, the worker

    try:
        asyncio.run(scenario())
    finally:
        emb.close_process()


@pytest.mark.parametrize("model", ["default", "rowwise"])
def test_the_worker_gives_the_proxy_process_vectors_and_its_compute_times(
    model: str, request: pytest.FixtureRequest
) -> None:
    """30 texts in flight at once: every text gets the vector it gets alone. A row-wise model is
    embedded in batches (texts that arrive during a run share the next one); the default model
    (one activation scale per tensor) one text per run."""
    embedder: Embedder = request.getfixturevalue("embedder" if model == "default" else "batching")
    from prometheus_client import REGISTRY

    def computed() -> tuple[float, float]:
        labels = {"where": "process"}
        return (REGISTRY.get_sample_value("adaptive_embedding_seconds_count", labels) or 0.0,
                REGISTRY.get_sample_value("adaptive_embedding_seconds_sum", labels) or 0.0)

    def runs() -> float:
        return REGISTRY.get_sample_value("adaptive_embedding_batches_total") or 0.0

    async def embed_all() -> list[np.ndarray]:
        futures = [embedder.embed_one_soon(t) for t in TEXTS * 5]  # 30 in flight at once
        assert embedder.process is not None and all(f is not None for f in futures)
        return list(await asyncio.gather(*futures))

    count, total = computed()
    before = runs()
    started = time.perf_counter()
    vectors = asyncio.run(embed_all())
    elapsed = time.perf_counter() - started
    assert embedder.process is not None and embedder.process.ready
    for text, vector in zip(TEXTS * 5, vectors, strict=True):
        assert vector.dtype == np.float32 and vector.shape == (embedder.dimensions,)
        np.testing.assert_allclose(vector, embedder.embed_one(text), atol=1e-5)
    # each answer's share of its batch's compute time, measured by the worker: no queueing in
    # it, so their sum is below the wall time of the 30 answers
    count_after, total_after = computed()
    assert count_after - count == len(vectors)
    assert 0 < total_after - total < elapsed
    if model == "rowwise":  # batched: fewer runs than texts, at most 8 texts per run
        assert len(vectors) / 8 <= runs() - before < len(vectors)
    else:
        assert runs() - before == len(vectors)


def test_a_worker_that_dies_fails_its_requests_and_is_replaced(
    embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    process = embedder.process
    assert process is not None
    process.restart_after = 0.5

    async def scenario() -> None:
        await embedder.embed_one_async(TEXTS[0])  # up and answering
        first = process.pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)  # the request below is still waiting when the worker dies
        waiting = embedder.embed_one_soon(TEXTS[1])
        os.kill(first, signal.SIGKILL)
        with pytest.raises(EmbeddingModelError, match="embedding process exited"):
            await waiting
        # until it may restart, requests embed in this process, and still get their vector
        assert process.submit(TEXTS[2]) is None
        np.testing.assert_allclose(await embedder.embed_one_async(TEXTS[2]), embedder.embed_one(TEXTS[2]), atol=1e-5)
        await asyncio.sleep(0.6)
        await assert_a_new_worker_answers(embedder, first, TEXTS[2])

    asyncio.run(scenario())
    assert "embedding process exited" in caplog.text


def test_a_worker_that_stops_answering_is_killed_and_its_requests_fall_back(
    embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    process = embedder.process
    assert process is not None
    process.answer_timeout = 0.5
    process.restart_after = 0.0

    async def scenario() -> None:
        await embedder.embed_one_async(TEXTS[0])  # up and answering
        stuck = process.pid
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)  # alive, but answers nothing
        try:
            started = time.monotonic()
            waiting = embedder.embed_one_soon(TEXTS[1])
            with pytest.raises(EmbeddingModelError, match="embedding process exited"):
                await asyncio.wait_for(waiting, timeout=10)
            assert 0.4 < time.monotonic() - started < 5
            assert not alive(stuck) or open(f"/proc/{stuck}/stat").read().split()[2] == "Z"
            await assert_a_new_worker_answers(embedder, stuck, TEXTS[1])
        finally:
            if alive(stuck):
                os.kill(stuck, signal.SIGCONT)

    asyncio.run(scenario())
    assert "embedding process stopped answering (no answer in 0.5 s)" in caplog.text


def test_closing_stops_the_worker(embedder: Embedder) -> None:
    process = embedder.process
    assert process is not None and process.pid is not None
    pid = process.pid
    asyncio.run(embedder.embed_one_async(TEXTS[0]))
    embedder.close_process()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)
    assert embedder.process is None

    async def after() -> np.ndarray:
        return await embedder.embed_one_async(TEXTS[0])  # in-process again

    np.testing.assert_allclose(asyncio.run(after()), embedder.embed_one(TEXTS[0]), atol=1e-5)


def test_a_worker_that_cannot_load_the_model_falls_back(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    emb = Embedder.from_directory(default_model_dir())
    emb.use_process(f"{tmp_path}/no-model-here")

    process = emb.process
    assert process is not None

    async def run() -> np.ndarray:
        assert not await process.until_ready(timeout=30)  # it exits instead
        return await emb.embed_one_async(TEXTS[0])  # the proxy process embeds it

    try:
        np.testing.assert_allclose(asyncio.run(run()), emb.embed_one(TEXTS[0]), atol=1e-5)
    finally:
        emb.close_process()
    assert "embedding process exited" in caplog.text


def test_a_worker_that_cannot_be_started_is_a_named_error_at_start_and_a_fallback_later(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from adaptive_plugin.embedding import _process

    emb = Embedder.from_directory(default_model_dir())

    def no_fork(*_args: object, **_kwargs: object) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(_process.subprocess, "Popen", no_fork)
    with pytest.raises(EmbeddingModelError, match="cannot start the embedding process: Resource temporarily"):
        emb.use_process(default_model_dir())  # at start-up: the setting asked for it, so say why not
    process = _process.EmbeddingProcess(default_model_dir(), restart_after=0.0)
    emb.process = process

    async def run() -> np.ndarray:
        return await emb.embed_one_async(TEXTS[0])  # a restart fails: this process embeds it

    np.testing.assert_allclose(asyncio.run(run()), emb.embed_one(TEXTS[0]), atol=1e-5)
    assert "cannot start the embedding process" in caplog.text


def test_an_idle_worker_starts_on_a_text_at_once(batching: Embedder) -> None:
    """No text waits for a batch to fill: alone, it is embedded alone."""
    embedder = batching
    from prometheus_client import REGISTRY

    def runs() -> float:
        return REGISTRY.get_sample_value("adaptive_embedding_batches_total") or 0.0

    async def one_at_a_time() -> None:
        for text in TEXTS:
            sent = embedder.process.submit(text) if embedder.process is not None else None
            assert sent is not None
            np.testing.assert_allclose(await sent, embedder.embed_one(text), atol=1e-5)

    before = runs()
    asyncio.run(one_at_a_time())
    assert runs() - before == len(TEXTS)  # every run held one text

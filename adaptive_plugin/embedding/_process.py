"""Request embeddings in a worker process, so that they run beside the proxy's event loop.

In the proxy process an embedding cannot overlap the event loop's work: onnxruntime's
`run_async` pool thread keeps the GIL while it computes (`bench/embed_stall.py`). A worker
process has its own interpreter. The parent writes framed requests to its stdin and reads
framed answers from its stdout with the event loop's own reader: no thread, no GIL wait.

Micro-batching: the worker embeds what it has as soon as it has something, and texts that
arrive while a run is in progress are embedded together in the next one (at most `max_batch`
per run, padded to the longest; `Embedder.embed_batch` splits texts of very different lengths).
No text ever waits for a batch to fill: an idle worker starts on the first text at once, and a
text waits at most for the run in progress. Only a `batch_exact` model is batched (row-wise
quantized, `_rowwise`, or float): there a text's vector does not depend on the texts it was
batched with. A model with one activation scale per tensor (all-MiniLM-L6-v2's recipe 2) is
embedded one text per run.

Frames: a 4-byte big-endian length, then the body. Request body: an 8-byte request number and
the UTF-8 text. Answer body: the request number, a status byte (0: its share of the run's
compute time as a float64 (the run's time over its texts), the number of texts in the run as a
uint16 and a byte that is 1 on the run's first answer, then the float32 vector; 1: an error
message follows). Number 0 answers first, once the model is loaded.

Child: `python -m adaptive_plugin.embedding._process MODEL_DIR THREADS [MAX_BATCH]`, in a
session of its own. It ends when its stdin closes: when the parent closes it, or when the
parent dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import struct
import subprocess
import sys
import time
from pathlib import Path
import numpy as np

from adaptive_plugin.errors import EmbeddingModelError

__all__ = ["EmbeddingProcess"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_NUMBER = struct.Struct(">Q")
_SECONDS = struct.Struct("<d")  # an answer's compute time, before its vector
_BATCH = struct.Struct("<HB")  # how many texts that run embedded, and 1 on its first answer
DEFAULT_MAX_BATCH = 8


def _frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body)) + body


class _Frames:
    """The child's side of its stdin: complete request bodies, reading only what has arrived."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.ended = False

    def take(self, limit: int) -> list[bytes]:
        """Up to `limit` request bodies: blocks only while none has arrived (and the input is open)."""
        bodies = self._parse(limit)
        while not bodies and not self.ended:
            self._read()  # idle: wait for the next request
            bodies = self._parse(limit)
        while len(bodies) < limit and not self.ended and select.select([self.fd], [], [], 0)[0]:
            self._read()  # what arrived during the last run: embedded together
            bodies += self._parse(limit - len(bodies))
        return bodies

    def _read(self) -> None:
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.ended = True
        self.buffer += data

    def _parse(self, limit: int) -> list[bytes]:
        bodies = []
        while len(bodies) < limit and len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                break
            bodies.append(bytes(self.buffer[_HEADER.size : _HEADER.size + size]))
            del self.buffer[: _HEADER.size + size]
        return bodies


def _answers(embedder: object, bodies: list[bytes]) -> bytes:
    """Embed the requests' texts in one batch; one answer frame per request (errors included)."""
    numbers = [body[: _NUMBER.size] for body in bodies]
    try:
        texts = [body[_NUMBER.size :].decode("utf-8") for body in bodies]
        started = time.perf_counter()
        vectors = embedder.embed_batch(texts)  # type: ignore[attr-defined]
        seconds = _SECONDS.pack((time.perf_counter() - started) / len(bodies))
        return b"".join(_frame(number + b"\x00" + seconds + _BATCH.pack(len(bodies), i == 0) + vector.astype("<f4").tobytes())
                        for i, (number, vector) in enumerate(zip(numbers, vectors, strict=True)))
    except Exception as exc:  # noqa: BLE001 - reported to the waiting requests
        if len(bodies) > 1:  # one bad text must not fail the others
            return b"".join(_answers(embedder, [body]) for body in bodies)
        return _frame(numbers[0] + b"\x01" + f"{type(exc).__name__}: {exc}".encode())


def _serve(model_dir: Path, threads: int, max_batch: int = DEFAULT_MAX_BATCH) -> int:
    """The child: answer requests in batches (see the module doc) until stdin closes."""
    from adaptive_plugin.embedding._embedder import Embedder

    embedder = Embedder.from_directory(model_dir, threads=threads)
    limit = max(1, max_batch) if embedder.batch_exact else 1  # a batch must not change any text's vector
    frames, stdout = _Frames(sys.stdin.fileno()), sys.stdout.buffer
    stdout.write(_frame(_NUMBER.pack(0) + b"\x00"))  # ready
    stdout.flush()
    while bodies := frames.take(limit):
        stdout.write(_answers(embedder, bodies))
        stdout.flush()
    return 0


class EmbeddingProcess:
    """The parent's side of one embedding worker process.

    `submit` returns a future resolved by the event loop, or None when the worker cannot take
    the request (not running, restarting, too many waiting): the caller then embeds in-process.
    A worker that exits fails its waiting requests with EmbeddingModelError and is started
    again by the first `submit` at least `restart_after` seconds after it exited. A worker that
    stops answering (its oldest waiting request older than `answer_timeout` seconds, or not
    ready `start_timeout` seconds after it started) is killed, which fails them the same way.
    """

    def __init__(self, model_dir: str | os.PathLike[str], *, threads: int = 1, max_waiting: int = 256,
                 restart_after: float = 30.0, answer_timeout: float = 10.0, start_timeout: float = 60.0,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.restart_after = restart_after
        self.answer_timeout = answer_timeout
        self.start_timeout = start_timeout
        self.ready = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # request number -> (its future, when it was sent); the oldest first, as the worker answers
        self._waiting: dict[int, tuple[asyncio.Future[np.ndarray], float]] = {}
        self._watch: asyncio.TimerHandle | None = None
        self._started_at = 0.0
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._next = 1
        self._ended_at = -1e9
        self._closed = False
        self._running = False  # started, and its stdout has not ended

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the worker (returns at once; until it is ready, `submit` declines)."""
        self.ready = False
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "adaptive_plugin.embedding._process", str(self.model_dir), str(self.threads),
                 str(self.max_batch)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                # its own session: signals sent to the proxy's process group (Ctrl-C, a supervisor's
                # SIGTERM to the group) stop the proxy, which then closes the worker's stdin
                start_new_session=True,
            )
        except OSError as exc:
            self._ended_at = time.monotonic()
            raise EmbeddingModelError(f"cannot start the embedding process: {exc}") from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        os.set_blocking(self._proc.stdin.fileno(), False)
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._inbox.clear()
        self._outbox.clear()
        self._loop = None  # the reader is added by the first submit, on its loop
        self._started_at = time.monotonic()
        self._running = True

    def submit(self, text: str) -> asyncio.Future[np.ndarray] | None:
        """Send one text; call from the event loop. None: embed it in-process instead (also while
        the worker loads the model: no request waits for that)."""
        if self._closed or len(self._waiting) >= self.max_waiting:
            return None
        if not self._running:  # the reader saw the worker's output end (`_ended`), or never started
            if time.monotonic() - self._ended_at < self.restart_after:
                return None
            try:
                self.start()
            except EmbeddingModelError as exc:
                log.error("%s; requests embed in the proxy process", exc)
                return None
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._attach(loop)
        if self._watch is None:  # `_check` applies the rule of the moment (starting, or answering)
            self._watch = loop.call_later(min(self.answer_timeout, self.start_timeout), self._check)
        if not self.ready:  # loading the model (its ready answer is read by the reader just attached)
            return None
        number = self._next
        self._next += 1
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._waiting[number] = (future, time.monotonic())
        self._send(_frame(_NUMBER.pack(number) + text.encode("utf-8")))
        return future

    async def until_ready(self, timeout: float = 60.0) -> bool:
        """Wait until the worker has loaded its model (False: it exited, or not within `timeout`)."""
        loop = asyncio.get_running_loop()
        if self._running and self._loop is not loop:
            self._attach(loop)
        deadline = time.monotonic() + timeout
        while self._running and not self.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.ready

    def _check(self) -> None:
        """The watchdog: kill a worker that stopped answering (the reader then fails its requests)."""
        self._watch = None
        if (self.ready and not self._waiting) or not self._running or self._proc is None or self._loop is None:
            return
        now = time.monotonic()
        if self.ready:
            overdue = now - next(iter(self._waiting.values()))[1] - self.answer_timeout
        else:
            overdue = now - self._started_at - self.start_timeout
        if overdue < 0:  # looked at again at least every answer_timeout (readiness changes the rule)
            self._watch = self._loop.call_later(min(-overdue, self.answer_timeout), self._check)
            return
        log.error("embedding process stopped answering (%s); killing it",
                  f"no answer in {self.answer_timeout:g} s" if self.ready else f"not ready after {self.start_timeout:g} s")
        try:
            self._proc.kill()  # its output ends: `_ended` fails the waiting requests
        except OSError:
            pass

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._proc.stdout.fileno())
        self._unwatch()  # the watchdog runs on the loop that reads the answers
        self._loop = loop
        loop.add_reader(self._proc.stdout.fileno(), self._readable)

    def _send(self, data: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None and self._loop is not None
        fd = self._proc.stdin.fileno()
        if not self._outbox:
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:  # the worker is gone: the reader sees the end and fails the waiting
                log.warning("embedding process: cannot write to the worker: %s", exc)
                return
            data = data[written:]
            if not data:
                return
            self._loop.add_writer(fd, self._writable)
        self._outbox += data

    def _writable(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None and self._loop is not None
        fd = self._proc.stdin.fileno()
        try:
            written = os.write(fd, self._outbox)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._outbox)  # gone: the reader fails the waiting requests
        del self._outbox[:written]
        if not self._outbox:
            self._loop.remove_writer(fd)

    def _readable(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            data = os.read(self._proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._ended()
            return
        self._inbox += data
        while len(self._inbox) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._inbox)
            if len(self._inbox) < _HEADER.size + size:
                break
            body = bytes(self._inbox[_HEADER.size : _HEADER.size + size])
            del self._inbox[: _HEADER.size + size]
            self._answer(body)

    def _answer(self, body: bytes) -> None:
        (number,) = _NUMBER.unpack_from(body)
        if number == 0:
            self.ready = True
            return
        future = self._waiting.pop(number, (None, 0.0))[0]
        if future is None or future.done():
            return
        if body[_NUMBER.size] == 0:
            from adaptive_plugin import metrics  # not at the top: the worker runs this module and records nothing

            (seconds,) = _SECONDS.unpack_from(body, _NUMBER.size + 1)
            _texts, first = _BATCH.unpack_from(body, _NUMBER.size + 1 + _SECONDS.size)
            metrics.EMBEDDING_SECONDS.labels(where="process").observe(seconds)
            if first:
                metrics.EMBEDDING_BATCHES.inc()
            start = _NUMBER.size + 1 + _SECONDS.size + _BATCH.size
            future.set_result(np.frombuffer(body[start:], dtype="<f4").copy())
        else:
            future.set_exception(EmbeddingModelError(f"embedding failed: {body[_NUMBER.size + 1 :].decode()}"))

    def _ended(self) -> None:
        """The worker's stdout closed: it exited. Fail whatever waits; a later submit restarts it."""
        assert self._proc is not None and self._proc.stdout is not None and self._proc.stdin is not None
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._proc.stdout.fileno())
            if self._outbox:
                self._loop.remove_writer(self._proc.stdin.fileno())
        self._loop = None
        self._outbox.clear()
        self._running = False
        self._unwatch()
        self._ended_at = time.monotonic()
        try:
            code: int | str = self._proc.wait(timeout=0.05)  # it closed its stdout: it is exiting
        except subprocess.TimeoutExpired:
            code = "unknown"
        self.ready = False
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        if not self._closed:
            log.error("embedding process exited (code %s); requests embed in the proxy process until it restarts", code)
        waiting, self._waiting = self._waiting, {}
        for future, _sent in waiting.values():
            if not future.done():
                future.set_exception(EmbeddingModelError(f"embedding process exited (code {code})"))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: close its stdin (it exits), then kill it if it has not."""
        self._closed = True
        self._unwatch()
        proc = self._proc
        if proc is None:
            return
        if self._loop is not None and not self._loop.is_closed() and proc.stdout is not None:
            try:
                self._loop.remove_reader(proc.stdout.fileno())
            except (RuntimeError, ValueError):
                pass
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()  # the worker reads the end of its input and exits
            except OSError:
                pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
        if proc.stdout is not None and not proc.stdout.closed:
            proc.stdout.close()


if __name__ == "__main__":
    sys.exit(_serve(Path(sys.argv[1]), int(sys.argv[2]), *(int(a) for a in sys.argv[3:4])))

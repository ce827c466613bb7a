"""A fake OpenAI / Anthropic provider on 127.0.0.1 for tests, benchmarks and the demo.

HTTP paths:

    POST /v1/chat/completions, /chat/completions   OpenAI chat completions (JSON or SSE)
    GET  /v1/models, /models                        OpenAI model list
    POST /v1/messages                               Anthropic messages (JSON or SSE)
    GET  /_fake/calls                               call log, a JSON list
    GET  /_fake/health                              {"ok": true}
    POST /_fake/reset                               clear the call log and flaky counters
    POST /_fake/keys                                replace the key table: {key: {label, behaviour, ...}}

Each API key maps to a `KeySpec` whose behaviour decides the answer (`ok`, `401`, `429`,
`insufficient_quota`, `500`, `slow`, `reset`, `flaky`). Unknown keys and keys used on the other
provider's path get 401. Answers are deterministic; see `_fake_payloads`.

A request can also be at fault whatever its key: a message containing ``[fake-provider:400]``,
``[fake-provider:404]`` or ``[fake-provider:422]`` gets that status (after the key's own
outcome is ``ok``), as a real provider refuses a malformed or unknown-model request.

Every call is logged on arrival as ``{seq, path, provider, model, key_label, behaviour, outcome,
status, stream, ts}``: `key_label` is the key's label (never the key; None for an unknown key),
`behaviour` the key's configured behaviour, `outcome` what was done (the flaky draw, or
``unknown_key``, ``provider_mismatch``, ``bad_request``, ``cancelled`` when the client went away),
and `status` the HTTP status (None for ``reset`` and for calls cancelled before answering).

LiteLLM reaches it with ``api_base=<base>/v1`` for ``openai/...`` models and ``api_base=<base>``
for ``anthropic/...`` models.

Command line (runs until SIGTERM or SIGINT)::

    python -m adaptive_plugin.devtools.fake_provider --port 0 --keys keys.json \\
        [--latency-ms 50] [--seed 0] [--port-file FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from aiohttp import web

from adaptive_plugin.devtools._fake_keys import KeySpec, draw_outcome, parse_keys
from adaptive_plugin.devtools._fake_payloads import (
    UNAUTHORISED,
    Answer,
    anthropic_message,
    anthropic_stream,
    bad_request,
    build_answer,
    error_response,
    openai_completion,
    openai_stream,
)

__all__ = ["DEFAULT_MODELS", "FakeProvider", "KeySpec", "main"]

#: Model ids listed by `GET /v1/models` unless `models=` is given. Any model name is served.
DEFAULT_MODELS: Final = ("gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", "claude-sonnet-4-5")
_HOST: Final = "127.0.0.1"
_MAX_BODY: Final = 64 * 1024 * 1024
_DEFAULT_RETRY_AFTER: Final = 1


class FakeProvider:
    """A fake LLM provider server with scripted per-key behaviours and a call log.

    Example:

        with FakeProvider({"sk-good": {"label": "good", "behaviour": "ok"}}) as fake:
            client = openai.OpenAI(base_url=f"{fake.base_url}/v1", api_key="sk-good")
            client.chat.completions.create(model="gpt-4o-mini", messages=[...])
            assert fake.calls()[0]["key_label"] == "good"

    `with` runs the server in a background thread (`start_in_thread` / `stop`); inside a running
    event loop use ``async with`` (`start` / `aclose`) instead.
    """

    def __init__(
        self,
        keys: Mapping[str, KeySpec | Mapping[str, Any]],
        *,
        latency_ms: float = 0,
        seed: int = 0,
        models: Sequence[str] = DEFAULT_MODELS,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.latency_ms = latency_ms
        self.seed = seed
        self.models = tuple(models)
        self.base_url: str | None = None
        self._lock = threading.Lock()
        self._keys = parse_keys(keys)
        self._counters: dict[str, int] = {}
        self._calls: list[dict[str, Any]] = []
        self._seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- state ----------------------------------------------------------------------------------

    def calls(self) -> list[dict[str, Any]]:
        """A copy of the call log, oldest first."""
        with self._lock:
            return [dict(call) for call in self._calls]

    def reset(self) -> None:
        """Clear the call log, the sequence numbers and the flaky draw counters."""
        with self._lock:
            self._calls.clear()
            self._counters.clear()
            self._seq = itertools.count(1)

    def set_keys(self, keys: Mapping[str, KeySpec | Mapping[str, Any]]) -> None:
        """Replace the whole key table (and restart the flaky draws)."""
        table = parse_keys(keys)
        with self._lock:
            self._keys = table
            self._counters.clear()

    # --- lifecycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application, for embedding in another server."""
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/chat/completions", self._openai_chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        app.router.add_get("/_fake/calls", self._control_calls)
        app.router.add_get("/_fake/health", self._control_health)
        app.router.add_post("/_fake/reset", self._control_reset)
        app.router.add_post("/_fake/keys", self._control_keys)
        return app

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:`port` (0 picks a free port) in the running loop; return the base URL."""
        if self._runner is not None:
            raise RuntimeError("FakeProvider is already running")
        runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, _HOST, port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0][1]
        self.base_url = f"http://{_HOST}:{bound}"
        return self.base_url

    async def aclose(self) -> None:
        """Stop listening and close open connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def start_in_thread(self, port: int = 0) -> str:
        """Run the server in a daemon thread with its own event loop; return the base URL."""
        if self._thread is not None:
            raise RuntimeError("FakeProvider is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start(port))
            except BaseException as exc:  # handed to the starting thread below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self.aclose())
            finally:
                loop.close()

        thread = threading.Thread(target=run, name="fake-provider", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._loop, self._thread = loop, thread
        assert self.base_url is not None
        return self.base_url

    def stop(self) -> None:
        """Stop a server started with `start_in_thread`; a no-op when it is not running."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._loop = self._thread = None

    def __enter__(self) -> FakeProvider:
        self.start_in_thread()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProvider:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- provider handlers ----------------------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "openai")

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "anthropic")

    async def _serve(self, request: web.Request, provider: str) -> web.StreamResponse:
        payload = await _read_json(request)
        model = payload.get("model") if isinstance(payload, dict) else None
        stream = bool(payload.get("stream")) if isinstance(payload, dict) else False
        key = _api_key(request, provider)
        with self._lock:
            spec = self._keys.get(key) if key is not None else None
            if spec is None:
                outcome = "unknown_key"
            elif not spec.serves(provider):
                outcome = "provider_mismatch"
            else:
                assert key is not None  # a spec is only found for a key
                n = self._counters.get(key, 0)
                self._counters[key] = n + 1
                outcome = draw_outcome(spec, key=key, seed=self.seed, n=n)
            entry: dict[str, Any] = {
                "seq": next(self._seq),
                "path": request.path,
                "provider": provider,
                "model": model if isinstance(model, str) else None,
                "key_label": spec.label if spec is not None else None,
                "behaviour": spec.behaviour if spec is not None else None,
                "outcome": outcome,
                "status": None,
                "stream": stream,
                "fields": sorted(payload) if isinstance(payload, dict) else [],  # names only, never values
                "ts": time.time(),
            }
            self._calls.append(entry)
        try:
            return await self._answer(request, provider, payload, spec, outcome, entry)
        except asyncio.CancelledError:  # the client went away (handler cancellation is on)
            if outcome != "reset":
                self._update(entry, outcome="cancelled")  # status stays None unless a stream began
            raise

    async def _answer(
        self,
        request: web.Request,
        provider: str,
        payload: Any,
        spec: KeySpec | None,
        outcome: str,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        if spec is not None and outcome not in UNAUTHORISED:
            delay = spec.sleep_for(outcome)
            if delay:
                await asyncio.sleep(delay)
        if outcome == "reset":  # logged with status None: no response is sent
            _abort(request)
            # Writing to the aborted transport fails; aiohttp treats that as a client disconnect.
            return web.Response(status=204)
        if outcome not in ("ok", "slow"):
            retry_after = _DEFAULT_RETRY_AFTER if spec is None or spec.retry_after is None else spec.retry_after
            status, body, headers = error_response(provider, outcome, retry_after=retry_after)
            self._update(entry, status=status)
            return web.json_response(body, status=status, headers=headers)
        problem = _invalid(payload, provider)
        if problem is not None:
            self._update(entry, outcome="bad_request", status=400)
            return web.json_response(bad_request(provider, problem), status=400)
        fault = _request_fault(payload)
        if fault is not None:
            self._update(entry, outcome="bad_request", status=fault)
            return web.json_response(bad_request(provider, f"the request was refused (fake provider, {fault})"),
                                     status=fault)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        answer = build_answer(payload["model"], payload["messages"], payload.get("system"))
        call_id = f"{answer.request_hash}{entry['seq']:06d}"
        self._update(entry, status=200)
        if not payload.get("stream"):
            body = (
                openai_completion(answer, call_id=call_id)
                if provider == "openai"
                else anthropic_message(answer, call_id=call_id)
            )
            return web.json_response(body, headers=_request_id(provider, call_id))
        return await self._stream(request, provider, payload, answer, call_id)

    async def _stream(
        self, request: web.Request, provider: str, payload: dict[str, Any], answer: Answer, call_id: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **_request_id(provider, call_id),
            }
        )
        await response.prepare(request)
        chunks: Iterator[bytes]
        if provider == "openai":
            options = payload.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            chunks = openai_stream(answer, call_id=call_id, include_usage=include_usage)
        else:
            chunks = anthropic_stream(answer, call_id=call_id)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.StreamResponse:
        provider = "anthropic" if "x-api-key" in request.headers else "openai"
        key = _api_key(request, provider)
        with self._lock:
            spec = self._keys.get(key) if key is not None else None
            entry: dict[str, Any] = {
                "seq": next(self._seq),
                "path": request.path,
                "provider": provider,
                "model": None,
                "key_label": spec.label if spec is not None else None,
                "behaviour": spec.behaviour if spec is not None else None,
                "outcome": "ok" if spec is not None else "unknown_key",
                "status": 200 if spec is not None else 401,
                "stream": False,
                "ts": time.time(),
            }
            self._calls.append(entry)
        if spec is None:
            status, body, headers = error_response(provider, "unknown_key", retry_after=_DEFAULT_RETRY_AFTER)
            return web.json_response(body, status=status, headers=headers)
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    def _update(self, entry: dict[str, Any], **fields: Any) -> None:
        with self._lock:
            entry.update(fields)

    # --- control handlers -----------------------------------------------------------------------

    async def _control_calls(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.calls())

    async def _control_health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def _control_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_keys(self, request: web.Request) -> web.StreamResponse:
        payload = await _read_json(request)
        if not isinstance(payload, dict):
            return web.json_response({"ok": False, "error": "expected a JSON object {key: spec}"}, status=400)
        try:
            self.set_keys(payload)
        except (TypeError, ValueError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, "labels": sorted(spec["label"] for spec in payload.values())})


# --- helpers ------------------------------------------------------------------------------------


async def _read_json(request: web.Request) -> Any:
    """The request body as JSON, or None when it is not JSON."""
    try:
        return json.loads(await request.read())
    except ValueError:
        return None


def _api_key(request: web.Request, provider: str) -> str | None:
    """The API key: ``x-api-key`` first on Anthropic paths, else ``Authorization: Bearer``."""
    if provider == "anthropic" and (key := request.headers.get("x-api-key")):
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _invalid(payload: Any, provider: str) -> str | None:
    """Why a request body is unusable, or None."""
    if not isinstance(payload, dict):
        return "the request body must be a JSON object"
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return "model: field required"
    if not isinstance(payload.get("messages"), list) or not payload["messages"]:
        return "messages: field required"
    if provider == "anthropic" and not isinstance(payload.get("max_tokens"), int):
        return "max_tokens: field required"
    return None


_FAULT_MARKERS = {f"[fake-provider:{status}]": status for status in (400, 404, 422)}


def _request_fault(payload: dict[str, Any]) -> int | None:
    """The status a request asks for with a `[fake-provider:<status>]` marker in a message."""
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        texts = [content] if isinstance(content, str) else [
            p.get("text") for p in content or () if isinstance(p, dict) and isinstance(p.get("text"), str)
        ] if isinstance(content, list) else []
        for text in texts:
            for marker, status in _FAULT_MARKERS.items():
                if marker in text:
                    return status
    return None


def _request_id(provider: str, call_id: str) -> dict[str, str]:
    return {"x-request-id" if provider == "openai" else "request-id": f"req_{call_id}"}


def _abort(request: web.Request) -> None:
    """Drop the connection with a TCP RST and no response."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # a plain close still drops the connection without a response
    transport.abort()


# --- command line -------------------------------------------------------------------------------


def _load_keys(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object {{key: spec}}")
    return data


async def _serve_forever(fake: FakeProvider, port: int, port_file: Path | None) -> None:
    base_url = await fake.start(port)
    try:
        if port_file is not None:
            tmp = port_file.with_name(port_file.name + ".tmp")
            tmp.write_text(f"{base_url.rsplit(':', 1)[1]}\n", encoding="utf-8")
            os.replace(tmp, port_file)
        print(base_url, flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopped.set)
        await stopped.wait()
    finally:
        await fake.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake provider until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m adaptive_plugin.devtools.fake_provider",
        description="Fake OpenAI / Anthropic provider on 127.0.0.1 for tests and benchmarks.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument("--keys", type=Path, required=True, help="JSON (or YAML) file {key: {label, behaviour, ...}}")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every successful call")
    parser.add_argument("--seed", type=int, default=0, help="seed of the flaky draws")
    parser.add_argument("--port-file", type=Path, default=None, help="write the port here once listening")
    args = parser.parse_args(argv)
    try:
        fake = FakeProvider(_load_keys(args.keys), latency_ms=args.latency_ms, seed=args.seed)
    except (OSError, ValueError, TypeError) as exc:
        print(f"fake_provider: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve_forever(fake, args.port, args.port_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())

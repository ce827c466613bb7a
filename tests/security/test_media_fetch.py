"""Attack class: server-side request forgery through media URLs.

For some providers LiteLLM downloads what a message names (an `image_url` for Gemini, a `file`
part whose `file_id` is a URL for Gemini and OpenAI) and inlines it. A tenant who names an
address inside the gateway's network would have the gateway fetch it. The boundary refuses URLs
that are not https or that name a local or private address; a hostname that resolves inside the
network is stopped by LiteLLM's download guard (`user_url_validation`), which the plugin refuses
to start without. (Anthropic receives image URLs as URL sources and fetches them from its own
network.)

The listener below stands for a service inside the network: it counts every connection made to
it, and a hostname of this machine that resolves to 127.0.0.1 names it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import gateway_env
from tests.proxy.gateway import Gateway, byok_key, chat

pytestmark = pytest.mark.proxy


class Listener:
    """A TCP service on 127.0.0.1 that counts the connections it accepts and answers none."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def loopback_hostname() -> str:
    """A name of this machine that resolves to a loopback address and is not `localhost`."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        addresses = set()
    if not addresses or not all(address.startswith("127.") or address == "::1" for address in addresses):
        pytest.skip(f"the host name {name!r} does not resolve to loopback only here ({sorted(addresses)})")
    return name


@pytest.fixture
def listener() -> Iterator[Listener]:
    service = Listener()
    yield service
    service.close()


def message(part: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "what is in this?"}, part]}]


def listener_sees_a_direct_connection(listener: Listener, host: str) -> None:
    """The listener would notice a fetch: a connection through the same name is counted."""
    with socket.create_connection((host, listener.port), timeout=2):
        pass
    deadline = time.monotonic() + 2
    while listener.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.connections == 1
    listener.connections = 0


# (model, provider, content part): LiteLLM downloads Gemini's images and files, and OpenAI's file
# URLs, itself; Anthropic receives image URLs as URL sources and fetches them from its own network
FETCHED = [
    ("gemini-2.5-flash", "gemini", lambda url: {"type": "image_url", "image_url": {"url": url + "/cat.png"}}),
    ("gemini-2.5-flash", "gemini", lambda url: {"type": "file", "file": {"file_id": url + "/report.pdf"}}),
    ("gpt-4o-mini", "openai", lambda url: {"type": "file", "file": {"file_id": url + "/report.pdf"}}),
]


@pytest.mark.parametrize("model, provider, part", FETCHED, ids=["gemini image", "gemini file", "openai file"])
def test_a_hostname_that_resolves_inside_the_network_is_never_fetched(gateway: Gateway, listener: Listener, model: str,
                                                                      provider: str, part: Any) -> None:
    host = loopback_hostname()
    listener_sees_a_direct_connection(listener, host)
    label = f"media-{provider}-{uuid.uuid4().hex[:8]}"
    project = gateway.project(keys=[(provider, byok_key(label, provider=provider), 1)])
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, messages=message(part(f"https://{host}:{listener.port}")),  # type: ignore[arg-type]
                                       extra_headers={"Cache-Control": "no-store"})
    assert "Unable to fetch image from URL" in str(err.value)
    time.sleep(0.5)
    assert listener.connections == 0
    # nor was the request sent to a provider (model listings, GET /models with no model, are not
    # requests; full runs record a few on the pooled keys from elsewhere in the suite)
    sent = [c for c in gateway.calls_since(mark) if c["model"] is not None]
    assert sent == [], sent
    # the request's fault, not the key's: the tenant's key serves its next request at once
    _, headers = chat(client, "a plain question", model=model, extra_headers={"Cache-Control": "no-store"})
    assert headers["x-adaptive-key-source"] == "byok" and "x-adaptive-fallbacks" not in headers
    assert [c["key_label"] for c in gateway.calls_since(mark) if c["model"] is not None] == [label]


@pytest.mark.parametrize("part, field", [
    ({"type": "file", "file": {"file_id": "http://127.0.0.1:9/report.pdf"}}, "file.file_id"),
    ({"type": "file", "file": {"file_id": "https://10.1.2.3/report.pdf"}}, "file.file_id"),
    ({"type": "image", "source": {"type": "url", "url": "https://169.254.169.254/latest/meta-data/"}}, "source.url"),
    ({"type": "document", "source": {"type": "url", "url": "https://localhost/x.pdf"}}, "source.url"),
], ids=["http file id", "private file id", "metadata image source", "localhost document source"])
def test_media_urls_naming_the_network_are_refused_before_any_call(gateway: Gateway, part: dict[str, Any],
                                                                   field: str) -> None:
    project = gateway.project(plan="developer")
    mark = gateway.mark()
    with pytest.raises(openai.BadRequestError) as err:
        gateway.client(project.api_key).chat.completions.create(
            model="gpt-4o-mini", messages=message(part))  # type: ignore[arg-type]
    body = err.value.body
    assert isinstance(body, dict) and body.get("param") == "messages", body
    assert f"messages[0].content[1].{field}" in body["message"]
    assert [c for c in gateway.calls_since(mark) if c["model"] is not None] == []


@pytest.mark.slow
def test_the_proxy_does_not_start_with_litellms_download_guard_off(fake_provider: FakeProvider, tmp_path: Path) -> None:
    config = yaml.safe_load(demo_config().read_text())
    config.setdefault("litellm_settings", {})["user_url_validation"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proxy = ProxyProcess(path, env=gateway_env(fake_provider, tmp_path), log_path=tmp_path / "proxy.log")
    with pytest.raises(RuntimeError, match="exited with code") as err:
        proxy.start(timeout=90)
    assert "litellm_settings.user_url_validation is off" in str(err.value)

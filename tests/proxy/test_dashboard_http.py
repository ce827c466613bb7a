"""The dashboard's HTTP contract (issue 20), without a browser: cookies, headers, assets,
sign-in rules and session endings. The browser journeys are in tests/proxy/browser/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from adaptive_plugin.devtools.fake_provider import FakeProvider
from adaptive_plugin.devtools.launcher import ProxyProcess, demo_config
from tests.proxy.conftest import MASTER_KEY, gateway_env
from tests.proxy.gateway import Gateway
from tests.proxy.selfservice import admin_project

UI = "/adaptive/ui"


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def browserless(base_url: str, **headers: str) -> httpx.Client:
    """An HTTP client that keeps cookies, as a browser would."""
    return httpx.Client(base_url=base_url, timeout=30, headers=headers)


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    """Sign the client in with `key`; the answer to the sign-in post."""
    login = client.get(f"{UI}/login")
    return client.post(f"{UI}/login", data={"csrf_token": form_token(login.text), "key": key})


def test_session_cookie_flags_and_security_headers(gateway: Gateway) -> None:
    project = admin_project(gateway)
    with browserless(gateway.base_url) as client:
        answer = sign_in(client, project.admin_key)
        assert answer.status_code == 303 and answer.headers["location"] == f"{UI}/keys"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("adaptive_session="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/adaptive/ui"} <= flags and "secure" not in flags
        page = client.get(f"{UI}/keys")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
        # every asset comes from the plugin: no other origin is named anywhere
        for path in ("/keys", "/settings", "/api-keys", "/usage", "/requests"):
            html = client.get(f"{UI}{path}").text
            assert not re.search(r"(src|href)=\"(https?:)?//", html), path
            for asset in re.findall(r"(?:src|href)=\"(/adaptive/ui/static/[^\"]+)\"", html):
                assert client.get(asset).status_code == 200, asset
        assert client.get(f"{UI}/static/../../config.py").status_code == 404
    # behind a TLS-terminating proxy the cookies are Secure (so this plain-HTTP client would not
    # send the sign-in form's cookie back by itself: it is given explicitly)
    with browserless(gateway.base_url, **{"X-Forwarded-Proto": "https"}) as client:
        login = client.get(f"{UI}/login")
        assert "secure" in login.headers["set-cookie"].lower()
        token = form_token(login.text)
        answer = client.post(f"{UI}/login", data={"csrf_token": token, "key": project.admin_key},
                             headers={"Cookie": f"adaptive_login_csrf={token}"})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("adaptive_session="))
    assert "secure" in cookie.lower()


def test_who_may_sign_in(gateway: Gateway) -> None:
    project = admin_project(gateway)
    chat_key = project.chat_key()
    for key, status, words in ((chat_key, 403, "chat API key"), ("pak-not-a-real-key", 401, "unknown admin key"),
                               ("sk-anything", 401, "unknown credential"), (" ", 400, "Enter your project admin key")):
        with browserless(gateway.base_url) as client:
            answer = sign_in(client, key)
        assert answer.status_code == status and words in answer.text, (key[:4], answer.text[:300])
        assert "adaptive_session=" not in answer.headers.get("set-cookie", "")
        assert chat_key not in answer.text
    # the sign-in form has its own CSRF token (a cookie and a field that must match)
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        client.get(f"{UI}/login")
        answer = client.post(f"{UI}/login", data={"csrf_token": "forged", "key": project.admin_key})
        assert answer.status_code == 403 and "adaptive_session=" not in answer.headers.get("set-cookie", "")


def test_revoking_the_admin_key_ends_its_sessions(gateway: Gateway) -> None:
    project = admin_project(gateway)
    with browserless(gateway.base_url) as client:
        sign_in(client, project.admin_key)
        assert client.get(f"{UI}/keys").status_code == 200
        [key] = gateway.admin("GET", f"/adaptive/projects/{project.id}/admin-keys", expect=200).json()
        gateway.admin("POST", f"/adaptive/projects/{project.id}/admin-keys/{key['id']}/revoke", expect=200)
        answer = client.get(f"{UI}/keys")
        assert answer.status_code == 303 and answer.headers["location"] == f"{UI}/login?notice=expired"


def test_no_provider_key_is_ever_rendered_back(gateway: Gateway) -> None:
    project = admin_project(gateway)
    secret, _ = project.add_key("never-rendered")
    with browserless(gateway.base_url) as client:
        sign_in(client, project.admin_key)
        for path in ("/keys", "/keys?environment=production", "/settings", "/api-keys", "/usage", "/requests"):
            assert secret not in client.get(f"{UI}{path}").text
        keys_page = client.get(f"{UI}/keys").text
        token = form_token(keys_page)
        # a refused form is rendered again: still without the key that was typed
        answer = client.post(f"{UI}/keys/add", data={"csrf_token": token, "environment": "production",
                                                      "provider": "openai", "api_key": secret + " with space"})
        assert answer.status_code == 400 and "whitespace" in answer.text and secret not in answer.text
        answer = client.post(f"{UI}/keys/add", data={"csrf_token": token, "environment": "production",
                                                      "provider": "openai", "api_key": secret, "priority": "-4"})
        assert answer.status_code == 400 and "priority" in answer.text and secret not in answer.text


@pytest.fixture(scope="module")
def short_sessions(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose dashboard sessions end after 3 s idle or 8 s in all."""
    state = tmp_path_factory.mktemp("short-sessions")
    env = gateway_env(fake_provider, state, ADAPTIVE_UI_IDLE_TIMEOUT_SECONDS="3", ADAPTIVE_UI_SESSION_MAX_SECONDS="8")
    proxy = ProxyProcess(demo_config(), env=env, log_path=state / "proxy.log")
    proxy.start()
    yield Gateway(proxy=proxy, fake=fake_provider, master=MASTER_KEY, state_dir=state, database_url="", env=env)
    proxy.stop()


@pytest.mark.slow
def test_idle_timeout_and_lifetime_end_sessions(short_sessions: Gateway) -> None:
    project = admin_project(short_sessions)
    with browserless(short_sessions.base_url) as client:
        sign_in(client, project.admin_key)
        for _ in range(3):
            time.sleep(1)  # active: each request restarts the idle clock
            assert client.get(f"{UI}/keys").status_code == 200
        time.sleep(3.5)
        answer = client.get(f"{UI}/keys")
        assert answer.status_code == 303 and answer.headers["location"] == f"{UI}/login?notice=expired"
    # never idle, and still ended by its lifetime
    started = time.monotonic()
    with browserless(short_sessions.base_url) as client:
        sign_in(client, project.admin_key)
        ended_after = None
        while time.monotonic() - started < 20:
            time.sleep(1)
            if client.get(f"{UI}/keys").status_code != 200:
                ended_after = time.monotonic() - started
                break
    assert ended_after is not None and ended_after >= 7.5, ended_after

"""The project dashboard in a real browser (issue 20), through the real proxy: a project admin
signs in, adds a key, sees an SDK request in the log with its fee and in usage, rotates and
revokes the key, signs out; another project's admin sees none of it; forged posts change nothing."""

from __future__ import annotations

import html
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.proxy.gateway import FAKE_KEYS, Gateway, byok_key, chat
from tests.proxy.selfservice import admin_project

pytestmark = pytest.mark.browser
NO_STORE = {"Cache-Control": "no-store, no-cache"}
Shot = Callable[..., Path]


def replaced(element: WebElement) -> bool:
    """The element's document is gone (the form's answer has loaded). Chromedriver reports an
    element of a document it is replacing either as stale or, mid-navigation, as a node that
    "does not belong to the document"."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


class Page:
    """A browser on the dashboard of one gateway."""

    def __init__(self, driver: webdriver.Chrome, gateway: Gateway) -> None:
        self.d = driver
        self.base = f"{gateway.base_url}/adaptive/ui"

    def open(self, path: str) -> None:
        self.d.get(self.base + path)

    def path(self) -> str:
        return self.d.current_url.removeprefix(self.base).split("?")[0]

    def css(self, selector: str) -> WebElement:
        return self.d.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[WebElement]:
        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def text(self) -> str:
        return self.css("main").text

    def notice(self) -> str:
        found = self.all(".notice")
        return found[0].text if found else ""

    def error(self) -> str:
        found = self.all(".error")
        return found[0].text if found else ""

    def sign_in(self, key: str) -> None:
        """By keyboard: the key field has focus, Enter sends the form."""
        self.open("/login")
        field = self.d.switch_to.active_element
        assert field.get_attribute("id") == "key" and field.get_attribute("type") == "password"
        field.send_keys(key, Keys.ENTER)
        self.wait(lambda: self.path() != "/login")

    def wait(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out on {self.d.current_url}: {self.text()[:500]}")
            time.sleep(0.05)

    def submit(self, form: WebElement) -> None:
        """Send a form with its button and wait for the page that answers it."""
        old = self.css("html")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        try:  # app.js asks before revoking
            self.d.switch_to.alert.accept()
        except NoAlertPresentException:
            pass
        WebDriverWait(self.d, 15).until(lambda _: replaced(old))

    def tab(self) -> WebElement:
        ActionChains(self.d).send_keys(Keys.TAB).perform()
        return self.d.switch_to.active_element

    def scripts_ran(self) -> bool:
        return "js" in (self.css("html").get_attribute("class") or "").split()

    def unlabelled_fields(self) -> list[str]:
        return list(self.d.execute_script("""
            return Array.from(document.querySelectorAll('input, select, textarea'))
              .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
              .map(e => e.outerHTML);"""))

    def key_rows(self) -> dict[str, WebElement]:
        return {row.get_attribute("data-key-id") or "": row for row in self.all("tr[data-key-id]")}


def add_key_in_form(page: Page, secret: str, *, provider: str = "openai", priority: int = 100) -> None:
    form = page.css("#add-key-form")
    Select(form.find_element(By.NAME, "environment")).select_by_value("production")
    form.find_element(By.NAME, "provider").send_keys(provider)
    key_field = form.find_element(By.NAME, "api_key")
    assert key_field.get_attribute("type") == "password" and key_field.get_attribute("autocomplete") == "off"
    key_field.send_keys(secret)
    priority_field = form.find_element(By.NAME, "priority")
    priority_field.clear()
    priority_field.send_keys(str(priority))
    page.submit(form)


def registered(label: str, behaviour: str = "ok", gateway: Gateway | None = None) -> str:
    secret = byok_key(label, behaviour)
    if gateway is not None:
        gateway.fake.set_keys(FAKE_KEYS)
    return secret


def sync() -> None:
    time.sleep(1.2)  # key changes reach the request path within ADAPTIVE_SYNC_INTERVAL_SECONDS


def test_a_project_admin_runs_the_dashboard_end_to_end(browser: webdriver.Chrome, gateway: Gateway, shot: Shot) -> None:
    project = admin_project(gateway)
    page = Page(browser, gateway)
    page.open("/")
    assert page.path() == "/login"
    assert page.unlabelled_fields() == []
    shot(browser, "login", docs=True)
    page.sign_in(project.admin_key)
    assert page.path() == "/keys" and project.name in page.css("header").text and page.scripts_ran()
    cookie = browser.get_cookie("adaptive_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/adaptive/ui"
    assert not cookie["secure"]  # plain http here; behind TLS it is Secure (tests/proxy/test_dashboard_http.py)

    # add a key: a password field, then only the last four characters are ever shown
    first = registered("ui-first", gateway=gateway)
    add_key_in_form(page, first, priority=1)
    assert "Provider key added" in page.notice()
    assert first not in browser.page_source and first[-4:] in page.text()
    [(key_id, row)] = page.key_rows().items()
    assert "ok" in row.text and "never" in row.text
    assert page.unlabelled_fields() == []

    # a chat API key, shown once
    page.open("/api-keys")
    page.submit(page.css("form[action$='/api-keys/create']"))
    chat_key = page.css("#new-api-key").get_attribute("value") or ""
    assert chat_key.startswith("ak-prd-")
    page.open("/api-keys")
    assert chat_key not in browser.page_source and chat_key[:10] in page.text()
    assert page.unlabelled_fields() == []
    shot(browser, "api-keys", docs=True)

    # a rate-limited key tried first (added by API): the request falls back to the key added above
    limited = byok_key("ui-rate-limited", "429", retry_after=600)
    gateway.fake.set_keys(FAKE_KEYS)
    limited_id = project.call("POST", "/adaptive/self/provider-keys", expect=201, json={
        "environment": "production", "provider": "openai", "api_key": limited, "priority": 0}).json()["id"]
    sync()

    # a request with the openai SDK: in the log with its key, fallback and fee, and in usage
    client = gateway.client(chat_key)
    _, headers = chat(client, "what does the dashboard show", extra_headers=NO_STORE)
    assert headers["x-adaptive-fallbacks"].endswith(":rate_limited")
    project.log(wait_for=1)
    page.open("/requests")
    row = page.css(f"tr[data-request-id='{headers['x-adaptive-request-id']}']")
    assert "openai" in row.text and "your key" in row.text and headers["x-adaptive-key-fingerprint"] in row.text
    assert "rate_limited" in row.text
    assert f"${headers['x-adaptive-overhead-fee-usd']}" == row.find_element(By.CSS_SELECTOR, ".fee").text
    assert page.unlabelled_fields() == []

    page.open("/keys")
    assert "never" not in page.key_rows()[key_id].text  # last used: now
    assert "cooling down" in page.key_rows()[limited_id].text  # and the limited key waits out its retry-after
    shot(browser, "keys", docs=True)

    # rotate by keyboard-free form use: the new key takes over, the old one is revoked
    second = registered("ui-rotated", gateway=gateway)
    rotate = page.key_rows()[key_id].find_element(By.CSS_SELECTOR, "form.rotate")
    rotate.find_element(By.NAME, "api_key").send_keys(second)
    page.submit(rotate)
    assert "Key rotated" in page.notice() and second not in browser.page_source
    rows = page.key_rows()
    assert "revoked" in rows[key_id].text and "rotated to" in rows[key_id].text
    [new_id] = [k for k in rows if k not in (key_id, limited_id)]
    sync()
    mark = gateway.mark()
    _, headers = chat(client, "after rotating in the dashboard", extra_headers=NO_STORE)
    assert [c["key_label"] for c in gateway.calls_since(mark)] == ["ui-rotated"]

    # revoke: the pooled key takes over (the project's policy; the other key still cools down),
    # billed with the model cost
    page.submit(page.key_rows()[new_id].find_element(By.CSS_SELECTOR, "form[action$='/revoke']"))
    assert "revoked" in page.notice() and "revoked" in page.key_rows()[new_id].text
    sync()
    _, headers = chat(client, "after revoking in the dashboard", extra_headers=NO_STORE)
    assert headers["x-adaptive-key-source"] == "pooled"
    project.log(wait_for=3)
    page.open("/requests")
    assert len(page.all("tr[data-request-id]")) == 3
    assert "pooled" in page.css(f"tr[data-request-id='{headers['x-adaptive-request-id']}']").text
    shot(browser, "requests", docs=True)

    # usage: totals equal the ledger's
    ledger = gateway.admin("GET", "/adaptive/usage", params={"project_id": project.id, "group_by": ""}, expect=200).json()[0]
    page.open("/usage")
    assert page.css("#total-requests").text == "3"
    assert page.css("#total-fee").text == f"${ledger['overhead_fee_usd']}"
    assert page.css("#total-cost").text == f"${ledger['model_cost_usd']}" and Decimal(ledger["model_cost_usd"]) > 0
    chart = page.css("svg.chart")
    assert chart.get_attribute("role") == "img" and len(chart.find_elements(By.TAG_NAME, "rect")) >= 3
    assert page.unlabelled_fields() == []
    shot(browser, "usage", docs=True)

    # fallback and plan
    page.open("/settings")
    page.css("input[name=fallback][value=byok_only]").click()
    page.submit(page.css("#settings-form"))
    assert "Settings saved" in page.notice() and page.css("input[name=fallback][value=byok_only]").is_selected()
    assert gateway.admin("GET", f"/adaptive/projects/{project.id}", expect=200).json()["fallback"] == "byok_only"
    assert page.unlabelled_fields() == []
    shot(browser, "settings", docs=True)

    # sign out: the session is over on the server, not only in this browser
    page.css("form[action$='/logout'] button").click()
    page.wait(lambda: page.path() == "/login")
    assert "signed out" in page.notice()
    stale = httpx.get(f"{page.base}/keys", cookies={"adaptive_session": cookie["value"]}, follow_redirects=False)
    assert stale.status_code == 303 and stale.headers["location"].endswith("/login?notice=expired")


def test_keyboard_reaches_everything_and_the_skip_link_comes_first(browser: webdriver.Chrome, gateway: Gateway) -> None:
    project = admin_project(gateway)
    page = Page(browser, gateway)
    page.sign_in(project.admin_key)
    page.open("/usage")
    first = page.tab()
    assert first.text == "Skip to content" and first.is_displayed()
    first.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    reached = []
    for _ in range(30):
        element = page.tab()
        reached.append(element.get_attribute("id") or element.text)
    for field in ("u-since", "u-until", "u-env", "u-by", "Show"):
        assert field in reached, reached
    # the dashboard's own navigation is reached by keyboard too, and Enter follows a link
    page.open("/keys")
    for _ in range(12):
        if page.tab().text == "Request log":
            break
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    page.wait(lambda: page.path() == "/requests")


def test_core_forms_work_without_javascript(browser_factory: Callable[..., webdriver.Chrome], gateway: Gateway) -> None:
    project = admin_project(gateway)
    page = Page(browser_factory(javascript=False), gateway)
    page.sign_in(project.admin_key)
    assert not page.scripts_ran()  # app.js never ran: what follows works on HTML forms alone
    add_key_in_form(page, registered("nojs-first", gateway=gateway), priority=1)
    assert "Provider key added" in page.notice()
    add_key_in_form(page, registered("nojs-second", gateway=gateway), priority=2)
    first, second = page.key_rows()
    # reorder: the first key moves down, the second is now tried first
    page.submit(page.key_rows()[first].find_element(By.CSS_SELECTOR, "form[action$='/down']"))
    assert "Try order changed" in page.notice() and list(page.key_rows()) == [second, first]
    chain = project.call("GET", "/adaptive/self/provider-keys", expect=200).json()
    assert [k["id"] for k in sorted(chain, key=lambda k: k["priority"])] == [second, first]
    page.submit(page.key_rows()[first].find_element(By.CSS_SELECTOR, "form[action$='/revoke']"))  # no confirm without script
    assert "revoked" in page.key_rows()[first].text
    page.open("/api-keys")
    page.submit(page.css("form[action$='/api-keys/create']"))
    assert (page.css("#new-api-key").get_attribute("value") or "").startswith("ak-prd-")
    page.open("/settings")
    page.css("input[name=cache_enabled]").click()
    page.submit(page.css("#settings-form"))
    assert "Settings saved" in page.notice()
    assert gateway.admin("GET", f"/adaptive/projects/{project.id}", expect=200).json()["cache_enabled"] is False


def test_a_second_projects_admin_sees_none_of_the_first(browser_factory: Callable[..., webdriver.Chrome],
                                                          gateway: Gateway, shot: Shot) -> None:
    first, second = admin_project(gateway), admin_project(gateway)
    _, key_view = first.add_key("first-project-own")
    client = gateway.client(first.chat_key())
    _, headers = chat(client, "the first project's private question", extra_headers=NO_STORE)
    first.log(wait_for=1)
    secrets_of_first = [first.id, first.name, key_view["id"], key_view["fingerprint"], headers["x-adaptive-request-id"]]

    page = Page(browser_factory(), gateway)
    page.sign_in(second.admin_key)
    for path in ("/keys", "/keys?environment=staging", "/settings", "/api-keys", "/usage", "/requests"):
        page.open(path)
        source = page.d.page_source
        assert not [s for s in secrets_of_first if s in source], path
    page.open("/usage")
    assert page.css("#total-requests").text == "0"
    page.open("/requests")
    assert page.all("tr[data-request-id]") == []
    # the first project's key id in a form the second admin sends: refused, nothing changes
    page.open("/keys")
    page.d.execute_script("""
        const form = document.querySelector('#add-key-form');
        form.action = arguments[0];
        form.submit();""", f"{page.base}/keys/{key_view['id']}/revoke")
    page.wait(lambda: "not found" in page.error())
    assert first.call("GET", "/adaptive/self/provider-keys", expect=200).json()[0]["status"] == "active"
    shot(page.d, "refused-other-project")


class _ForgerySite:
    """Pages on another site (localhost, not 127.0.0.1) that post a form to `?target=`."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                target = parse_qs(urlsplit(self.path).query)["target"][0]
                body = (f'<!doctype html><form id="f" method="post" action="{html.escape(target)}">'
                        '<input name="fallback" value="pooled"></form>'
                        '<script>document.getElementById("f").submit()</script>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url_for(self, target: str) -> str:
        return f"http://localhost:{self.server.server_address[1]}/?{urlencode({'target': target})}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def forgery() -> Iterator[_ForgerySite]:
    site = _ForgerySite()
    yield site
    site.close()


def test_forged_form_posts_are_refused(browser: webdriver.Chrome, gateway: Gateway, shot: Shot,
                                       forgery: _ForgerySite) -> None:
    project = admin_project(gateway)
    _, view = project.add_key("forgery-target")
    page = Page(browser, gateway)
    page.sign_in(project.admin_key)
    page.open("/keys")

    # same page, session cookie sent, no CSRF token: 403, nothing changed
    for token in (None, "0" * 64):
        page.d.execute_script("""
            const form = document.createElement('form');
            form.method = 'post'; form.action = arguments[0];
            if (arguments[1] !== null) {
              const t = document.createElement('input'); t.name = 'csrf_token'; t.value = arguments[1]; form.appendChild(t);
            }
            document.body.appendChild(form); form.submit();""", f"{page.base}/keys/{view['id']}/revoke", token)
        page.wait(lambda: "CSRF" in page.d.page_source)
    shot(browser, "csrf-refused")
    assert project.call("GET", "/adaptive/self/provider-keys", expect=200).json()[0]["status"] == "active"

    # another site posting to the dashboard: the SameSite=Strict cookie is not sent, nothing changed
    browser.get(forgery.url_for(f"{page.base}/keys/{view['id']}/revoke"))
    page.wait(lambda: "/adaptive/ui/" in browser.current_url)
    assert page.path() == "/login"
    assert project.call("GET", "/adaptive/self/provider-keys", expect=200).json()[0]["status"] == "active"
    page.open("/keys")
    assert page.path() == "/keys"  # still signed in: the forgery did not end the session either


def test_operator_switches_between_projects(browser: webdriver.Chrome, gateway: Gateway, shot: Shot) -> None:
    first, second = admin_project(gateway), admin_project(gateway)
    _, key_first = first.add_key("operator-sees-first")
    page = Page(browser, gateway)
    page.sign_in(gateway.master)
    assert page.path() == "/projects"
    shot(browser, "projects")
    Select(page.css("#project-choice")).select_by_value(first.id)
    page.submit(page.css("#project-choice").find_element(By.XPATH, "./ancestor::form"))
    page.wait(lambda: page.path() == "/keys")
    assert key_first["last4"] in page.text() and "operator" in page.css("header").text
    Select(page.css("#project-switch")).select_by_value(second.id)
    page.submit(page.css("form.switcher"))
    page.wait(lambda: "Project selected" in page.notice())
    assert key_first["last4"] not in page.text() and "No provider keys" in page.text()
    shot(browser, "operator", docs=True)

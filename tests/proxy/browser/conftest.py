"""Browser tests: Debian's chromium driven by Selenium through chromium-driver, against the
session gateway of tests/proxy (the real proxy, the fake provider on 127.0.0.1); they live
under tests/proxy to share that gateway, and the secret scan that runs last covers the
browser profiles too.

The browser comes from the system packages `chromium` and `chromium-driver`; when they are
missing and the tests run as root (CI: ./scripts/test.sh on a fresh machine), the fixture
installs them with apt-get. Otherwise the tests fail with the command to run: they never skip.
Every test gets a fresh profile (--user-data-dir under its tmp dir). Screenshots go to the
test's tmp dir; UPDATE_DOCS_SCREENSHOTS=1 also copies the ones the README shows to docs/images/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,900")


def _install_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    command = ["apt-get", "install", "-y", "chromium", "chromium-driver"]
    if os.geteuid() != 0:
        pytest.fail(f"the browser tests need Debian's chromium and chromium-driver: sudo {' '.join(command)}",
                    pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"could not install chromium: {done.stderr[-2000:]}", pytrace=False)


@pytest.fixture(scope="session")
def chromium() -> Path:
    _install_chromium()
    return CHROMIUM


def new_browser(profile: Path, *, javascript: bool = True) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    prefs: dict[str, object] = {"credentials_enable_service": False, "profile.password_manager_enabled": False}
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    return driver


@pytest.fixture()
def browser(chromium: Path, tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = new_browser(tmp_path / "profile")
    yield driver
    driver.quit()


@pytest.fixture()
def browser_factory(chromium: Path, tmp_path: Path) -> Iterator[Callable[..., webdriver.Chrome]]:
    """More browsers for one test (a second user, JavaScript off), each with a profile of its own."""
    drivers: list[webdriver.Chrome] = []

    def make(*, javascript: bool = True) -> webdriver.Chrome:
        driver = new_browser(tmp_path / f"profile-{len(drivers)}", javascript=javascript)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.quit()


@pytest.fixture()
def shot(tmp_path: Path) -> Callable[[webdriver.Chrome, str], Path]:
    """Save a full-page screenshot as <tmp>/screens/<name>.png (and docs/images/ on request)."""
    folder = tmp_path / "screens"
    folder.mkdir()

    def take(driver: webdriver.Chrome, name: str, *, docs: bool = False) -> Path:
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(1280, min(max(height + 160, 700), 4000))  # the window's frame included
        path = folder / f"{name}.png"
        assert driver.save_screenshot(str(path)), name
        driver.set_window_size(1280, 900)
        if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS_IMAGES / f"dashboard-{name}.png")
        return path

    return take

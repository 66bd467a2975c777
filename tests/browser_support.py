"""Headless Chromium on the Dagster UI and the report servers, for the launched-runs tests.

``ui_servers`` starts what ``make ui`` and ``make reports`` start (the Dagster webserver,
the report server, Evidently's UI) on a world's instance; ``chromium`` drives Debian's
``chromium`` through ``chromium-driver`` (``make browser`` installs both as root;
``needs_chromium`` skips a test where they are absent). With ``RECLAKE_SCREENSHOTS_DIR``
set, ``screenshot`` writes the pictures README shows there.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import PROJECT_ROOT, free_port

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium and ChromeDriver not found: `make browser` installs Debian's chromium and chromium-driver",
)
# Chromium's own traffic is refused on a closed network: keep it from trying.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,900",
)  # fmt: skip
_FIRST_VISIT_DIALOG = "Join the Dagster community"


def wait_for_http(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    """Wait until ``url`` answers 200; fails when ``process`` (its server) exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args[:3]} exited with {process.returncode}"
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not answer in {seconds} s")


@contextlib.contextmanager
def ui_servers(env: dict[str, str], settings, log_dir: Path) -> Iterator[str]:
    """The Dagster webserver on a free port (as ``make ui``), the report server and
    Evidently's UI (each on its port of ``settings``' ``reports_url`` and
    ``evidently_ui_url``, which they read from ``env`` themselves), all with the
    environment ``env``; yields the webserver's URL and stops all three after."""
    ui_port = free_port()
    logs = (log_dir / "webserver.log").open("w")
    servers = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", str(ui_port)],
            cwd=PROJECT_ROOT, env=env, stdout=logs, stderr=subprocess.STDOUT,
        ),
        subprocess.Popen([sys.executable, "-m", "monitoring.report_server"], cwd=PROJECT_ROOT, env=env),
        subprocess.Popen([sys.executable, "-m", "monitoring.evidently_ui"], cwd=PROJECT_ROOT, env=env),
    ]  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{ui_port}/server_info", servers[0])
        wait_for_http(f"{settings.reports_url}/", servers[1])
        wait_for_http(f"{settings.evidently_ui_url}/api/projects", servers[2])
        yield f"http://127.0.0.1:{ui_port}"
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        logs.close()


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium WebDriver, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser, url: str, *texts: str, seconds: float = 60) -> str:
    """Load ``url``, dismiss Dagster's first-visit dialog, and wait until the page shows
    every one of ``texts``; returns the page's text."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    browser.get(url)
    deadline = time.monotonic() + seconds
    while True:
        try:
            for button in browser.find_elements(By.TAG_NAME, "button"):
                if button.text.strip() == "Skip":
                    button.click()
            body = browser.find_element(By.TAG_NAME, "body").text
        except StaleElementReferenceException:
            body = ""
        if all(text in body for text in texts) and _FIRST_VISIT_DIALOG not in body:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never showed {texts}; it shows:\n{body[:2000]}")
        time.sleep(0.5)


def links_to(browser, prefix: str) -> list[str]:
    """The ``href`` of every link on the page that starts with ``prefix``."""
    from selenium.webdriver.common.by import By

    hrefs = (anchor.get_attribute("href") or "" for anchor in browser.find_elements(By.TAG_NAME, "a"))
    return [href for href in hrefs if href.startswith(prefix)]


def screenshot(browser, name: str) -> None:
    """Save the page as ``<name>.png`` in ``RECLAKE_SCREENSHOTS_DIR`` when it is set."""
    folder = os.environ.get("RECLAKE_SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))

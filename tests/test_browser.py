"""What a new user sees in the Dagster UI after `make run`, in headless Chromium.

A small demo (the default calendar: its days end yesterday) runs through ``make run``'s
entry point; then the Dagster webserver and the report server start as ``make ui``
starts them, and a real browser checks that the asset graph renders with every group,
that ``raw_events`` shows every demo partition materialized and none missing, that the
drift report's link on its partition page opens the Evidently report, and that its
``evidently_url`` opens the source's dashboard in Evidently's UI (started as ``make
reports`` starts it).

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser`` installs them as
root); skipped with that message where they are absent. With ``RECLAKE_SCREENSHOTS_DIR``
set, the screenshots README shows are written there.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import PROJECT_ROOT, free_port, launch_main_run, process_env

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium and ChromeDriver not found: `make browser` installs Debian's chromium and chromium-driver",
)

DEMO_DAYS = 3
TINY_RANKER = str(PROJECT_ROOT / "tests" / "fixtures" / "configs" / "tiny_deepfm.yaml")
GROUPS = (
    "landing",
    "bronze",
    "staging",
    "intermediate",
    "marts",
    "quality",
    "datasets",
    "models",
    "serving",
    "monitoring",
)
# Chromium's own traffic is refused on a closed network: keep it from trying.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,900",
)  # fmt: skip


def _wait_for_http(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
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


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A demo run, then the UI and the report server on free ports: (ui URL, reports URL, days)."""
    root = tmp_path_factory.mktemp("browser")
    reports_url = f"http://127.0.0.1:{free_port()}"
    evidently_url = f"http://127.0.0.1:{free_port()}"
    env = process_env(
        {
            "RECLAKE_STATE_DIR": str(root / "state"),
            "RECLAKE_SYNTHETIC_DAYS": str(DEMO_DAYS),
            "RECLAKE_SYNTHETIC_EVENTS_PER_DAY": "3000",
            "RECLAKE_SYNTHETIC_USERS": "300",
            "RECLAKE_SYNTHETIC_ITEMS": "100",
            "RECLAKE_RANKER_CONFIG": TINY_RANKER,
            "RECLAKE_DRIFT_DAYS_PER_RUN": "1",
            "RECLAKE_REPORTS_URL": reports_url,
            "RECLAKE_EVIDENTLY_UI_URL": evidently_url,
            "DAGSTER_HOME": str(root / "dagster_home"),
        }
    )
    env.pop("RECLAKE_SYNTHETIC_START_DATE")  # the user's calendar, not the tests' pinned one
    env.pop("BENTOML_HOME", None)
    summary, _ = launch_main_run(env)
    from reclake.settings import load_settings

    days = load_settings(env).run_days()
    assert summary["partitions"] == [d.isoformat() for d in days]
    ui_port = free_port()
    logs = (root / "webserver.log").open("w")
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
        _wait_for_http(f"http://127.0.0.1:{ui_port}/server_info", servers[0])
        _wait_for_http(f"{reports_url}/", servers[1])
        _wait_for_http(f"{evidently_url}/api/projects", servers[2])
        yield f"http://127.0.0.1:{ui_port}", reports_url, days, evidently_url
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        logs.close()


@pytest.fixture(scope="module")
def browser():
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


_FIRST_VISIT_DIALOG = "Join the Dagster community"


def _open(browser, url: str, *texts: str, seconds: float = 60) -> str:
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


def _screenshot(browser, name: str) -> None:
    folder = os.environ.get("RECLAKE_SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_the_asset_graph_renders_every_group(ui, browser):
    base, _, _, _ = ui
    _open(browser, f"{base}/asset-groups", "Global asset lineage", *GROUPS)
    _screenshot(browser, "asset_graph")


def test_every_demo_partition_is_materialized(ui, browser):
    base, _, days, _ = ui
    text = _open(browser, f"{base}/assets/raw_events?view=partitions", f"Materialized ({len(days)})")
    assert "Missing (0)" in text and "Failed (0)" in text
    assert all(day.isoformat() in text for day in days)
    _screenshot(browser, "raw_events_partitions")


def test_the_drift_report_opens_from_its_partition(ui, browser):
    from selenium.webdriver.common.by import By

    base, reports_url, days, _ = ui
    _open(browser, f"{base}/assets/drift_report?view=partitions&partition={days[-1]}", "report_url")
    links = [
        anchor.get_attribute("href")
        for anchor in browser.find_elements(By.TAG_NAME, "a")
        if (anchor.get_attribute("href") or "").startswith(reports_url)
    ]
    assert links and links[0].endswith(f"dt={days[-1]}/drift_report.html"), links
    _screenshot(browser, "drift_report_partition")
    _open(browser, links[0], "Dataset Drift")  # Evidently's report, rendered by its own scripts


def test_the_evidently_dashboard_opens_from_the_drift_reports_partition(ui, browser):
    from selenium.webdriver.common.by import By

    base, _, days, evidently_url = ui
    _open(browser, f"{base}/assets/drift_report?view=partitions&partition={days[-1]}", "evidently_url")
    links = [
        anchor.get_attribute("href")
        for anchor in browser.find_elements(By.TAG_NAME, "a")
        if (anchor.get_attribute("href") or "").startswith(evidently_url)
    ]
    assert links and "/projects/" in links[0], links
    # Evidently's UI renders the project's dashboard by its own scripts: the drift tab's panels.
    _open(browser, links[0], "Share of drifted columns", seconds=90)
    _screenshot(browser, "evidently_dashboard")

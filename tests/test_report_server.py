"""The report server: a lake's reports (and the local Data Docs site) over real HTTP."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests
from conftest import PROJECT_ROOT, free_port, process_env

from monitoring.report_server import ReportRoots, lake_path, start_report_server
from reclake.lake import Lake

pytestmark = pytest.mark.unit

DRIFT = "reports/drift/dt=2024-03-02/drift_report.html"
CURVE = "models/v7/training_curve.html"


@pytest.mark.parametrize(
    ("request_path", "expected"),
    [
        ("/", ""),
        (f"/{DRIFT}?tab=1", DRIFT),
        ("/reports/drift/dt%3D2024-03-02/drift_report.html", DRIFT),
        ("/a/./b/../c.html", "a/c.html"),
        ("/../etc/passwd", None),
        ("/a/../../etc/passwd", None),
        ("/%2e%2e/etc/passwd", None),
        ("/a\\..\\b", None),
        ("/a%00.html", None),
    ],
)
def test_request_paths_never_leave_the_roots(request_path, expected):
    assert lake_path(request_path) == expected


@pytest.fixture
def served(tmp_path):
    lake = Lake.open(str(tmp_path / "lake"))
    lake.write_bytes(lake.url(DRIFT), b"<!doctype html><title>drift 2024-03-02</title>")
    lake.write_bytes(lake.url(CURVE), b"<!doctype html><title>curve</title>")
    lake.write_bytes(lake.url("run_summary.json"), b'{"model_version": "v7"}')
    lake.write_bytes(lake.url("bronze/synthetic/dt=2024-03-02/part-0.parquet"), b"PAR1")
    site = tmp_path / "data_docs_site"
    (site / "validations").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>Data Docs</title>")
    (site / "validations" / "fct_events.html").write_text("<!doctype html><title>fct_events</title>")
    (tmp_path / "secret.txt").write_text("the secret")
    port = free_port()
    server = start_report_server(ReportRoots(lake, str(site)), "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_reports_and_data_docs_are_served_with_their_types(served):
    page = requests.get(f"{served}/{DRIFT}", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.text == "<!doctype html><title>drift 2024-03-02</title>"
    assert requests.get(f"{served}/run_summary.json", timeout=10).json() == {"model_version": "v7"}
    docs = requests.get(f"{served}/data_docs/validations/fct_events.html", timeout=10)
    assert docs.status_code == 200 and "fct_events" in docs.text
    # A folder serves its index page; HEAD gives the headers without the body.
    assert "Data Docs" in requests.get(f"{served}/data_docs/", timeout=10).text
    head = requests.head(f"{served}/{CURVE}", timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(
        b"<!doctype html><title>curve</title>"
    )


def test_the_index_lists_every_report_and_links_work(served):
    index = requests.get(f"{served}/", timeout=10)
    assert index.status_code == 200
    for path in (DRIFT, CURVE, "data_docs/index.html", "run_summary.json"):
        assert f'href="/{path.replace("=", "%3D")}"' in index.text, path
        assert requests.get(f"{served}/{path}", timeout=10).status_code == 200
    assert "part-0.parquet" not in index.text  # data is not a report: not listed


def test_missing_and_outside_paths_are_404(served):
    assert requests.get(f"{served}/reports/drift/dt=2031-01-01/drift_report.html", timeout=10).status_code == 404
    assert requests.get(f"{served}/models/v7", timeout=10).status_code == 404  # a folder without an index
    escape = requests.get(f"{served}/%2e%2e/secret.txt", timeout=10)
    assert escape.status_code == 404 and "the secret" not in escape.text
    assert requests.get(f"{served}/data_docs/%2e%2e/%2e%2e/secret.txt", timeout=10).status_code == 404


def _wait_for(predicate, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_command_stops_on_ctrl_c_and_with_the_shell_that_started_it(tmp_path):
    """As ``make ui`` starts it: in the background of a shell (where SIGINT arrives
    ignored), beside Dagster. Ctrl-C stops it, and so does the end of that shell."""
    port = free_port()
    env = process_env(
        {
            "RECLAKE_STATE_DIR": str(tmp_path),
            "RECLAKE_LAKE_ROOT": str(tmp_path / "lake"),
            "RECLAKE_REPORTS_URL": f"http://127.0.0.1:{port}",
        }
    )
    command = f"{sys.executable} -m monitoring.report_server --exit-with-parent & echo $!; exec sleep 600"
    shell = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, env=env, cwd=PROJECT_ROOT, text=True)
    try:
        server = int(shell.stdout.readline())
        assert _wait_for(lambda: _answers(f"http://127.0.0.1:{port}/")), "the report server never answered"
        shell.kill()  # the shell ends (as when `dagster dev` stops): the server follows
        assert _wait_for(lambda: _gone(server), 15), "the report server outlived its shell"
    finally:
        shell.kill()

    ignoring = subprocess.Popen(
        [sys.executable, "-m", "monitoring.report_server"],
        env=env, cwd=PROJECT_ROOT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        assert _wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"))
        ignoring.send_signal(signal.SIGINT)
        assert ignoring.wait(timeout=15) == 0
    finally:
        ignoring.kill()

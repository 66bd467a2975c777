"""A run killed mid-step does not wedge the warehouse pool.

Run A holds the `duckdb_warehouse` pool's only slot; then its run worker and the code
server that started it are killed with SIGKILL (what a crashed ``dagster dev`` or an
out-of-memory kill leaves), so nothing marks A failed or frees its slot. Run B waits on
the slot. A real ``dagster-daemon`` on the instance ``make run`` and ``make ui`` use
(``automation.launch.prepare_dagster_home``) must mark A failed through
``LocalRunLauncher``'s health check and free its slot, and B must then run.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import psutil
import pytest
from conftest import PROJECT_ROOT, process_env
from serving_support import stop_process_group

from automation.launch import prepare_dagster_home
from automation.run_launcher import process_alive, worker_pid

pytestmark = pytest.mark.integration

LOCATION = PROJECT_ROOT / "tests" / "fixtures" / "locations"
DAGSTER_BIN = Path(sys.executable).parent


class Launcher:
    """Launches ``hold_warehouse`` runs as ``make run`` launches (``dagster job launch``
    on the direct instance), and stops what it started."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env, self.processes = home, env, []

    def launch(self, seconds: int) -> str:
        run_id = str(uuid.uuid4())
        argv = [str(DAGSTER_BIN / "dagster"), "job", "launch", "-w", "pool_holder_workspace.yaml",
                "-j", "hold_warehouse", "--run-id", run_id, "--tags", json.dumps({"seconds": str(seconds)})]  # fmt: skip
        log = (self.home / f"launch-{run_id}.log").open("w")
        env = {**self.env, "DAGSTER_HOME": str(self.home / "direct")}
        self.processes.append(
            subprocess.Popen(argv, cwd=LOCATION, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
        return run_id

    def log(self, run_id: str) -> str:
        return (self.home / f"launch-{run_id}.log").read_text()[-3000:]

    def kill_all(self) -> None:
        """SIGKILL every process group launched so far (nothing gets to clean up)."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                stop_process_group(process, signal.SIGTERM, timeout=30)


def _wait(check, timeout: float, message):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(message())


def test_a_killed_run_is_marked_failed_and_frees_its_pool_slot(tmp_path):
    home = prepare_dagster_home(tmp_path / "dagster_home")
    # The managed settings, polled every 3 s instead of 30 (kept: the managed line goes).
    settings = (home / "dagster.yaml").read_text().split("\n", 1)[1]
    assert "free_slots_after_run_end_seconds" in settings and "LocalRunLauncher" in settings
    (home / "dagster.yaml").write_text(settings.replace("poll_interval_seconds: 30", "poll_interval_seconds: 3"))
    env = process_env({"DAGSTER_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)})
    launcher = Launcher(home, env)
    daemon_log = tmp_path / "daemon.log"
    with dg.DagsterInstance.from_config(str(home)) as instance:  # storage created before any launch
        try:
            first = launcher.launch(seconds=600)
            _wait(
                lambda: instance.all_logs(first, of_type=dg.DagsterEventType.STEP_START),
                120,
                lambda: "run A never started its step: " + launcher.log(first),
            )
            pid = worker_pid(instance, first)
            assert pid is not None and process_alive(pid)
            server = psutil.Process(pid).parent()  # the code server that started the worker
            for process in (server.pid, pid):  # nothing left to notice the worker's death
                os.kill(process, signal.SIGKILL)
            launcher.kill_all()
            _wait(lambda: not process_alive(pid), 10, lambda: f"worker {pid} survived SIGKILL")
            second = launcher.launch(seconds=0)

            with daemon_log.open("w") as log:
                daemon = subprocess.Popen(
                    [str(DAGSTER_BIN / "dagster-daemon"), "run", "-w", "pool_holder_workspace.yaml"],
                    cwd=LOCATION, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                try:
                    runs = _wait(
                        lambda: _both_finished(instance, first, second),
                        180,
                        lambda: "runs did not finish: " + daemon_log.read_text()[-3000:] + launcher.log(second),
                    )
                finally:
                    stop_process_group(daemon, signal.SIGINT, timeout=60)
        finally:
            launcher.stop()
        killed, waiting = runs
        assert killed.status == dg.DagsterRunStatus.FAILURE
        failure = instance.all_logs(first, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert failure and f"(pid {pid}) is gone" in failure[-1].message
        assert waiting.status == dg.DagsterRunStatus.SUCCESS, launcher.log(second)


def _both_finished(instance: dg.DagsterInstance, first: str, second: str):
    runs = [instance.get_run_by_id(first), instance.get_run_by_id(second)]
    return runs if all(r is not None and r.is_finished for r in runs) else None

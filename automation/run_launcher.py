"""A run launcher whose runs the daemon's run monitoring can see die.

Dagster's ``DefaultRunLauncher`` starts each run worker as a process of the code server
but cannot tell run monitoring whether that process still lives. A worker killed in the
middle of a step (out of memory, ``kill -9``, a laptop closing) then leaves its run
STARTED for ever, holding its slot of the one-writer ``duckdb_warehouse`` pool, and every
later run waits on that slot. ``LocalRunLauncher`` launches exactly like the default and
answers the health check from the worker's pid, which the worker records in the run's
first engine event ("Started process for run (pid: N)"): the daemon then marks the run
failed, and its pool slot is freed.

Local by design: the pid is checked on this machine, where ``dagster dev`` runs its
workers. A deployment on Kubernetes or ECS uses that platform's run launcher, which
has health checks of its own.
"""

from __future__ import annotations

import psutil
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

_WORKER_STARTED = "Started process for run"


def worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid of the process executing ``run_id``, from its engine events (newest first),
    or None before the worker has recorded it."""
    for entry in reversed(instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        if not entry.message.startswith(_WORKER_STARTED):
            continue
        pid = entry.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value)
    return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this machine (a zombie is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` plus a worker health check run monitoring can use."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = worker_pid(self._instance, run.run_id)
        if pid is None:
            # Not recorded yet: the run is starting; the start timeout covers a worker
            # that never comes up.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "worker pid not recorded yet")
        if process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the run worker process (pid {pid}) is gone", run_worker_id=str(pid)
        )

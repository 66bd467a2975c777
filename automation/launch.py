"""Launch a job the way the Dagster UI and daemon do, and follow it from the console.

``make run`` does not execute its job in its own process: it submits a run of the code
location in ``workspace.yaml`` to the local Dagster instance, so the run belongs to its
job and code location in the UI, and it is executed by what executes every UI-, sensor-
and schedule-launched run: Dagster's run launcher starts a run worker process from the
code location, which runs the steps (``automation/jobs.py`` says which executor).

The instance (``dagster_home/dagster.yaml``) queues UI, sensor and backfill runs for the
daemon of ``make ui``. A console run has no daemon to wait for, so it is submitted
through ``dagster_home/direct/dagster.yaml``: the same storage, launched at once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from reclake.settings import PROJECT_ROOT

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
DAGSTER = str(Path(sys.executable).parent / "dagster")

# Written by Reclake; regenerated while this first line is kept.
_MANAGED = "# managed by reclake (automation/launch.py): delete this line to keep your own edits"

# One writer for DuckDB at a time (the `duckdb_warehouse` pool of the steps that write
# or read the warehouse), and run monitoring with a launcher that can tell whether a
# run's worker process lives (automation/run_launcher.py): the daemon marks a run whose
# worker died as failed, and frees the pool slots a finished run still holds (a worker
# killed mid-step never releases its own).
_INSTANCE_SETTINGS = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
run_launcher:
  module: automation.run_launcher
  class: LocalRunLauncher
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 10
"""


def _direct_settings(home: Path) -> str:
    """The same instance as ``home`` (storage, artifacts, logs), launching without a queue."""
    return f"""\
storage:
  sqlite:
    base_dir: {home}
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {home}
compute_logs:
  module: dagster._core.storage.local_compute_log_manager
  class: LocalComputeLogManager
  config:
    base_dir: {home / "storage"}
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""


def _write_managed(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.read_text().startswith(_MANAGED):
        return  # the user's own file
    path.write_text(f"{_MANAGED}\n{body}")


def prepare_dagster_home(home: Path) -> Path:
    """Create the instance folder ``home`` (``dagster.yaml``, plus ``direct/`` for console
    runs) and its storage, and point ``DAGSTER_HOME`` at it. Returns ``home``, resolved."""
    import dagster as dg

    home = home.resolve()
    _write_managed(home / "dagster.yaml", _INSTANCE_SETTINGS)
    _write_managed(home / "direct" / "dagster.yaml", _INSTANCE_SETTINGS + _direct_settings(home))
    os.environ["DAGSTER_HOME"] = str(home)
    # Create the SQLite storage here, in one process: `dagster job launch` and the process
    # following its run, opening a fresh home at once, both ran the schema migration and
    # one failed ("table alembic_version already exists").
    with dg.DagsterInstance.from_config(str(home)):
        pass
    return home


def launch_job(job_name: str, tags: Mapping[str, str], home: Path, log_file: Path) -> tuple[str, subprocess.Popen]:
    """Submit a run of ``job_name`` from the workspace's code location.

    The code location and the run worker inherit this process's environment, so the
    ``RECLAKE_*`` settings in force here are the run's.

    Args:
        job_name: a job of the code location.
        tags: the run's tags (partition or partition range).
        home: the instance folder (``prepare_dagster_home``).
        log_file: where the launcher's and run worker's own output goes.

    Returns:
        The run id, and the launching process (it exits once the run has finished).
    """
    run_id = str(uuid.uuid4())
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        DAGSTER, "job", "launch", "-w", str(WORKSPACE), "-j", job_name,
        "--run-id", run_id, "--tags", json.dumps(dict(tags)),
    ]  # fmt: skip
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**RUN_CREATION_ENV, **os.environ, "DAGSTER_HOME": str(home / "direct")},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return run_id, process


# Lines of a run's log not worth a console line: Dagster's and dagster-dbt's bookkeeping
# (dbt's command line carries the whole feature spec; the asset logs a summary instead).
_BOOKKEEPING = (
    "A dbt subsetted execution",
    "Running dbt command",
    "Finished dbt command",
    "Writing file at",
    "Loading file from",
)
_LINE_LIMIT = 160
# Progress lines echoed per step; a long history's per-day lines are counted past this.
_LINES_PER_STEP = 12

# Dagster writes one "planned" event per asset per partition when it creates a run over a
# partition range: a run over years of daily partitions spent minutes (365 days) to hours
# in SQLite before its first step. With this, one event per asset names the whole range;
# the cost: partitions of a run that fails show as missing, not failed. Set for every
# process that creates runs (`dagster job launch` here unless the environment says
# otherwise; the UI and daemon by the Makefile).
RUN_CREATION_ENV = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}


def progress_line(entry) -> str | None:
    """The console line of a run's log message (an ``EventLogEntry`` without a Dagster
    event: what the steps log), or None for debug output and bookkeeping."""
    if entry.dagster_event is not None or entry.level < logging.INFO:
        return None
    message = (entry.user_message or "").strip()
    if not message or message.startswith(_BOOKKEEPING):
        return None
    line = message.splitlines()[0]
    return line if len(line) <= _LINE_LIMIT else line[: _LINE_LIMIT - 3] + "..."


def step_labels(instance, run) -> dict[str, str]:
    """Step key -> what the UI calls it: the asset (``feature_tables``), or for a step
    that only evaluates a check, ``check <asset>:<check name>``."""
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    labels = {}
    for step in snapshot.steps:
        checks = [output.properties.asset_check_key for output in step.outputs if output.properties]
        if checks and all(key is not None for key in checks):
            labels[step.key] = "check " + ", ".join(key.to_user_string() for key in checks)
    return labels


def _tail(log_file: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of ``log_file``, as the continuation of an error message."""
    if log_file is None or not log_file.exists():
        return ""
    text = log_file.read_text(errors="replace").splitlines()[-lines:]
    return f"; the last lines of {log_file}:\n" + "\n".join(text)


def follow_run(
    instance,
    run_id: str,
    process: subprocess.Popen | None = None,
    echo: Callable[[str], None] = print,
    poll_seconds: float = 1.0,
    log_file: Path | None = None,
):
    """Wait for a run to finish, echoing one line per step as it starts and ends, and
    the steps' own progress lines (``progress_line``) in between.

    Args:
        instance: the ``DagsterInstance`` the run was submitted to.
        run_id: the run.
        process: the launching process; if it exits before the run exists, the launch failed.
        echo: where progress lines go.
        log_file: the launching process's output, quoted when the launch fails.

    Returns:
        The finished ``DagsterRun``.

    Raises:
        RuntimeError: the launch failed before the run was created.
    """
    import dagster as dg

    started: dict[str, float] = {}
    lines: dict[str | None, int] = defaultdict(int)
    labels: dict[str, str] | None = None
    cursor = None
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and labels is None:
            labels = step_labels(instance, run)
        if run is None:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"`dagster job launch` exited with {process.returncode} before run {run_id} existed"
                    + _tail(log_file)
                )
            time.sleep(poll_seconds)
            continue
        connection = instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
        cursor = connection.cursor
        for record in connection.records:
            event = record.event_log_entry.dagster_event
            if event is None:
                line = progress_line(record.event_log_entry)
                step = record.event_log_entry.step_key
                if line is not None:
                    lines[step] += 1
                    if lines[step] <= _LINES_PER_STEP:
                        echo(f"      {line}")
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = record.event_log_entry.timestamp
                echo(f"  {labels.get(event.step_key, event.step_key)} ...")
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                seconds = record.event_log_entry.timestamp - started.get(
                    event.step_key, record.event_log_entry.timestamp
                )
                if lines[event.step_key] > _LINES_PER_STEP:
                    echo(f"      ... {lines[event.step_key] - _LINES_PER_STEP} more line(s) in the run's log (make ui)")
                outcome = "done" if event.event_type == dg.DagsterEventType.STEP_SUCCESS else "FAILED"
                echo(f"  {labels.get(event.step_key, event.step_key)} {outcome} in {seconds:.1f} s")
            elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                if not evaluation.passed:
                    where = f" [{evaluation.partition}]" if evaluation.partition else ""
                    echo(f"  check failed: {evaluation.asset_check_key.to_user_string()}{where}")
        if run.is_finished and not connection.has_more:
            return run
        if not connection.has_more:
            time.sleep(poll_seconds)

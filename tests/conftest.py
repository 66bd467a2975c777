"""Shared test set-up: every process gets Keras 2, a private BentoML home and no telemetry.

Pipeline tests build real Definitions from real ``Settings`` pointing at temporary
folders (or a local S3 server); nothing is patched.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from reclake.runtime import configure_process

# Before anything imports TensorFlow or BentoML, in this process and in its children.
_SESSION_STATE = Path(tempfile.mkdtemp(prefix="reclake-test-state-"))
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["BENTOML_HOME"] = str(_SESSION_STATE / "bentoml")
configure_process()
# The tests' synthetic world starts on a fixed day (a user's demo ends yesterday instead):
# in the settings this process builds (make_settings) and in every child process.
PINNED_CALENDAR = {"RECLAKE_SYNTHETIC_START_DATE": "2024-03-01"}
os.environ.update(PINNED_CALENDAR)

import pytest  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
# Model configs small enough for the end-to-end tests (seconds per model).
TEST_CONFIGS = PROJECT_ROOT / "tests" / "fixtures" / "configs"
TINY_RANKER = str(TEST_CONFIGS / "tiny_deepfm.yaml")
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real data samples not found at {SHARED_DATA} (../shared/data from the repo root)"
)


@pytest.fixture(scope="session")
def session_state_dir() -> Path:
    """The state folder whose ``bentoml/`` is this session's BentoML home."""
    return _SESSION_STATE


def process_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment of a process a test starts: this one's, without any ``RECLAKE_*``
    variable an earlier test's code location wrote into it, plus the tests' calendar and
    ``environ``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RECLAKE_")}
    return {**inherited, **PINNED_CALENDAR, **environ}


def launch_main_run(env: dict[str, str], timeout: float = 900, args: Sequence[str] = ()) -> tuple[dict, str]:
    """Run ``python -m automation.main_run`` (what ``make run`` runs, with ``args``) in a
    process of its own, with exactly the environment ``env`` (see ``process_env``).

    Returns:
        The run summary it wrote (read from the path on its last line of output) and its
        standard output. A failed run fails the test with the end of both outputs.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "automation.main_run", *args],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-5000:]
    summary_path = Path(completed.stdout.strip().splitlines()[-1])
    return json.loads(summary_path.read_text()), completed.stdout


def run_failures(result) -> list[str]:
    """What went wrong in an ``execute_in_process`` result: each failed step's error with
    its causes (the end of each, where the cause of a dbt or Spark failure is), and the
    checks that did not pass with their metadata. Empty for a successful run."""
    failures = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            failures.append(f"{event.step_key}: {event.step_failure_data.error.to_string()[-6000:]}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.asset_check_evaluation_data.passed:
            check = event.asset_check_evaluation_data
            failures.append(f"check {check.check_name} failed: {check.metadata}")
    return failures


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_settings(tmp_path: Path, state_dir: Path, **overrides: str):
    """Real ``Settings`` for a small synthetic world in ``tmp_path``.

    ``overrides`` are ``RECLAKE_*`` variable names without the prefix, e.g.
    ``SYNTHETIC_DAYS="2"``.
    """
    from reclake.settings import load_settings

    environ = {
        "RECLAKE_STATE_DIR": str(state_dir),
        "RECLAKE_LAKE_ROOT": str(tmp_path / "lake"),
        "RECLAKE_WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
        "RECLAKE_SYNTHETIC_DAYS": "3",
        "RECLAKE_SYNTHETIC_EVENTS_PER_DAY": "6000",
        "RECLAKE_SYNTHETIC_USERS": "400",
        "RECLAKE_SYNTHETIC_ITEMS": "150",
        **PINNED_CALENDAR,
    }
    environ.update({f"RECLAKE_{name}": value for name, value in overrides.items()})
    return load_settings(environ)


# Modules whose tests run whole jobs, servers or Spark, longest first (worker seconds from
# `bash .ci/run` on a fresh clone of 221e2e6, 2 cores, 2026-12-05 night, alone on them:
# their order matters, not their values). The suite runs on TEST_WORKERS workers a module
# at a time (``--dist loadfile --no-loadscope-reorder``): starting the long modules first
# lets the short ones fill in behind them, so the workers finish together instead of one
# waiting out the last long module alone.
LONGEST_MODULES = (
    "test_launched_runs.py",  # 273 s, the browser's checks included
    "test_spark_job.py",  # 158 s
    "test_drift_loop.py",  # 131 s
    "test_real_sources_without_ids.py",  # 115 s
    "test_real_sources_with_ids.py",  # 113 s
    "test_dbt_spark.py",  # 78 s
    "test_dbt_project.py",  # 40 s
    "test_tracking.py",  # 38 s
    "test_service.py",  # 34 s
)


def pytest_collection_modifyitems(config, items):
    """Put the modules of ``LONGEST_MODULES`` first, in that order; the rest keep theirs."""
    rank = {name: position for position, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))

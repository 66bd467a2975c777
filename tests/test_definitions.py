"""The code location loads: every asset, check, job, schedule and sensor resolves."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from conftest import PROJECT_ROOT, make_settings

from reclake.runtime import PROCESS_FLAGS, QUIET_TENSORFLOW


def test_dagster_definitions_validate_passes(tmp_path, session_state_dir):
    settings = make_settings(tmp_path, session_state_dir)
    env = {
        **os.environ,
        **{
            f"RECLAKE_{k.upper()}": str(v)
            for k, v in {
                "state_dir": settings.state_dir,
                "lake_root": settings.lake_root,
                "warehouse_path": settings.warehouse_path,
            }.items()
        },
        "DAGSTER_HOME": str(tmp_path),
    }
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Validation successful" in completed.stdout + completed.stderr


def test_jobs_schedules_and_sensors_resolve(tmp_path, session_state_dir):
    from definitions import build_definitions

    defs = build_definitions(make_settings(tmp_path, session_state_dir))
    main = defs.resolve_job_def("reclake_main_job")
    ingest = defs.resolve_job_def("ingest_to_serve_job")
    assert "landing_logs" in {n.name for n in main.nodes_in_topological_order}
    assert "landing_logs" not in {n.name for n in ingest.nodes_in_topological_order}
    assert defs.get_schedule_def("ingest_to_serve_job_schedule").cron_schedule == "0 2 * * *"
    assert defs.get_sensor_def("landing_sensor").job_name == "ingest_to_serve_job"
    # The demo's feed lands the day that just ended, and only the landing.
    feed = defs.get_schedule_def("synthetic_feed_schedule")
    assert feed.job_name == "landing_job" and feed.default_status == dg.DefaultScheduleStatus.STOPPED
    tick = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2024, 3, 9, 0, 10, tzinfo=dt.UTC))
    (request,) = feed.evaluate_tick(tick).run_requests
    assert request.partition_key == "2024-03-08"
    assert {n.name for n in defs.resolve_job_def("landing_job").nodes_in_topological_order} == {"landing_logs"}
    groups = {spec.group_name for spec in defs.resolve_all_asset_specs()}
    assert groups == {
        "landing", "bronze", "staging", "intermediate", "marts", "quality", "datasets", "models", "serving", "monitoring", "model_zoo",
        "batch",
    }  # fmt: skip
    # Batch scoring and stored-model evaluation run on demand, in jobs of their own.
    assert {"batch_predictions", "stored_model_evaluation"}.isdisjoint(n.name for n in main.nodes_in_topological_order)
    batch = defs.resolve_job_def("batch_predictions_job")
    assert {n.name for n in batch.nodes_in_topological_order} == {"batch_predictions"}
    # The catalog reads well: every asset says what it holds, what it is made with and who owns it.
    for spec in defs.resolve_all_asset_specs():
        assert spec.description and len(spec.description) > 40, spec.key
        assert spec.kinds and spec.owners, spec.key
    graph = defs.resolve_asset_graph()
    assert len(graph.asset_check_keys) > 20
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).description, key
    # The zoo is partitioned by model config, not by day: its own job, outside the daily ones.
    zoo = defs.resolve_job_def("model_zoo_job")
    assert {n.name for n in zoo.nodes_in_topological_order} == {"zoo_model"}
    assert "zoo_model" not in {n.name for n in main.nodes_in_topological_order}
    assert set(defs.get_assets_def("zoo_model").partitions_def.get_partition_keys()) >= {"deepfm", "esmm", "hashed_lr"}


def test_one_process_builds_the_definitions_of_two_sources(tmp_path, session_state_dir):
    """Partitions come from the settings, not from the process: a synthetic world and a
    historical source with a fixed calendar build side by side."""
    from definitions import build_definitions

    synthetic = build_definitions(make_settings(tmp_path / "synthetic", session_state_dir))
    historical = build_definitions(
        make_settings(tmp_path / "criteo", session_state_dir, SOURCE="criteo", SOURCE_PATH=str(tmp_path / "day_0"),
                      PARTITIONS_START="2013-01-01", PARTITIONS_END="2013-01-08")
    )  # fmt: skip
    synthetic_days = synthetic.resolve_job_def("reclake_main_job").partitions_def.get_partition_keys()
    historical_job = historical.resolve_job_def("ingest_to_serve_job")
    assert synthetic_days[:3] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert historical_job.partitions_def.get_partition_keys() == [f"2013-01-0{day}" for day in range(1, 9)]
    raw_events = historical.get_assets_def("raw_events").partitions_def
    assert raw_events.get_partition_keys() == historical_job.partitions_def.get_partition_keys()
    assert historical.get_sensor_def("landing_sensor").job_name == "ingest_to_serve_job"


def _bare_python(code: str) -> subprocess.CompletedProcess:
    """``python -c code`` in the project root: a process whose ``__main__`` has no file,
    like Dagster's run and step workers."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_great_expectations_imports_in_a_process_without_a_main_file():
    # pyspark's connect check exits such a process with status 0 when its requirements are
    # missing: the import "succeeds" and nothing after it runs.
    completed = _bare_python("import great_expectations; print('imported')")
    assert completed.returncode == 0 and completed.stdout.strip() == "imported", completed.stderr[-2000:]


def test_the_code_location_loads_without_tensorflow_or_a_dbt_parse(tmp_path, session_state_dir):
    settings = make_settings(tmp_path, session_state_dir)
    code = (
        "import sys, subprocess\n"
        "started = []\n"
        "original = subprocess.Popen.__init__\n"
        "def spy(self, *args, **kwargs):\n"
        "    started.append(args[0] if args else kwargs.get('args'))\n"
        "    original(self, *args, **kwargs)\n"
        "subprocess.Popen.__init__ = spy\n"
        "import definitions\n"
        "print('tensorflow' in sys.modules, sum('dbt' in str(command) for command in started))\n"
    )
    from assets.features import prepare_dbt_manifest

    prepare_dbt_manifest()  # as `make run` and `make ui` do before Dagster starts
    env_settings = {"RECLAKE_STATE_DIR": settings.state_dir, "RECLAKE_LAKE_ROOT": settings.lake_root}
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env={**os.environ, **env_settings},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["False", "0"], completed.stdout


def test_the_code_location_writes_no_environment_variable_but_the_process_flags(tmp_path, session_state_dir):
    """Locations reach dbt and BentoML explicitly: importing the definitions leaves the
    environment as it found it, apart from ``reclake.runtime``'s process flags (and what
    third-party libraries write when imported: pandera sets Spark variables)."""
    settings = make_settings(tmp_path, session_state_dir)
    code = (
        "import json, os\n"
        "import dagster, dagster_dbt, pandera\n"
        "before = dict(os.environ)\n"
        "import definitions\n"
        "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_FLAGS and k not in QUIET_TENSORFLOW}
    env.update(RECLAKE_STATE_DIR=settings.state_dir, RECLAKE_LAKE_ROOT=settings.lake_root)
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    written = json.loads(completed.stdout.strip().splitlines()[-1])
    assert written == {**PROCESS_FLAGS, **QUIET_TENSORFLOW}

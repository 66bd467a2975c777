"""Runs launched the way `dagster dev` launches them, the loop a new day closes, and
what a user then sees in the Dagster UI.

Nothing here executes a job in the test's process. ``make run``'s entry point submits its
runs through a real Dagster instance on disk and its run launcher (a code server from
``workspace.yaml`` and a run worker process it starts per run). It runs with two days per
run, as a long history runs with a year per run: the oldest day through ``history_job``,
then the two newest through the main job. Then a real ``dagster-daemon``
evaluates the landing sensor on a newly landed day and its queued-run coordinator
launches ``ingest_to_serve_job``; the test only watches the instance and the files.
Last, the Dagster webserver, the report server and Evidently's UI start as ``make ui``
starts them, and headless Chromium checks the asset graph, every partition materialized,
and the new day's drift report opened from its partition page (``browser_support``).

The world's settings are a config file named by ``RECLAKE_CONFIG``, as a user's
``RECLAKE_CONFIG=configs/<source>.yaml make run``: the file reaches the code server and
every run worker through the environment. Its calendar is a user's, not the tests'
pinned one: ``make run`` builds the three days before yesterday (UTC) and the daemon's
new day is yesterday, so the UI shows no missing partition once the loop has run.
"""

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests
from browser_support import chromium, links_to, needs_chromium, open_page, screenshot, ui_servers
from conftest import PROJECT_ROOT, TINY_RANKER, free_port, launch_main_run, process_env
from serving_support import running_server, stop_process_group

pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(dt.UTC).date()
DAYS = [(TODAY - dt.timedelta(days=n)).isoformat() for n in (4, 3, 2)]  # make run's days
DAYS_PER_RUN = 2  # make run's plan: DAYS[:1] through history_job, DAYS[1:] through the main job
NEW_DAY = TODAY - dt.timedelta(days=1)  # the day the daemon's sensor sees landed
LOOP_TIMEOUT_S = 480
SENSOR_INTERVAL_S = 5  # the landing sensor's interval here (30 s by default)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small synthetic world: its config file, named by the environment of every process
    started here. Returns its settings, that environment and the Dagster home."""
    import yaml

    from reclake.settings import load_settings

    root = tmp_path_factory.mktemp("launched")
    config = {
        "synthetic": {
            "start_date": DAYS[0], "days": len(DAYS), "events_per_day": 4000, "n_users": 300, "n_items": 100,
        },
        "ranker_config": TINY_RANKER,
        "drift_days_per_run": 1,
        "landing_sensor_interval_s": SENSOR_INTERVAL_S,
        # Where the UI's links to the reports point (the servers start for the browser).
        "reports_url": f"http://127.0.0.1:{free_port()}",
        "evidently_ui_url": f"http://127.0.0.1:{free_port()}",
    }  # fmt: skip
    (root / "reclake.yaml").write_text(yaml.safe_dump(config))
    environ = {
        "RECLAKE_CONFIG": str(root / "reclake.yaml"),
        "RECLAKE_STATE_DIR": str(root / "state"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }
    env = process_env(environ)
    env.pop("RECLAKE_SYNTHETIC_START_DATE")  # the config file's calendar, not the tests' pinned one
    env.pop("BENTOML_HOME", None)  # the settings' store, as for a user
    return load_settings(env), env, Path(environ["DAGSTER_HOME"])


@pytest.fixture(scope="module")
def main_run(world):
    """``python -m automation.main_run`` (what ``make run`` runs), in a process of its own,
    with ``DAYS_PER_RUN`` days per run."""
    return launch_main_run(world[1], args=["--days-per-run", str(DAYS_PER_RUN)])


def test_make_run_belongs_to_its_job_and_code_location(world, main_run):
    _, _, home = world
    summary, stdout = main_run
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(summary["run_id"])
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.job_name == "reclake_main_job"
        assert run.remote_job_origin is not None and run.remote_job_origin.location_name == "reclake"
        # Executed by a run worker process the launcher started, not by `make run` itself.
        engine = [e.message for e in instance.all_logs(run.run_id) if "Executing steps in process" in e.message]
        assert engine and all("pid" in message for message in engine)
        # One planned event per asset naming the whole range, not one per asset per day:
        # what lets a run over years of days start in seconds (bench/long_history.py).
        planned = [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        ]
        raw = [data for data in planned if data.asset_key == dg.AssetKey("raw_events")]
        assert len(raw) == 1 and sorted(raw[0].partitions_subset.get_partition_keys()) == DAYS[1:]
        assert len(planned) == len({data.asset_key for data in planned})
        # Before it, the older day through the history job: landing to marts, no model.
        (history_id,) = summary["history_run_ids"]
        history = instance.get_run_by_id(history_id)
        assert history.status == dg.DagsterRunStatus.SUCCESS and history.job_name == "history_job"
        assert (
            history.tags["dagster/asset_partition_range_start"],
            history.tags["dagster/asset_partition_range_end"],
        ) == (DAYS[0], DAYS[0])
        built = {
            e.dagster_event.event_specific_data.materialization.asset_key.to_user_string()
            for e in instance.all_logs(history_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        }
        assert {"landing_logs", "raw_events", "fct_events", "training_examples"} <= built
        assert {"recommender_model", "drift_report"}.isdisjoint(built)
    assert f"of history_job (1 of 2: {DAYS[0]} .. {DAYS[0]}) launched" in stdout
    assert f"of reclake_main_job (2 of 2: {DAYS[1]} .. {DAYS[2]}) launched" in stdout
    for step in ("raw_events", "feature_tables", "recommender_model", "bento_model"):
        assert f"  {step} done in " in stdout, step
    assert "  check fct_events:fct_events_expectations done in " in stdout
    assert "      ranker epoch 1/" in stdout and "Running dbt command" not in stdout
    assert "parsed the project in full: " in stdout  # the first build of this deployment
    # Counted by the run worker: the config file reached it through the environment.
    assert summary["events_per_day"] == {day: 4000 for day in DAYS}
    # The summary names every output, and the pinned tag is the registered model's.
    settings = world[0]
    assert summary["partitions"] == DAYS  # every day of make run, the history run's too
    assert Path(summary["savedmodel_path"], "saved_model.pb").is_file()
    assert Path(summary["drift_report_path"]).read_text().lstrip().lower().startswith("<!doctype html")
    assert summary["bento_model_tag"].startswith("reclake_synthetic:")
    assert settings.current_model_tag_file.read_text().strip() == summary["bento_model_tag"]


def test_every_day_of_a_multi_day_run_has_its_own_checks_and_counts(world, main_run):
    _, _, home = world
    with dg.DagsterInstance.from_config(str(home)) as instance:
        summary = main_run[0]
        evaluations = [
            e.dagster_event.event_specific_data
            for run_id in [*summary["history_run_ids"], summary["run_id"]]
            for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        by_check: dict[str, dict] = {}
        for evaluation in evaluations:
            by_check.setdefault(evaluation.check_name, {})[evaluation.partition] = evaluation.passed
        for check in ("quarantine_share_within_threshold", "fct_events_expectations", "training_examples_expectations"):
            assert by_check[check] == {day: True for day in DAYS}, check
        # Whole-table checks are unpartitioned by design.
        assert by_check["user_features_expectations"] == {None: True}
        for asset in ("landing_logs", "raw_events"):
            records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=10)
            counts = {
                r.partition_key: r.asset_materialization.metadata["dagster/row_count"].value for r in records.records
            }
            assert counts == {day: 4000 for day in DAYS}, asset


def test_make_run_built_every_asset_once_and_its_metrics_are_honest(world, main_run):
    """Before the daemon: every asset and day built, each impression once in the
    warehouse, every check passed (dbt's tests among them), and the ranker evaluated on
    the held-out newest day against the generator's truth."""
    import duckdb

    from automation.run_summary import check_outcomes

    settings, _, home = world
    summary = main_run[0]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key in ("landing_logs", "raw_events", "fct_events", "training_examples"):
            assert instance.get_materialized_partitions(dg.AssetKey(key)) == set(DAYS), key
        assert DAYS[-1] in instance.get_materialized_partitions(dg.AssetKey("drift_report"))
        for key in (
            "recommender_model", "bento_model", "dim_users", "dim_items", "user_features", "item_features",
            "dataset_splits", "data_docs", "online_features",
        ):  # fmt: skip
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key
        outcomes = check_outcomes(instance, summary["run_id"])
    assert summary["checks"]["failed"] == [] and all(outcomes.values()), outcomes
    for mart in ("fct_events", "training_examples", "user_features", "item_features"):
        assert outcomes[f"{mart}/{mart}_expectations"] is True, mart
    assert len([name for name in outcomes if name.startswith(("fct_events/", "training_examples/unique"))]) >= 3
    # dbt built the models and ran the data tests; the unit tests are CI's (test_dbt_project.py).
    (target,) = (PROJECT_ROOT / "dbt_project" / "target").glob(f"{summary['run_id'][:8]}-*")
    results = json.loads((target / "run_results.json").read_text())["results"]
    assert {result["unique_id"].split(".")[0] for result in results} == {"model", "test"}

    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        rows, distinct = con.execute("select count(*), count(distinct event_id) from fct_events").fetchone()
        per_day = dict(
            con.execute("select cast(event_date as varchar), count(*) from training_examples group by 1").fetchall()
        )
    assert rows == distinct == 4000 * len(DAYS)
    assert per_day == {day: 4000 for day in DAYS}

    metrics = summary["metrics"]
    assert metrics["ranking_examples"] == 4000  # the newest day, held out
    assert 0.5 < metrics["ranking_auc"] <= 1.0
    assert metrics["ranking_bayes_logloss"] < metrics["ranking_logloss"]
    assert 0.0 <= metrics["retrieval_recall_at_k"] <= 1.0


@pytest.fixture(scope="module")
def daemon(world, main_run):
    """A real ``dagster-daemon`` on the world's instance, started after ``make run``."""
    _, env, home = world
    log = (home / "daemon.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    yield process
    stop_process_group(process, signal.SIGINT, timeout=60)
    log.close()


def _land(settings, day: dt.date, events_per_day: int | None = None) -> None:
    """Deliver ``day`` of the synthetic world to the landing zone, as a log shipper would."""
    import dataclasses

    from reclake.lake import Lake
    from sources.landing_writer import land_synthetic_day
    from sources.synthetic import SyntheticWorld, generate_day

    synthetic = settings.synthetic
    if events_per_day:
        synthetic = dataclasses.replace(synthetic, events_per_day=events_per_day)
    world = SyntheticWorld.create(synthetic)
    land_synthetic_day(Lake(settings.lake_root), generate_day(synthetic, day, world))


@pytest.fixture(scope="module")
def new_day_run(world, main_run, daemon):
    """``NEW_DAY`` landed after ``make run``: the sensor run it starts, once finished, and
    the model tag pinned before it."""
    settings, _, home = world
    pinned_before = settings.current_model_tag_file.read_text().strip()
    _land(settings, NEW_DAY)
    return _wait_for_sensor_runs(home, daemon, count=1), pinned_before


def test_a_new_landed_day_ends_in_a_new_model_and_its_drift_report(world, new_day_run):
    """The sensor sees the day, the queue launches exactly one run, the run retrains,
    registers (and pins, when promoted) a model and reports the day's drift."""
    settings, _, home = world
    run, pinned_before = new_day_run
    assert run.status == dg.DagsterRunStatus.SUCCESS, (home / "daemon.log").read_text()[-4000:]
    assert run.job_name == "ingest_to_serve_job" and run.tags["dagster/partition"] == NEW_DAY.isoformat()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        served = _materialization(instance, run.run_id, "bento_model")
        drift = _materialization(instance, run.run_id, "drift_report")
        dbt_lines = [e.message for e in instance.all_logs(run.run_id) if e.message.startswith("dbt build of ")]
    # Another window, the same vars: dbt reparsed only what changed since make run's build.
    assert dbt_lines and dbt_lines[0].startswith(f"dbt build of {NEW_DAY.isoformat()}:"), dbt_lines
    assert dbt_lines[0].endswith("; parsed only the files that changed"), dbt_lines
    assert served["registered_tag"] != pinned_before
    assert re.search(r"champion \d\.\d{4}", served["promotion_reason"])  # the served model was scored
    assert pinned_before in served["versions"]  # both stay in the store
    pinned_now = settings.current_model_tag_file.read_text().strip()
    expected = served["registered_tag"] if served["stage"] == "champion" else pinned_before
    assert pinned_now == expected == served["bento_model_tag"]
    assert drift["status"] == "reported"
    assert Path(drift["report_path"]).read_text().lstrip().lower().startswith("<!doctype html")
    assert f"dt={NEW_DAY.isoformat()}" in drift["report_path"]

    # The serve command in bento_model's metadata works when pasted (on a free port).
    command = served["serve_command"].replace("--port 3001", f"--port {free_port()}")
    assert "BENTOML_HOME=" in command and "--port 3000" not in served["serve_command"]
    assert "RECLAKE_ONLINE_STORE_URL=" in command and "RECLAKE_PINNED_TAG_FILE=" in command
    _serve_and_call(command, home / "pasted-serve.log", settings)


def test_a_redelivered_day_reruns_it_and_the_ingested_days_after_it(world, new_day_run, daemon):
    """Day 3 delivered again with other content: one run over days 3 and 4, whose trailing
    features read day 3, and bronze holds the new delivery."""
    import pandas as pd

    settings, _, home = world
    redelivered = dt.date.fromisoformat(DAYS[-1])
    _land(settings, redelivered, events_per_day=3000)
    run = _wait_for_sensor_runs(home, daemon, count=2)
    assert run.status == dg.DagsterRunStatus.SUCCESS, (home / "daemon.log").read_text()[-4000:]
    assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
        DAYS[-1],
        NEW_DAY.isoformat(),
    )
    bronze = pd.read_parquet(Path(settings.lake_root) / "bronze" / "synthetic" / f"dt={DAYS[-1]}")
    assert len(bronze) == 3000


@pytest.fixture(scope="module")
def ui(world, new_day_run, tmp_path_factory):
    """The UI and the report servers on the world's instance once the loop has run (as a
    user's ``make ui`` after ``make run`` and a day), and a browser: (UI URL, browser)."""
    settings, env, _ = world
    with ui_servers(env, settings, tmp_path_factory.mktemp("ui")) as base, chromium() as browser:
        yield base, browser


def test_every_report_opens_from_its_asset_over_http(world, new_day_run, ui):
    """The new day's drift report, the Data Docs and each of its checks' validation pages
    answer from the report server ``make ui`` starts, at the URLs in their metadata."""
    settings, _, home = world
    run, _ = new_day_run
    with dg.DagsterInstance.from_config(str(home)) as instance:
        urls = [
            _materialization(instance, run.run_id, "drift_report")["report_url"],
            _materialization(instance, run.run_id, "data_docs")["index_url"],
        ]
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            page = entry.dagster_event.event_specific_data.metadata.get("data_docs_url")
            urls += [page.value] if page is not None else []
    assert len(urls) >= 2 + 2, urls  # a page per event mart of the day, at least
    for url in urls:
        assert url.startswith(settings.reports_url + "/"), url
        page = requests.get(url, timeout=30)
        assert page.status_code == 200 and page.text.lstrip().lower().startswith("<!doctype html"), url
    index = requests.get(settings.reports_url + "/", timeout=30).text
    assert f"dt%3D{NEW_DAY.isoformat()}/drift_report.html" in index and "data_docs/index.html" in index


@needs_chromium
def test_the_asset_graph_renders_every_group(ui):
    base, browser = ui
    groups = ("landing", "bronze", "staging", "intermediate", "marts", "quality", "datasets", "models", "serving",
              "monitoring")  # fmt: skip
    open_page(browser, f"{base}/asset-groups", "Global asset lineage", *groups)
    screenshot(browser, "asset_graph")


@needs_chromium
def test_every_partition_is_materialized(ui):
    if dt.datetime.now(dt.UTC).date() != TODAY:
        pytest.skip("the UTC day changed during the module: the calendar's newest day is missing by design")
    base, browser = ui
    days = [*DAYS, NEW_DAY.isoformat()]
    text = open_page(browser, f"{base}/assets/raw_events?view=partitions", f"Materialized ({len(days)})")
    assert "Missing (0)" in text and "Failed (0)" in text
    assert all(day in text for day in days)
    screenshot(browser, "raw_events_partitions")


@needs_chromium
def test_the_new_days_drift_report_opens_from_its_partition(world, ui):
    settings, _, _ = world
    base, browser = ui
    links = _drift_report_links(browser, base, "report_url", settings.reports_url)
    assert links and links[0].endswith(f"dt={NEW_DAY}/drift_report.html"), links
    screenshot(browser, "drift_report_partition")
    open_page(browser, links[0], "Dataset Drift")  # Evidently's report, rendered by its own scripts


@needs_chromium
def test_the_evidently_dashboard_opens_from_the_drift_reports_partition(world, ui):
    settings, _, _ = world
    base, browser = ui
    links = _drift_report_links(browser, base, "evidently_url", settings.evidently_ui_url)
    assert links and "/projects/" in links[0], links
    # Evidently's UI renders the project's dashboard by its own scripts: the drift tab's panels.
    open_page(browser, links[0], "Share of drifted columns", seconds=90)
    screenshot(browser, "evidently_dashboard")


def _drift_report_links(browser, base: str, field: str, prefix: str) -> list[str]:
    """Open ``drift_report``'s ``NEW_DAY`` partition in the UI at ``base``, wait for its
    ``field`` metadata, and return the page's links that start with ``prefix``."""
    open_page(browser, f"{base}/assets/drift_report?view=partitions&partition={NEW_DAY}", field)
    return links_to(browser, prefix)


def _wait_for_sensor_runs(home: Path, daemon: subprocess.Popen, count: int) -> dg.DagsterRun:
    """The ``count``-th run the landing sensor launched, once finished; fails if more follow."""
    deadline = time.monotonic() + LOOP_TIMEOUT_S

    def sensor_runs(instance):
        return instance.get_runs(dg.RunsFilter(tags={"reclake/trigger": "landing_sensor"}))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            assert daemon.poll() is None, (home / "daemon.log").read_text()[-4000:]
            runs = sensor_runs(instance)  # newest first
            assert len(runs) <= count, [r.tags for r in runs]
            if len(runs) == count and runs[0].is_finished:
                time.sleep(SENSOR_INTERVAL_S + 5)  # one more sensor tick: no further run may follow
                assert len(sensor_runs(instance)) == count, [r.tags for r in sensor_runs(instance)]
                return runs[0]
            time.sleep(2)
    raise AssertionError(f"no finished sensor run in {LOOP_TIMEOUT_S} s: " + (home / "daemon.log").read_text()[-4000:])


def _materialization(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict:
    (entry,) = [
        e
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if e.dagster_event.event_specific_data.materialization.asset_key == dg.AssetKey(asset)
    ]
    metadata = entry.dagster_event.event_specific_data.materialization.metadata
    return {key: value.value for key, value in metadata.items()}


def _serve_and_call(command: str, log_path: Path, settings) -> None:
    """Run the pasted shell ``command`` and ask the server it starts for its model, and
    for recommendations: a known user's from the model, an unknown user's from popularity,
    and a malformed request's 4xx."""
    import duckdb

    with duckdb.connect(settings.warehouse_path, read_only=True) as con:
        known_user = con.execute("select user_id from user_features order by user_events_7d desc limit 1").fetchone()[0]
    context = {"device": "mobile", "slot_position": 1}
    port = int(command.rsplit("--port ", 1)[1].split()[0])
    with running_server(["bash", "-c", command], port, process_env({}), log_path) as base_url:
        info = requests.post(f"{base_url}/model_info", json={}, timeout=30)
        assert info.status_code == 200 and info.json()["model_version"]
        assert info.json()["online_store"].startswith("embedded")
        known = requests.post(
            f"{base_url}/recommend", json={"user_id": known_user, "k": 5, "context": context}, timeout=30
        )
        assert known.status_code == 200, known.text
        body = known.json()
        assert body["fallback"] is None and body["model_version"] == info.json()["model_version"]
        scores = [item["score"] for item in body["items"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        unknown = requests.post(
            f"{base_url}/recommend", json={"user_id": "nobody", "k": 3, "context": context}, timeout=30
        )
        assert unknown.status_code == 200 and unknown.json()["fallback"] == "popularity"
        bad = requests.post(f"{base_url}/recommend", json={"user_id": known_user, "k": 0}, timeout=30)
        assert 400 <= bad.status_code < 500, bad.text

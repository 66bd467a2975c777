"""Settings: defaults, a config file and RECLAKE_* variables, with clear errors."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest

from reclake.settings import DEMO_START_FILE, PROJECT_ROOT, load_settings, record_demo_start

pytestmark = pytest.mark.unit


def test_defaults_live_under_the_project_state_folder():
    settings = load_settings({"RECLAKE_SYNTHETIC_START_DATE": "2024-03-01"})
    assert settings.source == "synthetic"
    assert Path(settings.state_dir) == PROJECT_ROOT / ".reclake"
    assert Path(settings.lake_root) == Path(settings.state_dir) / "synthetic" / "lake"
    assert settings.synthetic.days == 7 and settings.synthetic.events_per_day == 50_000
    assert settings.run_days()[0].isoformat() == "2024-03-01" and len(settings.run_days()) == 7
    assert settings.partitions_start == "2024-03-01"


def test_the_demo_window_ends_yesterday_and_stays_once_recorded(tmp_path):
    """A new demo's days are the seven that end yesterday, so its partitions (which end
    yesterday) are all filled by one run; once recorded, the window's start stays as the
    calendar moves on, and the next day to land is the next calendar day."""
    environ = {"RECLAKE_STATE_DIR": str(tmp_path)}
    today = dt.date(2026, 12, 3)
    settings = load_settings(environ, today=today)
    days = settings.run_days()
    assert (days[0], days[-1], len(days)) == (dt.date(2026, 11, 26), dt.date(2026, 12, 2), 7)
    assert settings.partitions_start == "2026-11-26" and settings.synthetic.start_date == "2026-11-26"
    partitions = dg.DailyPartitionsDefinition(start_date=settings.partitions_start)
    assert partitions.get_partition_keys(current_time=dt.datetime(2026, 12, 3, 9, tzinfo=dt.UTC)) == [
        day.isoformat() for day in days
    ]

    later = dt.date(2026, 12, 20)
    assert load_settings(environ, today=later).run_days()[0] == dt.date(2026, 12, 13)  # not recorded: moves
    recorded = record_demo_start(settings)
    assert recorded == tmp_path / "synthetic" / DEMO_START_FILE
    assert load_settings(environ, today=later).run_days() == days
    assert record_demo_start(load_settings(environ, today=later)) == recorded
    assert recorded.read_text().strip() == "2026-11-26"

    pinned = load_settings({**environ, "RECLAKE_SYNTHETIC_START_DATE": "2024-03-01"}, today=later)
    assert pinned.run_days()[0] == dt.date(2024, 3, 1) and pinned.partitions_start == "2024-03-01"
    assert record_demo_start(load_settings({**environ, "RECLAKE_SOURCE": "criteo"})) is None


def test_config_file_then_environment(tmp_path):
    config = tmp_path / "reclake.yaml"
    config.write_text("lake_root: s3://bucket/lake\ntraining_window_days: 5\nsynthetic:\n  days: 3\n  seed: 11\n")
    settings = load_settings({"RECLAKE_CONFIG": str(config), "RECLAKE_SYNTHETIC_SEED": "12"})
    assert settings.lake_root == "s3://bucket/lake"
    assert settings.training_window_days == 5
    assert settings.synthetic.days == 3 and settings.synthetic.seed == 12


def test_state_dir_moves_the_default_lake_and_warehouse(tmp_path):
    settings = load_settings({"RECLAKE_STATE_DIR": str(tmp_path)})
    assert settings.lake_root == str(tmp_path / "synthetic" / "lake")
    assert settings.warehouse_path == str(tmp_path / "synthetic" / "warehouse.duckdb")
    assert settings.bentoml_home == tmp_path / "bentoml"


def test_each_source_gets_its_own_lake_warehouse_and_served_model(tmp_path):
    settings = load_settings({"RECLAKE_STATE_DIR": str(tmp_path), "RECLAKE_SOURCE": "criteo"})
    assert settings.lake_root == str(tmp_path / "criteo" / "lake")
    assert settings.current_model_tag_file == tmp_path / "criteo" / "current_model_tag"
    assert settings.bento_model_name == "reclake_criteo"
    assert settings.load_feature_spec().source == "criteo"


def test_source_config_paths_are_relative_to_the_file_and_options_are_json_in_the_environment(tmp_path):
    config = tmp_path / "configs" / "criteo.yaml"
    config.parent.mkdir()
    config.write_text(
        "source: criteo\nsource_path: ../data/day_0.gz\nsource_options: {rows_per_day: 10}\n"
        "partitions_start: '2014-01-01'\npartitions_end: '2014-01-03'\n"
    )
    settings = load_settings({"RECLAKE_CONFIG": str(config)})
    assert settings.source_path == str(tmp_path / "data" / "day_0.gz")
    assert settings.source_options == {"rows_per_day": 10}
    assert [d.isoformat() for d in settings.run_days()] == ["2014-01-01", "2014-01-02", "2014-01-03"]
    overridden = load_settings({"RECLAKE_CONFIG": str(config), "RECLAKE_SOURCE_OPTIONS": '{"rows_per_day": 5}'})
    assert overridden.source_options == {"rows_per_day": 5}
    with pytest.raises(ValueError, match="source_options"):
        load_settings({"RECLAKE_SOURCE_OPTIONS": "[1, 2]"})
    with pytest.raises(ValueError, match="partitions_end"):
        load_settings({"RECLAKE_SOURCE": "criteo"}).run_days()


def test_every_packaged_source_config_loads(tmp_path):
    for config in sorted((Path(__file__).parent.parent / "configs").glob("*.yaml")):
        settings = load_settings({"RECLAKE_CONFIG": str(config)})
        assert settings.source == config.stem
        assert settings.load_feature_spec().source == settings.source
        assert settings.run_days(), config


def test_an_unquoted_date_in_source_options_travels_as_text(tmp_path):
    config = tmp_path / "criteo.yaml"
    config.write_text("source: criteo\nsource_options:\n  start_date: 2014-01-01\n  rows_per_day: 50\n")
    settings = load_settings({"RECLAKE_CONFIG": str(config)})
    assert settings.source_options == {"start_date": "2014-01-01", "rows_per_day": 50}
    json.dumps(settings.source_options)  # what Dagster's config needs


def test_unknown_keys_and_bad_values_are_named(tmp_path):
    config = tmp_path / "reclake.yaml"
    config.write_text("lake_rot: /tmp/x\n")
    with pytest.raises(ValueError, match="lake_rot"):
        load_settings({"RECLAKE_CONFIG": str(config)})
    with pytest.raises(ValueError):
        load_settings({"RECLAKE_SYNTHETIC_DAYS": "seven"})
    with pytest.raises(FileNotFoundError, match="RECLAKE_CONFIG"):
        load_settings({"RECLAKE_CONFIG": str(tmp_path / "missing.yaml")})


def test_the_data_docs_retention_reaches_the_site_the_checks_record_into(tmp_path):
    from resources import build_resources

    settings = load_settings({"RECLAKE_STATE_DIR": str(tmp_path), "RECLAKE_DATA_DOCS_RESULTS_PER_SUITE": "365"})
    site = build_resources(settings)["pipeline"].data_docs_site()
    assert (site.root, site.results_per_suite) == (settings.data_docs_dir, 365)
    assert load_settings({}).data_docs_results_per_suite == 90
    with pytest.raises(ValueError, match="data_docs_results_per_suite"):
        load_settings({"RECLAKE_DATA_DOCS_RESULTS_PER_SUITE": "0"})


def test_the_automatic_ranker_choice_is_configured_by_file_or_environment(tmp_path):
    defaults = load_settings({})
    assert defaults.auto_candidates[:4] == ("hashed_lr", "fm", "deepfm", "dcn_v2_stacked")
    assert {"esmm", "mmoe"} <= set(defaults.auto_candidates) and defaults.auto_sweep_trials == 0
    config = tmp_path / "reclake.yaml"
    config.write_text("ranker_config: auto\nauto_candidates: [hashed_lr, fm]\nauto_budget_s: 30\n")
    settings = load_settings({"RECLAKE_CONFIG": str(config)})
    assert (settings.ranker_config, settings.auto_candidates, settings.auto_budget_s) == (
        "auto",
        ("hashed_lr", "fm"),
        30.0,
    )
    overridden = load_settings({"RECLAKE_AUTO_CANDIDATES": "deepfm, esmm", "RECLAKE_AUTO_SWEEP_TRIALS": "5"})
    assert overridden.auto_candidates == ("deepfm", "esmm") and overridden.auto_sweep_trials == 5
    with pytest.raises(ValueError, match="auto_budget_s"):
        load_settings({"RECLAKE_AUTO_BUDGET_S": "-1"})
    with pytest.raises(ValueError, match="auto_candidates"):
        load_settings({"RECLAKE_AUTO_CANDIDATES": "fm,,deepfm"})


def test_the_online_store_defaults_to_the_sources_embedded_file(tmp_path):
    """One embedded store per source in its state folder, unless a URL is set (Redis,
    or a path relative to the config file); the resource's namespace is the source."""
    from resources import build_resources
    from serving.online_store import EmbeddedStore, RedisStore, open_store

    settings = load_settings({"RECLAKE_STATE_DIR": str(tmp_path), "RECLAKE_SOURCE": "criteo"})
    assert settings.online_store_url is None
    assert settings.online_store == f"sqlite://{tmp_path.resolve()}/criteo/online_store.sqlite"
    store = open_store(settings.online_store)
    assert isinstance(store, EmbeddedStore) and store.path == tmp_path.resolve() / "criteo" / "online_store.sqlite"
    resource = build_resources(settings)["online_store"]
    assert (resource.url, resource.namespace) == (settings.online_store, "criteo")

    redis_url = "redis://127.0.0.1:6390/1"
    settings = load_settings({"RECLAKE_STATE_DIR": str(tmp_path), "RECLAKE_ONLINE_STORE_URL": redis_url})
    assert settings.online_store == redis_url and isinstance(open_store(settings.online_store), RedisStore)

    config = tmp_path / "configs" / "reclake.yaml"
    config.parent.mkdir()
    config.write_text("online_store_url: ../stores/online.sqlite\n")
    settings = load_settings({"RECLAKE_CONFIG": str(config)})
    assert settings.online_store == str(tmp_path.resolve() / "stores" / "online.sqlite")


def test_make_run_refuses_days_that_have_not_ended(tmp_path):
    """A recorded demo start with more days than have passed since: `make run` says which
    day is not over and how to move the window, before launching anything."""
    import subprocess
    import sys

    from conftest import process_env

    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / DEMO_START_FILE).write_text(start.isoformat())
    env = process_env({"RECLAKE_STATE_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster_home")})
    env.pop("RECLAKE_SYNTHETIC_START_DATE")
    completed = subprocess.run(
        [sys.executable, "-m", "automation.main_run"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "has not ended yet" in completed.stderr and DEMO_START_FILE in completed.stderr
    home = tmp_path / "dagster_home"
    if home.exists():  # the instance may have been prepared; no run was created in it
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_runs_count() == 0

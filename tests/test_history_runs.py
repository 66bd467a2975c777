"""Long histories run a year per run: ``make run``'s plan of runs (``automation.main_run``),
the history job it launches for the older years, and the UI's backfill policy."""

import datetime as dt
import warnings

import dagster as dg
import pytest

# Backfill policies (beta) and partitioned checks (preview), as definitions.py says.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from conftest import make_settings  # noqa: E402

from assets.partitions import MAX_DAYS_PER_RUN  # noqa: E402
from automation.main_run import planned_runs  # noqa: E402
from automation.run_summary import HISTORY_JOB, MAIN_JOB  # noqa: E402

START = dt.date(2020, 5, 10)


def _days(count: int) -> list[dt.date]:
    return [START + dt.timedelta(days=n) for n in range(count)]


def test_a_short_history_is_one_run_of_the_main_job():
    days = _days(7)
    assert planned_runs(days, MAX_DAYS_PER_RUN) == [(MAIN_JOB, days)]
    assert planned_runs(days, 7) == [(MAIN_JOB, days)]


def test_older_days_go_through_the_history_job_oldest_first_then_the_newest_through_the_main_job():
    days = _days(5)
    # The day left over after whole runs goes first: the shortest run starts soonest.
    assert planned_runs(days, 2) == [
        (HISTORY_JOB, days[0:1]),
        (HISTORY_JOB, days[1:3]),
        (MAIN_JOB, days[3:5]),
    ]
    days = _days(6)
    assert planned_runs(days, 2) == [(HISTORY_JOB, days[0:2]), (HISTORY_JOB, days[2:4]), (MAIN_JOB, days[4:6])]


def test_six_years_of_days_run_as_a_year_per_run():
    days = _days(2400)
    runs = planned_runs(days, MAX_DAYS_PER_RUN)
    assert [job for job, _ in runs] == [HISTORY_JOB] * 6 + [MAIN_JOB]
    # 2,035 older days: the 210 left over after five whole years first, then the years.
    assert [len(chunk) for _, chunk in runs] == [210] + [MAX_DAYS_PER_RUN] * 6
    assert [day for _, chunk in runs for day in chunk] == days  # every day once, in order
    assert runs[-1][1] == days[-MAX_DAYS_PER_RUN:]


def test_a_run_needs_at_least_one_day():
    with pytest.raises(ValueError, match="at least 1"):
        planned_runs(_days(3), 0)


def test_the_history_job_builds_the_feature_path_and_its_checks_only(tmp_path, session_state_dir):
    from definitions import build_definitions

    defs = build_definitions(make_settings(tmp_path, session_state_dir))
    history = defs.resolve_job_def(HISTORY_JOB)
    steps = {node.name for node in history.nodes_in_topological_order}
    assert {"landing_logs", "raw_events", "feature_tables"} <= steps
    assert {"recommender_model", "drift_report", "dataset_splits", "bento_model"}.isdisjoint(steps)
    # The marts' blocking suites gate each year as they gate the main job.
    checks = {key.name for key in history.asset_layer.asset_graph.asset_check_keys}
    assert {"fct_events_expectations", "training_examples_expectations", "quarantine_share_within_threshold"} <= checks
    assert history.partitions_def == defs.resolve_job_def(MAIN_JOB).partitions_def


def test_a_backfill_from_the_ui_runs_at_most_a_year_per_run(tmp_path, session_state_dir):
    from definitions import build_definitions

    defs = build_definitions(make_settings(tmp_path, session_state_dir))
    day_shaped = [spec.key for spec in defs.resolve_all_asset_specs() if spec.partitions_def is not None]
    assert dg.AssetKey("raw_events") in day_shaped and dg.AssetKey("training_examples") in day_shaped
    graph = defs.resolve_asset_graph()
    for key in day_shaped:
        if key.path[0] == "zoo_model":  # partitioned by model config, not by day
            continue
        policy = graph.get(key).backfill_policy
        assert policy is not None and policy.max_partitions_per_run == MAX_DAYS_PER_RUN, key

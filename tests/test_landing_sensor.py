"""The landing sensor launches each newly landed day exactly once, across restarts too."""

import datetime as dt

import dagster as dg
import pytest
from conftest import make_settings

from automation.arrivals import decide_arrivals
from reclake.lake import Lake
from reclake.settings import SyntheticSettings
from sources.landing_writer import land_synthetic_day
from sources.synthetic import generate_day

DAY1, DAY2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
TINY = SyntheticSettings(events_per_day=50, n_users=10, n_items=5)


@pytest.fixture
def sensor_world(tmp_path, session_state_dir):
    from definitions import build_definitions

    settings = make_settings(tmp_path, session_state_dir)
    defs = build_definitions(settings)
    home = tmp_path / "dagster_home"
    home.mkdir()
    return defs, Lake(settings.lake_root), home


def tick(defs, instance, cursor):
    """One evaluation of the sensor, as the daemon would run it."""
    sensor = defs.get_sensor_def("landing_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources)
    result = sensor(context)
    return [request.partition_key for request in result.run_requests], [r.run_key for r in result.run_requests], result.cursor


def test_new_day_is_launched_once_even_after_a_restart(sensor_world):
    defs, lake, home = sensor_world
    land_synthetic_day(lake, generate_day(TINY, DAY1))
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        launched, keys, cursor = tick(defs, instance, None)
        assert launched == ["2024-03-01"]
        assert tick(defs, instance, cursor)[0] == []

    # Restart: a new instance process on the same home, with the cursor Dagster stored.
    land_synthetic_day(lake, generate_day(TINY, DAY2))
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        launched, second_keys, cursor = tick(defs, instance, cursor)
        assert launched == ["2024-03-02"]
        assert tick(defs, instance, cursor)[0] == []
        assert not set(keys) & set(second_keys)


def test_redelivered_day_is_launched_again_with_a_new_run_key(sensor_world):
    defs, lake, home = sensor_world
    land_synthetic_day(lake, generate_day(TINY, DAY1))
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        _, first_keys, cursor = tick(defs, instance, None)
        land_synthetic_day(lake, generate_day(SyntheticSettings(events_per_day=60, n_users=10, n_items=5), DAY1))
        launched, keys, _ = tick(defs, instance, cursor)
    assert launched == ["2024-03-01"] and keys != first_keys


def test_days_ingested_by_other_runs_are_not_repeated():
    landed = {DAY1: "a", DAY2: "b"}
    arrivals, cursor = decide_arrivals(landed, None, ingested={DAY1})
    assert [a.day for a in arrivals] == [DAY2]
    assert decide_arrivals(landed, cursor, ingested={DAY1})[0] == []
    arrivals, _ = decide_arrivals({DAY1: "a2", DAY2: "b"}, cursor, ingested={DAY1, DAY2})
    assert [a.day for a in arrivals] == [DAY1]

"""The landing sensor launches each newly landed day exactly once, across restarts too."""

import datetime as dt
import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest
from conftest import make_settings

from automation.arrivals import decide_arrivals
from reclake.lake import FINGERPRINT_VERSION, Lake
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
    return (
        [request.partition_key for request in result.run_requests],
        [r.run_key for r in result.run_requests],
        result.cursor,
    )


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
    landed = {DAY1: FINGERPRINT_VERSION + "a", DAY2: FINGERPRINT_VERSION + "b"}
    arrivals, cursor = decide_arrivals(landed, None, ingested={DAY1})
    assert [a.day for a in arrivals] == [DAY2]
    assert decide_arrivals(landed, cursor, ingested={DAY1})[0] == []
    arrivals, _ = decide_arrivals({**landed, DAY1: FINGERPRINT_VERSION + "a2"}, cursor, ingested={DAY1, DAY2})
    assert [a.day for a in arrivals] == [DAY1]


def test_a_cursor_of_the_older_fingerprint_format_is_adopted_without_a_run():
    old_cursor = json.dumps({"2024-03-01": "part-0.jsonl.gz:1234:1709251200.0"})
    landed = {DAY1: FINGERPRINT_VERSION + "part-0.jsonl.gz:0123456789abcdef"}
    arrivals, cursor = decide_arrivals(landed, old_cursor, ingested={DAY1})
    assert arrivals == [] and json.loads(cursor) == {"2024-03-01": landed[DAY1]}


def test_the_fingerprint_follows_content_not_file_times_or_markers(tmp_path):
    lake = Lake(str(tmp_path))
    land_synthetic_day(lake, generate_day(TINY, DAY1))
    folder = Path(lake.landing_dir("synthetic", DAY1))
    before = lake.landed_days("synthetic")[DAY1]
    (data_file,) = [f for f in folder.iterdir() if not f.name.startswith(("_", "."))]
    os.utime(data_file, (time.time() + 60, time.time() + 60))  # `touch`: same bytes, new mtime
    (folder / "_SUCCESS").write_bytes(b"")  # a shipper's marker is not data
    assert lake.landed_days("synthetic")[DAY1] == before
    data_file.write_bytes(data_file.read_bytes() + b"\n")  # other bytes: a re-delivery
    assert lake.landed_days("synthetic")[DAY1] != before


def test_a_late_or_redelivered_day_reruns_the_ingested_days_whose_features_it_feeds():
    landed = {DAY1: FINGERPRINT_VERSION + "a", DAY2: FINGERPRINT_VERSION + "b"}
    far = dt.date(2024, 4, 15)
    _, cursor = decide_arrivals({**landed, far: FINGERPRINT_VERSION + "c"}, None, ingested={DAY1, DAY2, far})
    (arrival,), _ = decide_arrivals({**landed, DAY1: FINGERPRINT_VERSION + "a2"}, cursor, {DAY1, DAY2, far}, 30)
    assert (arrival.day, arrival.last_day) == (DAY1, DAY2)  # not the day beyond the 30-day window


def test_the_sensor_requests_one_run_over_that_range(sensor_world):
    defs, lake, home = sensor_world
    for day in (DAY1, DAY2):
        land_synthetic_day(lake, generate_day(TINY, day))
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        for day in (DAY1, DAY2):
            instance.report_runless_asset_event(dg.AssetMaterialization("raw_events", partition=day.isoformat()))
        launched, _, cursor = tick(defs, instance, None)
        assert launched == []  # both ingested by another run already
        land_synthetic_day(lake, generate_day(SyntheticSettings(events_per_day=60, n_users=10, n_items=5), DAY1))
        sensor = defs.get_sensor_def("landing_sensor")
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources))
    (request,) = result.run_requests
    assert request.partition_key_range == dg.PartitionKeyRange("2024-03-01", "2024-03-02")

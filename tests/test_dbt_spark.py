"""The dbt project on Spark (the `spark` target: dbt-spark's session method, local pyspark)
builds the same marts as on DuckDB from the same bronze lake.

Both engines run the same two dbt commands on the synthetic spec: `build` (models and
unit tests) of the window of day 1, then `run` of the window of days 1 and 2 (re-running
day 1: on Spark its partitions are dropped and appended again). The data tests run on
Spark in tests/test_spark_job.py, as the job's asset checks; here they would add about a
second per test and per query. Spark runs in a child process, so its JVM ends with the builds; its
Parquet tables are read back from the Spark warehouse folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from dbt_support import (
    SPARK_SCHEMA,
    DbtInvocation,
    as_lists,
    build_vars,
    point_in_time_features,
    read_duckdb_table,
    read_spark_table,
    run_dbt,
    run_dbt_in_child,
    write_bronze_day,
)

from reclake.feature_spec import load_feature_spec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (java not on PATH)"),
]

SPEC = load_feature_spec("synthetic")
DAY_1, DAY_2, DAY_3 = "2024-03-04", "2024-03-05", "2024-03-06"
MARTS = {
    "fct_events": "event_id",
    "training_examples": "event_id",
    "dim_users": "user_id",
    "dim_items": "item_id",
    "user_features": "user_id",
    "item_features": "item_id",
}


def _impression(event_id: str, ts: str, user_id: str, item_id: str, clicked: int) -> dict[str, object]:
    return {
        "event_id": event_id,
        "event_ts": ts,
        "user_id": user_id,
        "item_id": item_id,
        "clicked": clicked,
        "converted": 0,
        "price": 12.5,
        "user_segment": f"seg_{user_id[-1]}",
        "category": f"cat_{item_id}",
        "device": "desktop",
        "slot_position": 1,
    }


EVENTS = {
    DAY_1: [
        _impression("a1", f"{DAY_1} 08:00:00", "u1", "i1", 1),
        _impression("a2", f"{DAY_1} 08:00:00", "u2", "i1", 0),  # a1's timestamp and item
        _impression("a3", f"{DAY_1} 17:45:10.250000", "u1", "i2", 1),
        _impression("a4", f"{DAY_1} 23:59:59.999999", "u2", "i2", 0),
    ],
    DAY_2: [
        _impression("b1", f"{DAY_2} 08:00:00", "u1", "i2", 0),  # a1 exactly one day earlier
        _impression("b2", f"{DAY_2} 09:30:00", "u3", "i1", 1),
    ],
}


@dataclass(frozen=True)
class Marts:
    """The marts of both engines after the two commands."""

    spark: dict[str, pd.DataFrame]
    duckdb: dict[str, pd.DataFrame]
    spark_warehouse: Path


@pytest.fixture(scope="module")
def marts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Marts]:
    work_dir = tmp_path_factory.mktemp("dbt_spark")
    lake_root = work_dir / "lake"
    for day, events in EVENTS.items():
        write_bronze_day(lake_root, SPEC, day, events)
    invocations = [
        DbtInvocation(build_vars(SPEC, lake_root, DAY_1, DAY_2), exclude=("test_type:data",)),
        DbtInvocation(build_vars(SPEC, lake_root, DAY_1, DAY_3), command="run"),
    ]
    spark_warehouse = work_dir / "spark-warehouse"
    run_dbt_in_child(work_dir / "spark", invocations, "spark", {"RECLAKE_SPARK_WAREHOUSE_DIR": str(spark_warehouse)})
    duckdb_warehouse = work_dir / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECLAKE_WAREHOUSE_PATH", str(duckdb_warehouse))
        run_dbt(work_dir / "duckdb", invocations)
        yield Marts(
            spark={table: read_spark_table(spark_warehouse, table, key) for table, key in MARTS.items()},
            duckdb={table: read_duckdb_table(duckdb_warehouse, table, key) for table, key in MARTS.items()},
            spark_warehouse=spark_warehouse,
        )


def _comparable(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Engine-neutral form of a mart: columns by name, rows by key, times as naive UTC
    timestamps, lists as tuples."""
    frame = frame[sorted(frame.columns)].sort_values(key, ignore_index=True)
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            frame[column] = values.dt.tz_convert("UTC").dt.tz_localize(None)
        elif column == "user_history":
            frame[column] = [tuple(items) for items in as_lists(values)]
        elif column == "event_date":
            frame[column] = pd.to_datetime(values)
    return frame


@pytest.mark.parametrize("table", list(MARTS))
def test_spark_builds_the_same_mart_as_duckdb(marts: Marts, table: str) -> None:
    spark, duckdb = marts.spark[table], marts.duckdb[table]
    assert not duckdb.empty
    assert sorted(spark.columns) == sorted(duckdb.columns)
    pd.testing.assert_frame_equal(
        _comparable(spark, MARTS[table]), _comparable(duckdb, MARTS[table]), check_dtype=False
    )


def test_spark_training_examples_match_the_definition(marts: Marts) -> None:
    events = pd.DataFrame([event for day in EVENTS.values() for event in day])
    expected = point_in_time_features(
        events.assign(event_ts=pd.to_datetime(events["event_ts"], format="ISO8601")), SPEC
    )
    actual = marts.spark["training_examples"][expected.columns].sort_values("event_id", ignore_index=True)
    assert as_lists(actual.pop("user_history")) == as_lists(expected.pop("user_history"))
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False)
    # b1 is a1's user one day later to the microsecond: the 1-day frame includes a1.
    b1 = actual.set_index("event_id").loc["b1"]
    assert (b1["user_events_1d"], b1["user_positives_1d"]) == (2, 2)


def test_spark_tables_are_partitioned_by_day_without_duplicates(marts: Marts) -> None:
    for table in ("fct_events", "training_examples"):
        folder = marts.spark_warehouse / f"{SPARK_SCHEMA}.db" / table
        assert sorted(path.name for path in folder.glob("event_date=*")) == [
            f"event_date={DAY_1}",
            f"event_date={DAY_2}",
        ]
        assert marts.spark[table]["event_id"].is_unique  # day 1 was built twice

"""The spec-driven mart suites run as SQL on a real DuckDB warehouse file (``validate_table``),
and the blocking check of ``assets.quality`` that runs them per day.

Tables are written from the frames of ``test_data_quality.mart_frame`` (several days
of events, or ids); each broken table plants one violation on one day, which the SQL
run must report and which the per-day runs must place on that day only.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import toy_examples
from test_data_quality import DAY, failed_checks, mart_frame, spec_of

from assets.quality import build_event_mart_checks
from monitoring import warehouse_sql
from monitoring.data_quality import EVENT_MARTS, MARTS, DataDocsSite, validate_mart, validate_table

DAYS = [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]


def days_frame(mart: str, source: str, rows_per_day: int = 40) -> pd.DataFrame:
    """``mart_frame`` rows spread over ``DAYS``, event ids unique across the days."""
    spec = spec_of(source)
    parts = []
    for offset, day in enumerate(DAYS):
        part = mart_frame(mart, spec, n=rows_per_day, seed=offset)
        shift = pd.Timedelta(days=(day - DAY).days)
        part["event_ts"] = part["event_ts"] + shift
        part["event_date"] = part["event_date"] + shift
        part["event_id"] = [f"{day.isoformat()}-{i}" for i in range(len(part))]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def write_table(database: Path, table: str, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as ``table`` into the DuckDB file (types as in the dbt marts)."""
    frame = frame.copy()
    if "event_date" in frame:
        frame["event_date"] = frame["event_date"].dt.date
    if "user_history" in frame:
        frame["user_history"] = frame["user_history"].map(list)  # VARCHAR[]
    with duckdb.connect(str(database)) as connection:
        connection.register("frame", frame)
        connection.execute(f"create or replace table {table} as select * from frame")
    return database


@pytest.mark.unit
def test_a_value_outside_the_spec_on_one_day_names_that_day(tmp_path):
    spec = spec_of("synthetic")
    frame = days_frame("training_examples", "synthetic")
    broken_day = DAYS[1]
    row = frame.index[frame["event_date"] == pd.Timestamp(broken_day)][3]
    frame.loc[row, "device"] = "smartwatch"
    database = write_table(tmp_path / "warehouse.duckdb", "training_examples", frame)

    together = validate_table(database, "training_examples", spec, days=DAYS)
    per_day = {day: validate_table(database, "training_examples", spec, days=[day]) for day in DAYS}

    assert together.success is False
    assert together.rows == len(frame)
    assert failed_checks(together) == {("expect_column_values_to_be_in_set", "device")}
    assert together.failed[0]["unexpected_sample"] == ["smartwatch"]
    assert together.failed[0]["unexpected_count"] == 1
    assert {day for day, result in per_day.items() if not result.success} == {broken_day}
    assert all(result.rows == 40 for result in per_day.values())


@pytest.mark.unit
def test_the_query_keeps_to_the_days(tmp_path):
    """Rows outside the validated days are not read, so they neither fail nor count."""
    spec = spec_of("criteo")
    frame = days_frame("fct_events", "criteo")
    frame.loc[0, "is_positive"] = 7  # on DAYS[0]
    database = write_table(tmp_path / "warehouse.duckdb", "fct_events", frame)

    later = validate_table(database, "fct_events", spec, days=DAYS[1:])
    first = validate_table(database, "fct_events", spec, days=DAYS[:1])

    assert (later.success, later.rows) == (True, 80)
    assert first.success is False
    assert ("expect_column_values_to_be_in_set", "is_positive") in failed_checks(first)


@pytest.mark.unit
def test_an_event_past_the_window_end_fails(tmp_path):
    """The suite parameters (first_day, last_day, window_end) compare as SQL literals."""
    spec = spec_of("synthetic")
    frame = days_frame("fct_events", "synthetic")
    database = write_table(tmp_path / "warehouse.duckdb", "fct_events", frame)
    with duckdb.connect(str(database)) as connection:
        connection.execute(
            "create view shifted as select * replace (event_ts + interval 1 day as event_ts) from fct_events"
        )

    result = validate_table(database, "fct_events", spec, days=DAYS, table="shifted")

    assert failed_checks(result) == {("expect_column_values_to_be_between", "event_ts")}
    assert result.failed[0]["unexpected_count"] == 40  # the last day's events, moved past window_end


@pytest.mark.unit
@pytest.mark.parametrize("source", ["synthetic", "movielens", "criteo"])
@pytest.mark.parametrize("mart", MARTS)
def test_sql_and_pandas_agree(tmp_path, source: str, mart: str):
    """Every expectation of every suite runs as SQL: on clean data all pass, none errors."""
    spec = spec_of(source)
    events = mart in EVENT_MARTS
    frame = days_frame(mart, source) if events else mart_frame(mart, spec)
    days = DAYS if events else None
    database = write_table(tmp_path / "warehouse.duckdb", mart, frame)

    sql = validate_table(database, mart, spec, days=days)
    in_memory = validate_mart(frame, mart, spec, days=days)

    assert sql.failed == [] and sql.success is True
    assert (sql.evaluated, sql.rows) == (in_memory.evaluated, in_memory.rows)


@pytest.mark.unit
def test_duplicate_key_and_pair_rule_fail_as_sql(tmp_path):
    spec = spec_of("movielens")
    frame = mart_frame("user_features", spec)
    frame.loc[1, "user_id"] = frame.loc[0, "user_id"]
    longest = max(spec.aggregates.windows_days)
    frame.loc[4, f"user_positives_{longest}d"] = frame.loc[4, f"user_events_{longest}d"] + 1
    database = write_table(tmp_path / "warehouse.duckdb", "user_features", frame)

    result = validate_table(database, "user_features", spec)

    assert failed_checks(result) == {
        ("expect_column_values_to_be_unique", "user_id"),
        ("expect_column_pair_values_a_to_be_greater_than_b", f"user_events_{longest}d, user_positives_{longest}d"),
    }
    by_type = {f["expectation_type"]: f for f in result.failed}
    assert by_type["expect_column_values_to_be_unique"]["unexpected_count"] == 2


@pytest.mark.unit
def test_the_file_is_released_and_readers_coexist(tmp_path):
    """A plain read-only connection may be open during the run; after it, a writer can open the file."""
    spec = spec_of("synthetic")
    database = write_table(tmp_path / "warehouse.duckdb", "item_features", mart_frame("item_features", spec))

    with duckdb.connect(str(database), read_only=True) as reader:  # what WarehouseResource.connect opens
        assert validate_table(database, "item_features", spec).success
        assert reader.execute("select count(*) from item_features").fetchone() == (60,)
    assert warehouse_sql.close_connections(database) == 0
    with duckdb.connect(str(database)) as writer:  # fails while any read-only connection is open
        writer.execute("create table after_the_check as select 1 as one")


@pytest.mark.unit
def test_sql_results_are_recorded_in_the_data_docs_site(tmp_path):
    spec = spec_of("synthetic")
    frame = days_frame("fct_events", "synthetic")
    frame.loc[0, "device"] = "smartwatch"
    database = write_table(tmp_path / "warehouse.duckdb", "fct_events", frame)
    site = DataDocsSite(tmp_path / "data_docs")

    failed = validate_table(database, "fct_events", spec, days=DAYS, site=site)
    passed = validate_table(database, "fct_events", spec, days=DAYS[1:], site=site)

    assert (failed.success, passed.success) == (False, True)
    assert failed.docs_page is not None and "smartwatch" in open(failed.docs_page).read()
    history = {h.suite: h for h in site.histories(source="synthetic")}["synthetic.fct_events"]
    assert (history.runs, history.passed_runs) == (2, 1)
    # refresh() renders the newest validation and the index only (what the data_docs asset
    # runs after each run's checks); build() renders every stored validation again.
    shutil.rmtree(site.site_dir)
    assert site.refresh().is_file() and Path(passed.docs_page).is_file()
    assert not Path(failed.docs_page).exists()
    assert site.build().is_file() and Path(failed.docs_page).is_file()


@pytest.mark.unit
def test_bad_arguments_are_named(tmp_path):
    spec = spec_of("synthetic")
    with pytest.raises(FileNotFoundError, match="does not exist yet"):
        validate_table(tmp_path / "missing.duckdb", "user_features", spec)
    database = write_table(tmp_path / "warehouse.duckdb", "user_features", mart_frame("user_features", spec))
    with pytest.raises(ValueError, match="fct_events: pass the validated days"):
        validate_table(database, "fct_events", spec)
    with pytest.raises(ValueError, match="not a table name"):
        validate_table(database, "user_features", spec, table="user_features; drop table x")
    with duckdb.connect(str(database)) as writer:  # nothing was left open
        writer.execute("drop table user_features")


@pytest.mark.integration
def test_the_blocking_check_fails_the_broken_day_only_and_links_its_page(tmp_path):
    """The check of a three-day run: one day with a planted violation fails, the other two pass."""
    from resources.lake import LakeResource
    from resources.warehouse import WarehouseResource

    frame = days_frame("fct_events", "synthetic")
    broken_day = DAYS[2]
    frame.loc[frame.index[frame["event_date"] == pd.Timestamp(broken_day)][0], "device"] = "smartwatch"
    database = tmp_path / "warehouse.duckdb"
    partitions = dg.DailyPartitionsDefinition(start_date=DAYS[0].isoformat())

    @dg.asset(name="fct_events", partitions_def=partitions)
    def fct_events() -> None:  # what dbt would have built
        write_table(database, "fct_events", frame)

    check = build_event_mart_checks(partitions)[0]
    resources = {
        "warehouse": WarehouseResource(path=str(database)),
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "pipeline": toy_examples.toy_pipeline(tmp_path),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [fct_events, check],
        resources=resources,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
        raise_on_error=False,
    )

    assert not result.success  # a failed blocking check fails its step
    evaluations = {
        entry.dagster_event.event_specific_data.partition: entry.dagster_event.event_specific_data
        for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }
    assert {day: evaluation.passed for day, evaluation in evaluations.items()} == {
        DAYS[0].isoformat(): True,
        DAYS[1].isoformat(): True,
        broken_day.isoformat(): False,
    }
    failed = evaluations[broken_day.isoformat()].metadata
    assert failed["validated"].value == broken_day.isoformat()
    assert failed["rows"].value == 40
    assert [f["column"] for f in failed["failed_expectations"].value] == ["device"]
    assert "smartwatch" in Path(failed["data_docs_page"].value).read_text()
    with duckdb.connect(str(database)) as writer:  # the check let go of the file
        writer.execute("drop table fct_events")

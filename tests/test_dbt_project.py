"""Real `dbt build` runs of dbt_project/ on DuckDB over a tiny bronze lake.

One module-scoped scenario runs three partition-window builds and snapshots the warehouse
after each one:

1. day 1 (five impressions) is built;
2. day 1 is re-delivered without one impression and rebuilt (re-run of the same window);
3. day 2 arrives late and is built on its own window.

Each build also runs every data test and unit test of the project, so a failing dbt test
fails the scenario. The expected feature values below are worked out by hand from the
events in this file, with the default vars (lookback 7 days, ctr_prior 0.05,
ctr_prior_weight 20: smoothed CTR = (clicks + 1) / (impressions + 20)).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dbt.cli.main import dbtRunner

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"

DAY_1 = "2024-03-04"  # a Monday
DAY_2 = "2024-03-05"
DAY_3 = "2024-03-06"

# The bronze events contract (docs/data-contracts.md), in column order.
BRONZE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_ts", pa.timestamp("us")),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("user_segment", pa.string()),
        ("device", pa.string()),
        ("slot_position", pa.int64()),
        ("category", pa.string()),
        ("price", pa.float64()),
        ("bid_price", pa.float64()),
        ("market_price", pa.float64()),
        ("clicked", pa.int64()),
        ("converted", pa.int64()),
    ]
)

LOOKBACK = timedelta(days=7)
CTR_PRIOR = 0.05
CTR_PRIOR_WEIGHT = 20


def _event(
    event_id: str,
    ts: str,
    user_id: str,
    item_id: str,
    device: str,
    clicked: int,
    converted: int = 0,
    user_segment: str = "seg_0",
) -> dict[str, object]:
    """Returns one bronze row; item attributes are derived from the item id."""
    return {
        "event_id": event_id,
        "event_ts": datetime.fromisoformat(ts),
        "user_id": user_id,
        "item_id": item_id,
        "user_segment": user_segment,
        "device": device,
        "slot_position": 2,
        "category": {"i1": "cat_01", "i2": "cat_02"}[item_id],
        "price": {"i1": 9.5, "i2": 20.0}[item_id],
        "bid_price": 0.4,
        "market_price": 0.3,
        "clicked": clicked,
        "converted": converted,
    }


DAY_1_EVENTS = [
    _event("a1", f"{DAY_1} 09:00:00", "u1", "i1", "mobile", clicked=1, converted=1),
    _event("a2", f"{DAY_1} 09:00:00", "u2", "i1", "desktop", clicked=0),
    _event("a3", f"{DAY_1} 10:30:00", "u1", "i2", "tablet", clicked=0),
    _event("a4", f"{DAY_1} 11:00:00", "u1", "i1", "mobile", clicked=1),
    _event("a5", f"{DAY_1} 12:00:00", "u2", "i2", "desktop", clicked=1),
]
# The re-delivered day 1 drops a5.
DAY_1_REDELIVERED = [event for event in DAY_1_EVENTS if event["event_id"] != "a5"]
DAY_2_EVENTS = [
    _event("b1", f"{DAY_2} 08:00:00", "u1", "i1", "mobile", clicked=0, user_segment="seg_1"),
    _event("b2", f"{DAY_2} 09:00:00", "u3", "i2", "desktop", clicked=1),
]


def _write_bronze_day(lake_root: Path, day: str, events: list[dict[str, object]]) -> None:
    """Writes (or replaces) `bronze/events/dt=<day>/part-0.parquet` under `lake_root`."""
    folder = lake_root / "bronze" / "events" / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(pd.DataFrame(events), schema=BRONZE_SCHEMA, preserve_index=False)
    pq.write_table(table, folder / "part-0.parquet")


def _dbt_build(work_dir: Path, min_date: str, max_date: str) -> None:
    """Runs `dbt build` (models, data tests, unit tests) for the window [min_date, max_date)."""
    result = dbtRunner().invoke(
        [
            "build",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(work_dir / "target"),
            "--log-path",
            str(work_dir / "logs"),
            "--no-use-colors",
            "--vars",
            f"{{min_date: '{min_date}', max_date: '{max_date}'}}",
        ]
    )
    failures = [
        f"{node.node.unique_id}: {node.message}"
        for node in (result.result or [])
        if str(node.status) in ("error", "fail")
    ]
    assert result.success, f"dbt build failed: {result.exception or failures}"


@dataclass(frozen=True)
class WarehouseSnapshot:
    """The marts as they stood after one dbt build."""

    fct_impressions: pd.DataFrame
    training_examples: pd.DataFrame
    dim_users: pd.DataFrame
    user_features: pd.DataFrame
    item_features: pd.DataFrame


def _snapshot(warehouse_path: Path) -> WarehouseSnapshot:
    """Reads the marts the tests check from the DuckDB warehouse, each sorted by its key."""
    with duckdb.connect(str(warehouse_path)) as connection:

        def read(table: str, key: str) -> pd.DataFrame:
            return connection.sql(f"select * from main.{table} order by {key}").df()

        return WarehouseSnapshot(
            fct_impressions=read("fct_impressions", "event_id"),
            training_examples=read("training_examples", "event_id"),
            dim_users=read("dim_users", "user_id"),
            user_features=read("user_features", "user_id"),
            item_features=read("item_features", "item_id"),
        )


@dataclass(frozen=True)
class Scenario:
    """The warehouse after each of the three builds described in the module docstring."""

    first_build: WarehouseSnapshot
    rerun_of_day_1: WarehouseSnapshot
    late_day_2: WarehouseSnapshot


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Runs the three builds against a fresh lake and warehouse under a temporary folder."""
    work_dir = tmp_path_factory.mktemp("dbt_project")
    lake_root = work_dir / "lake"
    warehouse_path = work_dir / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECLAKE_LAKE_ROOT", str(lake_root))
        env.setenv("RECLAKE_WAREHOUSE_PATH", str(warehouse_path))

        _write_bronze_day(lake_root, DAY_1, DAY_1_EVENTS)
        _dbt_build(work_dir, DAY_1, DAY_2)
        first_build = _snapshot(warehouse_path)

        _write_bronze_day(lake_root, DAY_1, DAY_1_REDELIVERED)
        _dbt_build(work_dir, DAY_1, DAY_2)
        rerun_of_day_1 = _snapshot(warehouse_path)

        _write_bronze_day(lake_root, DAY_2, DAY_2_EVENTS)
        _dbt_build(work_dir, DAY_2, DAY_3)
        late_day_2 = _snapshot(warehouse_path)

        yield Scenario(first_build, rerun_of_day_1, late_day_2)


def _smoothed_ctr(clicks: int, impressions: int) -> float:
    """The contract's smoothed CTR with the default prior."""
    return (clicks + CTR_PRIOR * CTR_PRIOR_WEIGHT) / (impressions + CTR_PRIOR_WEIGHT)


def _brute_force_features(events: list[dict[str, object]]) -> pd.DataFrame:
    """Point-in-time features straight from the definition, one event at a time."""
    rows = []
    for event in events:
        row: dict[str, object] = {"event_id": event["event_id"]}
        for entity in ("user", "item"):
            history = [
                other
                for other in events
                if other[f"{entity}_id"] == event[f"{entity}_id"]
                and event["event_ts"] - LOOKBACK <= other["event_ts"] < event["event_ts"]
            ]
            clicks = sum(int(other["clicked"]) for other in history)
            row[f"{entity}_impressions_7d"] = len(history)
            row[f"{entity}_clicks_7d"] = clicks
            row[f"{entity}_ctr_7d"] = _smoothed_ctr(clicks, len(history))
        rows.append(row)
    return pd.DataFrame(rows).sort_values("event_id", ignore_index=True)


def _row(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Returns the single row of `frame` whose `key` column equals `value`."""
    matches = frame[frame[key] == value]
    assert len(matches) == 1, f"expected one row with {key}={value}, got {len(matches)}"
    return matches.iloc[0]


def test_first_build_loads_the_day(scenario: Scenario) -> None:
    snapshot = scenario.first_build
    assert list(snapshot.fct_impressions["event_id"]) == ["a1", "a2", "a3", "a4", "a5"]
    assert list(snapshot.training_examples["event_id"]) == ["a1", "a2", "a3", "a4", "a5"]
    assert list(snapshot.dim_users["user_id"]) == ["u1", "u2"]


def test_staging_time_parts(scenario: Scenario) -> None:
    a3 = _row(scenario.late_day_2.fct_impressions, "event_id", "a3")
    b1 = _row(scenario.late_day_2.fct_impressions, "event_id", "b1")
    assert str(a3["event_date"])[:10] == DAY_1
    assert (a3["hour_of_day"], a3["day_of_week"]) == (10, 0)  # Monday 10:30
    assert (b1["hour_of_day"], b1["day_of_week"]) == (8, 1)  # Tuesday 08:00
    assert a3["event_epoch"] == datetime(2024, 3, 4, 10, 30, tzinfo=UTC).timestamp()


def test_rerunning_a_day_replaces_it_without_duplicates(scenario: Scenario) -> None:
    snapshot = scenario.rerun_of_day_1
    for table in (snapshot.fct_impressions, snapshot.training_examples):
        assert table["event_id"].is_unique
        assert list(table["event_id"]) == ["a1", "a2", "a3", "a4"]  # a5 was not re-delivered
    u2 = _row(snapshot.dim_users, "user_id", "u2")
    assert (u2["impressions"], u2["clicks"]) == (1, 0)


def test_late_day_is_appended_and_earlier_day_kept(scenario: Scenario) -> None:
    before, after = scenario.rerun_of_day_1, scenario.late_day_2
    assert list(after.fct_impressions["event_id"]) == ["a1", "a2", "a3", "a4", "b1", "b2"]
    assert list(after.training_examples["event_id"]) == ["a1", "a2", "a3", "a4", "b1", "b2"]
    # The day-2 run read only day 2 from bronze: day-1 rows survive untouched.
    day_1_after = after.training_examples[after.training_examples["event_id"].str.startswith("a")]
    pd.testing.assert_frame_equal(day_1_after.reset_index(drop=True), before.training_examples)


def test_point_in_time_features_by_hand(scenario: Scenario) -> None:
    examples = scenario.late_day_2.training_examples
    # a4 (day 1, 11:00, u1 on i1): u1 saw a1 (click) and a3; i1 was shown in a1 (click) and a2.
    a4 = _row(examples, "event_id", "a4")
    assert (a4["user_impressions_7d"], a4["user_clicks_7d"]) == (2, 1)
    assert a4["user_ctr_7d"] == pytest.approx(2 / 22)
    assert (a4["item_impressions_7d"], a4["item_clicks_7d"]) == (2, 1)
    assert a4["item_ctr_7d"] == pytest.approx(2 / 22)
    # b1 (day 2, built in its own window) still sees day 1 through the lookback:
    # u1 had a1 (click), a3, a4 (click); i1 had a1 (click), a2, a4 (click).
    b1 = _row(examples, "event_id", "b1")
    assert (b1["user_impressions_7d"], b1["user_clicks_7d"]) == (3, 2)
    assert b1["user_ctr_7d"] == pytest.approx(3 / 23)
    assert (b1["item_impressions_7d"], b1["item_clicks_7d"]) == (3, 2)
    assert b1["item_ctr_7d"] == pytest.approx(3 / 23)


def test_no_feature_sees_its_own_label_or_same_timestamp(scenario: Scenario) -> None:
    examples = scenario.late_day_2.training_examples
    # a1 is u1's first impression and was clicked: its features must not know that.
    a1 = _row(examples, "event_id", "a1")
    assert a1["clicked"] == 1
    assert (a1["user_impressions_7d"], a1["user_clicks_7d"], a1["item_clicks_7d"]) == (0, 0, 0)
    assert a1["user_ctr_7d"] == pytest.approx(CTR_PRIOR)
    # a2 shares a1's timestamp and item: a1's click is not history for a2.
    a2 = _row(examples, "event_id", "a2")
    assert (a2["item_impressions_7d"], a2["item_clicks_7d"]) == (0, 0)


def test_features_match_the_definition_for_every_row(scenario: Scenario) -> None:
    expected = _brute_force_features(DAY_1_REDELIVERED + DAY_2_EVENTS)
    actual = scenario.late_day_2.training_examples[expected.columns]
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False)


def test_dims_and_serving_features_after_day_2(scenario: Scenario) -> None:
    snapshot = scenario.late_day_2
    u1 = _row(snapshot.dim_users, "user_id", "u1")
    assert u1["user_segment"] == "seg_1"  # from b1, the latest impression
    assert u1["primary_device"] == "mobile"  # a1, a4, b1 against a3 on tablet
    assert (u1["impressions"], u1["clicks"], u1["conversions"]) == (4, 2, 1)

    # As of the end of day 2, the 7-day window holds both days.
    features = snapshot.user_features.set_index("user_id")
    assert list(features.index) == ["u1", "u2", "u3"]
    assert features.loc["u1", "user_impressions_7d"] == 4
    assert features.loc["u1", "user_ctr_7d"] == pytest.approx(3 / 24)
    assert features.loc["u2", "user_ctr_7d"] == pytest.approx(1 / 21)
    assert features.loc["u3", "user_ctr_7d"] == pytest.approx(2 / 21)

    items = snapshot.item_features.set_index("item_id")
    assert items.loc["i1", "category"] == "cat_01"
    assert (items.loc["i2", "item_impressions_7d"], items.loc["i2", "item_clicks_7d"]) == (2, 1)
    assert items.loc["i2", "item_ctr_7d"] == pytest.approx(2 / 22)

"""Real `dbt build` runs of dbt_project/ on DuckDB over tiny hand-made bronze lakes.

Three sources, one scenario each (each parses the project once, see
``dbt_support.run_dbt``); every build also runs the project's data and unit tests, so a
failing dbt test fails the scenario:

- synthetic (binary label, user and item ids): three partition-window builds, with a
  re-delivered day and a late day;
- movielens (regression label, ratings >= 4 are positives): one build over three days;
- criteo (no ids): one build over two days.

Expected values are worked out by hand from the events in this file (comments give the
arithmetic) and, for every row, by ``dbt_support.point_in_time_features``, which applies
the definition one event at a time.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from dbt.cli.main import dbtRunner
from dbt_support import (
    DBT_PROJECT_DIR,
    DbtInvocation,
    ParsedDbtProject,
    as_lists,
    bronze_arrow_schema,
    build_vars,
    point_in_time_features,
    read_duckdb_table,
    run_dbt,
    serving_features,
    write_bronze_day,
)

from reclake.feature_spec import load_feature_spec
from resources.dbt import DBT_EXECUTABLE, DbtCliResource

MARTS = ("fct_events", "training_examples", "dim_users", "dim_items", "user_features", "item_features")
KEYS = {"dim_users": "user_id", "user_features": "user_id", "dim_items": "item_id", "item_features": "item_id"}


def _snapshot(warehouse_path: Path) -> dict[str, pd.DataFrame]:
    """Every mart of the warehouse, each sorted by its key."""
    return {table: read_duckdb_table(warehouse_path, table, KEYS.get(table, "event_id")) for table in MARTS}


def _row(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """The single row of ``frame`` whose ``key`` column equals ``value``."""
    matches = frame[frame[key] == value]
    assert len(matches) == 1, f"expected one row with {key}={value}, got {len(matches)}"
    return matches.iloc[0]


def _events_frame(*days: list[dict[str, object]]) -> pd.DataFrame:
    """The bronze events of ``days`` as one frame with datetime ``event_ts``."""
    frame = pd.DataFrame([event for day in days for event in day])
    return frame.assign(event_ts=pd.to_datetime(frame["event_ts"], format="ISO8601"))


def _assert_matches_definition(actual: pd.DataFrame, expected: pd.DataFrame, key: str) -> None:
    """``actual`` holds ``expected``'s rows and values in its columns (lists compared as lists)."""
    actual = actual[expected.columns].sort_values(key, ignore_index=True)
    if "user_history" in expected:
        assert as_lists(actual["user_history"]) == as_lists(expected["user_history"])
        actual, expected = actual.drop(columns="user_history"), expected.drop(columns="user_history")
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False)


# ---- synthetic: re-delivered and late days -------------------------------------------
SYNTHETIC = load_feature_spec("synthetic")  # windows 1/7/30 days; rate = (positives + 1) / (events + 20)
DAY_0, DAY_1, DAY_2, DAY_3 = "2024-02-20", "2024-03-04", "2024-03-05", "2024-03-06"  # DAY_1 is a Monday


def _impression(
    event_id: str, ts: str, user_id: str, item_id: str, clicked: int, converted: int = 0, segment: str = "seg_0"
) -> dict[str, object]:
    """One synthetic bronze row; item attributes follow from the item id."""
    return {
        "event_id": event_id,
        "event_ts": ts,
        "user_id": user_id,
        "item_id": item_id,
        "clicked": clicked,
        "converted": converted,
        "price": {"i1": 9.5, "i2": 20.0, "i3": 3.0}[item_id],
        "bid_price": 0.4,
        "market_price": 0.3,
        "user_segment": segment,
        "category": {"i1": "cat_01", "i2": "cat_02", "i3": "cat_03"}[item_id],
        "device": "mobile",
        "slot_position": 2,
    }


DAY_0_EVENTS = [_impression("z1", f"{DAY_0} 10:00:00", "u1", "i3", clicked=1)]  # 13 days before DAY_1
DAY_1_EVENTS = [
    _impression("a1", f"{DAY_1} 09:00:00", "u1", "i1", clicked=1, converted=1),
    _impression("a2", f"{DAY_1} 09:00:00", "u2", "i1", clicked=0),
    _impression("a3", f"{DAY_1} 10:30:00", "u1", "i2", clicked=0),
    _impression("a4", f"{DAY_1} 11:00:00", "u1", "i1", clicked=1),
    _impression("a5", f"{DAY_1} 12:00:00", "u4", "i2", clicked=1),  # u4's only event
]
DAY_1_REDELIVERED = [event for event in DAY_1_EVENTS if event["event_id"] != "a5"]
DAY_2_EVENTS = [
    _impression("b1", f"{DAY_2} 10:00:00", "u1", "i1", clicked=0, segment="seg_1"),
    _impression("b2", f"{DAY_2} 09:00:00", "u3", "i2", clicked=1),
]


@dataclass(frozen=True)
class SyntheticScenario:
    """The marts after each build, and the lake they were built from."""

    first_build: dict[str, pd.DataFrame]  # window [DAY_0, DAY_2): DAY_0 and DAY_1
    rerun_of_day_1: dict[str, pd.DataFrame]  # DAY_1 re-delivered without a5, window [DAY_1, DAY_2)
    late_day_2: dict[str, pd.DataFrame]  # window [DAY_2, DAY_3), with only DAY_2 left in bronze


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyntheticScenario]:
    work_dir = tmp_path_factory.mktemp("dbt_synthetic")
    lake_root, warehouse_path = work_dir / "lake", work_dir / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECLAKE_WAREHOUSE_PATH", str(warehouse_path))
        project = ParsedDbtProject(work_dir, build_vars(SYNTHETIC, lake_root, None, None))
        write_bronze_day(lake_root, SYNTHETIC, DAY_0, DAY_0_EVENTS)
        write_bronze_day(lake_root, SYNTHETIC, DAY_1, DAY_1_EVENTS)
        project.invoke(DbtInvocation(build_vars(SYNTHETIC, lake_root, DAY_0, DAY_2)))
        first_build = _snapshot(warehouse_path)

        write_bronze_day(lake_root, SYNTHETIC, DAY_1, DAY_1_REDELIVERED)
        project.invoke(DbtInvocation(build_vars(SYNTHETIC, lake_root, DAY_1, DAY_2)))
        rerun_of_day_1 = _snapshot(warehouse_path)

        # The day-2 run must need nothing of bronze but day 2: history comes from the marts.
        for day in (DAY_0, DAY_1):
            shutil.rmtree(lake_root / "bronze" / SYNTHETIC.source / f"dt={day}")
        write_bronze_day(lake_root, SYNTHETIC, DAY_2, DAY_2_EVENTS)
        project.invoke(DbtInvocation(build_vars(SYNTHETIC, lake_root, DAY_2, DAY_3)))
        yield SyntheticScenario(first_build, rerun_of_day_1, _snapshot(warehouse_path))


def test_project_defaults_are_the_synthetic_spec() -> None:
    defaults = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    spec_vars = SYNTHETIC.dbt_vars()
    assert {name: defaults[name] for name in spec_vars} == spec_vars


def test_first_build_loads_every_day_of_its_window(synthetic: SyntheticScenario) -> None:
    marts = synthetic.first_build
    assert list(marts["fct_events"]["event_id"]) == ["a1", "a2", "a3", "a4", "a5", "z1"]
    assert list(marts["training_examples"]["event_id"]) == ["a1", "a2", "a3", "a4", "a5", "z1"]
    assert list(marts["dim_users"]["user_id"]) == ["u1", "u2", "u4"]


def test_staging_columns_and_time_parts(synthetic: SyntheticScenario) -> None:
    events = synthetic.late_day_2["fct_events"]
    a3, b1 = _row(events, "event_id", "a3"), _row(events, "event_id", "b1")
    assert str(a3["event_date"])[:10] == DAY_1
    assert (a3["hour_of_day"], a3["day_of_week"]) == (10, 0)  # Monday 10:30
    assert (b1["hour_of_day"], b1["day_of_week"]) == (10, 1)  # Tuesday 10:00
    assert (a3["label"], a3["is_positive"], b1["user_segment"]) == (0.0, 0, "seg_1")
    a1 = _row(events, "event_id", "a1")
    assert (a1["label"], a1["is_positive"], a1["converted"]) == (1.0, 1, 1)
    assert pd.isna(a1["rating"])  # a canonical column the synthetic source lacks


def test_training_examples_columns_follow_the_spec(synthetic: SyntheticScenario) -> None:
    columns = list(synthetic.late_day_2["training_examples"].columns)
    expected = ["event_id", "event_date", "event_ts", "user_id", "item_id"]
    expected += [c.name for c in SYNTHETIC.bronze_feature_columns] + ["hour_of_day", "day_of_week"]
    expected += [*SYNTHETIC.label_columns, "label", "is_positive"]
    expected += [*SYNTHETIC.aggregate_columns("user"), *SYNTHETIC.aggregate_columns("item"), "user_history"]
    assert columns == expected


def test_rerunning_a_day_replaces_it(synthetic: SyntheticScenario) -> None:
    marts = synthetic.rerun_of_day_1
    for table in ("fct_events", "training_examples"):
        assert list(marts[table]["event_id"]) == ["a1", "a2", "a3", "a4", "z1"]  # a5 was not re-delivered
    # u4's only event vanished: u4 leaves the dimension and the serving lookups.
    assert list(marts["dim_users"]["user_id"]) == ["u1", "u2"]
    assert list(marts["user_features"]["user_id"]) == ["u1", "u2"]
    i2 = _row(marts["dim_items"], "item_id", "i2")
    assert (i2["events"], i2["positives"]) == (1, 0)  # a3 only


def test_late_day_is_appended_and_earlier_days_kept(synthetic: SyntheticScenario) -> None:
    before, after = synthetic.rerun_of_day_1, synthetic.late_day_2
    assert list(after["fct_events"]["event_id"]) == ["a1", "a2", "a3", "a4", "b1", "b2", "z1"]
    earlier = after["training_examples"][~after["training_examples"]["event_id"].isin(["b1", "b2"])]
    pd.testing.assert_frame_equal(earlier.reset_index(drop=True), before["training_examples"])


def test_point_in_time_aggregates_by_hand(synthetic: SyntheticScenario) -> None:
    examples = synthetic.late_day_2["training_examples"]
    # a1 (DAY_1 09:00, u1, clicked): u1's only earlier event is z1, 13 days before: in the
    # 30-day window only. a1 must not count its own click.
    a1 = _row(examples, "event_id", "a1")
    assert [a1[f"user_events_{w}d"] for w in (1, 7, 30)] == [0, 0, 1]
    assert a1["user_positive_rate_1d"] == pytest.approx(1 / 20)
    assert a1["user_positive_rate_30d"] == pytest.approx(2 / 21)
    # a2 shares a1's timestamp and item: a1's click is not history for it.
    a2 = _row(examples, "event_id", "a2")
    assert (a2["item_events_30d"], a2["item_positives_30d"]) == (0, 0)
    # b1 (DAY_2 10:00, u1 on i1), built in its own window: the 1-day window
    # [DAY_1 10:00, DAY_2 10:00) holds a3 and a4 but not a1 (09:00); 7 days add a1; 30
    # days add z1. For i1: a4 in 1 day; a1, a2, a4 in 7 and 30 days.
    b1 = _row(examples, "event_id", "b1")
    assert [(b1[f"user_events_{w}d"], b1[f"user_positives_{w}d"]) for w in (1, 7, 30)] == [(2, 1), (3, 2), (4, 3)]
    assert [b1[f"user_positive_rate_{w}d"] for w in (1, 7, 30)] == pytest.approx([2 / 22, 3 / 23, 4 / 24])
    assert [(b1[f"item_events_{w}d"], b1[f"item_positives_{w}d"]) for w in (1, 7, 30)] == [(1, 1), (3, 2), (3, 2)]
    # b2 (DAY_2 09:00 on i2): a3 counts, a5 was withdrawn with the re-delivery.
    b2 = _row(examples, "event_id", "b2")
    assert (b2["item_events_7d"], b2["item_positives_7d"]) == (1, 0)


def test_user_history_by_hand(synthetic: SyntheticScenario) -> None:
    history = synthetic.late_day_2["training_examples"].set_index("event_id")["user_history"]
    assert list(history["z1"]) == []
    assert list(history["a1"]) == ["i3"]  # z1
    assert list(history["a3"]) == ["i1", "i3"]  # a1, z1: newest first
    assert list(history["b1"]) == ["i1", "i1", "i3"]  # a4, a1, z1 (a3 was not clicked)


def test_every_row_matches_the_definition(synthetic: SyntheticScenario) -> None:
    events = _events_frame(DAY_0_EVENTS, DAY_1_REDELIVERED, DAY_2_EVENTS)
    expected = point_in_time_features(events, SYNTHETIC)
    _assert_matches_definition(synthetic.late_day_2["training_examples"], expected, "event_id")


def test_dimensions_after_day_2(synthetic: SyntheticScenario) -> None:
    users = synthetic.late_day_2["dim_users"].set_index("user_id")
    assert list(users.index) == ["u1", "u2", "u3"]
    assert users.loc["u1", "user_segment"] == "seg_1"  # from b1, the latest event
    assert (users.loc["u1", "events"], users.loc["u1", "positives"]) == (5, 3)  # z1 a1 a3 a4 b1; z1 a1 a4
    assert users.loc["u1", "first_seen_at"] == datetime(2024, 2, 20, 10)
    assert users.loc["u1", "last_seen_at"] == datetime(2024, 3, 5, 10)
    items = synthetic.late_day_2["dim_items"].set_index("item_id")
    assert (items.loc["i1", "events"], items.loc["i1", "positives"], items.loc["i1", "price"]) == (4, 2, 9.5)


def test_serving_features_as_of_the_newest_day(synthetic: SyntheticScenario) -> None:
    marts = synthetic.late_day_2
    users = marts["user_features"].set_index("user_id")
    # u1 as of DAY_2: 1 day holds b1; 7 days a1 a3 a4 b1; 30 days z1 too.
    u1 = users.loc["u1"]
    assert [(u1[f"user_events_{w}d"], u1[f"user_positives_{w}d"]) for w in (1, 7, 30)] == [(1, 0), (4, 2), (5, 3)]
    assert [u1[f"user_positive_rate_{w}d"] for w in (1, 7, 30)] == pytest.approx([1 / 21, 3 / 24, 4 / 25])
    assert list(u1["user_history"]) == ["i1", "i1", "i3"]  # a4, a1, z1
    assert users.loc["u2", "user_positive_rate_1d"] == pytest.approx(1 / 20)  # not seen on DAY_2: the prior
    items = marts["item_features"].set_index("item_id")
    assert (items.loc["i3", "item_events_7d"], items.loc["i3", "item_events_30d"]) == (0, 1)  # z1, 14 days back
    for entity, table in (("user", "user_features"), ("item", "item_features")):
        expected = serving_features(_events_frame(DAY_0_EVENTS, DAY_1_REDELIVERED, DAY_2_EVENTS), SYNTHETIC, entity)
        _assert_matches_definition(marts[table], expected, f"{entity}_id")


# ---- movielens: a regression label ---------------------------------------------------
MOVIELENS = load_feature_spec("movielens")  # positives: rating >= 4; rate = (positives + 2.5) / (events + 5)
USERS = {
    "u1": {"age": 30, "gender": "F", "occupation": "writer", "zip_code": "12345"},
    "u2": {"age": 41, "gender": "M", "occupation": "engineer", "zip_code": "54321"},
}
MOVIES = {
    "100": {"year": 1995, "genres": "Comedy"},
    "200": {"year": None, "genres": "Drama"},
    "300": {"year": 1977, "genres": "Sci-Fi"},
}


def _rating(event_id: str, ts: str, user_id: str, movie_id: str, rating: float, **user_changes: object) -> dict:
    return {
        "event_id": event_id,
        "event_ts": ts,
        "user_id": user_id,
        "item_id": movie_id,
        "rating": rating,
        **USERS[user_id],
        **user_changes,
        **MOVIES[movie_id],
    }


RATINGS = {
    "2024-05-01": [
        _rating("r1", "2024-05-01 10:00:00", "u1", "100", 5),
        _rating("r2", "2024-05-01 10:00:00", "u2", "100", 3),
        _rating("r3", "2024-05-01 11:00:00", "u1", "200", 4),
    ],
    "2024-05-02": [
        _rating("r4", "2024-05-02 09:00:00", "u1", "300", 2),
        _rating("r5", "2024-05-02 12:00:00", "u2", "200", 4),
    ],
    "2024-05-03": [_rating("r6", "2024-05-03 10:30:00", "u1", "100", 4, occupation="educator")],
}


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, pd.DataFrame]]:
    work_dir = tmp_path_factory.mktemp("dbt_movielens")
    lake_root, warehouse_path = work_dir / "lake", work_dir / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECLAKE_WAREHOUSE_PATH", str(warehouse_path))
        for day, ratings in RATINGS.items():
            write_bronze_day(lake_root, MOVIELENS, day, ratings)
        run_dbt(work_dir, [DbtInvocation(build_vars(MOVIELENS, lake_root, "2024-05-01", "2024-05-04"))])
        yield _snapshot(warehouse_path)


def test_movielens_label_is_the_rating(movielens: dict[str, pd.DataFrame]) -> None:
    examples = movielens["training_examples"].set_index("event_id")
    assert list(examples["label"]) == [5.0, 3.0, 4.0, 2.0, 4.0, 4.0]
    assert list(examples["is_positive"]) == [1, 0, 1, 0, 1, 1]
    assert "clicked" not in examples  # label_columns is [rating] only
    assert list(examples.columns[-19:]) == [
        *MOVIELENS.aggregate_columns("user"),
        *MOVIELENS.aggregate_columns("item"),
        "user_history",
    ]


def test_movielens_point_in_time_by_hand(movielens: dict[str, pd.DataFrame]) -> None:
    examples = movielens["training_examples"].set_index("event_id")
    # r6 (05-03 10:30, u1 on 100): 1 day back to 05-02 10:30 misses r4 (09:00); 7 days hold
    # r1 r3 r4 (2 positives); movie 100 had r1 (5) and r2 (3) on 05-01.
    r6 = examples.loc["r6"]
    assert (r6["user_events_1d"], r6["user_events_7d"], r6["user_positives_7d"]) == (0, 3, 2)
    assert r6["user_positive_rate_7d"] == pytest.approx((2 + 2.5) / (3 + 5))
    assert (r6["item_events_1d"], r6["item_events_7d"], r6["item_positives_7d"]) == (0, 2, 1)
    assert list(r6["user_history"]) == ["200", "100"]  # r3, r1; r4 (rating 2) is no positive
    # r5 (05-02 12:00, u2 on 200): u2 rated 3 once before; 200 got a 4 from u1 (r3).
    r5 = examples.loc["r5"]
    assert (r5["user_events_7d"], r5["user_positives_7d"], r5["item_positives_7d"]) == (1, 0, 1)
    assert list(r5["user_history"]) == []
    expected = point_in_time_features(_events_frame(*RATINGS.values()), MOVIELENS)
    _assert_matches_definition(movielens["training_examples"], expected, "event_id")


def test_movielens_lookups_hold_the_latest_attributes(movielens: dict[str, pd.DataFrame]) -> None:
    users = movielens["user_features"].set_index("user_id")
    assert users.loc["u1", "occupation"] == "educator"  # changed with r6, the latest rating
    assert list(users.loc["u1", "user_history"]) == ["100", "200", "100"]  # r6, r3, r1
    assert users.loc["u2", "user_positive_rate_1d"] == pytest.approx(0.5)  # no rating on 05-03: the prior
    items = movielens["item_features"].set_index("item_id")
    assert pd.isna(items.loc["200", "year"])
    assert (items.loc["200", "item_events_7d"], items.loc["200", "item_positives_7d"]) == (2, 2)
    for entity in ("user", "item"):
        expected = serving_features(_events_frame(*RATINGS.values()), MOVIELENS, entity)
        _assert_matches_definition(movielens[f"{entity}_features"], expected, f"{entity}_id")


# ---- criteo: no ids ------------------------------------------------------------------
CRITEO = load_feature_spec("criteo")
CRITEO_DAYS = {
    "2024-01-01": [
        {"event_id": "c1", "event_ts": "2024-01-01 00:00:00", "clicked": 1, "i1": 5, "c1": "68fd1e64"},
        {"event_id": "c2", "event_ts": "2024-01-01 12:00:00", "clicked": 0, "i2": 3},
    ],
    "2024-01-02": [{"event_id": "c3", "event_ts": "2024-01-02 23:59:59", "clicked": 0, "c26": "b1252a9d"}],
}


@pytest.fixture(scope="module")
def criteo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, pd.DataFrame]]:
    work_dir = tmp_path_factory.mktemp("dbt_criteo")
    lake_root, warehouse_path = work_dir / "lake", work_dir / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECLAKE_WAREHOUSE_PATH", str(warehouse_path))
        for day, events in CRITEO_DAYS.items():
            write_bronze_day(lake_root, CRITEO, day, events)
        run_dbt(work_dir, [DbtInvocation(build_vars(CRITEO, lake_root, "2024-01-01", "2024-01-03"))])
        yield _snapshot(warehouse_path)


def test_criteo_examples_have_no_entity_columns(criteo: dict[str, pd.DataFrame]) -> None:
    examples = criteo["training_examples"]
    features = [c.name for c in CRITEO.bronze_feature_columns]
    assert list(examples.columns) == [
        "event_id", "event_date", "event_ts", "user_id", "item_id", *features,
        "hour_of_day", "day_of_week", "clicked", "label", "is_positive",
    ]  # fmt: skip
    assert list(examples["event_id"]) == ["c1", "c2", "c3"]
    assert examples["user_id"].isna().all() and examples["item_id"].isna().all()
    assert list(examples["is_positive"]) == [1, 0, 0]
    c1 = _row(examples, "event_id", "c1")
    assert (c1["i1"], c1["c1"], c1["hour_of_day"], c1["day_of_week"]) == (5, "68fd1e64", 0, 0)
    assert pd.isna(c1["i2"])


def test_criteo_entity_marts_are_empty_with_their_columns(criteo: dict[str, pd.DataFrame]) -> None:
    assert criteo["dim_users"].empty and criteo["dim_items"].empty
    for entity in ("user", "item"):
        lookups = criteo[f"{entity}_features"]
        assert lookups.empty
        assert list(lookups.columns) == [f"{entity}_id", *CRITEO.aggregate_columns(entity)]


# ---- bad input -----------------------------------------------------------------------
def test_bad_spec_vars_fail_naming_the_var(tmp_path: Path) -> None:
    arguments = ["parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    arguments += ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"), "--no-partial-parse"]
    bad_vars = {**SYNTHETIC.dbt_vars(), "windows_days": [0, 7]}
    result = dbtRunner().invoke([*arguments, "--vars", yaml.safe_dump(bad_vars)])
    assert not result.success
    assert "var 'windows_days' must hold whole numbers of days >= 1, got [0, 7]" in str(result.exception)


@pytest.mark.parametrize(
    ("min_date", "error"),
    [(DAY_2, None), ("2024-3-05", "env var 'RECLAKE_DBT_MIN_DATE' must be a YYYY-MM-DD date or null, got '2024-3-05'")],
)
def test_the_window_can_come_from_env_vars_read_only_when_models_run(
    tmp_path: Path, min_date: str, error: str | None
) -> None:
    """What the pipeline does: the vars carry no window, so they stay the same from run to
    run (dbt's partial parsing survives); the window's env vars are read when the models
    compile, and a bad one fails naming it."""
    arguments = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--no-partial-parse"]
    arguments += ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    arguments += ["--vars", yaml.safe_dump(build_vars(SYNTHETIC, tmp_path / "lake", None, None))]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECLAKE_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
        env.setenv("RECLAKE_DBT_MIN_DATE", min_date)
        env.setenv("RECLAKE_DBT_MAX_DATE", DAY_3)
        parsed = dbtRunner().invoke(["parse", *arguments])
        assert parsed.success, parsed.exception
        # Parsing never read them: had it, dbt would reparse on every new window.
        assert not {"RECLAKE_DBT_MIN_DATE", "RECLAKE_DBT_MAX_DATE"} & set(parsed.result.env_vars)
        result = dbtRunner().invoke(["compile", "--select", "stg_bronze__events", *arguments])
    if error:
        assert not result.success and error in str(result.exception), result.exception
        return
    assert result.success, result.exception
    compiled = next((tmp_path / "target" / "compiled").rglob("stg_bronze__events.sql")).read_text()
    assert f"dt >= '{DAY_2}' and dt < '{DAY_3}'" in compiled


def test_an_event_of_an_unknown_user_fails_the_relationships_test(tmp_path: Path) -> None:
    """fct_events' ids must exist in the dimensions: a user deleted from dim_users behind
    dbt's back makes `relationships` fail, naming the test."""
    lake_root, warehouse_path = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    window = build_vars(SYNTHETIC, lake_root, DAY_1, DAY_2)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECLAKE_WAREHOUSE_PATH", str(warehouse_path))
        project = ParsedDbtProject(tmp_path, window)
        write_bronze_day(lake_root, SYNTHETIC, DAY_1, DAY_1_EVENTS)
        project.invoke(DbtInvocation(window))
        with duckdb.connect(str(warehouse_path)) as connection:
            connection.execute("delete from dim_users where user_id = 'u4'")
        with pytest.raises(AssertionError, match="relationships_fct_events_user_id"):
            project.invoke(DbtInvocation(window, command="test", select=("fct_events", "dim_users")))


def test_the_pandas_examples_builder_agrees_with_the_training_examples_model(tmp_path: Path) -> None:
    """``sources.training_examples`` (the zoo's and benchmarks' dbt-free frames) computes the
    point-in-time aggregates in pandas; dbt's ``training_examples`` is the definition. The
    same generated impressions through both give the same aggregates, row for row."""
    from reclake.settings import SyntheticSettings
    from sources.training_examples import synthetic_training_examples

    days = [datetime(2024, 3, 1).date() + pd.Timedelta(days=offset) for offset in range(3)]
    settings = SyntheticSettings(days=3, events_per_day=400, n_users=25, n_items=15, seed=11)
    frame = synthetic_training_examples(settings, days)
    lake_root, warehouse_path = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    bronze_names = set(bronze_arrow_schema(SYNTHETIC).names)
    for day, rows in frame.groupby("event_date"):
        records = rows[[c for c in rows.columns if c in bronze_names]].to_dict("records")
        write_bronze_day(lake_root, SYNTHETIC, day.isoformat(), records)
    window = build_vars(SYNTHETIC, lake_root, days[0].isoformat(), (days[-1] + pd.Timedelta(days=1)).isoformat())
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECLAKE_WAREHOUSE_PATH", str(warehouse_path))
        run_dbt(tmp_path, [DbtInvocation(window, select=("+training_examples",))])
    built = read_duckdb_table(warehouse_path, "training_examples", "event_id").set_index("event_id")
    columns = [*SYNTHETIC.aggregate_columns("user"), *SYNTHETIC.aggregate_columns("item")]
    pandas_built = frame.set_index("event_id").sort_index()
    assert len(built) == len(pandas_built) == 1200
    pd.testing.assert_frame_equal(built[columns], pandas_built[columns], check_dtype=False, atol=1e-12)


def test_the_staging_yaml_documents_the_event_contract_in_order() -> None:
    """The staging model's YAML lists the contract's columns first, in bronze order, then
    the derived ones (reclake.contracts is the one declaration; this keeps the docs on it)."""
    from reclake.contracts import DERIVED_RANGES, EVENT_COLUMN_KINDS

    document = yaml.safe_load((DBT_PROJECT_DIR / "models" / "staging" / "stg_bronze__events.yml").read_text())
    (model,) = document["models"]
    documented = [column["name"] for column in model["columns"]]
    assert documented[: len(EVENT_COLUMN_KINDS)] == list(EVENT_COLUMN_KINDS)
    assert set(DERIVED_RANGES) <= set(documented[len(EVENT_COLUMN_KINDS) :])


def test_the_dbt_resource_reads_the_installed_dbts_version_and_asks_any_other(tmp_path: Path) -> None:
    """``resources.dbt.DbtCliResource`` knows the version of the dbt beside the interpreter
    from its package metadata (no ``dbt --version`` process per build); it is the version
    that dbt prints. Another executable is still asked."""
    project = str(Path(__file__).resolve().parents[1] / "dbt_project")
    printed = subprocess.run([DBT_EXECUTABLE, "--version"], capture_output=True, text=True, check=True).stdout
    installed = DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE)._cli_version
    assert f"installed: {installed}" in printed, printed
    other = tmp_path / "dbt"
    other.write_text("#!/bin/sh\necho 'Core:'\necho '  - installed: 2.0.1'\n")
    other.chmod(0o755)
    assert str(DbtCliResource(project_dir=project, dbt_executable=str(other))._cli_version) == "2.0.1"

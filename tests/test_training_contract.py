"""The training window's pandera contract: what it accepts, what it names when it fails,
and the blocking ``training_window_contract`` check on a real ``dataset_splits`` run."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
import pytest
import toy_examples

from assets.splits import dataset_splits, training_window_contract
from models.inputs.contract import training_window_schema, validate_training_window
from reclake.feature_spec import feature_spec_from_dict
from resources.lake import LakeResource
from resources.warehouse import WarehouseResource

SPEC = toy_examples.SPEC
DAYS = ("2024-03-01", "2024-03-02", "2024-03-03")
WINDOW = [dt.date.fromisoformat(day) for day in DAYS]


@pytest.fixture(scope="module")
def examples() -> pd.DataFrame:
    return toy_examples.make_training_examples(n_rows=900, days=DAYS, seed=3)


def test_toy_training_examples_keep_the_contract(examples):
    result = validate_training_window(examples, SPEC, WINDOW)

    assert result.passed, result.failures
    assert (result.rows, result.window_rows, result.sampled) == (900, 900, False)
    schema = training_window_schema(SPEC, WINDOW)
    assert result.columns == len(schema.columns)
    assert set(SPEC.model_feature_names) | {"event_id", "clicked", "user_positives_7d"} <= set(schema.columns)


def test_each_broken_rule_is_named_with_its_column_rows_and_examples(examples):
    broken = examples.copy()
    broken.loc[0, "device"] = "fridge"  # outside the allowed values
    broken.loc[1:2, "user_events_7d"] = -3  # a negative count, twice
    broken.loc[3, "item_positive_rate_30d"] = 1.5  # a rate above 1
    broken.loc[4, "category"] = None  # a null in a non-nullable column
    broken.loc[5, "event_id"] = broken.loc[6, "event_id"]  # a duplicate key
    broken.loc[7, "clicked"] = 2  # not a binary label
    broken.loc[8, "event_date"] = dt.date(2024, 2, 1)  # outside the window

    result = validate_training_window(broken, SPEC, WINDOW)

    assert not result.passed
    found = {(f.column, f.check): f for f in result.failures}
    assert set(found) == {
        ("device", "isin(['mobile', 'desktop', 'tablet'])"),
        ("user_events_7d", "greater_than_or_equal_to(0)"),
        ("item_positive_rate_30d", "in_range(0, 1)"),
        ("category", "not_nullable"),
        ("event_id", "field_uniqueness"),
        ("clicked", "isin([0, 1])"),
        ("event_date", "in_window"),
    }
    assert found[("device", "isin(['mobile', 'desktop', 'tablet'])")].examples == ("fridge",)
    negative = found[("user_events_7d", "greater_than_or_equal_to(0)")]
    assert (negative.rows, negative.examples) == (2, ("-3",))
    assert found[("item_positive_rate_30d", "in_range(0, 1)")].examples == ("1.5",)
    assert (found[("category", "not_nullable")].rows, found[("category", "not_nullable")].examples) == (1, ("null",))
    assert found[("event_id", "field_uniqueness")].rows == 2  # both rows holding the id
    assert [f.column for f in result.failures][:3] == ["event_id", "event_date", "device"]  # the frame's order


def test_dtypes_and_missing_columns_are_named(examples):
    broken = examples.drop(columns=["price"]).assign(slot_position=examples["slot_position"] + 0.5)
    broken["user_id"] = broken["user_id"].astype(object)
    broken.loc[0, "user_id"] = 17

    found = {(f.column, f.check): f for f in validate_training_window(broken, SPEC, WINDOW).failures}

    assert found[("price", "column_in_dataframe")].rows is None  # the column as a whole
    assert found[("slot_position", "is_integer")].rows == len(examples)
    assert found[("user_id", "is_string")].examples == ("17",)


def test_a_regression_label_and_a_sample():
    spec = feature_spec_from_dict({**SPEC.to_dict(), "label": {"column": "rating", "kind": "regression", "log": True}})
    frame = toy_examples.make_training_examples(n_rows=300, days=DAYS, seed=4).assign(rating=2.5)
    frame.loc[0, "rating"] = -1.0

    result = validate_training_window(frame, spec, WINDOW, max_rows=300)
    sample = validate_training_window(frame.drop(index=0), spec, WINDOW, max_rows=100)

    assert [(f.column, f.check) for f in result.failures] == [("rating", "greater_than_or_equal_to(0)")]
    assert sample.passed and (sample.rows, sample.window_rows, sample.sampled) == (100, 299, True)


def _resources(tmp_path, frame: pd.DataFrame) -> dict:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.register("frame", frame)
        connection.execute(
            "create table training_examples as select * replace (cast(event_date as date) as event_date) from frame"
        )
    return {
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "warehouse": WarehouseResource(path=str(path)),
        "pipeline": toy_examples.toy_pipeline(tmp_path),
    }


def _evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == "training_window_contract"
    return evaluation


def test_the_check_passes_on_the_window_dataset_splits_was_made_from(tmp_path, examples):
    result = dg.materialize([dataset_splits, training_window_contract], resources=_resources(tmp_path, examples))

    assert result.success
    evaluation = _evaluation(result)
    assert evaluation.passed
    metadata = evaluation.metadata
    assert (metadata["rows"].value, metadata["window"].value) == (900, "2024-03-01 .. 2024-03-03")
    assert metadata["columns"].value > 30 and metadata["failures"].value == "none"
    assert 0 < metadata["seconds"].value < 10


def test_a_broken_window_fails_the_blocking_check_with_a_table_of_failures(tmp_path, examples):
    broken = examples.copy()
    broken.loc[0, "device"] = "fridge"
    broken.loc[1, "user_events_1d"] = -1

    result = dg.materialize(
        [dataset_splits, training_window_contract],
        resources=_resources(tmp_path, broken),
        raise_on_error=False,
    )

    evaluation = _evaluation(result)
    assert not evaluation.passed and evaluation.blocking
    table = evaluation.metadata["failures"].value
    assert "| device " in table and "fridge" in table
    assert "| user_events_1d " in table and "greater_than_or_equal_to(0)" in table

"""Landing records -> typed bronze rows or quarantined rows, per the source's feature spec; nothing is lost."""

import dataclasses
import datetime as dt
import gzip
import json

import pandas as pd
import pytest

from reclake.feature_spec import load_feature_spec
from reclake.lake import Lake
from sources.bronze_schema import bronze_columns, required_columns, validate_events
from sources.ingest import ingest_landing_day
from sources.landing import NoLandingDataError, read_landing_day

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 3, 1)
SYNTHETIC = load_feature_spec("synthetic")
DEMO = dataclasses.replace(SYNTHETIC, source="demo")


def good(i: int, **changes) -> dict:
    record = {
        "event_id": f"e{i}",
        "event_ts": f"2024-03-01T10:00:{i:02d}.000001Z",
        "user_id": "u1",
        "item_id": "i1",
        "user_segment": "seg_0",
        "device": "mobile",
        "slot_position": 1,
        "category": "cat_00",
        "price": 9.5,
        "bid_price": 1.0,
        "market_price": 0.5,
        "clicked": 1,
        "converted": 0,
    }
    record.update(changes)
    return record


def as_records(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["_source_file"], frame["_line_number"] = "events.jsonl", range(1, len(frame) + 1)
    frame["_raw"] = [json.dumps(r) for r in rows]
    return frame


@pytest.mark.parametrize(
    "bad, field, reason",
    [
        (good(2, slot_position="top"), "slot_position", "not an integer: top"),
        (good(2, slot_position=1.5), "slot_position", "not an integer"),
        (good(2, event_ts="yesterday"), "event_ts", "not an ISO-8601 timestamp"),
        (good(2, event_ts="2024-03-02T00:00:00Z"), "event_ts", "outside the day 2024-03-01 (UTC): 2024-03-02 00:00:00"),
        (good(2, device="fridge"), "device", "not one of [mobile, desktop, tablet]: fridge"),
        (good(2, clicked=0, converted=1), "converted", "converted without a click"),
        (good(2, price=None), "price", "missing or null"),
        (good(2, event_id="e1"), "event_id", "duplicate event_id 'e1' (first on line 1 of events.jsonl)"),
        ({k: v for k, v in good(2).items() if k != "user_id"}, "user_id", "missing or null"),
    ],
)
def test_each_kind_of_bad_row_is_named(bad, field, reason):
    result = validate_events(as_records([good(1), bad, good(3)]), DAY, SYNTHETIC)
    assert result.valid["event_id"].tolist() == ["e1", "e3"]
    assert len(result.quarantined) == 1
    row = result.quarantined.iloc[0]
    assert (row["source_file"], row["line_number"], row["field"]) == ("events.jsonl", 2, field)
    assert reason in row["reason"]


def test_valid_rows_are_typed_per_contract():
    valid = validate_events(as_records([good(1), good(2)]), DAY, SYNTHETIC).valid
    assert list(valid.columns) == list(bronze_columns(SYNTHETIC))
    assert str(valid["event_ts"].dtype) == "datetime64[us]"
    assert str(valid["slot_position"].dtype) == "Int64" and valid["price"].dtype == "float64"
    assert valid["event_ts"][0] == pd.Timestamp("2024-03-01 10:00:01.000001")
    # The synthetic source has no ratings: the canonical column stays null, no row is rejected.
    assert valid["rating"].isna().all()


def test_the_spec_decides_which_columns_are_required_and_their_rules():
    movielens = load_feature_spec("movielens")
    assert set(required_columns(movielens)) >= {"event_id", "event_ts", "user_id", "item_id", "rating", "age"}
    assert "year" not in required_columns(movielens)  # nullable in the spec: titles without a year
    criteo = load_feature_spec("criteo")
    assert "user_id" not in required_columns(criteo) and "c1" not in required_columns(criteo)
    record = {
        "event_id": "m1",
        "event_ts": "2024-03-01T10:00:00Z",
        "user_id": "7",
        "item_id": "42",
        "rating": 4.0,
        "age": 130,
        "gender": "F",
        "occupation": "writer",
        "zip_code": "02139",
        "year": None,
        "genres": "Drama",
    }
    result = validate_events(as_records([record, {**record, "event_id": "m2", "age": 30}]), DAY, movielens)
    assert result.valid["event_id"].tolist() == ["m2"] and result.valid["year"].isna().all()
    assert (
        result.quarantined.iloc[0]["field"] == "age"
        and result.quarantined.iloc[0]["reason"] == "age: more than 120: 130"
    )


def test_ingest_reconciles_counts_and_replaces_the_day(tmp_path):
    lake = Lake(str(tmp_path))
    lines = [json.dumps(good(i)) for i in range(1, 6)] + ["{not json", json.dumps([1, 2])]
    lake.write_bytes(lake.landing_dir("demo", DAY) + "/part-1.jsonl.gz", gzip.compress("\n".join(lines).encode()))
    first = ingest_landing_day(lake, DEMO, DAY)
    assert (first.input_rows, first.bronze_rows, first.quarantined_rows) == (7, 5, 2)
    assert first.reasons == {"<line>": 2}

    lake.write_bytes(lake.landing_dir("demo", DAY) + "/part-1.jsonl.gz", gzip.compress(json.dumps(good(9)).encode()))
    second = ingest_landing_day(lake, DEMO, DAY)
    assert (second.bronze_rows, second.quarantined_rows) == (1, 0)
    assert lake.read_parquet(lake.bronze_file("demo", DAY))["event_id"].tolist() == ["e9"]
    assert not lake.exists(lake.quarantine_file("demo", DAY))


def test_parquet_landing_files_are_read_too(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_parquet(pd.DataFrame([good(1), good(2, price=-1.0)]), lake.landing_dir("demo", DAY) + "/batch.parquet")
    day = ingest_landing_day(lake, DEMO, DAY)
    assert (day.bronze_rows, day.quarantined_rows) == (1, 1)
    quarantined = lake.read_parquet(lake.quarantine_file("demo", DAY))
    assert quarantined[["source_file", "line_number", "field"]].values.tolist() == [["batch.parquet", 2, "price"]]


def test_a_day_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(NoLandingDataError, match="no landing files for source 'demo' on 2024-03-01"):
        read_landing_day(Lake(str(tmp_path)), "demo", DAY)


def test_a_historical_source_may_have_empty_days(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_parquet(pd.DataFrame([good(1)]), lake.bronze_file("demo", DAY))
    day = ingest_landing_day(lake, DEMO, DAY, allow_empty=True)
    assert (day.input_rows, day.bronze_rows, day.quarantined_rows) == (0, 0, 0)
    assert not lake.exists(lake.bronze_file("demo", DAY))  # an earlier delivery of the day is gone too

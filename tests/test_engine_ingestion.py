"""Ingestion in the engine: one malformed landing file gives exactly the expected
quarantine rows, every good row lands in bronze, and bronze keeps its contract."""

import datetime as dt
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_bronze_validation import DAY, DEMO, good

from reclake.lake import Lake
from sources.bronze_schema import QUARANTINE_COLUMNS, bronze_arrow_schema, bronze_columns
from sources.ingest import ingest_landing_day

pytestmark = pytest.mark.unit

PREVIOUS_DAY = DAY - dt.timedelta(days=1)
LINES = [
    json.dumps(good(1)),
    '{"event_id": "e2",',  # broken JSON
    json.dumps(good(3, slot_position="top")),  # wrong type
    json.dumps(good(4, event_ts="2024-03-02T00:00:01Z")),  # outside the day
    json.dumps(good(1, event_ts="2024-03-01T23:00:00Z")),  # duplicate id within the day
    json.dumps(good(6, price=-2.5)),  # negative price
    json.dumps(good(7, device="fridge")),  # outside the spec's allowed values
    json.dumps(good(8, device="fridge", price=-1.0)),  # two fields at once
    json.dumps([1, 2]),  # JSON, not an object
    "   ",  # blank: skipped, not a row
    json.dumps(good(11)),
    json.dumps(good(12, event_id="seen-yesterday")),  # already in bronze the day before
    json.dumps(good(13, slot_position=True, clicked=2)),  # a boolean is not an integer; labels are 0/1
    json.dumps(good(14, user_id="null")),  # a null-like id
    json.dumps(good(15, rating=None, converted=None)),  # nullable columns may be null
]
DEVICES = "[mobile, desktop, tablet]"
EXPECTED_QUARANTINE = [
    (2, "<line>", "invalid JSON: Expecting property name enclosed in double quotes at column 19"),
    (3, "slot_position", "slot_position: not an integer: top"),
    (4, "event_ts", "event_ts: outside the day 2024-03-01 (UTC): 2024-03-02 00:00:01"),
    (5, "event_id", "event_id: duplicate event_id 'e1' (first on line 1 of part-0.jsonl)"),
    (6, "price", "price: less than 0: -2.5"),
    (7, "device", f"device: not one of {DEVICES}: fridge"),
    (8, "price, device", f"price: less than 0: -1.0; device: not one of {DEVICES}: fridge"),
    (9, "<line>", "expected a JSON object, got an array"),
    (12, "event_id", "event_id: duplicate of 2024-02-29"),
    (13, "clicked, slot_position", "clicked: not 0 or 1: 2; slot_position: not an integer: true"),
    (14, "user_id", "user_id: blank or null-like id: 'null'"),
]


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(str(tmp_path))
    yesterday = good(0, event_id="seen-yesterday", event_ts="2024-02-29T12:00:00Z")
    lake.write_bytes(lake.landing_dir("demo", PREVIOUS_DAY) + "/part-0.jsonl", json.dumps(yesterday).encode())
    assert ingest_landing_day(lake, DEMO, PREVIOUS_DAY).bronze_rows == 1
    lake.write_bytes(lake.landing_dir("demo", DAY) + "/part-0.jsonl", "\n".join(LINES).encode())
    return lake


def test_a_malformed_file_gives_exactly_the_expected_quarantine(lake):
    day = ingest_landing_day(lake, DEMO, DAY)
    quarantine = lake.read_parquet(day.quarantine_url)
    assert list(quarantine.columns) == QUARANTINE_COLUMNS
    assert quarantine["source_file"].unique().tolist() == ["part-0.jsonl"]
    assert (
        list(quarantine[["line_number", "field", "reason"]].itertuples(index=False, name=None)) == EXPECTED_QUARANTINE
    )
    assert quarantine["raw"].tolist() == [LINES[line - 1] for line, _, _ in EXPECTED_QUARANTINE]
    assert day.reasons == {"<line>": 2, "slot_position": 2, "event_ts": 1, "event_id": 2, "price": 2, "device": 2,
                           "clicked": 1, "user_id": 1}  # fmt: skip


def test_every_good_row_lands_in_bronze_and_counts_reconcile(lake):
    day = ingest_landing_day(lake, DEMO, DAY)
    assert (day.input_rows, day.bronze_rows, day.quarantined_rows) == (14, 3, 11)
    bronze = lake.read_parquet(day.bronze_url)
    assert bronze["event_id"].tolist() == ["e1", "e11", "e15"]
    assert bronze["converted"].isna().tolist() == [False, False, True]
    assert bronze["event_ts"].iloc[0] == pd.Timestamp("2024-03-01 10:00:01.000001")


def test_bronze_keeps_its_columns_types_and_order(lake):
    """JSON lines and Parquet landing files give the same bronze file layout, the one
    dbt reads."""
    ingest_landing_day(lake, DEMO, DAY)
    schema = pq.read_schema(lake.bronze_file("demo", DAY))
    assert schema.names == list(bronze_columns(DEMO))
    assert schema.equals(bronze_arrow_schema(DEMO), check_metadata=False)
    frame = lake.read_parquet(lake.bronze_file("demo", DAY))
    lake.remove(lake.landing_dir("demo", DAY))
    lake.write_parquet(frame, lake.landing_dir("demo", DAY) + "/batch.parquet")
    again = ingest_landing_day(lake, DEMO, DAY)
    assert (again.bronze_rows, again.quarantined_rows) == (3, 0)
    assert pq.read_schema(again.bronze_url).equals(schema, check_metadata=True)
    assert lake.read_parquet(again.bronze_url).equals(frame)


"""Malformed deliveries through the landing zone: nothing crashes, nothing is lost, nothing
corrupt reaches bronze. Each case lands good rows around one fault and checks that the
good rows are kept, the bad ones are quarantined with file, line, field and reason, and
``input = bronze + quarantined``."""

import dataclasses
import datetime as dt
import gzip
import json

import pandas as pd
import pytest
from test_bronze_validation import DAY, DEMO, good

from reclake.lake import Lake
from sources.ingest import ingest_landing_day, ingest_landing_days
from sources.landing import NoLandingDataError

pytestmark = pytest.mark.unit


def land(lake: Lake, name: str, content: bytes) -> None:
    lake.write_bytes(lake.landing_dir("demo", DAY) + "/" + name, content)


def lines(*records: dict) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def ingest(lake: Lake):
    """Ingest the day; returns (bronze frame, quarantine frame) after checking the counts."""
    day = ingest_landing_day(lake, DEMO, DAY)
    assert day.input_rows == day.bronze_rows + day.quarantined_rows
    bronze = lake.read_parquet(day.bronze_url) if day.bronze_rows else pd.DataFrame(columns=["event_id"])
    quarantine = lake.read_parquet(day.quarantine_url) if day.quarantine_url else pd.DataFrame()
    return bronze, quarantine


@pytest.mark.parametrize(
    "bad_line, field, reason",
    [
        (json.dumps(good(2, slot_position=10**30)), "slot_position", "outside the 64-bit integer range"),
        (json.dumps(good(2, price=float("inf"))), "price", "not a finite number"),
        (json.dumps(good(2)).replace('"price": 9.5', '"price": 1e400'), "price", "not a finite number"),
        (json.dumps(good(2, user_id="   ")), "user_id", "blank or null-like id"),
        (json.dumps(good(2, item_id="null")), "item_id", "blank or null-like id"),
        (json.dumps(good(2, user_id="u" * 1_000_000)), "user_id", "longer than 512 characters"),
    ],
    ids=["int-beyond-64-bits", "infinity", "1e400", "blank-id", "null-id", "megabyte-id"],
)
def test_a_bad_value_is_quarantined_before_any_cast(tmp_path, bad_line, field, reason):
    lake = Lake(str(tmp_path))
    land(lake, "part-0.jsonl", b"\n".join([lines(good(1)), bad_line.encode(), lines(good(3))]))
    bronze, quarantine = ingest(lake)
    assert bronze["event_id"].tolist() == ["e1", "e3"]
    (row,) = quarantine.to_dict("records")
    assert (row["source_file"], row["line_number"], row["field"]) == ("part-0.jsonl", 2, field)
    assert reason in row["reason"] and len(row["reason"]) < 200  # a reason quotes, never embeds


def test_invalid_utf8_is_a_reject_not_a_replacement_character(tmp_path):
    lake = Lake(str(tmp_path))
    bad = lines(good(2, item_id="i_X")).replace(b"i_X", b"i\xff\xfe")
    land(lake, "part-0.jsonl", b"\n".join([lines(good(1)), bad, lines(good(3))]))
    bronze, quarantine = ingest(lake)
    assert bronze["event_id"].tolist() == ["e1", "e3"]
    assert not bronze["item_id"].str.contains("\ufffd").any()
    (row,) = quarantine.to_dict("records")
    assert row["line_number"] == 2 and row["reason"].startswith("invalid UTF-8 at byte")
    assert "\\xff" in row["raw"]


def test_a_truncated_gzip_keeps_its_lines_before_the_cut_and_the_other_files(tmp_path):
    lake = Lake(str(tmp_path))
    land(lake, "part-0.jsonl.gz", gzip.compress(lines(*[good(i) for i in range(1, 4)])))
    big = gzip.compress(lines(*[good(i % 50, event_id=f"t{i}") for i in range(1, 2001)]), compresslevel=1)
    land(lake, "part-1.jsonl.gz", big[: len(big) // 2])
    bronze, quarantine = ingest(lake)
    kept = bronze["event_id"].tolist()
    assert kept[:3] == ["e1", "e2", "e3"] and len(kept) > 3  # the intact file, and lines before the cut
    (row,) = quarantine.to_dict("records")
    assert row["source_file"] == "part-1.jsonl.gz" and row["field"] == "<file>"
    assert row["line_number"] == len(kept) - 3 + 1
    assert row["reason"].startswith(f"truncated file: unreadable after line {len(kept) - 3}")


def test_every_file_of_a_day_is_read_or_reported(tmp_path):
    lake = Lake(str(tmp_path))
    land(lake, "a.json", lines(good(1)))
    land(lake, "b.JSONL.GZ", gzip.compress(lines(good(2))))
    land(lake, "c.ndjson", lines(good(3)))
    land(lake, "d.csv", b"event_id,user_id\ne4,u1\n")
    land(lake, "e.parquet", b"PAR1 not really")
    land(lake, "_SUCCESS", b"")
    bronze, quarantine = ingest(lake)
    assert sorted(bronze["event_id"]) == ["e1", "e2", "e3"]
    reported = dict(zip(quarantine["source_file"], quarantine["reason"], strict=True))
    assert set(reported) == {"d.csv", "e.parquet"}  # the marker is skipped, as everywhere in the lake
    assert reported["d.csv"].startswith("not a landing file") and "unreadable Parquet" in reported["e.parquet"]


def test_the_longest_string_is_part_of_the_source_contract(tmp_path):
    lake = Lake(str(tmp_path))
    land(lake, "part-0.jsonl", lines(good(1, user_id="u" * 40), good(2)))
    strict = dataclasses.replace(DEMO, max_string_length=32)
    day = ingest_landing_day(lake, strict, DAY)
    assert (day.bronze_rows, day.quarantined_rows, day.reasons) == (1, 1, {"user_id": 1})
    assert ingest_landing_day(lake, DEMO, DAY).quarantined_rows == 0


def test_a_day_of_empty_files_is_an_empty_day(tmp_path):
    lake = Lake(str(tmp_path))
    land(lake, "part-0.jsonl.gz", gzip.compress(b""))
    day = ingest_landing_day(lake, DEMO, DAY)
    assert (day.input_rows, day.bronze_rows, day.quarantined_rows) == (0, 0, 0)
    assert day.status == "empty" and not lake.exists(day.bronze_url)


def test_dates_in_the_layout_are_only_days(tmp_path):
    """A stray folder that is not ``dt=YYYY-MM-DD`` is not a landed day."""
    lake = Lake(str(tmp_path))
    land(lake, "part-0.jsonl", lines(good(1)))
    lake.write_bytes(lake.url("landing", "demo", "tmp-upload", "x.jsonl"), lines(good(1)))
    assert list(lake.landed_days("demo")) == [dt.date(2024, 3, 1)]


def test_days_checked_at_once_end_as_one_at_a_time_would(tmp_path):
    """``ingest_landing_days`` checks days in threads but ends each in order: a copy of an
    event on the next day is a duplicate of the first, whichever thread checked it."""
    days = [DAY + dt.timedelta(days=i) for i in range(5)]
    at_once, in_turn = Lake(str(tmp_path / "at_once")), Lake(str(tmp_path / "in_turn"))
    for i, day in enumerate(days):
        records = [good(10 * i + n, event_ts=f"{day}T0{n}:00:00Z") for n in range(1, 4)]
        if i:  # each day also ships again the first event of the day before
            records.append(good(10 * (i - 1) + 1, event_ts=f"{day}T09:00:00Z"))
        for lake in (at_once, in_turn):
            lake.write_bytes(lake.landing_dir("demo", day) + "/part-0.jsonl", lines(*records))
    ingested = list(ingest_landing_days(at_once, DEMO, days, workers=3))
    assert [day.day for day in ingested] == days
    for day in days:
        one = ingest_landing_day(in_turn, DEMO, day)
        (other,) = [d for d in ingested if d.day == day]
        assert (other.input_rows, other.bronze_rows, other.quarantined_rows, other.reasons) == (
            one.input_rows, one.bronze_rows, one.quarantined_rows, one.reasons
        )  # fmt: skip
        assert at_once.read_parquet(other.bronze_url).equals(in_turn.read_parquet(one.bronze_url))
    for i, day in enumerate(ingested[1:]):
        (row,) = at_once.read_parquet(day.quarantine_url).to_dict("records")
        assert row["reason"] == f"event_id: duplicate of {days[i]}"

    # A missing day fails where it comes, once the days before it are written.
    gap = [*days, days[-1] + dt.timedelta(days=2), days[-1] + dt.timedelta(days=1)]
    written = []
    with pytest.raises(NoLandingDataError, match=str(gap[-2])):
        for day in ingest_landing_days(at_once, DEMO, gap, workers=2):
            written.append(day.day)
    assert written == days


def test_an_event_already_in_bronze_on_another_day_is_a_duplicate_of_that_day(tmp_path):
    lake = Lake(str(tmp_path))
    next_day = DAY + dt.timedelta(days=1)
    land(lake, "part-0.jsonl", lines(good(1), good(2)))
    ingest(lake)
    shipped_again = good(1, event_ts="2024-03-02T00:00:01Z")  # a retry after midnight
    lake.write_bytes(
        lake.landing_dir("demo", next_day) + "/part-0.jsonl",
        lines(shipped_again, good(3, event_ts="2024-03-02T08:00:00Z")),
    )
    day = ingest_landing_day(lake, DEMO, next_day)
    assert day.input_rows == day.bronze_rows + day.quarantined_rows == 2
    assert lake.read_parquet(day.bronze_url)["event_id"].tolist() == ["e3"]
    (row,) = lake.read_parquet(day.quarantine_url).to_dict("records")
    assert (row["line_number"], row["field"], row["reason"]) == (1, "event_id", "event_id: duplicate of 2024-03-01")
    # Re-ingesting a day is not a duplicate of itself.
    assert ingest_landing_day(lake, DEMO, DAY).quarantined_rows == 0

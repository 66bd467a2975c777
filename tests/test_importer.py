"""Real sources land in the landing zone by day; every input row is landed or quarantined."""

import datetime as dt
import gzip
import json
import os

import pandas as pd
import pytest
from conftest import SHARED_DATA, needs_shared_data
from tests_fixtures import FORMAT_FIXTURES

from reclake.lake import Lake
from sources.importer import import_source

pytestmark = pytest.mark.unit


def _landed(lake: Lake, source: str, day: str) -> pd.DataFrame:
    files = [f for f in lake.list_files(lake.landing_dir(source, dt.date.fromisoformat(day))) if f.endswith(".parquet")]
    return pd.concat([lake.read_parquet(f) for f in files], ignore_index=True)


@needs_shared_data
def test_criteo_sample_lands_by_synthesized_day_and_is_read_once(tmp_path):
    lake = Lake(str(tmp_path))
    path = str(SHARED_DATA / "criteo" / "criteo_sample.csv")
    first = import_source(lake, "criteo", path, {"rows_per_day": 50})
    assert first.read_now == [path]
    assert first.rows_per_day == {"2014-01-01": 50, "2014-01-02": 50, "2014-01-03": 50, "2014-01-04": 50}
    assert (first.input_rows, first.rejected_rows) == (200, 0)
    assert len(_landed(lake, "criteo", "2014-01-02")) == 50

    again = import_source(lake, "criteo", path, {"rows_per_day": 50})
    assert again.read_now == [] and again.rows_per_day == first.rows_per_day

    # New reader options re-read the file and replace what it delivered before.
    regrouped = import_source(lake, "criteo", path, {"rows_per_day": 100})
    assert regrouped.read_now == [path] and regrouped.rows_per_day == {"2014-01-01": 100, "2014-01-02": 100}
    assert len(_landed(lake, "criteo", "2014-01-01")) == 100
    assert lake.list_files(lake.landing_dir("criteo", dt.date(2014, 1, 3))) == []


def test_malformed_lines_are_quarantined_with_their_line_and_counts_reconcile(tmp_path):
    lake = Lake(str(tmp_path))
    summary = import_source(lake, "criteo", str(FORMAT_FIXTURES / "criteo" / "train_sample.txt"), {"rows_per_day": 3})
    (imported,) = summary.files
    assert imported.input_rows == imported.landed_rows + imported.rejected_rows
    assert imported.rejected_rows == 4
    quarantined = lake.read_parquet(imported.quarantine_file)
    assert sorted(quarantined["line_number"]) == [4, 5, 6, 8]
    assert sum(imported.rows_per_day.values()) == imported.landed_rows


@needs_shared_data
def test_movielens_100k_lands_every_rating_on_its_day(tmp_path):
    lake = Lake(str(tmp_path))
    summary = import_source(lake, "movielens", str(SHARED_DATA / "ml-100k"))
    assert (summary.input_rows, summary.rejected_rows) == (100_000, 0)
    assert len(summary.rows_per_day) == 213
    assert min(summary.rows_per_day) == "1997-09-20" and max(summary.rows_per_day) == "1998-04-22"
    day = _landed(lake, "movielens", "1998-04-22")
    assert len(day) == summary.rows_per_day["1998-04-22"]
    assert (day["event_ts"].dt.date == dt.date(1998, 4, 22)).all()


def test_k_core_filter_moves_thin_users_and_items_to_quarantine(tmp_path):
    reviews = tmp_path / "reviews.jsonl"
    rows = []
    # Three users review the same three items (a 3-core); one user reviews once.
    for n, (user, item) in enumerate([(u, i) for u in ("A", "B", "C") for i in ("x", "y", "z")] + [("D", "x")]):
        rows.append({"rating": 4.0, "user_id": user, "asin": item, "parent_asin": item, "timestamp": 1_600_000_000_000 + n})
    reviews.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lake = Lake(str(tmp_path / "lake"))
    options = {"k_core": {"min_user_interactions": 2, "min_item_interactions": 2}}
    (imported,) = import_source(lake, "amazon_reviews", str(reviews), options).files
    assert (imported.input_rows, imported.landed_rows, imported.rejected_rows) == (10, 9, 1)
    assert (imported.filtered_rows, imported.unparsed_rows) == (1, 0)  # by design, not a fault
    quarantined = lake.read_parquet(imported.quarantine_file)
    assert quarantined["line_number"].tolist() == [10] and "k-core" in quarantined["reason"][0]
    landed = _landed(lake, "amazon_reviews", "2020-09-13")
    assert sorted(landed["user_id"].unique()) == ["A", "B", "C"]
    assert os.path.basename(imported.file) == "reviews.jsonl"


def _truncated_gzip(body: bytes, path) -> None:
    """``body`` gzipped, then cut in the middle, as an interrupted copy leaves it."""
    packed = gzip.compress(body, compresslevel=1)
    path.write_bytes(packed[: len(packed) // 2])


@pytest.mark.parametrize(
    "source, fixture, header",
    [
        ("criteo", "criteo/train_sample.txt", False),
        ("amazon_reviews", "amazon/reviews_2023.jsonl", False),
        ("amazon_reviews", "amazon/reviews_2023.csv", True),
    ],
    ids=["criteo-tsv", "amazon-jsonl", "amazon-csv"],
)
def test_a_truncated_source_file_lands_what_precedes_the_cut(tmp_path, source, fixture, header):
    lines = (FORMAT_FIXTURES / fixture).read_bytes().splitlines(keepends=True)
    head, body = (lines[:1], lines[1:]) if header else ([], lines)
    path = tmp_path / (os.path.basename(fixture) + ".gz")
    _truncated_gzip(b"".join(head + body * 400), path)
    lake = Lake(str(tmp_path / "lake"))
    (imported,) = import_source(lake, source, str(path), {}).files
    assert imported.landed_rows > 0 and imported.input_rows == imported.landed_rows + imported.rejected_rows
    quarantined = lake.read_parquet(imported.quarantine_file)
    cut = quarantined[quarantined["field"] == "<file>"]
    assert len(cut) == 1 and cut["reason"].iloc[0].startswith(f"truncated file: {path.name} unreadable after line ")
    last_good = int(cut["reason"].iloc[0].split("after line ")[1].split()[0])
    assert cut["line_number"].iloc[0] == last_good + 1 and last_good < len(head + body * 400)


def test_a_failed_import_leaves_nothing_half_written(tmp_path):
    day_file = tmp_path / "day_2.gz"
    day_file.write_bytes(gzip.compress((FORMAT_FIXTURES / "criteo" / "train_sample.txt").read_bytes()))
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(ValueError, match="more than rows_per_day=3 rows"):
        import_source(lake, "criteo", str(day_file), {"rows_per_day": 3, "chunk_rows": 2})
    landing = tmp_path / "lake" / "landing" / "criteo"
    assert landing.exists()  # the first chunk had landed before the error
    assert [p for p in landing.rglob("*") if p.is_file()] == []

"""Source-format parsers on real public samples (../shared/data) and on small hand-made
fixtures in the same raw layouts, malformed lines included (tests/fixtures/formats)."""

import bz2
import csv
import datetime as dt
import gzip
import hashlib
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED_DATA, needs_shared_data
from tests_fixtures import FORMAT_FIXTURES

from sources.bronze_schema import QUARANTINE_COLUMNS
from sources.formats import (
    CANONICAL_COLUMNS,
    FORMATS,
    ChecksumMismatchError,
    amazon_reviews,
    avazu,
    criteo,
    day_of,
    fetch_movielens,
    ipinyou,
    k_core_filter,
    movielens,
    multitask,
    read_source,
)

pytestmark = pytest.mark.unit

FIXTURES = FORMAT_FIXTURES


def collect(name: str, path, **options) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All chunks of a source, concatenated, after checking each chunk's layout."""
    spec = FORMATS[name].SPEC
    chunks = list(read_source(name, path, **options))
    assert chunks, "a reader yields at least one chunk"
    for chunk in chunks:
        assert list(chunk.frame.columns) == spec.columns
        for column, dtype in CANONICAL_COLUMNS.items():
            assert str(chunk.frame[column].dtype) == dtype, column
        assert list(chunk.rejects.columns) == QUARANTINE_COLUMNS
    frame = pd.concat([c.frame for c in chunks], ignore_index=True)
    rejects = pd.concat([c.rejects for c in chunks], ignore_index=True)
    assert frame["event_id"].is_unique
    return frame, rejects


def rows_in(path: Path) -> int:
    """Non-empty lines of a plain or gzipped text file (the parsers' input rows)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return sum(1 for line in handle if line.rstrip(b"\r\n"))


def reject_keys(rejects: pd.DataFrame) -> list[tuple[str, int, str]]:
    return list(rejects[["source_file", "line_number", "field"]].itertuples(index=False, name=None))


def gzip_copy(source: Path, target: Path) -> Path:
    target.write_bytes(gzip.compress(source.read_bytes()))
    return target


# --- real samples ------------------------------------------------------------------


@needs_shared_data
def test_movielens_100k_real_counts_and_first_rating():
    folder = SHARED_DATA / "ml-100k"
    frame, rejects = collect("movielens", folder)
    assert len(rejects) == 0
    assert len(frame) == 100_000 == rows_in(folder / "u.data")
    assert frame["user_id"].nunique() == 943
    assert frame["item_id"].nunique() == 1_682
    first = frame.iloc[0]
    assert (first["user_id"], first["item_id"], first["rating"]) == ("196", "242", 3.0)
    assert first["event_ts"] == pd.Timestamp(881250949, unit="s")
    assert first["event_id"] == "movielens-u-1"
    assert frame["clicked"].isna().all() and frame["converted"].isna().all()
    # The joined features are the side files' rows for this user and movie.
    user_line = next(line for line in (folder / "u.user").read_text("latin-1").splitlines() if line.startswith("196|"))
    assert [str(first[c]) for c in ("user_id", "age", "gender", "occupation", "zip_code")] == user_line.split("|")
    item_fields = next(
        line.split("|") for line in (folder / "u.item").read_text("latin-1").splitlines() if line.startswith("242|")
    )
    genres = [g for g, flag in zip(movielens.GENRES_100K, item_fields[5:], strict=True) if flag == "1"]
    assert first["title"] == item_fields[1]
    assert first["year"] == int(item_fields[1][-5:-1])
    assert first["genres"] == "|".join(genres)
    # The README's collection period: September 1997 to April 1998.
    assert frame["event_ts"].min() >= pd.Timestamp("1997-09-01")
    assert frame["event_ts"].max() < pd.Timestamp("1998-05-01")


@needs_shared_data
def test_criteo_headered_csv_real_sample():
    path = SHARED_DATA / "criteo" / "criteo_sample.csv"
    frame, rejects = collect("criteo", path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rejects) == 0 and len(frame) == len(rows) == 200
    assert frame["clicked"].tolist() == [int(r["label"]) for r in rows]
    for n in (1, 2, 5, 13):
        expected = [None if r[f"I{n}"] == "" else int(float(r[f"I{n}"])) for r in rows]
        assert [None if pd.isna(v) else int(v) for v in frame[f"i{n}"]] == expected
    assert frame["c1"].tolist() == [r["C1"] or None for r in rows]
    assert frame["c26"].tolist() == [r["C26"] or None for r in rows]
    assert frame["user_id"].isna().all() and frame["item_id"].isna().all()
    assert frame["event_ts"].is_monotonic_increasing
    assert set(day_of(frame["event_ts"])) == {criteo.DEFAULT_START_DATE}


@needs_shared_data
def test_avazu_real_sample_hours_and_chunking():
    path = SHARED_DATA / "avazu" / "avazu_sample.csv"
    frame, rejects = collect("avazu", path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rejects) == 0 and len(frame) == len(rows) == 100
    hours = [dt.datetime.strptime(r["hour"], "%y%m%d%H") for r in rows]
    assert frame["event_ts"].tolist() == [pd.Timestamp(h) for h in hours]
    assert frame["hour_of_day"].tolist() == [h.hour for h in hours]
    assert frame["clicked"].tolist() == [int(r["click"]) for r in rows]
    assert frame["id"].tolist() == [r["id"] for r in rows]
    assert frame["site_id"].tolist() == [r["site_id"] for r in rows]
    assert frame["c21"].tolist() == [r["C21"] for r in rows]
    chunked, _ = collect("avazu", path, chunk_rows=7)
    pd.testing.assert_frame_equal(chunked, frame)


@needs_shared_data
@pytest.mark.parametrize("split", ["train", "test"])
def test_aliexpress_multitask_real_samples(split):
    path = SHARED_DATA / "multitask" / f"aliexpress_tiny_{split}.csv"
    frame, rejects = collect("multitask", path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rejects) == 0 and len(frame) == len(rows) == 100
    assert frame["clicked"].tolist() == [int(r["click"]) for r in rows]
    assert frame["converted"].tolist() == [int(r["conversion"]) for r in rows]
    assert frame["search_id"].tolist() == [r["search_id"] for r in rows]
    assert frame["categorical_7"].tolist() == [r["categorical_7"] for r in rows]
    assert frame["numerical_63"].tolist() == [float(r["numerical_63"]) for r in rows]
    # No timestamps in the release: rows one millisecond apart from the start date.
    expected = [pd.Timestamp(multitask.DEFAULT_START_DATE) + pd.Timedelta(milliseconds=i) for i in range(100)]
    assert frame["event_ts"].tolist() == expected


# --- fixtures: Criteo raw TSV -----------------------------------------------------


def test_criteo_raw_tsv_rejects_and_reconciles():
    path = FIXTURES / "criteo" / "train_sample.txt"
    frame, rejects = collect("criteo", path)
    assert reject_keys(rejects) == [
        ("train_sample.txt", 4, "<line>"),
        ("train_sample.txt", 5, "I3"),
        ("train_sample.txt", 6, "label"),
        ("train_sample.txt", 8, "I5"),
    ]
    assert rejects["reason"].tolist() == [
        "<line>: expected 40 fields, got 39",
        "I3: not an integer: 'abc'",
        "label: outside [0, 1]: '2'",
        "I5: not an integer: '2.5'",
    ]
    raw_lines = path.read_text().splitlines()
    assert rejects["raw"].tolist() == [raw_lines[n - 1] for n in (4, 5, 6, 8)]
    assert rows_in(path) == len(frame) + len(rejects) == 9
    assert frame["event_id"].tolist() == [f"criteo-train_sample-{n}" for n in (1, 2, 3, 9, 10)]
    second = raw_lines[1].split("\t")  # missing I1, I4, I10 and C20, C26 (trailing tab)
    assert frame.loc[1, "clicked"] == 1
    assert [frame.loc[1, f"i{n}"] is pd.NA for n in (1, 4, 10)] == [True, True, True]
    assert frame.loc[1, "i2"] == int(second[2])
    assert frame.loc[1, "c1"] == second[14] and frame.loc[1, "c20"] is None and frame.loc[1, "c26"] is None
    assert frame.loc[3, "i2"] == -1
    assert frame.loc[4, ["i1", "i13"]].isna().all()


def test_criteo_gzip_reads_the_same(tmp_path):
    path = FIXTURES / "criteo" / "train_sample.txt"
    plain = collect("criteo", path)
    zipped = collect("criteo", gzip_copy(path, tmp_path / "train_sample.txt.gz"))
    pd.testing.assert_frame_equal(zipped[0], plain[0])
    assert zipped[1]["line_number"].tolist() == plain[1]["line_number"].tolist()
    assert set(zipped[1]["source_file"]) == {"train_sample.txt.gz"}


def test_criteo_one_file_is_split_into_days_by_row_order():
    # Data rows (blank line 7 not counted): lines 1-6 are rows 0-5, lines 8-10 rows 6-8.
    frame, _ = collect(
        "criteo", FIXTURES / "criteo" / "train_sample.txt", start_date=dt.date(2020, 3, 1), rows_per_day=4
    )
    day0, quarter = pd.Timestamp("2020-03-01"), pd.Timedelta(hours=6)
    assert frame["event_ts"].tolist() == [
        day0,  # line 1, row 0
        day0 + quarter,  # line 2, row 1
        day0 + 2 * quarter,  # line 3, row 2
        day0 + pd.Timedelta(days=1) + 3 * quarter,  # line 9, row 7
        day0 + pd.Timedelta(days=2),  # line 10, row 8
    ]
    assert day_of(frame["event_ts"]).tolist() == [dt.date(2020, 3, d) for d in (1, 1, 1, 2, 3)]


def test_criteo_terabyte_day_file_falls_on_its_day(tmp_path):
    day_file = gzip_copy(FIXTURES / "criteo" / "train_sample.txt", tmp_path / "day_2.gz")
    frame, rejects = collect("criteo", day_file, start_date=dt.date(2020, 3, 1))
    assert len(frame) == 5 and len(rejects) == 4
    assert set(day_of(frame["event_ts"])) == {dt.date(2020, 3, 3)}
    assert frame["event_id"].str.startswith("criteo-day_2-").all()
    with pytest.raises(ValueError, match="more than rows_per_day=8 rows"):
        collect("criteo", day_file, rows_per_day=8)


def test_date_options_are_taken_as_configs_write_them(tmp_path):
    """``start_date: "2014-01-01"`` (configs/criteo.yaml) works for the day_N layout too."""
    day_file = gzip_copy(FIXTURES / "criteo" / "train_sample.txt", tmp_path / "day_2.gz")
    frame, _ = collect("criteo", day_file, start_date="2020-03-01")
    assert set(day_of(frame["event_ts"])) == {dt.date(2020, 3, 3)}
    with pytest.raises(ValueError, match="option start_date must be a YYYY-MM-DD date, got 'March 1'"):
        collect("criteo", day_file, start_date="March 1")


def test_criteo_undecodable_line_is_rejected_whole(tmp_path):
    lines = (FIXTURES / "criteo" / "train_sample.txt").read_bytes().splitlines(keepends=True)
    path = tmp_path / "latin.txt"
    path.write_bytes(lines[0] + lines[1].replace(b"\t", b"\t\xe9", 1) + lines[2])
    frame, rejects = collect("criteo", path)
    assert len(frame) == 2
    assert reject_keys(rejects) == [("latin.txt", 2, "<line>")]
    assert rejects["reason"][0] == "<line>: not valid utf-8" and "\ufffd" in rejects["raw"][0]


def test_criteo_csv_with_a_wrong_header_is_refused(tmp_path):
    path = tmp_path / "sample.csv"
    path.write_text("label,I1,I2\n0,1,2\n")
    with pytest.raises(ValueError, match="expected the Criteo CSV header"):
        collect("criteo", path)


# --- fixtures: Avazu, AliExpress malformed rows -------------------------------------


def test_avazu_bad_hours_and_test_layout(tmp_path):
    header = ",".join(avazu.TRAIN_COLUMNS)
    values = "1005,0,site01,dom01,cat01,app01,adom01,acat01,dev01,ip01,model01,1,2,15706,320,50,1722,0,35,-1,79"
    path = tmp_path / "train.csv"
    path.write_text(
        f"{header}\n"
        f"1001,1,14102123,{values}\n"
        f"1002,0,14103200,{values}\n"  # October 32nd
        f"1003,0,1410210,{values}\n"  # seven digits
        f"1004,3,14102200,{values}\n"  # click 3
        f"1005,0,14102200,{values},extra\n"
    )
    frame, rejects = collect("avazu", path)
    assert frame["event_ts"].tolist() == [pd.Timestamp("2014-10-21 23:00")]
    assert frame["hour_of_day"].tolist() == [23]
    assert reject_keys(rejects) == [
        ("train.csv", 3, "hour"),
        ("train.csv", 4, "hour"),
        ("train.csv", 5, "click"),
        ("train.csv", 6, "<line>"),
    ]
    assert rows_in(path) - 1 == len(frame) + len(rejects)

    test_file = tmp_path / "test.csv"
    test_file.write_text(",".join(avazu.TEST_COLUMNS) + f"\n2001,14103100,{values}\n")
    frame, rejects = collect("avazu", test_file)
    assert frame["clicked"].isna().all() and len(rejects) == 0
    assert frame["event_ts"].tolist() == [pd.Timestamp("2014-10-31")]


def test_aliexpress_rejects_bad_labels_and_numbers(tmp_path):
    header = ",".join(multitask.COLUMNS)
    features = ",".join(["1"] * 16 + ["0.5"] * 63)
    path = tmp_path / "aliexpress_bad.csv"
    path.write_text(
        f"{header}\n"
        f"7,{features},1,1\n"
        f"8,{features},0,1\n"  # conversion without a click
        f"9,{features.replace('0.5', 'abc', 1)},0,0\n"  # numerical_1 not a number
        f"10,{features.replace('1', 'x', 1)},0,0\n"  # categorical_1 not an integer
        f",{features},0,0\n"  # no search_id
    )
    frame, rejects = collect("multitask", path, start_date=dt.date(2021, 5, 1))
    assert frame["search_id"].tolist() == ["7"] and frame["event_ts"].tolist() == [pd.Timestamp("2021-05-01")]
    assert reject_keys(rejects) == [
        ("aliexpress_bad.csv", 3, "conversion"),
        ("aliexpress_bad.csv", 4, "numerical_1"),
        ("aliexpress_bad.csv", 5, "categorical_1"),
        ("aliexpress_bad.csv", 6, "search_id"),
    ]
    assert rejects["reason"][0] == "conversion: conversion without a click"


# --- fixtures: MovieLens ------------------------------------------------------------


def test_movielens_1m_layout_joins_features_and_rejects():
    folder = FIXTURES / "movielens" / "ml-1m"
    frame, rejects = collect("movielens", folder)
    assert reject_keys(rejects) == [
        ("users.dat", 4, "gender"),
        ("users.dat", 5, "<line>"),
        ("movies.dat", 4, "item_id"),
        ("ratings.dat", 5, "rating"),
        ("ratings.dat", 6, "<line>"),
        ("ratings.dat", 7, "user_id"),
        ("ratings.dat", 8, "item_id"),
        ("ratings.dat", 9, "rating"),
        ("ratings.dat", 10, "timestamp"),
    ]
    assert rejects["reason"][5] == "user_id: no valid row in users.dat: '4'"
    from_ratings = rejects[rejects["source_file"] == "ratings.dat"]
    assert rows_in(folder / "ratings.dat") == len(frame) + len(from_ratings)
    assert frame[["user_id", "item_id", "rating"]].values.tolist() == [
        ["1", "1", 5.0], ["1", "2", 3.0], ["2", "1", 4.0], ["2", "3", 2.0]
    ]  # fmt: skip
    assert frame["event_ts"][0] == pd.Timestamp("2000-12-31 22:12:40")  # 978300760 s
    first_user = frame.loc[0, ["gender", "age", "occupation", "zip_code"]].tolist()
    assert first_user == ["F", 1, "10", "10001"]
    latin1_movie = frame.loc[3, ["title", "year", "genres"]].tolist()
    assert latin1_movie == ["Café Exemple (Sample) (1993)", 1993, "Comedy"]
    assert frame.loc[0, "genres"] == "Animation|Children's|Comedy"


@pytest.fixture
def ml100k_folder(tmp_path) -> Path:
    """The synthetic 100K fixture under the official names (``u.data``, ``u.item``, ``u.user``).

    The repository keeps these invented files with a ``.txt`` suffix, so that no tracked
    file looks like (or could be mistaken for) the real, non-redistributable data set.
    """
    folder = tmp_path / "fixtures" / "ml-100k"
    folder.mkdir(parents=True)
    for name in ("u.data", "u.item", "u.user"):
        shutil.copyfile(FIXTURES / "movielens" / "ml-100k-synthetic" / f"{name}.txt", folder / name)
    return folder


def test_movielens_100k_layout_genre_flags(ml100k_folder):
    frame, rejects = collect("movielens", ml100k_folder)
    assert reject_keys(rejects) == [("u.item", 4, "Comedy"), ("u.data", 5, "item_id"), ("u.data", 6, "<line>")]
    by_item = frame.drop_duplicates("item_id").set_index("item_id")
    assert by_item.loc["1", "genres"] == "Animation|Children's|Comedy"  # flags 3, 4, 5
    assert by_item.loc["2", "genres"] == "Action|Thriller"  # flags 1, 16
    assert by_item.loc["3", "title"] == "Fête Exemple (1997)"


# --- fetch_movielens ----------------------------------------------------------------


def _zip_of(folder: Path, target: Path) -> str:
    with zipfile.ZipFile(target, "w") as bundle:
        for file in sorted(folder.iterdir()):
            bundle.write(file, f"ml-100k/{file.name}")
    return hashlib.sha256(target.read_bytes()).hexdigest()


def test_fetch_movielens_uses_an_existing_folder_untouched(ml100k_folder):
    folder = ml100k_folder
    before = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    assert fetch_movielens("100k", folder) == folder
    assert fetch_movielens("100k", folder.parent) == folder
    assert {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == before


def test_fetch_movielens_downloads_once_and_verifies_the_checksum(tmp_path, ml100k_folder):
    fixture = ml100k_folder
    archive = tmp_path / "served" / "ml-100k.zip"
    archive.parent.mkdir()
    checksum = _zip_of(fixture, archive)
    cache = tmp_path / "cache"

    folder = fetch_movielens("100k", cache, url=archive.as_uri(), sha256=checksum)
    assert folder == cache / "ml-100k"
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == {f.name: f.read_bytes() for f in fixture.iterdir()}
    assert collect("movielens", folder)[0]["event_id"].tolist() == collect("movielens", fixture)[0]["event_id"].tolist()
    # Once there, nothing is downloaded again (this URL does not exist).
    missing_url = (tmp_path / "nowhere.zip").as_uri()
    assert fetch_movielens("100k", cache, url=missing_url, sha256=checksum) == folder


def test_fetch_movielens_checksum_mismatch_and_missing_checksum(tmp_path, ml100k_folder):
    archive = tmp_path / "ml-100k-served.zip"
    _zip_of(ml100k_folder, archive)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatchError, match="SHA-256 is [0-9a-f]{64}, expected 0{64}"):
        fetch_movielens("100k", cache, url=archive.as_uri(), sha256="0" * 64)
    assert not (cache / "ml-100k.zip").exists() and not (cache / "ml-100k").exists()
    with pytest.raises(ValueError, match="pass sha256="):
        fetch_movielens("1m", cache)
    with pytest.raises(ValueError, match="unknown MovieLens variant"):
        fetch_movielens("10m", cache)  # type: ignore[arg-type]


# --- fixtures: Amazon reviews -------------------------------------------------------


def test_amazon_2023_jsonl_rejects_and_reconciles(tmp_path):
    path = FIXTURES / "amazon" / "reviews_2023.jsonl"
    frame, rejects = collect("amazon_reviews", path)
    assert reject_keys(rejects) == [
        ("reviews_2023.jsonl", 3, "<line>"),
        ("reviews_2023.jsonl", 4, "user_id"),
        ("reviews_2023.jsonl", 5, "rating"),
        ("reviews_2023.jsonl", 6, "<line>"),
        ("reviews_2023.jsonl", 9, "rating"),
        ("reviews_2023.jsonl", 10, "timestamp"),
        ("reviews_2023.jsonl", 11, "user_id"),
    ]
    assert rejects["reason"][0].startswith("<line>: invalid JSON")
    assert rejects["reason"][3] == "<line>: expected a JSON object, got list"
    assert rows_in(path) == len(frame) + len(rejects) == 10
    assert frame["event_id"].tolist() == [f"amazon_reviews-reviews_2023-{n}" for n in (1, 2, 8)]
    assert frame["item_id"].tolist() == ["B0EXAMPLEP", "B0EXAMPLE2", "B0EXAMPLEQ"]  # parent_asin
    assert frame["event_ts"][0] == pd.Timestamp("2020-05-05 14:08:48.923")  # 1588687728923 ms
    assert frame["helpful_vote"].tolist() == [2, 0, 11]
    assert frame["verified_purchase"].tolist() == [1, 0, 1]
    zipped = collect("amazon_reviews", gzip_copy(path, tmp_path / "reviews_2023.jsonl.gz"))
    pd.testing.assert_frame_equal(zipped[0], frame)


def test_amazon_2018_jsonl_names_votes_and_seconds():
    frame, rejects = collect("amazon_reviews", FIXTURES / "amazon" / "reviews_2018.jsonl")
    assert reject_keys(rejects) == [
        ("reviews_2018.jsonl", 3, "unixReviewTime"),
        ("reviews_2018.jsonl", 4, "asin"),
        ("reviews_2018.jsonl", 5, "vote"),
    ]
    assert frame["user_id"].tolist() == ["AEXAMPLE2018A", "AEXAMPLE2018B"]
    assert frame["item_id"].tolist() == ["0000000001", "0000000002"] and frame["parent_asin"].isna().all()
    assert frame["event_ts"].tolist() == [pd.Timestamp("2009-09-13"), pd.Timestamp("2009-09-14")]  # 1252800000 s
    assert frame["helpful_vote"].tolist()[0] == 1234 and frame["helpful_vote"][1] is pd.NA  # "1,234"; no vote
    assert frame[["title", "text"]].values.tolist() == [["Good", "Good read."], ["Meh", "Meh."]]


def test_amazon_csv_quoted_records_and_headerless_ratings(tmp_path):
    path = FIXTURES / "amazon" / "reviews_2023.csv"
    frame, rejects = collect("amazon_reviews", path, chunk_rows=2)
    assert reject_keys(rejects) == [("reviews_2023.csv", 5, "rating"), ("reviews_2023.csv", 6, "<line>")]
    assert frame["event_id"].tolist() == [f"amazon_reviews-reviews_2023-{n}" for n in (2, 3, 7)]
    assert frame["text"].tolist() == ['Fits, and "really" well', "first line\nsecond line", "fine"]
    assert len(frame) + len(rejects) == 5  # records after the header

    ratings = tmp_path / "ratings_Books.csv"
    ratings.write_text("0000000001,AEXAMPLE1,5.0,1252800000\n0000000002,AEXAMPLE2,6.0,1252800000\n")
    frame, rejects = collect("amazon_reviews", ratings, csv_header=amazon_reviews.RATINGS_ONLY_2018_HEADER)
    assert frame[["user_id", "item_id", "rating"]].values.tolist() == [["AEXAMPLE1", "0000000001", 5.0]]
    assert reject_keys(rejects) == [("ratings_Books.csv", 2, "overall")]
    with pytest.raises(ValueError, match="lacks user_id, rating, timestamp, asin or parent_asin"):
        collect("amazon_reviews", ratings)  # its first row is not a header


# --- fixtures: iPinYou --------------------------------------------------------------


def test_ipinyou_impressions_joined_with_clicks_and_conversions():
    path = FIXTURES / "ipinyou" / "imp.20130606.txt"
    frame, rejects = collect("ipinyou", path)
    assert reject_keys(rejects) == [
        ("clk.20130606.txt", 5, "log_type"),
        ("imp.20130606.txt", 4, "<line>"),
        ("imp.20130606.txt", 5, "timestamp"),
        ("imp.20130606.txt", 6, "paying_price"),
        ("imp.20130606.txt", 7, "log_type"),
    ]
    from_impressions = rejects[rejects["source_file"] == path.name]
    assert rows_in(path) == len(frame) + len(from_impressions)
    assert frame["event_id"].tolist() == [f"ipinyou-imp.20130606-{n}" for n in (1, 2, 3, 8)]
    assert frame["clicked"].tolist() == [1, 0, 1, 0]  # lines 1 and 3 are in the click log
    assert frame["converted"].tolist() == [1, 0, 0, 0]  # line 1 is in the conversion log
    assert frame["bid_price"].tolist() == [300.0, 300.0, 277.0, 238.0]
    assert frame["market_price"].tolist() == [52.0, 80.0, 60.0, 101.0]
    assert frame["user_id"].tolist() == ["VhExampleUser001", None, "VhExampleUser002", "VhExampleUser001"]
    assert frame["item_id"][0] == "creative00000001" and frame["anonymous_url_id"].isna().all()
    # Beijing clock times, UTC+8, stored in UTC: the file spans two UTC days.
    assert frame["event_ts"].tolist() == [
        pd.Timestamp("2013-06-05 16:01:04.008"),
        pd.Timestamp("2013-06-05 16:02:15.120"),
        pd.Timestamp("2013-06-06 04:00:00"),
        pd.Timestamp("2013-06-06 15:59:59.999"),
    ]
    days = frame.groupby(day_of(frame["event_ts"])).size()
    assert days.to_dict() == {dt.date(2013, 6, 5): 2, dt.date(2013, 6, 6): 2}


def test_ipinyou_options_and_missing_click_log(tmp_path):
    frame, _ = collect("ipinyou", FIXTURES / "ipinyou" / "imp.20130606.txt", timezone="UTC")
    assert frame["event_ts"][0] == pd.Timestamp("2013-06-06 00:01:04.008")
    lonely = tmp_path / "imp.20130607.txt"
    shutil.copy(FIXTURES / "ipinyou" / "imp.20130606.txt", lonely)
    with pytest.raises(FileNotFoundError, match="clk.20130607.txt does not exist"):
        collect("ipinyou", lonely)
    shutil.copy(FIXTURES / "ipinyou" / "clk.20130606.txt", tmp_path / "clk.20130607.txt")
    frame, _ = collect("ipinyou", lonely)
    assert frame["clicked"].tolist() == [1, 0, 1, 0] and frame["converted"].isna().all()  # no conversion log
    # The release ships bz2 files; any name works when the click log is named explicitly.
    renamed = tmp_path / "impressions.txt.bz2"
    renamed.write_bytes(bz2.compress((FIXTURES / "ipinyou" / "imp.20130606.txt").read_bytes()))
    frame, rejects = collect("ipinyou", renamed, click_path=FIXTURES / "ipinyou" / "clk.20130606.txt")
    assert frame["event_id"].str.startswith("ipinyou-impressions-").all()
    assert frame["clicked"].tolist() == [1, 0, 1, 0] and len(rejects) == 5


# --- every source: chunking, registry -----------------------------------------------

CHUNKED_SOURCES = [
    ("criteo", FIXTURES / "criteo" / "train_sample.txt", {}),
    ("movielens", FIXTURES / "movielens" / "ml-1m", {}),
    ("amazon_reviews", FIXTURES / "amazon" / "reviews_2023.jsonl", {}),
    ("amazon_reviews", FIXTURES / "amazon" / "reviews_2023.csv", {}),
    ("ipinyou", FIXTURES / "ipinyou" / "imp.20130606.txt", {}),
]


@pytest.mark.parametrize(("name", "path", "options"), CHUNKED_SOURCES, ids=lambda v: getattr(v, "name", None))
@pytest.mark.parametrize("chunk_rows", [1, 3])
def test_chunking_gives_the_same_result_as_one_chunk(name, path, options, chunk_rows):
    whole = list(read_source(name, path, **options))
    assert len(whole) == 1
    frame, rejects = collect(name, path, chunk_rows=chunk_rows, **options)
    pd.testing.assert_frame_equal(frame, whole[0].frame)
    pd.testing.assert_frame_equal(rejects, whole[0].rejects)


def test_registry_lists_every_source_and_refuses_unknown_names():
    assert sorted(FORMATS) == ["amazon_reviews", "avazu", "criteo", "ipinyou", "movielens", "multitask"]
    assert FORMATS["criteo"] is criteo and FORMATS["ipinyou"] is ipinyou
    with pytest.raises(ValueError, match="unknown source format 'kaggle'; known: amazon_reviews, avazu"):
        read_source("kaggle", "x")


def test_an_empty_file_yields_one_empty_chunk(tmp_path):
    empty = tmp_path / "day_0"
    empty.write_text("")
    (chunk,) = read_source("criteo", empty)
    assert len(chunk.frame) == 0 and len(chunk.rejects) == 0
    assert list(chunk.frame.columns) == criteo.SPEC.columns


# --- k-core -------------------------------------------------------------------------


def test_k_core_filter_iterates_to_a_fixed_point():
    pairs = [
        ("u1", "i1"),
        ("u1", "i2"),
        ("u1", "i3"),
        ("u2", "i1"),
        ("u2", "i2"),
        ("u3", "i1"),
        ("u4", "i3"),
        (None, "i1"),
    ]
    interactions = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    # u3, u4 (one each) and the row without a user go; then i3 is left with u1 only.
    core = k_core_filter(interactions, 2, 2)
    assert core.index.tolist() == [0, 1, 3, 4]
    # A cascade: dropping u3 leaves i2, i3 with one user; dropping them leaves u1, u2 with one item.
    cascade = pd.DataFrame(
        [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i3"), ("u3", "i3")], columns=["user_id", "item_id"]
    )
    assert k_core_filter(cascade, 2, 2).empty
    assert k_core_filter(cascade, 1, 1).equals(cascade)
    assert k_core_filter(cascade, 1, 2).index.tolist() == [0, 2, 3, 4]  # i2 has one row
    with pytest.raises(ValueError, match="min_item_interactions must be at least 1"):
        k_core_filter(cascade, 2, 0)

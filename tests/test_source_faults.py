"""Faults in real sources' own files, through the importer and bronze: one bad value per
case in an otherwise good fixture. Nothing crashes, the faulty row is quarantined (by
the parser or by bronze validation, with its reason), bronze never holds it, and the
counts reconcile from the source file to bronze."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tests_fixtures import FORMAT_FIXTURES

from reclake.feature_spec import load_feature_spec
from reclake.lake import Lake
from sources.importer import import_source
from sources.ingest import ingest_landing_day

pytestmark = pytest.mark.unit

BIG_INT = "1" + "0" * 30
MEGABYTE = "x" * 1_000_000


def _criteo(tmp_path: Path, column: int, value: str) -> tuple[str, str, dict]:
    lines = (FORMAT_FIXTURES / "criteo" / "train_sample.txt").read_text().splitlines()
    cells = lines[0].split("\t")
    cells[column] = value
    path = tmp_path / "train.txt"
    path.write_text("\n".join(["\t".join(cells), *lines[1:]]) + "\n")
    return "criteo", str(path), {"rows_per_day": 100, "start_date": "2024-03-01"}


def _amazon(tmp_path: Path, **change) -> tuple[str, str, dict]:
    lines = (FORMAT_FIXTURES / "amazon" / "reviews_2023.jsonl").read_text().splitlines()
    first = {**json.loads(lines[0]), **change}
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    return "amazon_reviews", str(path), {}


def _movielens(tmp_path: Path, first_line: str) -> tuple[str, str, dict]:
    folder = tmp_path / "ml-1m"
    shutil.copytree(FORMAT_FIXTURES / "movielens" / "ml-1m", folder)
    lines = (folder / "ratings.dat").read_text().splitlines()
    (folder / "ratings.dat").write_text("\n".join([first_line, *lines[1:]]) + "\n")
    return "movielens", str(folder), {"variant": "1m"}


def _ipinyou(tmp_path: Path, field: int, value: str) -> tuple[str, str, dict]:
    folder = tmp_path / "ipinyou"
    shutil.copytree(FORMAT_FIXTURES / "ipinyou", folder)
    impressions = folder / "imp.20130606.txt"
    lines = impressions.read_text().splitlines()
    cells = lines[0].split("\t")
    cells[field] = value
    impressions.write_text("\n".join(["\t".join(cells), *lines[1:]]) + "\n")
    return "ipinyou", str(folder), {}


def _avazu(tmp_path: Path, column: str, value: str) -> tuple[str, str, dict]:
    """A small Avazu training file written here (the real sample is research data); the
    faulty row is the first, after the header."""
    from sources.formats.avazu import TRAIN_COLUMNS

    rows = []
    for n in range(40):
        row = {name: f"{name.lower()}{n % 5}" for name in TRAIN_COLUMNS}
        row.update(id=str(10**19 + n), click=str(int(n % 7 == 0)), hour=f"141021{n % 24:02d}")
        rows.append(row)
    rows[0][column] = value
    path = tmp_path / "train.csv"
    path.write_text("\n".join([",".join(TRAIN_COLUMNS), *(",".join(r[c] for c in TRAIN_COLUMNS) for r in rows)]) + "\n")
    return "avazu", str(path), {}


def _multitask(tmp_path: Path, column: str, value: str) -> tuple[str, str, dict]:
    """A small AliExpress multi-task file written here; the faulty row is the first."""
    from sources.formats.multitask import CATEGORICAL_COLUMNS, COLUMNS, NUMERICAL_COLUMNS

    rows = []
    for n in range(40):
        row = {"search_id": str(n // 4), "click": str(int(n % 5 == 0)), "conversion": str(int(n % 20 == 0))}
        row.update({name: str(n % 3) for name in CATEGORICAL_COLUMNS})
        row.update({name: f"{(n % 7) / 7:.4f}" for name in NUMERICAL_COLUMNS})
        rows.append(row)
    rows[0][column] = value
    path = tmp_path / "aliexpress_train.csv"
    path.write_text("\n".join([",".join(COLUMNS), *(",".join(r[c] for c in COLUMNS) for r in rows)]) + "\n")
    return "multitask", str(path), {}


# The line of a file's first row: after the header where the format has one.
FIRST_ROW_LINE = {"avazu": 2, "multitask": 2}

CASES = {
    "criteo-int-beyond-64-bits": lambda t: _criteo(t, 1, BIG_INT),
    "criteo-infinity": lambda t: _criteo(t, 1, "Infinity"),
    "criteo-1e400": lambda t: _criteo(t, 1, "1e400"),
    "criteo-megabyte-category": lambda t: _criteo(t, 15, MEGABYTE),
    "amazon-timestamp-beyond-64-bits": lambda t: _amazon(t, timestamp=10**30),
    "amazon-infinite-rating": lambda t: _amazon(t, rating=float("inf")),
    "amazon-null-user": lambda t: _amazon(t, user_id="null"),
    "amazon-blank-user": lambda t: _amazon(t, user_id="   "),
    "amazon-megabyte-user": lambda t: _amazon(t, user_id=MEGABYTE),
    "movielens-timestamp-beyond-64-bits": lambda t: _movielens(t, "1::1::5::" + "9" * 30),
    "movielens-infinite-rating": lambda t: _movielens(t, "1::1::inf::978300760"),
    "movielens-id-beyond-64-bits": lambda t: _movielens(t, BIG_INT + "::1::5::978300760"),
    "ipinyou-paying-price-beyond-64-bits": lambda t: _ipinyou(t, 20, BIG_INT),
    "ipinyou-infinite-bid-price": lambda t: _ipinyou(t, 19, "Infinity"),
    "ipinyou-megabyte-creative": lambda t: _ipinyou(t, 18, MEGABYTE),
    "avazu-megabyte-category": lambda t: _avazu(t, "site_id", MEGABYTE),
    "avazu-click-not-a-flag": lambda t: _avazu(t, "click", "1e400"),
    "multitask-numerical-1e400": lambda t: _multitask(t, "numerical_3", "1e400"),
    "multitask-numerical-nan": lambda t: _multitask(t, "numerical_3", "NaN"),
    "multitask-categorical-beyond-64-bits": lambda t: _multitask(t, "categorical_2", BIG_INT),
    "multitask-conversion-without-click": lambda t: _multitask(t, "click", "0"),  # row 0 converts
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_value_in_a_source_file_never_reaches_bronze(tmp_path, case):
    source, path, options = CASES[case](tmp_path)
    lake = Lake(str(tmp_path / "lake"))
    (imported,) = import_source(lake, source, path, options).files
    assert imported.input_rows == imported.landed_rows + imported.rejected_rows

    spec = load_feature_spec(source)
    days = [ingest_landing_day(lake, spec, pd.Timestamp(day).date()) for day in imported.rows_per_day]
    for day in days:
        assert day.input_rows == day.bronze_rows + day.quarantined_rows
    assert sum(d.input_rows for d in days) == imported.landed_rows
    bronze = pd.concat([lake.read_parquet(d.bronze_url) for d in days if d.bronze_rows], ignore_index=True)

    # The faulty line (the file's first row) is quarantined once, by the parser or by bronze.
    line = FIRST_ROW_LINE.get(source, 1)
    import_rejects = lake.read_parquet(imported.quarantine_file) if imported.quarantine_file else pd.DataFrame()
    bronze_rejects = [lake.read_parquet(d.quarantine_url) for d in days if d.quarantine_url]
    quarantined = pd.concat([import_rejects, *bronze_rejects], ignore_index=True)
    # A parser reject names the source line; a bronze reject names the landed file's row,
    # and its raw row carries the event id, which ends in the source line.
    from_bronze = quarantined["source_file"].str.endswith(".parquet")
    first_line = quarantined[
        (~from_bronze & (quarantined["line_number"] == line))
        | (from_bronze & quarantined["raw"].str.contains(f'"event_id":"[^"]*-{line}"', regex=True))
    ]
    assert len(first_line) == 1, quarantined[["source_file", "line_number", "reason"]]
    assert len(first_line["reason"].iloc[0]) < 300  # a reason quotes, never embeds
    assert not bronze["event_id"].str.endswith(f"-{line}").any()  # event ids end in the line number
    assert sum(d.bronze_rows for d in days) == len(bronze)

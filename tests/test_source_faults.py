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

    # The faulty line (line 1 of the file) is quarantined once, by the parser or by bronze.
    import_rejects = lake.read_parquet(imported.quarantine_file) if imported.quarantine_file else pd.DataFrame()
    bronze_rejects = [lake.read_parquet(d.quarantine_url) for d in days if d.quarantine_url]
    quarantined = pd.concat([import_rejects, *bronze_rejects], ignore_index=True)
    first_line = quarantined[quarantined["line_number"] == 1]
    assert len(first_line) == 1, quarantined[["source_file", "line_number", "reason"]]
    assert len(first_line["reason"].iloc[0]) < 300  # a reason quotes, never embeds
    assert not bronze["event_id"].str.endswith("-1").any()  # event ids end in the line number
    assert sum(d.bronze_rows for d in days) == len(bronze)

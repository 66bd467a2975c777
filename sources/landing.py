"""Read one day of a landing zone back, keeping every line accounted for.

Landing files are gzipped or plain JSON lines (``*.jsonl``, ``*.jsonl.gz``) or Parquet
(``*.parquet``). A line that is not a JSON object is rejected here with its file and line
number; everything else becomes a record for ``bronze_schema.validate_events``.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from dataclasses import dataclass

import pandas as pd
import pyarrow.parquet as pq

from reclake.lake import Lake
from sources.bronze_schema import LINE_NUMBER, QUARANTINE_COLUMNS, RAW, SOURCE_FILE

LANDING_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".parquet")


class NoLandingDataError(FileNotFoundError):
    """Raised when a day has no landing files at all."""


@dataclass(frozen=True)
class LandingDay:
    """The raw content of one landing day.

    Attributes:
        records: one row per parsed record, with ``_source_file``, ``_line_number`` and
            ``_raw`` columns saying where it came from.
        unparseable: lines that are not JSON objects, in the quarantine layout.
        files: the landing files read, in order.
    """

    records: pd.DataFrame
    unparseable: pd.DataFrame
    files: list[str]

    @property
    def input_rows(self) -> int:
        return len(self.records) + len(self.unparseable)


def read_landing_day(lake: Lake, source: str, day: dt.date) -> LandingDay:
    """Read every landing file of ``source`` for ``day``.

    Raises:
        NoLandingDataError: when the day's landing folder has no landing files.
    """
    folder = lake.landing_dir(source, day)
    files = [f for f in lake.list_files(folder) if f.endswith(LANDING_SUFFIXES)]
    if not files:
        raise NoLandingDataError(f"no landing files for source {source!r} on {day}: looked in {folder}")
    frames, rejects = [], []
    for url in files:
        if url.endswith(".parquet"):
            frames.append(_read_parquet_records(lake, url))
        else:
            parsed, bad = _read_jsonl_records(lake, url)
            frames.append(parsed)
            rejects.extend(bad)
    records = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    unparseable = pd.DataFrame(rejects, columns=QUARANTINE_COLUMNS)
    return LandingDay(records=records, unparseable=unparseable, files=files)


def _read_jsonl_records(lake: Lake, url: str) -> tuple[pd.DataFrame, list[dict]]:
    name = posixpath.basename(url)
    rows, rejects = [], []
    for number, line in enumerate(lake.iter_lines(url), start=1):
        if not line.strip():
            continue
        text = line.decode("utf-8", errors="replace")
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            rejects.append(_reject(name, number, "<line>", f"invalid JSON: {error.msg} at column {error.colno}", text))
            continue
        if not isinstance(record, dict):
            rejects.append(_reject(name, number, "<line>", f"expected a JSON object, got {type(record).__name__}", text))
            continue
        record[SOURCE_FILE], record[LINE_NUMBER], record[RAW] = name, number, text
        rows.append(record)
    return pd.DataFrame(rows), rejects


def _read_parquet_records(lake: Lake, url: str) -> pd.DataFrame:
    with lake.fs.open(url, "rb") as handle:
        frame = pq.read_table(handle).to_pandas().astype(object)
    frame[SOURCE_FILE] = posixpath.basename(url)
    frame[LINE_NUMBER] = range(1, len(frame) + 1)
    frame[RAW] = frame.drop(columns=[SOURCE_FILE, LINE_NUMBER]).to_json(orient="records", lines=True, date_format="iso").splitlines()
    return frame


def _reject(file: str, line: int, field: str, reason: str, raw: str) -> dict:
    return {"source_file": file, "line_number": line, "field": field, "reason": reason, "raw": raw}

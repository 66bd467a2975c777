"""Read one day of a landing zone back, keeping every line accounted for.

Landing files are gzipped or plain JSON lines (``*.jsonl``, ``*.json``, ``*.ndjson``, each
optionally ``.gz``, in any letter case) or Parquet (``*.parquet``). Names starting with
``_`` or ``.`` are markers (``_SUCCESS``, ``.crc``) and are skipped, as everywhere in the
lake. Everything else is accounted for here, with its file and line number:

- a line that is not valid UTF-8 or not a JSON object is a reject;
- a compressed file cut short keeps the lines before the cut, and the rest is one
  ``truncated file`` reject naming the last good line;
- an unreadable Parquet file, or a file of another type, is one reject naming it.

Everything else becomes a record for ``bronze_schema.validate_events``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import posixpath
import zlib
from dataclasses import dataclass

import pandas as pd
import pyarrow.parquet as pq

from reclake.lake import Lake, is_marker_file
from sources.bronze_schema import LINE_NUMBER, QUARANTINE_COLUMNS, RAW, SOURCE_FILE

JSON_LINES_SUFFIXES = (".jsonl", ".json", ".ndjson")
LANDING_SUFFIXES = (*JSON_LINES_SUFFIXES, *(s + ".gz" for s in JSON_LINES_SUFFIXES), ".parquet")
# What reading a compressed file that was cut short or corrupted raises.
_CUT_SHORT = (EOFError, gzip.BadGzipFile, zlib.error)


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
    files = [f for f in lake.list_files(folder) if not is_marker_file(posixpath.basename(f))]
    if not files:
        raise NoLandingDataError(f"no landing files for source {source!r} on {day}: looked in {folder}")
    frames, rejects = [], []
    for url in files:
        name = posixpath.basename(url)
        if not name.lower().endswith(LANDING_SUFFIXES):
            reason = f"not a landing file (read: {', '.join(LANDING_SUFFIXES)}): not read"
            rejects.append(_reject(name, 0, "<file>", reason, ""))
        elif name.lower().endswith(".parquet"):
            try:
                frames.append(_read_parquet_records(lake, url))
            except Exception as error:  # noqa: BLE001 - any unreadable file is one reject, named
                rejects.append(_reject(name, 0, "<file>", f"unreadable Parquet file: {error}", ""))
        else:
            parsed, bad = _read_jsonl_records(lake, url)
            frames.append(parsed)
            rejects.extend(bad)
    records = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    unparseable = pd.DataFrame(rejects, columns=QUARANTINE_COLUMNS)
    return LandingDay(records=records, unparseable=unparseable, files=files)


def _read_jsonl_records(lake: Lake, url: str) -> tuple[pd.DataFrame, list[dict]]:
    """Records and rejects of one JSON-lines file (gzipped when its name ends in .gz)."""
    name = posixpath.basename(url)
    rows, rejects = [], []
    number = 0
    try:
        for number, line in enumerate(lake.iter_lines(url, compressed=name.lower().endswith(".gz")), start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                raw = line.decode("utf-8", errors="backslashreplace")
                rejects.append(_reject(name, number, "<line>", f"invalid UTF-8 at byte {error.start}", raw))
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                rejects.append(
                    _reject(name, number, "<line>", f"invalid JSON: {error.msg} at column {error.colno}", text)
                )
                continue
            if not isinstance(record, dict):
                rejects.append(
                    _reject(name, number, "<line>", f"expected a JSON object, got {type(record).__name__}", text)
                )
                continue
            record[SOURCE_FILE], record[LINE_NUMBER], record[RAW] = name, number, text
            rows.append(record)
    except _CUT_SHORT as error:
        reason = f"truncated file: unreadable after line {number} ({type(error).__name__}: {error})"
        rejects.append(_reject(name, number + 1, "<file>", reason, ""))
    return pd.DataFrame(rows), rejects


def _read_parquet_records(lake: Lake, url: str) -> pd.DataFrame:
    with lake.fs.open(url, "rb") as handle:
        frame = pq.read_table(handle).to_pandas().astype(object)
    frame[SOURCE_FILE] = posixpath.basename(url)
    frame[LINE_NUMBER] = range(1, len(frame) + 1)
    frame[RAW] = (
        frame.drop(columns=[SOURCE_FILE, LINE_NUMBER])
        .to_json(orient="records", lines=True, date_format="iso")
        .splitlines()
    )
    return frame


def _reject(file: str, line: int, field: str, reason: str, raw: str) -> dict:
    return {"source_file": file, "line_number": line, "field": field, "reason": reason, "raw": raw}

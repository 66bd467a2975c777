"""Prediction logs, the reading side: one day of landed JSON-lines parts, validated
against ``PREDICTION_LOG_COLUMNS``, and its compaction into one Parquet file.

Every line is accounted for: a valid line becomes a row; a blank line is skipped; any
other (not UTF-8, not a JSON object, a column missing or of the wrong kind, an unknown
endpoint, a ``logged_at`` outside the folder's day, a ``request_id`` seen before that
day) is quarantined with its file, line number, field, reason and raw text, in the
lake's quarantine layout. Keys beyond the schema are ignored.

``served_event_scores`` picks out of a day the scores ``/predict`` served for rows that
carried an ``event_id``, for judging the served model on those events' outcomes.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import posixpath
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reclake.lake import Lake, is_marker_file
from serving.prediction_log import ENDPOINTS, PREDICTION_LOG_COLUMNS, parse_logged_at

# The lake's quarantine layout (the same as sources.bronze_schema.QUARANTINE_COLUMNS).
QUARANTINE_COLUMNS = ["source_file", "line_number", "field", "reason", "raw"]
PART_SUFFIX = ".jsonl"

_ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "float": pa.float64(),
    "object": pa.string(),  # the JSON text of the object
    "float[]": pa.list_(pa.float64()),
    "string[]": pa.list_(pa.string()),
}


def prediction_log_schema() -> pa.Schema:
    """The Arrow schema of the compacted Parquet file, from ``PREDICTION_LOG_COLUMNS``:
    ``logged_at`` a UTC timestamp (ms), ``features`` JSON text, ``scores`` and ``items`` lists."""
    return pa.schema(
        [
            pa.field(column, _ARROW_TYPES[kind.rstrip("?")], nullable=kind.endswith("?"))
            for column, kind in PREDICTION_LOG_COLUMNS.items()
        ]
    )


@dataclass(frozen=True)
class PredictionLogDay:
    """One day of prediction logs, read and validated.

    Attributes:
        rows: one row per valid line, the columns of ``PREDICTION_LOG_COLUMNS`` typed as
            ``prediction_log_schema`` (``features`` as JSON text), ordered by ``logged_at``.
        quarantined: one row per rejected line, columns ``QUARANTINE_COLUMNS``.
        files: the part files read (URLs, sorted).
    """

    rows: pd.DataFrame
    quarantined: pd.DataFrame
    files: list[str]


def read_prediction_logs(
    lake_root: str, source: str, day: dt.date, storage_options: dict[str, Any] | None = None
) -> PredictionLogDay:
    """Read and validate every ``*.jsonl`` part under
    ``landing/prediction_logs/<source>/dt=<day>/`` (none: an empty day, not an error).

    Hidden and marker files (an unfinished ``.part-....tmp``, ``_SUCCESS``) are skipped;
    any other file that is not a part is quarantined as one ``<file>`` row, unread.
    """
    lake = Lake(root=lake_root, storage_options=dict(storage_options or {}))
    folder = lake.prediction_log_dir(source, day)
    lake.fs.invalidate_cache(folder)  # another process writes here: list what is there now
    files, rows, rejects = [], [], []
    seen: dict[str, str] = {}
    for url in lake.list_files(folder):
        name = posixpath.basename(url)
        if is_marker_file(name):
            continue
        if not name.endswith(PART_SUFFIX):
            rejects.append(_reject(name, 0, "<file>", f"not a prediction log part (*{PART_SUFFIX}): not read", ""))
            continue
        files.append(url)
        for number, line in enumerate(lake.iter_lines(url, compressed=False), start=1):
            if not line.strip():
                continue
            row, problems, text = _parse_line(line, day)
            if not problems and row["request_id"] in seen:
                problems = [("request_id", f"duplicate of {seen[row['request_id']]}")]
            if problems:
                fields = ", ".join(dict.fromkeys(field for field, _ in problems))
                reason = "; ".join(why if field == "<line>" else f"{field}: {why}" for field, why in problems)
                rejects.append(_reject(name, number, fields, reason, text))
            else:
                seen[row["request_id"]] = f"{name}:{number}"
                rows.append(row)
    rows.sort(key=lambda row: row["logged_at"])
    frame = pa.Table.from_pylist(rows, schema=prediction_log_schema()).to_pandas()
    quarantined = pd.DataFrame(rejects, columns=QUARANTINE_COLUMNS).astype({"line_number": "int64"})
    return PredictionLogDay(rows=frame, quarantined=quarantined, files=files)


SERVED_SCORE_COLUMNS = ["event_id", "score", "model_version", "request_id", "logged_at"]


def served_event_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """The scores ``/predict`` served for rows with an ``event_id``.

    Args:
        rows: a day's records (``PredictionLogDay.rows``, or the compacted Parquet file).

    Returns:
        One row per event id, columns ``SERVED_SCORE_COLUMNS``: the score the event's row
        got and the model version that served it. Only served answers count (a shadow
        arm's is not served; a record with a fallback scored nothing); an event scored
        more than once keeps its first score (the one its impression most likely showed).
    """
    records = rows[(rows["endpoint"] == "predict") & rows["shadow_of"].isna() & rows["fallback"].isna()]
    served = []
    for record in records.itertuples(index=False):
        features = json.loads(record.features)
        logged = features["rows"] if "rows" in features else [features]
        if len(logged) != len(record.scores):
            continue  # not the rows of this answer: nothing to join
        for row, score in zip(logged, record.scores, strict=True):
            if row.get("event_id") is not None:
                served.append((str(row["event_id"]), float(score), record.model_version, record.request_id,
                               record.logged_at))  # fmt: skip
    frame = pd.DataFrame(served, columns=SERVED_SCORE_COLUMNS)
    return frame.sort_values("logged_at", kind="stable").drop_duplicates("event_id").reset_index(drop=True)


@dataclass(frozen=True)
class CompactedDay:
    """What ``compact_prediction_logs`` wrote for one day.

    Attributes:
        day: the day.
        files: the part files read.
        rows: rows in the Parquet file.
        quarantined_rows: lines quarantined.
        parquet_url: the Parquet file (written even for 0 rows).
        quarantine_url: the quarantine file, or None when nothing was quarantined.
        requests_per_endpoint: endpoint -> rows.
        model_versions: the model versions seen, sorted.
        arms: the experiment arms seen (sorted; None not counted).
    """

    day: dt.date
    files: list[str]
    rows: int
    quarantined_rows: int
    parquet_url: str
    quarantine_url: str | None
    requests_per_endpoint: dict[str, int]
    model_versions: list[str]
    arms: list[str]


def compact_prediction_logs(
    lake_root: str, source: str, day: dt.date, storage_options: dict[str, Any] | None = None
) -> CompactedDay:
    """Read one day of prediction logs (``read_prediction_logs``) and write them, replacing
    what was there, to ``prediction_logs/<source>/dt=<day>/predictions.parquet`` and the
    rejected lines to ``quarantine/prediction_logs/<source>/dt=<day>/quarantine.parquet``."""
    lake = Lake(root=lake_root, storage_options=dict(storage_options or {}))
    logs = read_prediction_logs(lake_root, source, day, storage_options)
    parquet_url = lake.prediction_logs_file(source, day)
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(logs.rows, schema=prediction_log_schema(), preserve_index=False)
    pq.write_table(table, buffer, compression="zstd")
    lake.write_bytes(parquet_url, buffer.getvalue())
    quarantine_url = lake.prediction_logs_quarantine_file(source, day)
    lake.remove(quarantine_url)
    if len(logs.quarantined):
        lake.write_parquet(logs.quarantined, quarantine_url)
    rows = logs.rows
    return CompactedDay(
        day=day,
        files=logs.files,
        rows=len(rows),
        quarantined_rows=len(logs.quarantined),
        parquet_url=parquet_url,
        quarantine_url=quarantine_url if len(logs.quarantined) else None,
        requests_per_endpoint={str(k): int(v) for k, v in rows["endpoint"].value_counts().sort_index().items()},
        model_versions=sorted(rows["model_version"].unique().tolist()),
        arms=sorted(rows["arm"].dropna().unique().tolist()),
    )


def _parse_line(line: bytes, day: dt.date) -> tuple[dict[str, Any], list[tuple[str, str]], str]:
    """(typed row, problems as (field, reason), the line as text) of one line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return {}, [("<line>", f"invalid UTF-8 at byte {error.start}")], line.decode("utf-8", "backslashreplace")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return {}, [("<line>", f"invalid JSON: {error.msg} at column {error.colno}")], text
    if not isinstance(record, dict):
        return {}, [("<line>", f"expected a JSON object, got {type(record).__name__}")], text
    row: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for column, kind in PREDICTION_LOG_COLUMNS.items():
        if column not in record:
            problems.append((column, "missing"))
            continue
        try:
            row[column] = _typed(record[column], kind)
        except ValueError as error:
            problems.append((column, str(error)))
            continue
        if column == "endpoint" and row[column] not in ENDPOINTS:
            problems.append((column, f"{row[column]!r} is not one of {', '.join(ENDPOINTS)}"))
        if column == "logged_at" and row[column].date() != day:
            problems.append((column, f"logged on {row[column].date()} (UTC), not on {day}"))
    return row, problems, text


def _typed(value: Any, kind: str) -> Any:
    """``value`` as the Parquet column of ``kind`` wants it.

    Raises:
        ValueError: naming what was expected and what came.
    """
    nullable, kind = kind.endswith("?"), kind.rstrip("?")
    if value is None:
        if nullable:
            return None
        raise ValueError("null")
    got = type(value).__name__
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {got}")
        if not value and not nullable:
            raise ValueError("empty")
        return value
    if kind == "timestamp":
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO 8601 timestamp, got {got}")
        try:
            return parse_logged_at(value)
        except ValueError as error:
            raise ValueError(f"not an ISO 8601 timestamp with a time zone: {error}") from None
    if kind == "float":
        if not _is_number(value):
            raise ValueError(f"expected a number, got {got}")
        return float(value)
    if kind == "object":
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {got}")
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if kind == "float[]":
        if not isinstance(value, list) or not all(_is_number(v) for v in value):
            raise ValueError(f"expected a list of numbers, got {_describe(value)}")
        return [float(v) for v in value]
    if kind == "string[]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {_describe(value)}")
        return value
    raise ValueError(f"unknown kind {kind!r} in PREDICTION_LOG_COLUMNS")


def _is_number(value: Any) -> bool:
    """An int or a finite float (JSON has no NaN or infinity; Python's parser lets them in)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def _describe(value: Any) -> str:
    if isinstance(value, list):
        kinds = sorted({type(v).__name__ for v in value})
        return f"a list of {', '.join(kinds)}" if kinds else "an empty list"
    return type(value).__name__


def _reject(file: str, line: int, field: str, reason: str, raw: str) -> dict[str, Any]:
    return {"source_file": file, "line_number": line, "field": field, "reason": reason, "raw": raw}

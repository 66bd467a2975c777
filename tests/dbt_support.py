"""Helpers for the dbt tests: write a hand-made bronze lake, run dbt on it, read the
marts, and compute the point-in-time features straight from their definition.

Bronze files follow docs/data-contracts.md for a source's feature spec
(``sources.bronze_schema.bronze_columns``): one Parquet file per day under
``<lake_root>/bronze/<source>/dt=YYYY-MM-DD/part-0.parquet``; columns a row leaves out
are null.

Run as a script (``python tests/dbt_support.py <json>``), the module performs
``run_dbt`` in a fresh process: how the Spark tests keep the Spark JVM out of pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dbt.cli.main import dbtRunner

from reclake.feature_spec import FeatureSpec
from sources.bronze_schema import bronze_columns

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
# The schema (database) the spark target of profiles.yml writes to.
SPARK_SCHEMA = "reclake"

_ARROW_TYPES = {"string": pa.string(), "timestamp": pa.timestamp("us"), "int": pa.int64(), "float": pa.float64()}


# ---- bronze --------------------------------------------------------------------------
def bronze_arrow_schema(spec: FeatureSpec) -> pa.Schema:
    """The Arrow schema of one day of the source's bronze events."""
    return pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in bronze_columns(spec).items()])


def write_bronze_day(lake_root: Path, spec: FeatureSpec, day: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write (or replace) one day of bronze for ``spec.source``.

    Args:
        lake_root: the lake folder.
        spec: the source's feature spec (gives the file's columns and types).
        day: the partition day, ``YYYY-MM-DD``.
        rows: the events; ``event_ts`` as an ISO string or datetime, other columns as
            plain values; columns a row leaves out are null.

    Returns:
        The written file.

    Raises:
        ValueError: a row names a column that is not in the source's bronze.
    """
    schema = bronze_arrow_schema(spec)
    unknown = sorted({name for row in rows for name in row} - set(schema.names))
    if unknown:
        raise ValueError(f"columns {unknown} are not in the {spec.source} bronze: {schema.names}")
    frame = pd.DataFrame([{name: row.get(name) for name in schema.names} for row in rows], columns=schema.names)
    frame["event_ts"] = pd.to_datetime(frame["event_ts"], format="ISO8601")
    folder = lake_root / "bronze" / spec.source / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-0.parquet"
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)
    return path


# ---- running dbt ---------------------------------------------------------------------
@dataclass(frozen=True)
class DbtInvocation:
    """One dbt command over one partition window.

    Attributes:
        dbt_vars: the ``--vars`` (see ``build_vars``).
        command: ``build`` (models, data tests, unit tests) or ``run`` (models only).
        select: ``--select`` arguments; empty selects everything.
        exclude: ``--exclude`` arguments (e.g. ``test_type:data``).
    """

    dbt_vars: dict[str, Any]
    command: str = "build"
    select: tuple[str, ...] = field(default=())
    exclude: tuple[str, ...] = field(default=())


def build_vars(spec: FeatureSpec, lake_root: Path, min_date: str | None, max_date: str | None) -> dict[str, Any]:
    """The ``--vars`` of a run as the pipeline passes them: the spec's dbt vars, the
    lake root and the partition window ``[min_date, max_date)``."""
    return {**spec.dbt_vars(), "lake_root": str(lake_root), "min_date": min_date, "max_date": max_date}


class ParsedDbtProject:
    """dbt_project/ parsed once for one source and lake root, to run commands against.

    Parsing costs seconds and vars change nothing but the source's location at parse
    time, so one parse serves every window of a test scenario.
    """

    def __init__(self, work_dir: Path, dbt_vars: Mapping[str, Any], target: str = "local") -> None:
        """Parse the project with ``dbt_vars`` for ``target``; dbt's target and log
        folders go under ``work_dir``; the warehouse is the one the profile's env vars
        name.

        Raises:
            AssertionError: the parse failed.
        """
        self.location = (dbt_vars.get("source"), dbt_vars.get("lake_root"))
        self.common_arguments = [
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target",
            target,
            "--target-path",
            str(work_dir / "target"),
            "--log-path",
            str(work_dir / "logs"),
            "--no-use-colors",
            "--no-partial-parse",
        ]
        parsed = dbtRunner().invoke(["parse", *self.common_arguments, "--vars", json.dumps(dict(dbt_vars))])
        assert parsed.success, f"dbt parse failed: {parsed.exception}"
        self.manifest = parsed.result

    def invoke(self, invocation: DbtInvocation) -> None:
        """Run one dbt command in this process.

        Raises:
            ValueError: the invocation reads another source or lake than the parse.
            AssertionError: the command failed; names every failed node and its message.
        """
        location = (invocation.dbt_vars.get("source"), invocation.dbt_vars.get("lake_root"))
        if location != self.location:
            raise ValueError(f"the project was parsed for (source, lake_root) {self.location}, not {location}")
        arguments = [invocation.command, *self.common_arguments, "--vars", json.dumps(invocation.dbt_vars)]
        if invocation.select:
            arguments += ["--select", *invocation.select]
        if invocation.exclude:
            arguments += ["--exclude", *invocation.exclude]
        result = dbtRunner(manifest=self.manifest).invoke(arguments)
        failures = [
            f"{node.node.unique_id}: {node.message}"
            for node in (result.result or [])
            if str(node.status) in ("error", "fail")
        ]
        window = (invocation.dbt_vars.get("min_date"), invocation.dbt_vars.get("max_date"))
        assert result.success, f"dbt {invocation.command} of {window} failed: {result.exception or failures}"


def run_dbt(work_dir: Path, invocations: Sequence[DbtInvocation], target: str = "local") -> None:
    """Parse the project once, then run each invocation in order, in this process."""
    project = ParsedDbtProject(work_dir, invocations[0].dbt_vars, target)
    for invocation in invocations:
        project.invoke(invocation)


def run_dbt_in_child(work_dir: Path, invocations: Sequence[DbtInvocation], target: str, env: Mapping[str, str]) -> None:
    """``run_dbt`` in a fresh Python process with ``env`` added to the environment, so
    that what the target starts (a Spark JVM) ends with it.

    Raises:
        AssertionError: dbt failed; carries the end of the child's output.
    """
    payload = {"work_dir": str(work_dir), "target": target, "invocations": [asdict(inv) for inv in invocations]}
    completed = subprocess.run(
        [sys.executable, __file__, json.dumps(payload)],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, f"dbt on {target} failed:\n{completed.stdout[-8000:]}\n{completed.stderr[-4000:]}"


# ---- reading the marts ---------------------------------------------------------------
def read_duckdb_table(warehouse_path: Path, table: str, key: str) -> pd.DataFrame:
    """Every row of a mart in the DuckDB warehouse, sorted by ``key``."""
    with duckdb.connect(str(warehouse_path)) as connection:
        return connection.sql(f"select * from main.{table} order by {key}").df()


def read_spark_table(warehouse_dir: Path, table: str, key: str) -> pd.DataFrame:
    """Every row of a Parquet table the spark target wrote, read from its files (Spark
    keeps a managed table in ``<warehouse>/<schema>.db/<table>/``, partition columns as
    ``name=value`` folders), sorted by ``key``. An empty table (no data files) reads as
    an empty frame."""
    folder = warehouse_dir / f"{SPARK_SCHEMA}.db" / table
    if not any(folder.rglob("*.parquet")):
        return pd.DataFrame()
    with duckdb.connect() as connection:
        return connection.sql(
            f"select * from read_parquet('{folder}/**/*.parquet', hive_partitioning = true) order by {key}"
        ).df()


# ---- the features by definition ------------------------------------------------------
def positives_of(events: pd.DataFrame, spec: FeatureSpec) -> pd.Series:
    """1 where the event's label reaches the spec's positive threshold, else 0."""
    return (events[spec.label.column] >= spec.label.positive_threshold).astype(int)


def smoothed_rate(spec: FeatureSpec, positives: int, events: int) -> float:
    """The spec's smoothed positive rate."""
    prior, weight = spec.aggregates.rate_prior, spec.aggregates.rate_prior_weight
    return (positives + prior * weight) / (events + weight)


def point_in_time_features(events: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The aggregates (and ``user_history``) of every event, one event at a time, straight
    from the definition: the entity's events in ``[event_ts - w days, event_ts)``; the
    user's newest ``history_length`` positives before ``event_ts`` within the longest
    window, newest first (ties in time: larger event id first).

    Args:
        events: every loaded bronze event of the source (``event_ts`` as datetimes).
        spec: the source's feature spec.

    Returns:
        One row per event, sorted by ``event_id``: ``event_id``, the aggregate columns of
        ``spec.aggregate_columns(entity)`` per entity, and ``user_history`` (lists) when
        the source has both ids.
    """
    events = events.assign(is_positive=positives_of(events, spec))
    horizon = timedelta(days=max(spec.aggregates.windows_days))
    rows = []
    for event in events.itertuples(index=False):
        row: dict[str, Any] = {"event_id": event.event_id}
        for entity in spec.entities:
            same_entity = events[events[f"{entity}_id"] == getattr(event, f"{entity}_id")]
            for days in spec.aggregates.windows_days:
                earlier = same_entity[
                    (same_entity["event_ts"] >= event.event_ts - timedelta(days=days))
                    & (same_entity["event_ts"] < event.event_ts)
                ]
                count, positives = len(earlier), int(earlier["is_positive"].sum())
                row[f"{entity}_events_{days}d"] = count
                row[f"{entity}_positives_{days}d"] = positives
                row[f"{entity}_positive_rate_{days}d"] = smoothed_rate(spec, positives, count)
        if spec.has_ids:
            liked = events[
                (events["user_id"] == event.user_id)
                & (events["is_positive"] == 1)
                & (events["event_ts"] >= event.event_ts - horizon)
                & (events["event_ts"] < event.event_ts)
            ].sort_values(["event_ts", "event_id"], ascending=False)
            row["user_history"] = list(liked["item_id"][: spec.aggregates.history_length])
        rows.append(row)
    return pd.DataFrame(rows).sort_values("event_id", ignore_index=True)


def serving_features(events: pd.DataFrame, spec: FeatureSpec, entity: str) -> pd.DataFrame:
    """``<entity>_features`` straight from the definition: per id ever seen, the role
    columns of its latest event, the aggregates over the w days ending with the newest
    event day, and (users, when the source has both ids) the newest positives of the
    longest window.

    Returns:
        One row per id, sorted by it, with the columns of the mart.
    """
    events = events.assign(is_positive=positives_of(events, spec), event_date=events["event_ts"].dt.normalize())
    newest_day = events["event_date"].max()
    id_column = f"{entity}_id"
    role_columns = [c.name for c in spec.bronze_feature_columns if c.role == entity]
    rows = []
    for entity_id, own in events.groupby(id_column):
        own = own.sort_values(["event_ts", "event_id"], ascending=False)
        row: dict[str, Any] = {id_column: entity_id, **{c: own.iloc[0][c] for c in role_columns}}
        for days in spec.aggregates.windows_days:
            recent = own[own["event_date"] > newest_day - timedelta(days=days)]
            count, positives = len(recent), int(recent["is_positive"].sum())
            row[f"{entity}_events_{days}d"] = count
            row[f"{entity}_positives_{days}d"] = positives
            row[f"{entity}_positive_rate_{days}d"] = smoothed_rate(spec, positives, count)
        if entity == "user" and spec.has_ids:
            horizon = max(spec.aggregates.windows_days)
            liked = own[(own["is_positive"] == 1) & (own["event_date"] > newest_day - timedelta(days=horizon))]
            row["user_history"] = list(liked["item_id"][: spec.aggregates.history_length])
        rows.append(row)
    return pd.DataFrame(rows).sort_values(id_column, ignore_index=True)


def as_lists(values: pd.Series) -> list[list[str]]:
    """A list column as read from DuckDB or Parquet (arrays, lists) as plain lists."""
    return [list(value) for value in values]


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    run_dbt(
        Path(request["work_dir"]),
        [
            DbtInvocation(inv["dbt_vars"], inv["command"], tuple(inv["select"]), tuple(inv["exclude"]))
            for inv in request["invocations"]
        ],
        target=request["target"],
    )

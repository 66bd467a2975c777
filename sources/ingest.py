"""Landing day -> bronze Parquet plus quarantine: the ingestion step, without Dagster."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from reclake.feature_spec import FeatureSpec
from reclake.lake import Lake
from sources.engine_validation import connect, validate_staged_lines
from sources.event_ids import EventIdIndex
from sources.landing import NoLandingDataError, stage_landing_day

# DuckDB's memory for validating one day: a day's lines and their parsed columns spill
# to a temporary folder above it, so a day of any size ingests in bounded memory.
INGEST_MEMORY_LIMIT = "1GB"


@dataclass(frozen=True)
class IngestedDay:
    """What ingesting one landing day produced.

    ``input_rows == bronze_rows + quarantined_rows`` always holds.
    """

    day: dt.date
    files: list[str]
    input_rows: int
    bronze_rows: int
    quarantined_rows: int
    bronze_url: str
    quarantine_url: str | None
    reasons: dict[str, int]  # field -> rejected rows naming it

    @property
    def quarantined_share(self) -> float:
        return self.quarantined_rows / self.input_rows if self.input_rows else 0.0

    @property
    def status(self) -> str:
        """``no files`` (a historical source's day without data), ``empty`` (files without
        rows), ``quarantined`` (every row rejected) or ``ingested``."""
        if not self.files:
            return "no files"
        if not self.input_rows:
            return "empty"
        return "ingested" if self.bronze_rows else "quarantined"


def ingest_landing_day(
    lake: Lake,
    spec: FeatureSpec,
    day: dt.date,
    allow_empty: bool = False,
    event_ids: EventIdIndex | None = None,
    memory_limit: str = INGEST_MEMORY_LIMIT,
) -> IngestedDay:
    """Validate one landing day and write it to bronze, replacing any earlier version.

    The source is ``spec.source``; its feature spec says which columns bronze keeps and
    their value rules. Good rows go to ``bronze/<source>/dt=<day>/part-0.parquet``; rejected rows (broken
    JSON, missing or mistyped fields, rule violations) go to the quarantine file with
    their file, line, field and reason. Both are rewritten on every run, so
    re-materializing a day replaces it. The lines are validated in DuckDB
    (``sources.engine_validation``), with no Python per row.

    Args:
        lake: the lake.
        spec: the source's feature spec.
        day: the partition day.
        allow_empty: a day without landing files is an empty day (historical sources
            have days without events) instead of an error (a log shipper that missed it).
        event_ids: the run's index of bronze event ids; an event already in bronze on a
            nearby day is quarantined as ``duplicate of <day>``. None: a new index (pass
            one index to every day of a run so that each day's ids are read once).
        memory_limit: DuckDB's memory for the day; the rest spills to a temporary folder.

    Raises:
        sources.landing.NoLandingDataError: when the day has no landing files and
            ``allow_empty`` is false.
    """
    source = spec.source
    event_ids = event_ids or EventIdIndex(lake, source)
    bronze_url, quarantine_url = lake.bronze_file(source, day), lake.quarantine_file(source, day)
    with tempfile.TemporaryDirectory(prefix="reclake-ingest-spill-") as spill_dir:
        connection = connect(memory_limit=memory_limit, spill_dir=spill_dir)
        try:
            try:
                landing = stage_landing_day(lake, source, day, connection)
            except NoLandingDataError:
                if not allow_empty:
                    raise
                lake.remove(bronze_url)
                event_ids.replace(day, pa.array([], pa.string()))
                return IngestedDay(day, [], 0, 0, 0, bronze_url, None, {})
            result = validate_staged_lines(connection, spec, day, event_ids.nearby(day))
        finally:
            connection.close()
    quarantined = pa.concat_tables([landing.rejects, result.quarantined]).sort_by(
        [("source_file", "ascending"), ("line_number", "ascending")]
    )

    lake.remove(bronze_url)
    if result.bronze.num_rows:
        lake.write_arrow(result.bronze, bronze_url)
    event_ids.replace(day, result.bronze.column("event_id"))
    reasons = write_quarantine(lake, quarantined, quarantine_url)
    return IngestedDay(
        day=day,
        files=landing.files,
        input_rows=result.input_rows + landing.rejects.num_rows,
        bronze_rows=result.bronze.num_rows,
        quarantined_rows=quarantined.num_rows,
        bronze_url=bronze_url,
        quarantine_url=quarantine_url if quarantined.num_rows else None,
        reasons=reasons,
    )


def write_quarantine(lake: Lake, quarantined: pa.Table, url: str) -> dict[str, int]:
    """Replace a day's quarantine file with ``quarantined`` (no file when it is empty).

    Returns:
        Quarantined rows per failing field (a row failing several fields counts for each).
    """
    lake.remove(url)
    if quarantined.num_rows:
        lake.write_arrow(quarantined, url)
    fields = pc.list_flatten(pc.split_pattern(quarantined.column("field"), ", "))
    return {count["values"]: count["counts"] for count in pc.value_counts(fields).to_pylist()}

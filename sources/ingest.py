"""Landing day -> bronze Parquet plus quarantine: the ingestion step, without Dagster."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from reclake.feature_spec import FeatureSpec
from reclake.lake import Lake
from sources.engine_validation import check_staged_lines, connect, finish_checked_lines
from sources.event_ids import EventIdIndex
from sources.landing import LandingDay, NoLandingDataError, stage_landing_day

# DuckDB's memory for validating one day: a day's lines and their parsed columns spill
# to a temporary folder above it, so a day of any size ingests in bounded memory.
_INGEST_MEMORY_MB = 1000
INGEST_MEMORY_LIMIT = f"{_INGEST_MEMORY_MB}MB"
# Days validated at once by ``ingest_landing_days`` (one core each; their memory is
# shared out of INGEST_MEMORY_LIMIT).
INGEST_WORKERS = max(1, min(4, os.cpu_count() or 1))


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
    checked = _check_day(lake, spec, day, allow_empty, memory_limit)
    return _finish_day(lake, spec, checked, event_ids or EventIdIndex(lake, spec.source))


def ingest_landing_days(
    lake: Lake,
    spec: FeatureSpec,
    days: Sequence[dt.date],
    allow_empty: bool = False,
    event_ids: EventIdIndex | None = None,
    workers: int = INGEST_WORKERS,
) -> Iterator[IngestedDay]:
    """``ingest_landing_day`` for each of ``days``, yielded in their order, with up to
    ``workers`` days validated at once.

    One day's validation keeps about one core busy (DuckDB parallelises a table by row
    groups of 122,880 rows, more than most days have), so a run over many days checks
    the next days' lines in threads while this one finishes. Each day still ends in the
    order given, as one at a time would: its duplicates are settled against the days
    written before it, then it is written. ``INGEST_MEMORY_LIMIT`` is shared between the
    days in flight, so the memory bound stays that of one day.

    Raises:
        sources.landing.NoLandingDataError: as ``ingest_landing_day``, once the days
            before the one without files are written.
    """
    event_ids = event_ids or EventIdIndex(lake, spec.source)
    workers = max(1, min(workers, len(days)))
    if workers == 1:
        for day in days:
            yield ingest_landing_day(lake, spec, day, allow_empty, event_ids)
        return
    memory_limit = f"{_INGEST_MEMORY_MB // workers}MB"
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reclake-ingest") as pool:
        upcoming = iter(days)
        pending: deque[Future[_CheckedDay]] = deque()

        def check_next() -> None:
            day = next(upcoming, None)
            if day is not None:
                pending.append(pool.submit(_check_day, lake, spec, day, allow_empty, memory_limit))

        try:
            for _ in range(workers):
                check_next()
            while pending:
                checked = pending.popleft().result()
                yield _finish_day(lake, spec, checked, event_ids)
                check_next()  # one day finished: one more in flight
        finally:
            for future in pending:  # an error or a consumer that stopped: free the days in flight
                if not future.cancel() and future.exception() is None:
                    future.result().close()


@dataclass
class _CheckedDay:
    """A landing day staged and checked (``check_staged_lines``) on its own connection,
    waiting for ``_finish_day``; ``connection`` None when the day had no files."""

    day: dt.date
    connection: duckdb.DuckDBPyConnection | None
    spill_dir: str | None
    landing: LandingDay | None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.spill_dir is not None:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
            self.spill_dir = None


def _check_day(lake: Lake, spec: FeatureSpec, day: dt.date, allow_empty: bool, memory_limit: str) -> _CheckedDay:
    """Stage ``day``'s landing lines on a new connection and check them; what needs no
    other day. Raises ``NoLandingDataError`` as ``ingest_landing_day``."""
    spill_dir = tempfile.mkdtemp(prefix="reclake-ingest-spill-")
    checked = _CheckedDay(day, connect(memory_limit=memory_limit, spill_dir=spill_dir), spill_dir, None)
    try:
        try:
            checked.landing = stage_landing_day(lake, spec.source, day, checked.connection)
        except NoLandingDataError:
            if not allow_empty:
                raise
            checked.close()
            return checked
        check_staged_lines(checked.connection, spec, day)
    except BaseException:
        checked.close()
        raise
    return checked


def _finish_day(lake: Lake, spec: FeatureSpec, checked: _CheckedDay, event_ids: EventIdIndex) -> IngestedDay:
    """Settle ``checked``'s duplicates against the days in ``event_ids``, write its bronze
    and quarantine files, record its ids, and close its connection."""
    day, source = checked.day, spec.source
    bronze_url, quarantine_url = lake.bronze_file(source, day), lake.quarantine_file(source, day)
    if checked.landing is None:  # no landing files, allowed
        lake.remove(bronze_url)
        event_ids.replace(day, pa.array([], pa.string()))
        return IngestedDay(day, [], 0, 0, 0, bronze_url, None, {})
    try:
        result = finish_checked_lines(checked.connection, spec, event_ids.nearby(day))
    finally:
        checked.close()
    landing = checked.landing
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

"""Landing day -> bronze Parquet plus quarantine: the ingestion step, without Dagster."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import partial

import pandas as pd

from reclake.feature_spec import FeatureSpec
from reclake.lake import Lake
from sources.bronze_schema import QUARANTINE_COLUMNS, validate_events
from sources.event_ids import EventIdIndex
from sources.landing import NoLandingDataError, read_landing_day


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
) -> IngestedDay:
    """Validate one landing day and write it to bronze, replacing any earlier version.

    The source is ``spec.source``; its feature spec says which columns bronze keeps and
    their value rules. Good rows go to ``bronze/<source>/dt=<day>/part-0.parquet``; rejected rows (broken
    JSON, missing or mistyped fields, rule violations) go to the quarantine file with
    their file, line, field and reason. Both are rewritten on every run, so
    re-materializing a day replaces it.

    Args:
        lake: the lake.
        spec: the source's feature spec.
        day: the partition day.
        allow_empty: a day without landing files is an empty day (historical sources
            have days without events) instead of an error (a log shipper that missed it).
        event_ids: the run's index of bronze event ids; an event already in bronze on a
            nearby day is quarantined as ``duplicate of <day>``. None: a new index (pass
            one index to every day of a run so that each day's ids are read once).

    Raises:
        sources.landing.NoLandingDataError: when the day has no landing files and
            ``allow_empty`` is false.
    """
    source = spec.source
    event_ids = event_ids or EventIdIndex(lake, source)
    try:
        landing = read_landing_day(lake, source, day)
    except NoLandingDataError:
        if not allow_empty:
            raise
        lake.remove(lake.bronze_file(source, day))
        event_ids.replace(day, pd.Series([], dtype=object))
        return IngestedDay(day, [], 0, 0, 0, lake.bronze_file(source, day), None, {})
    holding = partial(event_ids.other_days, day)
    validated = validate_events(landing.records, day, spec, holding) if len(landing.records) else None
    valid = validated.valid if validated else None
    quarantined = pd.concat(
        [landing.unparseable] + ([validated.quarantined] if validated else []), ignore_index=True
    )[QUARANTINE_COLUMNS]  # fmt: skip
    quarantined = quarantined.sort_values(["source_file", "line_number"], kind="stable").reset_index(drop=True)

    bronze_url = lake.bronze_file(source, day)
    lake.remove(bronze_url)
    if valid is not None and len(valid):
        lake.write_parquet(valid, bronze_url)
    event_ids.replace(day, pd.Series([], dtype=object) if valid is None else valid["event_id"])
    quarantine_url = lake.quarantine_file(source, day)
    lake.remove(quarantine_url)
    if len(quarantined):
        lake.write_parquet(quarantined, quarantine_url)

    reasons: dict[str, int] = {}
    for fields in quarantined["field"]:
        for field in str(fields).split(", "):
            reasons[field] = reasons.get(field, 0) + 1
    return IngestedDay(
        day=day,
        files=landing.files,
        input_rows=landing.input_rows,
        bronze_rows=0 if valid is None else len(valid),
        quarantined_rows=len(quarantined),
        bronze_url=bronze_url,
        quarantine_url=quarantine_url if len(quarantined) else None,
        reasons=reasons,
    )

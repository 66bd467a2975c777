"""Which event ids bronze already holds on nearby days: duplicates across days.

A log shipper that retries around midnight, or a day delivered twice under two dates,
puts the same event in two daily partitions; within a day the validation engine
already rejects repeats. ``EventIdIndex`` gives the engine the ids of the bronze days
within ``window_days`` on either side of the one being ingested, without rescanning all
history: it reads only the ``event_id`` column of each day, once per run, and keeps the
ids as DuckDB 64-bit hashes (8 bytes per id), the same ``hash(event_id)`` the engine's
SQL joins on.
"""

from __future__ import annotations

import datetime as dt
import io

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reclake.lake import Lake
from sources.engine_validation import NEARBY_IDS_SCHEMA

# Days on either side of a partition whose bronze ids are checked (retries and late
# deliveries land next to their day; a longer window costs a read of each extra day).
DUPLICATE_WINDOW_DAYS = 7


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """DuckDB's 64-bit ``hash`` of event ids (a collision needs ~4 billion ids per window)."""
    if not len(ids):
        return np.empty(0, dtype=np.uint64)
    table = pa.table({"event_id": ids})
    with duckdb.connect() as connection:
        connection.register("ids", table)
        hashes = connection.sql("select hash(event_id::varchar) as id_hash from ids").fetchnumpy()["id_hash"]
    return np.asarray(hashes, dtype=np.uint64)


class EventIdIndex:
    """Event ids of a source's bronze days, read lazily and kept for the run.

    Args:
        lake: the lake.
        source: the source whose bronze is indexed.
        window_days: how many days on either side of a partition are checked.
    """

    def __init__(self, lake: Lake, source: str, window_days: int = DUPLICATE_WINDOW_DAYS) -> None:
        self._lake, self._source, self._window = lake, source, window_days
        self._days: dict[dt.date, np.ndarray] = {}

    def _ids_of(self, day: dt.date) -> np.ndarray:
        if day not in self._days:
            url = self._lake.bronze_file(self._source, day)
            if self._lake.exists(url):
                table = pq.read_table(io.BytesIO(self._lake.read_bytes(url)), columns=["event_id"])
                self._days[day] = hash_ids(table.column("event_id"))
            else:
                self._days[day] = np.empty(0, dtype=np.uint64)
        return self._days[day]

    def nearby(self, day: dt.date) -> pa.Table:
        """Ids in bronze on the other days of ``day``'s window (``NEARBY_IDS_SCHEMA``):
        each hash with its day and that day's rank, nearest first (the earlier of two
        equally near)."""
        offsets = sorted(range(-self._window, self._window + 1), key=lambda o: (abs(o), o))
        tables = []
        for rank, offset in enumerate(o for o in offsets if o):
            other = day + dt.timedelta(days=offset)
            known = self._ids_of(other)
            if len(known):
                tables.append(
                    pa.table(
                        {
                            "other_day": pa.repeat(pa.scalar(other.isoformat(), pa.string()), len(known)),
                            "distance": pa.repeat(pa.scalar(rank, pa.int32()), len(known)),
                            "id_hash": pa.array(known, pa.uint64()),
                        },
                        schema=NEARBY_IDS_SCHEMA,
                    )
                )
        return pa.concat_tables(tables) if tables else NEARBY_IDS_SCHEMA.empty_table()

    def replace(self, day: dt.date, ids: pa.Array | pa.ChunkedArray) -> None:
        """Record the event ids bronze now holds for ``day`` (after it was written)."""
        self._days[day] = hash_ids(ids)

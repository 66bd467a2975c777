"""Which event ids bronze already holds on nearby days: duplicates across days.

A log shipper that retries around midnight, or a day delivered twice under two dates,
puts the same event in two daily partitions; within a day the bronze schema already
rejects repeats. ``EventIdIndex`` answers "is this id in bronze on another day, and
which?" for the days around the one being ingested, without rescanning all history:
it reads only the ``event_id`` column of the bronze days within ``window_days`` on
either side, once per run, and keeps them as 64-bit hashes (8 bytes per id).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from reclake.lake import Lake

# Days on either side of a partition whose bronze ids are checked (retries and late
# deliveries land next to their day; a longer window costs a read of each extra day).
DUPLICATE_WINDOW_DAYS = 7


def hash_ids(ids: pd.Series) -> np.ndarray:
    """64-bit hashes of event ids (a collision needs ~4 billion ids per window)."""
    return pd.util.hash_array(ids.astype(str).to_numpy(dtype=object), categorize=False)


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
                self._days[day] = np.sort(hash_ids(self._lake.read_parquet(url, columns=["event_id"])["event_id"]))
            else:
                self._days[day] = np.empty(0, dtype=np.uint64)
        return self._days[day]

    def other_days(self, day: dt.date, ids: pd.Series) -> pd.Series:
        """For each id, the nearest other day within the window whose bronze holds it
        (the earlier of two equally near), or None."""
        hashed = hash_ids(ids)
        found = pd.Series(None, index=ids.index, dtype=object)
        offsets = sorted(range(-self._window, self._window + 1), key=lambda o: (abs(o), o))
        for offset in (o for o in offsets if o):
            other = day + dt.timedelta(days=offset)
            known = self._ids_of(other)
            if not len(known):
                continue
            position = np.clip(np.searchsorted(known, hashed), 0, len(known) - 1)
            hit = (known[position] == hashed) & found.isna().to_numpy()
            found[hit] = other.isoformat()
        return found

    def replace(self, day: dt.date, ids: pd.Series) -> None:
        """Record what bronze now holds for ``day`` (after it was written)."""
        self._days[day] = np.sort(hash_ids(ids))

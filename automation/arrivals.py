"""Which landed days should start a run: the landing sensor's decision, without Dagster.

The sensor's cursor maps each day it has handled to the fingerprint of that day's
landing files. A day is launched when it is new and not yet ingested, or when its
files changed since it was handled (a re-delivery). Because the cursor is stored by
Dagster, a restarted sensor neither loses nor repeats a day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Arrival:
    """A landed day to launch, and a run key unique to that delivery of it."""

    day: dt.date
    fingerprint: str

    @property
    def run_key(self) -> str:
        digest = hashlib.sha1(self.fingerprint.encode()).hexdigest()[:12]
        return f"landing-{self.day.isoformat()}-{digest}"


def decide_arrivals(
    landed: dict[dt.date, str], cursor: str | None, ingested: set[dt.date]
) -> tuple[list[Arrival], str]:
    """Decide which landed days to launch.

    Args:
        landed: each day present in the landing zone, with its files' fingerprint.
        cursor: the sensor's previous cursor (JSON of day -> fingerprint), or None.
        ingested: days whose bronze partition already exists (materialized by a run the
            sensor did not start, e.g. ``make run`` or a backfill).

    Returns:
        The arrivals to launch, oldest first, and the new cursor.
    """
    seen: dict[str, str] = json.loads(cursor) if cursor else {}
    launch: list[Arrival] = []
    for day in sorted(landed):
        key, fingerprint = day.isoformat(), landed[day]
        if seen.get(key) == fingerprint:
            continue
        if key not in seen and day in ingested:
            seen[key] = fingerprint  # already ingested elsewhere: remember, don't repeat
            continue
        launch.append(Arrival(day=day, fingerprint=fingerprint))
        seen[key] = fingerprint
    return launch, json.dumps(seen, sort_keys=True)

"""Which landed days should start a run: the landing sensor's decision, without Dagster.

The sensor's cursor maps each day it has handled to the fingerprint of that day's
landing files (their contents' hashes, ``Lake.landed_days``). A day is launched when
it is new and not yet ingested, or when its files' contents changed since it was
handled (a re-delivery; touching a file is not one). Because the cursor is stored by
Dagster, a restarted sensor neither loses nor repeats a day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from reclake.lake import FINGERPRINT_VERSION


@dataclass(frozen=True)
class Arrival:
    """A landed day to launch, and a run key unique to that delivery of it.

    ``through`` is the last day the run covers: the day itself, or, when later days are
    already ingested (a re-delivery or a late day), the newest of them whose trailing
    features reach back to it.
    """

    day: dt.date
    fingerprint: str
    through: dt.date | None = None

    @property
    def last_day(self) -> dt.date:
        return self.through or self.day

    @property
    def run_key(self) -> str:
        digest = hashlib.sha1(self.fingerprint.encode()).hexdigest()[:12]
        return f"landing-{self.day.isoformat()}-{digest}"


def decide_arrivals(
    landed: dict[dt.date, str], cursor: str | None, ingested: set[dt.date], lookback_days: int = 0
) -> tuple[list[Arrival], str]:
    """Decide which landed days to launch.

    Args:
        landed: each day present in the landing zone, with its files' fingerprint.
        cursor: the sensor's previous cursor (JSON of day -> fingerprint), or None.
        ingested: days whose bronze partition already exists (materialized by a run the
            sensor did not start, e.g. ``make run`` or a backfill).
        lookback_days: the features' longest trailing window: a launched day's run also
            covers the ingested days up to this many days after it, whose features it
            changes.

    Returns:
        The arrivals to launch, oldest first, and the new cursor.
    """
    seen: dict[str, str] = json.loads(cursor) if cursor else {}
    launch: list[Arrival] = []
    for day in sorted(landed):
        key, fingerprint = day.isoformat(), landed[day]
        if seen.get(key) == fingerprint:
            continue
        if key in seen and not seen[key].startswith(FINGERPRINT_VERSION):
            seen[key] = fingerprint  # a cursor of an older fingerprint format: adopt, don't re-run
            continue
        if key not in seen and day in ingested:
            seen[key] = fingerprint  # already ingested elsewhere: remember, don't repeat
            continue
        reach = day + dt.timedelta(days=lookback_days)
        later = [d for d in ingested if day < d <= reach]
        launch.append(Arrival(day=day, fingerprint=fingerprint, through=max(later) if later else None))
        seen[key] = fingerprint
    return launch, json.dumps(seen, sort_keys=True)

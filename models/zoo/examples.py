"""``training_examples`` frames straight from the synthetic generator, without dbt.

For benchmarks, notebooks and tests of the model zoo: the generator's impressions get
the contract's derived columns (``event_date``, ``hour_of_day``, ``day_of_week``) and
point-in-time trailing aggregates computed in pandas with the dbt model's definitions
(events strictly before each impression within ``lookback_days``; CTRs smoothed with
``ctr_prior`` and ``ctr_prior_weight``), plus the generator's ``true_pctr`` and
``true_pcvr``. The warehouse's ``training_examples`` model stays the source of truth for
the pipeline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reclake.settings import SyntheticSettings
from sources.synthetic import SyntheticWorld, generate_day

CTR_PRIOR = 0.05
CTR_PRIOR_WEIGHT = 20.0
LOOKBACK_DAYS = 7


def _trailing_aggregates(events: pd.DataFrame, key: str, prefix: str, lookback_days: int) -> pd.DataFrame:
    """``<prefix>_impressions_7d``, ``_clicks_7d``, ``_ctr_7d`` for every row of ``events``.

    Counts the rows with the same ``key`` whose ``event_ts`` lies in
    ``[event_ts - lookback_days, event_ts)``: rows are sorted by (key, time) and each
    window's bounds found by binary search on that order.
    """
    codes = pd.factorize(events[key])[0].astype(np.int64)
    micros = ((events["event_ts"] - events["event_ts"].min()) // pd.Timedelta(microseconds=1)).to_numpy(np.int64)
    stride = int(micros.max()) + 1  # keeps each key's times in a range of their own
    position = codes * stride + micros
    order = np.argsort(position, kind="stable")
    sorted_position = position[order]
    clicks_before = np.concatenate([[0], np.cumsum(events["clicked"].to_numpy(np.int64)[order])])
    window = lookback_days * 86_400 * 1_000_000
    start = np.searchsorted(sorted_position, codes * stride + np.maximum(micros - window, 0), side="left")
    end = np.searchsorted(sorted_position, position, side="left")
    impressions = end - start
    clicks = clicks_before[end] - clicks_before[start]
    return pd.DataFrame(
        {
            f"{prefix}_impressions_7d": impressions.astype(np.int64),
            f"{prefix}_clicks_7d": clicks.astype(np.int64),
            f"{prefix}_ctr_7d": (clicks + CTR_PRIOR * CTR_PRIOR_WEIGHT) / (impressions + CTR_PRIOR_WEIGHT),
        },
        index=events.index,
    )


def synthetic_training_examples(
    settings: SyntheticSettings, days: Sequence[dt.date], lookback_days: int = LOOKBACK_DAYS
) -> pd.DataFrame:
    """Generate ``days`` of impressions as ``training_examples`` rows with the true odds.

    Args:
        settings: Generator settings (world size, events per day, seed).
        days: Calendar days to generate; aggregates only see events of these days.
        lookback_days: Trailing window of the ``_7d`` aggregates.

    Returns:
        Every ``training_examples`` column (``docs/data-contracts.md``) plus
        ``true_pctr`` and ``true_pcvr``, one row per impression, ordered by ``event_ts``.

    Raises:
        ValueError: if ``days`` is empty.
    """
    if not days:
        raise ValueError("synthetic_training_examples needs at least one day")
    world = SyntheticWorld.create(settings)
    generated = [generate_day(settings, day, world) for day in days]
    events = pd.concat([g.events.merge(g.truth, on="event_id", validate="one_to_one") for g in generated])
    events["event_ts"] = pd.to_datetime(events["event_ts"], format="%Y-%m-%dT%H:%M:%S.%fZ")
    events = events.sort_values("event_ts", kind="stable").reset_index(drop=True)
    events["event_date"] = events["event_ts"].dt.date
    events["hour_of_day"] = events["event_ts"].dt.hour.astype("int64")
    events["day_of_week"] = events["event_ts"].dt.dayofweek.astype("int64")
    user = _trailing_aggregates(events, "user_id", "user", lookback_days)
    item = _trailing_aggregates(events, "item_id", "item", lookback_days)
    frame = pd.concat([events, user, item], axis=1)
    columns = [
        "event_id", "event_date", "event_ts", "user_id", "item_id", "user_segment", "device", "slot_position",
        "category", "price", "hour_of_day", "day_of_week", "user_impressions_7d", "user_clicks_7d", "user_ctr_7d",
        "item_impressions_7d", "item_clicks_7d", "item_ctr_7d", "clicked", "converted", "true_pctr", "true_pcvr",
    ]  # fmt: skip
    return frame[columns]

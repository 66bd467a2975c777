"""``training_examples`` frames straight from the synthetic generator, without dbt.

For benchmarks, notebooks and tests of the model zoo: the generator's impressions get
the contract's derived columns (``event_date``, ``hour_of_day``, ``day_of_week``) and
point-in-time trailing aggregates computed in pandas with the dbt model's definitions
(events strictly before each impression within each of the synthetic feature spec's
windows; rates smoothed with its prior), plus the generator's ``true_pctr`` and
``true_pcvr``. The warehouse's ``training_examples`` model stays the source of truth for
the pipeline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reclake.feature_spec import FeatureSpec, load_feature_spec
from reclake.settings import SyntheticSettings
from sources.synthetic import SyntheticWorld, generate_day


def _trailing_aggregates(events: pd.DataFrame, key: str, prefix: str, spec: FeatureSpec) -> pd.DataFrame:
    """``<prefix>_events_<w>d``, ``_positives_<w>d``, ``_positive_rate_<w>d`` for every row
    of ``events`` and every window ``w`` of the spec.

    Counts the rows with the same ``key`` whose ``event_ts`` lies in
    ``[event_ts - w days, event_ts)``: rows are sorted by (key, time) and each window's
    bounds found by binary search on that order.
    """
    codes = pd.factorize(events[key])[0].astype(np.int64)
    micros = ((events["event_ts"] - events["event_ts"].min()) // pd.Timedelta(microseconds=1)).to_numpy(np.int64)
    stride = int(micros.max()) + 1  # keeps each key's times in a range of their own
    position = codes * stride + micros
    order = np.argsort(position, kind="stable")
    sorted_position = position[order]
    positives_before = np.concatenate([[0], np.cumsum(events["is_positive"].to_numpy(np.int64)[order])])
    end = np.searchsorted(sorted_position, position, side="left")
    prior, weight = spec.aggregates.rate_prior, spec.aggregates.rate_prior_weight
    columns = {}
    for days in spec.aggregates.windows_days:
        window = days * 86_400 * 1_000_000
        start = np.searchsorted(sorted_position, codes * stride + np.maximum(micros - window, 0), side="left")
        count = end - start
        positives = positives_before[end] - positives_before[start]
        columns[f"{prefix}_events_{days}d"] = count.astype(np.int64)
        columns[f"{prefix}_positives_{days}d"] = positives.astype(np.int64)
        columns[f"{prefix}_positive_rate_{days}d"] = (positives + prior * weight) / (count + weight)
    return pd.DataFrame(columns, index=events.index)


def synthetic_training_examples(
    settings: SyntheticSettings, days: Sequence[dt.date]
) -> pd.DataFrame:
    """Generate ``days`` of impressions as ``training_examples`` rows with the true odds.

    Args:
        settings: Generator settings (world size, events per day, seed).
        days: Calendar days to generate; aggregates only see events of these days.

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
    events["label"] = events["clicked"].astype("float64")
    events["is_positive"] = events["clicked"].astype("int64")
    spec = load_feature_spec("synthetic")
    user = _trailing_aggregates(events, "user_id", "user", spec)
    item = _trailing_aggregates(events, "item_id", "item", spec)
    return pd.concat([events, user, item], axis=1)

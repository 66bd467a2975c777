"""The synthetic generator's true click and conversion probabilities, for evaluation only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd

from reclake.lake import Lake


def load_truth(lake: Lake, source: str, days: Iterable[dt.date]) -> pd.DataFrame | None:
    """``event_id, true_pctr, true_pcvr`` for ``days``, or None when the source has no truth.

    Only the synthetic source writes truth files; real logs have none, and for them
    evaluation reports no Bayes-optimal floor.
    """
    urls = [lake.truth_file(source, day) for day in days]
    present = [url for url in urls if lake.exists(url)]
    if not present:
        return None
    return pd.concat([lake.read_parquet(url) for url in present], ignore_index=True)


def with_true_pctr(examples: pd.DataFrame, lake: Lake, source: str, day: dt.date) -> pd.DataFrame:
    """``examples`` with a ``true_pctr`` column from ``day``'s truth (null on other days);
    unchanged when the source has no truth."""
    truth = load_truth(lake, source, [day])
    if truth is None:
        return examples
    return examples.merge(truth[["event_id", "true_pctr"]], on="event_id", how="left")

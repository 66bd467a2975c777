"""Documented, reproducible train / validation / test splits of ``training_examples``.

``make_splits`` assigns every row of a training window to a part under each protocol
the source supports, as ``event_id -> part`` tables (``train``, ``validation``,
``test``), so any model, notebook or benchmark can use exactly the same split:

- ``temporal``: whole days: the newest day tests, the day before validates, the rest
  trains (a single-day window is cut by time inside the day); what the pipeline's
  recommender and the zoo use (``split_training_window``).
- ``random_80_20``: the TensorFlow Recommenders tutorials' protocol: a seeded
  TensorFlow shuffle, the first 80% train, the rest test (``protocols.tfrs_random_split``
  on the window in time order).
- ``leave_one_out``: per user, the newest interaction tests and the one before
  validates (RecBole ``LS: valid_and_test``); sources with user and item ids only.
- ``per_user_8_1_1``: per user, a random 8:1:1 split (RecBole ``RO`` + ``RS``); sources
  with user and item ids only.

The interaction protocols see every row of the window as an interaction, with the
spec's label as its rating.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import pandas as pd

from models.inputs import protocols
from models.inputs.features import require_columns
from reclake.feature_spec import FeatureSpec

PARTS = ("train", "validation", "test")
RANDOM_SEED = 42
PER_USER_SEED = 2020
PROTOCOLS = ("temporal", "random_80_20", "leave_one_out", "per_user_8_1_1")


def split_by_day(examples: pd.DataFrame, test_days: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``training_examples`` into (train, test) by ``event_date``.

    Args:
        examples: rows with an ``event_date`` column (date or ``YYYY-MM-DD`` string).
        test_days: ``YYYY-MM-DD`` days that form the test set; every other day trains.

    Returns:
        ``(train, test)``; both must be non-empty.

    Raises:
        ValueError: if the column is missing or either side is empty.
    """
    require_columns(examples, ["event_date"], "examples frame")
    days = pd.to_datetime(examples["event_date"]).dt.strftime("%Y-%m-%d")
    is_test = days.isin(set(test_days))
    train, test = examples[~is_test], examples[is_test]
    if train.empty or test.empty:
        raise ValueError(
            f"split on test days {sorted(set(test_days))} gives {len(train)} train and {len(test)} test rows; "
            f"days present: {sorted(days.unique())}"
        )
    return train, test


WITHIN_DAY_TEST_SHARE = 0.2
WITHIN_DAY_VALIDATION_SHARE = 0.1


def trained_span(days: Sequence[dt.date]) -> tuple[dt.date, dt.date]:
    """First and last day a model split by ``split_training_window`` learns from: every
    day but the newest (which tests), or the one day of a single-day window."""
    return days[0], days[-2] if len(days) > 1 else days[0]


def split_streamed_window(examples: pd.DataFrame, days: Sequence[dt.date]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validation, test) of a window whose training days are streamed from Parquet:
    ``examples`` holds only the newest two of ``days``, which validate and test.

    Raises:
        ValueError: fewer than 3 days (a streamed window needs a training day too), or a
            day without rows.
    """
    if len(days) < 3:
        raise ValueError("a streamed training window needs at least 3 days (train, validation, test)")
    return split_by_day(examples, [days[-1].isoformat()])


def split_training_window(
    examples: pd.DataFrame, days: Sequence[dt.date]
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]:
    """(train, validation, test), split in time.

    The newest day tests, the one before validates when there are at least three days
    (else there is no validation), the rest trains. A window of a single day (a small
    sample) is split inside the day by event time: the last 20% of its events test, the
    10% before them validate, the rest trains.
    """
    if len(days) == 1:
        ordered = examples.sort_values(["event_ts", "event_id"], kind="stable")
        test_start = int(len(ordered) * (1 - WITHIN_DAY_TEST_SHARE))
        validation_start = int(len(ordered) * (1 - WITHIN_DAY_TEST_SHARE - WITHIN_DAY_VALIDATION_SHARE))
        parts = ordered.iloc[:validation_start], ordered.iloc[validation_start:test_start], ordered.iloc[test_start:]
        if any(part.empty for part in parts):
            raise ValueError(f"{len(examples)} rows on {days[0]} are too few to split in time")
        return parts
    rest, test = split_by_day(examples, [days[-1].isoformat()])
    if len(days) < 3:
        return rest, None, test
    train, validation = split_by_day(rest, [days[-2].isoformat()])
    return train, validation, test


def _assignment(parts: Sequence[pd.DataFrame | None]) -> pd.DataFrame:
    frames = [
        pd.DataFrame({"event_id": part["event_id"].to_numpy(), "part": name})
        for name, part in zip(PARTS if len(parts) == 3 else ("train", "test"), parts, strict=True)
        if part is not None
    ]
    return pd.concat(frames, ignore_index=True)


def split_columns(spec: FeatureSpec) -> list[str]:
    """The columns of ``training_examples`` that ``make_splits`` reads for ``spec``'s source."""
    return ["event_id", "event_ts", "event_date", spec.label.column, *(["user_id", "item_id"] if spec.has_ids else [])]


def make_splits(examples: pd.DataFrame, spec: FeatureSpec, days: Sequence[dt.date]) -> dict[str, pd.DataFrame]:
    """Every protocol's split of a training window.

    Args:
        examples: ``training_examples`` rows of ``days``, with at least the
            ``split_columns`` of ``spec`` (``event_id``, ``event_ts``, ``event_date``, the
            label, and the ids when the source has them).
        spec: the source's feature spec.
        days: the window's days, oldest first.

    Returns:
        Protocol name -> ``event_id, part`` with one row per example of the window (for
        ``leave_one_out``, users with a single interaction only train).

    Raises:
        ValueError: a missing column, or a window too small to split.
    """
    require_columns(examples, split_columns(spec), "training window")
    ordered = examples.sort_values(["event_ts", "event_id"], kind="stable").reset_index(drop=True)
    splits = {"temporal": _assignment(split_training_window(ordered, days))}
    interactions = ordered.assign(rating=ordered[spec.label.column], timestamp=ordered["event_ts"])
    if not spec.has_ids:
        interactions = interactions.assign(user_id="", item_id="")
    train_size = int(round(0.8 * len(interactions)))
    splits["random_80_20"] = _assignment(
        protocols.tfrs_random_split(interactions, seed=RANDOM_SEED, train_size=train_size, tfds_order=False)
    )
    if spec.has_ids:
        splits["leave_one_out"] = _assignment(protocols.leave_one_out(interactions))
        splits["per_user_8_1_1"] = _assignment(protocols.per_user_random_split(interactions, seed=PER_USER_SEED))
    return splits

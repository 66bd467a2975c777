"""k-core filtering of an interactions frame: keep users and items with enough interactions."""

from __future__ import annotations

import pandas as pd


def k_core_filter(
    interactions: pd.DataFrame,
    min_user_interactions: int = 5,
    min_item_interactions: int = 5,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
) -> pd.DataFrame:
    """The largest subset in which every user and every item has enough interactions.

    Removes users with fewer than ``min_user_interactions`` rows and items with fewer
    than ``min_item_interactions`` rows, and repeats, since each removal can push
    others below their threshold, until nothing changes (a fixed point). Each row
    counts as one interaction (repeated user-item pairs count again: de-duplicate
    first if they should not). Rows without a user or an item cannot belong to the
    core and are removed.

    Args:
        interactions: one row per interaction.
        min_user_interactions: the least rows a kept user has (1 keeps every user).
        min_item_interactions: the least rows a kept item has.
        user_column: the user id column.
        item_column: the item id column.

    Returns:
        The kept rows, in their original order and with their original index.

    Raises:
        ValueError: a threshold below 1, or a missing column.
    """
    for name, value in (
        ("min_user_interactions", min_user_interactions),
        ("min_item_interactions", min_item_interactions),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    missing = [c for c in (user_column, item_column) if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions have no column {', '.join(missing)}")
    keep = interactions[user_column].notna() & interactions[item_column].notna()
    while True:
        users = interactions.loc[keep, user_column]
        keep &= interactions[user_column].map(users.value_counts()).fillna(0).ge(min_user_interactions)
        items = interactions.loc[keep, item_column]
        item_ok = interactions[item_column].map(items.value_counts()).fillna(0).ge(min_item_interactions)
        if (keep & item_ok).equals(keep):
            return interactions[keep]
        keep &= item_ok

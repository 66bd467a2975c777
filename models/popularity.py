"""Popularity baseline: the items with the most clicks, the fallback for unknown users."""

from __future__ import annotations

import pandas as pd

from models.features import LABEL, require_columns


def popular_items(examples: pd.DataFrame, limit: int = 100) -> list[tuple[str, float]]:
    """Rank items by their share of all clicks in ``examples``.

    Args:
        examples: Impressions with ``item_id`` and ``clicked`` columns (e.g. the training
            window of ``training_examples``).
        limit: Maximum number of items returned.

    Returns:
        ``[(item_id, click_share), ...]``, most clicked first (ties by item_id), where
        ``click_share`` is the item's clicks over all clicks. Items without clicks are
        left out, so the list may be shorter than ``limit``.

    Raises:
        ValueError: if a column is missing, ``limit < 1`` or there are no clicks at all.
    """
    require_columns(examples, ["item_id", LABEL], "examples frame")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    clicks = examples.loc[examples[LABEL] == 1, "item_id"].astype(str).value_counts()
    if clicks.empty:
        raise ValueError("no clicked impressions: cannot rank items by popularity")
    ranked = clicks.rename_axis("item_id").reset_index(name="clicks")
    ranked = ranked.sort_values(["clicks", "item_id"], ascending=[False, True]).head(limit)
    total = float(clicks.sum())
    return [(item_id, count / total) for item_id, count in zip(ranked["item_id"], ranked["clicks"], strict=True)]

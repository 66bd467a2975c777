"""The served popularity fallback: the items with the most positive events, for unknown users.

This counts positive *events* (an item clicked twice by one user counts twice), the
signal the served SavedModel has always fallen back on. The zoo's ``popularity``
retriever (``models.retrieval.baselines.Popularity``, also the zoo retrievers' ranking for
unknown users) counts distinct (user, item) pairs of a binary matrix instead; the two
differ only on repeated positives. Both are kept on purpose: merging them would change
the served fallback or the zoo's recorded figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from models.inputs.features import require_columns

POSITIVE_COLUMN = "is_positive"


def popular_items(examples: pd.DataFrame, limit: int = 100) -> list[tuple[str, float]]:
    """Rank items by their share of all positive interactions in ``examples``.

    Args:
        examples: Rows with ``item_id`` and ``is_positive`` columns (e.g. the training
            window of ``training_examples``; positives are clicks, or high ratings).
        limit: Maximum number of items returned.

    Returns:
        ``[(item_id, share), ...]``, most positives first (ties by item_id), where
        ``share`` is the item's positives over all positives. Items without positives
        are left out, so the list may be shorter than ``limit``.

    Raises:
        ValueError: if a column is missing, ``limit < 1`` or there is no positive at all.
    """
    require_columns(examples, ["item_id", POSITIVE_COLUMN], "examples frame")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    clicks = examples.loc[examples[POSITIVE_COLUMN] == 1, "item_id"].astype(str).value_counts()
    if clicks.empty:
        raise ValueError("no positive interactions: cannot rank items by popularity")
    ranked = clicks.rename_axis("item_id").reset_index(name="clicks")
    ranked = ranked.sort_values(["clicks", "item_id"], ascending=[False, True]).head(limit)
    total = float(clicks.sum())
    return [(item_id, count / total) for item_id, count in zip(ranked["item_id"], ranked["clicks"], strict=True)]


def complete_popularity(ranked: Sequence[tuple[str, float]], catalogue: Iterable[str]) -> list[tuple[str, float]]:
    """``ranked`` restricted to ``catalogue``, then every other catalogue item with score 0
    (by id): a fallback list long enough for any ``k`` up to the catalogue's size."""
    items = sorted({str(item) for item in catalogue})
    present = set(items)
    head = [(str(item), float(score)) for item, score in ranked if str(item) in present]
    listed = {item for item, _ in head}
    return head + [(item, 0.0) for item in items if item not in listed]

"""Top-K evaluation of any retriever that scores a whole catalogue: the zoo's retrievers
(``models.training.retrievers``) and the pipeline's served two-tower
(``models.training.two_tower``) are scored by the same function, so their figures compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from models import evaluation
from models.retrieval.baselines import InteractionIndex

KS = (10, 100)
"""The cut-offs every retriever is ranked at (capped by the catalogue, ``ranking_cutoffs``)."""


class CatalogueScorer(Protocol):
    """What ``evaluate_retriever`` needs of a retriever.

    Attributes:
        catalogue: ``[I]`` sorted ``str`` item ids: the columns of ``scores``.
    """

    catalogue: np.ndarray

    def scores(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        """``[len(user_ids), I]`` scores, higher is more recommendable."""
        ...


def _string_ids(values: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    return np.asarray(values).astype(str)


def ranking_cutoffs(n_items: int) -> tuple[int, ...]:
    """The ``KS`` a catalogue of ``n_items`` can be ranked at.

    Raises:
        ValueError: the catalogue is smaller than the smallest cut-off.
    """
    cutoffs = tuple(k for k in KS if k <= n_items)
    if not cutoffs:
        raise ValueError(f"the catalogue has {n_items} items, fewer than the smallest cut-off {KS[0]}")
    return cutoffs


def evaluate_retriever(
    retriever: CatalogueScorer, seen: pd.DataFrame, held_out: pd.DataFrame
) -> dict[str, float | int]:
    """Top-K metrics of a full-catalogue ranking on held-out positive interactions.

    Every held-out user with interactions in ``seen`` is ranked every catalogue item
    (``retriever.scores``) with their ``seen`` items masked (``evaluation.ranking_metrics``
    at ``ranking_cutoffs``); held-out users without any (who are served the popularity
    ranking) are only counted.

    Args:
        retriever: A fitted retriever.
        seen: The interactions it was fitted on (``user_id``, ``item_id``).
        held_out: Later positive interactions (``user_id``, ``item_id`` of the catalogue).

    Returns:
        ``evaluation.ranking_metrics``' keys (``users``: the users ranked) plus
        ``cold_users``: held-out users without training interactions.

    Raises:
        ValueError: no held-out user has training interactions, or an item is not in the
            catalogue.
    """
    held_out_users = np.unique(_string_ids(held_out["user_id"]))
    users = held_out_users[np.isin(held_out_users, _string_ids(seen["user_id"]))]
    if users.size == 0:
        raise ValueError(
            f"none of the {held_out_users.size} held-out users has training interactions: nobody to rank items for"
        )
    index = InteractionIndex(user_ids=users, item_ids=retriever.catalogue)
    metrics = evaluation.ranking_metrics(
        retriever.scores(users),
        index.matrix(seen[seen["user_id"].isin(users)]),
        index.items_per_user(held_out[held_out["user_id"].isin(users)]),
        ranking_cutoffs(len(retriever.catalogue)),
    )
    metrics["cold_users"] = int(held_out_users.size - users.size)
    return metrics

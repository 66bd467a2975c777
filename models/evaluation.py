"""Offline metrics for click models and retrieval (numpy only).

All functions validate their input and raise ``ValueError`` with a message naming the
problem (empty input, mismatched lengths, labels other than 0/1, probabilities outside
[0, 1], a single label class for AUC) instead of returning ``nan``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

LOGLOSS_EPSILON = 1e-7
"""Predictions are clipped to [eps, 1 - eps] before taking logs, so a confident wrong
prediction costs at most -log(1e-7) ~ 16.1 nats instead of infinity."""


def _labels_and_scores(
    labels: Sequence[float], scores: Sequence[float], score_name: str
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(scores, dtype=np.float64).ravel()
    if y.size == 0:
        raise ValueError("labels are empty")
    if y.size != p.size:
        raise ValueError(f"got {y.size} labels but {p.size} {score_name}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(p).all():
        raise ValueError(f"{score_name} must be finite (found nan or inf)")
    return y, p


def auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U), with ties counted as half.

    Args:
        labels: 0/1 outcomes.
        scores: Real-valued scores, higher meaning more likely positive.

    Returns:
        Probability that a random positive scores above a random negative (ties 0.5).

    Raises:
        ValueError: on empty or mismatched input, non-binary labels, non-finite scores, or
            labels of a single class (AUC is undefined then).
    """
    y, s = _labels_and_scores(labels, scores, "scores")
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError(f"AUC needs both classes; got {positives} positive(s) and {negatives} negative(s)")
    # Average 1-based ranks: tied scores share the mean of the ranks they occupy.
    unique_scores, group, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks_before = np.cumsum(counts) - counts
    average_rank = ranks_before + (counts + 1) / 2.0
    positive_rank_sum = average_rank[group][y == 1].sum()
    return float((positive_rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def logloss(labels: Sequence[float], probabilities: Sequence[float]) -> float:
    """Mean binary cross-entropy in nats, with probabilities clipped to [eps, 1 - eps].

    Args:
        labels: 0/1 outcomes.
        probabilities: Predicted P(label = 1), each in [0, 1].

    Returns:
        ``-mean(y log p + (1 - y) log(1 - p))``.

    Raises:
        ValueError: on empty or mismatched input, non-binary labels, or probabilities
            outside [0, 1] or non-finite.
    """
    y, p = _labels_and_scores(labels, probabilities, "probabilities")
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    p = np.clip(p, LOGLOSS_EPSILON, 1.0 - LOGLOSS_EPSILON)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def bayes_logloss(labels: Sequence[float], true_probabilities: Sequence[float]) -> float:
    """Logloss of the data generator's true click probabilities: the Bayes-optimal floor.

    No model can beat this in expectation on data drawn from those probabilities, so
    ``logloss(model) - bayes_logloss`` is how much a model leaves on the table.

    Args:
        labels: 0/1 outcomes drawn from ``true_probabilities``.
        true_probabilities: The generator's true pCTR per example.

    Returns:
        ``logloss(labels, true_probabilities)``.
    """
    return logloss(labels, true_probabilities)


def recall_at_k(
    recommended_item_ids: Sequence[Sequence[str]],
    relevant_item_ids: Sequence[Collection[str]],
    k: int,
) -> float:
    """Mean over users of the share of each user's relevant items found in their top k.

    For user ``u``: ``|set(recommended[u][:k]) & relevant[u]| / |relevant[u]|``. Lists
    shorter than ``k`` are used as they are.

    Args:
        recommended_item_ids: Per user, item ids in recommendation order.
        relevant_item_ids: Per user (same order), the ids of items they engaged with.
        k: Cut-off, >= 1.

    Returns:
        Mean recall@k over users.

    Raises:
        ValueError: if ``k < 1``, there are no users, the two sequences differ in length,
            or a user has no relevant items (leave such users out: their recall is undefined).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(recommended_item_ids) == 0:
        raise ValueError("no users to evaluate")
    if len(recommended_item_ids) != len(relevant_item_ids):
        raise ValueError(
            f"got recommendations for {len(recommended_item_ids)} users but relevant items "
            f"for {len(relevant_item_ids)}"
        )
    recalls = []
    for user_index, (recommended, relevant) in enumerate(zip(recommended_item_ids, relevant_item_ids, strict=True)):
        relevant_set = set(relevant)
        if not relevant_set:
            raise ValueError(f"user at position {user_index} has no relevant items")
        hits = len(set(list(recommended)[:k]) & relevant_set)
        recalls.append(hits / len(relevant_set))
    return float(np.mean(recalls))

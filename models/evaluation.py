"""Offline metrics for click models, rating models and top-K recommenders (numpy).

- Click models: ``auc``, ``logloss``, ``normalized_entropy``, ``bayes_logloss`` and the
  calibration summaries ``expected_calibration_error`` / ``predicted_to_observed_ratio``
  (re-exported from ``models.calibration``, which owns them with ``calibration_table``).
- Rating models: ``rmse``, ``mae``.
- Top-K recommenders: ``recall_at_k`` over explicit id lists, and ``ranking_metrics``
  over a full score matrix (every item ranked, the user's training items masked).

All functions validate their input and raise ``ValueError`` with a message naming the
problem (empty input, mismatched lengths, labels other than 0/1, probabilities outside
[0, 1], a single label class for AUC) instead of returning ``nan``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from models.calibration import expected_calibration_error, predicted_to_observed_ratio

__all__ = [
    "LOGLOSS_EPSILON",
    "RANKING_BLOCK_CELLS",
    "auc",
    "bayes_logloss",
    "expected_calibration_error",
    "logloss",
    "mae",
    "normalized_entropy",
    "predicted_to_observed_ratio",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
]

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
            f"got recommendations for {len(recommended_item_ids)} users but relevant items for {len(relevant_item_ids)}"
        )
    recalls = []
    for user_index, (recommended, relevant) in enumerate(zip(recommended_item_ids, relevant_item_ids, strict=True)):
        relevant_set = set(relevant)
        if not relevant_set:
            raise ValueError(f"user at position {user_index} has no relevant items")
        hits = len(set(list(recommended)[:k]) & relevant_set)
        recalls.append(hits / len(relevant_set))
    return float(np.mean(recalls))


def normalized_entropy(labels: Sequence[float], probabilities: Sequence[float]) -> float:
    """Logloss divided by the entropy of the observed base rate (He et al., 2014).

    The denominator is the logloss of always predicting the empirical click rate
    ``p = mean(labels)``: ``-(p ln p + (1 - p) ln(1 - p))``. Below 1 the model beats that
    constant predictor; 1 means it adds nothing.

    Args:
        labels: 0/1 outcomes.
        probabilities: Predicted P(label = 1), each in [0, 1].

    Returns:
        ``logloss(labels, probabilities) / H(mean(labels))``.

    Raises:
        ValueError: on invalid input as for ``logloss``, or when every label is the same
            (the base-rate entropy is 0 and the ratio undefined).
    """
    value = logloss(labels, probabilities)
    y = np.asarray(labels, dtype=np.float64).ravel()
    base_rate = float(y.mean())
    if base_rate in (0.0, 1.0):
        raise ValueError(f"normalized entropy needs both classes; all {y.size} labels are {int(base_rate)}")
    base_entropy = -(base_rate * np.log(base_rate) + (1.0 - base_rate) * np.log1p(-base_rate))
    return float(value / base_entropy)


def _targets_and_predictions(targets: Sequence[float], predictions: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(targets, dtype=np.float64).ravel()
    p = np.asarray(predictions, dtype=np.float64).ravel()
    if t.size == 0:
        raise ValueError("targets are empty")
    if t.size != p.size:
        raise ValueError(f"got {t.size} targets but {p.size} predictions")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("targets and predictions must be finite (found nan or inf)")
    return t, p


def rmse(targets: Sequence[float], predictions: Sequence[float]) -> float:
    """Root mean squared error, e.g. of predicted star ratings.

    Args:
        targets: Observed values.
        predictions: Predicted values, same length.

    Returns:
        ``sqrt(mean((targets - predictions) ** 2))``.

    Raises:
        ValueError: on empty or mismatched input, or non-finite values.
    """
    t, p = _targets_and_predictions(targets, predictions)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(targets: Sequence[float], predictions: Sequence[float]) -> float:
    """Mean absolute error.

    Args:
        targets: Observed values.
        predictions: Predicted values, same length.

    Returns:
        ``mean(|targets - predictions|)``.

    Raises:
        ValueError: on empty or mismatched input, or non-finite values.
    """
    t, p = _targets_and_predictions(targets, predictions)
    return float(np.mean(np.abs(t - p)))


RANKING_BLOCK_CELLS = 1 << 22
"""``ranking_metrics`` works on blocks of about this many (user, item) cells (~32 MB of
float64 scores), so its extra memory does not grow with the number of users."""


def ranking_metrics(
    scores: np.ndarray,
    train_mask: Any,
    test_items: Sequence[Sequence[int]],
    ks: Sequence[int] = (10, 100),
) -> dict[str, float | int]:
    """Top-K metrics over a full ranking of every item, the user's training items masked.

    Each user's items are ordered by descending score, ties broken towards the lower item
    index; items set in ``train_mask`` are removed from the ranking first (they can never
    be hits, even if they are also test items). Users with no test item are skipped. With
    ``T`` a user's (deduplicated) test items and ``hits@K`` how many of them rank in the
    top K, the metrics are:

    - ``hr@K`` (hit ratio), pooled over all test interactions: ``sum of hits@K / sum of |T|``,
      the share of test (user, item) pairs whose item ranks in its user's top K. With one
      test item per user (leave-one-out) it is the classic HR@K; on a split with one test
      row per (user, item) it is TensorFlow Recommenders' ``FactorizedTopK``
      ``top_K_categorical_accuracy`` (computed there without masking training items).

    and, averaged over users (macro):

    - ``user_hr@K``: share of users with ``hits@K >= 1``.
    - ``recall@K``: ``hits@K / |T|`` (RecBole's definition: the denominator is ``|T|``,
      not ``min(K, |T|)``, so a user with more than K test items cannot reach 1).
    - ``ndcg@K``: binary-relevance DCG ``sum over hits at rank r (1-based) of 1 / log2(r + 1)``
      divided by the ideal DCG of ``min(K, |T|)`` hits at ranks ``1..min(K, |T|)``.
    - ``mrr@K``: ``1 / rank`` of the first hit within the top K, 0 if none.

    Args:
        scores: ``[n_users, n_items]`` finite scores, higher is better.
        train_mask: ``[n_users, n_items]`` items to exclude per user (their training
            items): a boolean array or a scipy.sparse matrix whose non-zero entries mark
            excluded items, or ``None`` to exclude nothing.
        test_items: One entry per user (row of ``scores``): the item indices held out for
            that user; empty for users not evaluated. Duplicates count once.
        ks: Cut-offs, each between 1 and ``n_items``.

    Returns:
        ``{"hr@K", "user_hr@K", "recall@K", "ndcg@K", "mrr@K"}`` for every K in
        ``ks`` (floats), plus ``"users"``: the number of users evaluated.

    Raises:
        ValueError: if shapes disagree, scores are not finite, a K is out of range, a test
            item index is outside ``[0, n_items)``, or no user has a test item.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D [n_users, n_items] array, got shape {scores.shape}")
    n_users, n_items = scores.shape
    if train_mask is not None and tuple(train_mask.shape) != scores.shape:
        raise ValueError(f"train_mask has shape {tuple(train_mask.shape)} but scores have shape {scores.shape}")
    if len(test_items) != n_users:
        raise ValueError(f"got test items for {len(test_items)} users but scores for {n_users}")
    cutoffs = sorted({int(k) for k in ks})
    if not cutoffs or cutoffs[0] < 1 or cutoffs[-1] > n_items:
        raise ValueError(f"every k must be between 1 and the number of items ({n_items}), got {list(ks)}")
    test_sets = [_unique_item_indices(items, n_items, user) for user, items in enumerate(test_items)]
    evaluated = np.flatnonzero([items.size > 0 for items in test_sets])
    if evaluated.size == 0:
        raise ValueError("no user has a test item")

    depth = cutoffs[-1]
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    ideal_dcg = np.cumsum(discounts)
    totals = {f"{name}@{k}": 0.0 for k in cutoffs for name in ("hr", "user_hr", "recall", "ndcg", "mrr")}
    test_interactions = 0
    block_users = max(1, RANKING_BLOCK_CELLS // n_items)
    for start in range(0, evaluated.size, block_users):
        users = evaluated[start : start + block_users]
        block = np.array(scores[users], dtype=np.float64)
        if not np.isfinite(block).all():
            raise ValueError("scores must be finite (found nan or inf)")
        if train_mask is not None:
            block[_dense_rows(train_mask, users)] = -np.inf
        relevant = np.zeros(block.shape, dtype=bool)
        sizes = np.array([test_sets[u].size for u in users])
        relevant[np.repeat(np.arange(users.size), sizes), np.concatenate([test_sets[u] for u in users])] = True
        top = _top_k_indices(block, depth)
        hits = np.take_along_axis(relevant, top, axis=1) & np.isfinite(np.take_along_axis(block, top, axis=1))
        hit_counts = np.cumsum(hits, axis=1)
        dcg = np.cumsum(hits * discounts, axis=1)
        first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), depth)
        test_interactions += int(sizes.sum())
        for k in cutoffs:
            found = hit_counts[:, k - 1]
            totals[f"hr@{k}"] += float(found.sum())
            totals[f"user_hr@{k}"] += float((found > 0).sum())
            totals[f"recall@{k}"] += float((found / sizes).sum())
            totals[f"ndcg@{k}"] += float((dcg[:, k - 1] / ideal_dcg[np.minimum(sizes, k) - 1]).sum())
            totals[f"mrr@{k}"] += float(np.where(first_hit < k, 1.0 / (first_hit + 1), 0.0).sum())
    metrics: dict[str, float | int] = {
        name: total / (test_interactions if name.startswith("hr@") else evaluated.size)
        for name, total in totals.items()
    }
    metrics["users"] = int(evaluated.size)
    return metrics


def _unique_item_indices(items: Sequence[int], n_items: int, user: int) -> np.ndarray:
    """One user's test items as sorted unique int64 indices, checked to lie in [0, n_items)."""
    array = np.unique(np.asarray(items, dtype=np.int64).ravel())
    if array.size and (array[0] < 0 or array[-1] >= n_items):
        raise ValueError(f"user {user} has a test item index outside [0, {n_items}): {array[0]}..{array[-1]}")
    return array


def _dense_rows(mask: Any, rows: np.ndarray) -> np.ndarray:
    """Rows of a boolean array or scipy.sparse matrix as a dense boolean array."""
    selected = mask[rows]
    if hasattr(selected, "toarray"):
        selected = selected.toarray()
    return np.asarray(selected) != 0


def _top_k_indices(block: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k highest scores, best first, ties to the lower index.

    Exact and deterministic in O(n_items) per row plus O(k log k) for the final sort:
    everything above the k-th highest value is taken, then the lowest-index ties at it.
    """
    rows, n_items = block.shape
    if k < n_items:
        kth_value = -np.partition(-block, k - 1, axis=1)[:, k - 1 : k]
        above = block > kth_value
        at = block == kth_value
        room = k - above.sum(axis=1, keepdims=True)
        chosen = above | (at & (np.cumsum(at, axis=1) <= room))
        candidates = np.nonzero(chosen)[1].reshape(rows, k)
    else:
        candidates = np.broadcast_to(np.arange(n_items), (rows, n_items))
    # Stable sort on descending score keeps ascending index order among ties.
    order = np.argsort(-np.take_along_axis(block, candidates, axis=1), axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)

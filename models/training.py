"""Train and evaluate the ranking and retrieval models on ``training_examples`` frames.

DataFrames in, models and plain dicts out, so orchestration code (Dagster assets, a
notebook, a CLI) only moves frames around. Training is seeded: the same frame and
config give the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras

from models import evaluation
from models.features import (
    CANDIDATE_FEATURES,
    LABEL,
    QUERY_FEATURES,
    RANKING_FEATURES,
    FeatureVocabularies,
    feature_arrays,
    label_array,
    require_columns,
    string_vocabulary,
)
from models.ranking import RankingConfig, build_ranking_model, predict_pctr
from models.retrieval import RetrievalConfig, TwoTowerModel, build_index, build_retrieval_model

TRUE_PCTR_COLUMN = "true_pctr"
"""Optional column of the generator's true click probability (synthetic data only)."""


@dataclass
class TrainingResult:
    """A trained model and what happened while training it.

    Attributes:
        model: The trained Keras model.
        history: Metric name -> one value per epoch (e.g. ``loss``, ``auc``).
        examples: Number of training rows used.
        seconds: Wall-clock training time.
    """

    model: keras.Model
    history: dict[str, list[float]]
    examples: int
    seconds: float


def _shuffled_batches(
    features: dict[str, np.ndarray], labels: np.ndarray | None, batch_size: int, seed: int
) -> tf.data.Dataset:
    data = features if labels is None else (features, labels)
    rows = len(next(iter(features.values())))
    return (
        tf.data.Dataset.from_tensor_slices(data)
        .shuffle(rows, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def _fit(model: keras.Model, dataset: tf.data.Dataset, epochs: int, rows: int) -> TrainingResult:
    started = time.perf_counter()
    history = model.fit(dataset, epochs=epochs, verbose=0)
    return TrainingResult(
        model=model,
        history={name: [float(v) for v in values] for name, values in history.history.items()},
        examples=rows,
        seconds=time.perf_counter() - started,
    )


def train_ranking(train: pd.DataFrame, config: RankingConfig = RankingConfig()) -> TrainingResult:
    """Fit a DCN pCTR model on impressions.

    Args:
        train: ``training_examples`` rows (every ranking feature column plus ``clicked``).
        config: Architecture and training settings.

    Returns:
        The trained ``DCNRanker`` with its per-epoch loss and AUC.

    Raises:
        ValueError: if ``train`` is empty, lacks a column, or has null features.
    """
    if train.empty:
        raise ValueError("cannot train the ranking model on an empty frame")
    features = feature_arrays(train, RANKING_FEATURES)
    labels = label_array(train)
    keras.utils.set_random_seed(config.seed)
    vocabularies = FeatureVocabularies.from_frame(train, min_count=config.vocabulary_min_count)
    model = build_ranking_model(vocabularies, config)
    dataset = _shuffled_batches(features, labels, config.batch_size, config.seed)
    return _fit(model, dataset, config.epochs, len(train))


def train_retrieval(train: pd.DataFrame, config: RetrievalConfig = RetrievalConfig()) -> TrainingResult:
    """Fit a two-tower retrieval model on the clicked impressions of ``train``.

    Args:
        train: ``training_examples`` rows (needs ``user_id, user_segment, item_id,
            category, clicked``).
        config: Architecture and training settings.

    Returns:
        The trained ``TwoTowerModel`` with its per-epoch loss.

    Raises:
        ValueError: if ``train`` lacks a column or holds no clicked impression.
    """
    require_columns(train, (*QUERY_FEATURES, *CANDIDATE_FEATURES, LABEL), "training frame")
    clicked = train[train[LABEL] == 1]
    if clicked.empty:
        raise ValueError("cannot train the retrieval model: the training frame has no clicked impression")
    features = feature_arrays(clicked, QUERY_FEATURES + CANDIDATE_FEATURES)
    vocabularies = {
        name: string_vocabulary(name, values, config.vocabulary_min_count) for name, values in features.items()
    }
    keras.utils.set_random_seed(config.seed)
    model = build_retrieval_model(vocabularies, config)
    dataset = _shuffled_batches(features, None, config.batch_size, config.seed)
    return _fit(model, dataset, config.epochs, len(clicked))


def evaluate_ranking(model: keras.Model, test: pd.DataFrame) -> dict[str, Any]:
    """Score a held-out frame and compare predictions with the clicks.

    Args:
        model: A trained ranker (raw features in, pCTR out).
        test: ``training_examples`` rows; if a ``true_pctr`` column is present (synthetic
            data), the Bayes-optimal logloss is reported too.

    Returns:
        ``{"auc", "logloss", "examples"}`` plus ``"bayes_logloss"`` when ``true_pctr``
        is present.

    Raises:
        ValueError: if ``test`` is empty, lacks a column, holds a single label class, or
            has a ``true_pctr`` column with missing values.
    """
    if test.empty:
        raise ValueError("cannot evaluate the ranking model on an empty frame")
    labels = label_array(test)
    pctr = predict_pctr(model, feature_arrays(test, RANKING_FEATURES))
    metrics: dict[str, Any] = {
        "auc": evaluation.auc(labels, pctr),
        "logloss": evaluation.logloss(labels, pctr),
        "examples": int(len(test)),
    }
    if TRUE_PCTR_COLUMN in test.columns:
        true_pctr = test[TRUE_PCTR_COLUMN]
        if true_pctr.isna().any():
            raise ValueError(f"column {TRUE_PCTR_COLUMN!r} has {int(true_pctr.isna().sum())} missing value(s)")
        metrics["bayes_logloss"] = evaluation.bayes_logloss(labels, true_pctr.to_numpy())
    return metrics


def _last_value_per_user(test: pd.DataFrame, column: str) -> pd.Series:
    ordered = test.sort_values("event_ts") if "event_ts" in test.columns else test
    return ordered.groupby("user_id")[column].last()


def evaluate_retrieval(
    model: TwoTowerModel, test: pd.DataFrame, candidates: pd.DataFrame, k: int = 50
) -> dict[str, Any]:
    """Recall@k of two-tower retrieval over a candidate catalogue.

    Each user with at least one click in ``test`` is a query (with their latest
    ``user_segment`` in ``test``); the relevant set is the items they clicked in ``test``.

    Args:
        model: A trained two-tower model.
        test: Held-out ``training_examples`` rows.
        candidates: The catalogue to retrieve from, one row per item with ``item_id`` and
            ``category`` (e.g. the ``item_features`` table).
        k: Cut-off; must not exceed the catalogue size.

    Returns:
        ``{"recall_at_k", "k", "users"}``.

    Raises:
        ValueError: if a column is missing, ``test`` has no click, or ``k`` is out of range.
    """
    require_columns(test, (*QUERY_FEATURES, "item_id", LABEL), "test frame")
    require_columns(candidates, CANDIDATE_FEATURES, "candidates frame")
    clicked = test[test[LABEL] == 1]
    if clicked.empty:
        raise ValueError("cannot evaluate retrieval: the test frame has no clicked impression")
    relevant = clicked.groupby("user_id")["item_id"].agg(lambda ids: set(ids.astype(str)))
    segments = _last_value_per_user(test, "user_segment").loc[relevant.index]
    index = build_index(model, feature_arrays(candidates, CANDIDATE_FEATURES), k)
    queries = {
        "user_id": tf.constant(relevant.index.astype(str).to_numpy()),
        "user_segment": tf.constant(segments.astype(str).to_numpy()),
    }
    _, item_ids = index(model.query_tower(queries))
    recommended = [[item.decode() for item in row] for row in item_ids.numpy()]
    return {
        "recall_at_k": evaluation.recall_at_k(recommended, list(relevant), k),
        "k": int(k),
        "users": int(len(relevant)),
    }


def split_by_day(examples: pd.DataFrame, test_days: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``training_examples`` into (train, test) by ``event_date``.

    Args:
        examples: Rows with an ``event_date`` column (date or ``YYYY-MM-DD`` string).
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

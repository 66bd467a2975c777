"""Train, evaluate and compare a source's recommender: the pipeline's model step, without Dagster.

``train_recommender`` takes the newest days of ``training_examples`` and the serving
tables, splits them in time (train days, a validation day for early stopping, the newest
day held out for testing), trains the configured zoo ranker on the feature spec and,
for sources with user and item ids, a two-tower retrieval model, and reports honest
metrics on the held-out day. ``promotion_metric`` says which metric decides champion
and challenger for the source's label.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from models import evaluation
from models.inputs.features import feature_arrays, label_array
from models.inputs.splits import split_streamed_window, split_training_window, trained_span
from models.inputs.stream import ParquetWindow
from models.ranking.base import FeatureModel
from models.retrieval.popularity import POSITIVE_COLUMN, popular_items
from models.retrieval.two_tower import RetrievalConfig
from models.training.config import ModelSpec
from models.training.registry import (
    EpochHook,
    TrainingResult,
    ZooTrainingResult,
    evaluate_model,
    predict_tasks,
    train_model,
)
from models.training.two_tower import evaluate_retrieval, train_retrieval
from reclake.feature_spec import FeatureSpec

DEFAULT_RANKER = "dcn_v2_stacked"
# Log-Q correction on: without it in-batch negatives cancel popularity out of the scores
# (on MovieLens-100K it lifts top-10 accuracy from 0.035 to 0.150; bench/quality.py).
DEFAULT_RETRIEVAL = RetrievalConfig(sampling_bias_correction=True)
RETRIEVAL_K = 50


@dataclass
class TrainedRecommender:
    """What one training of a source's recommender produced.

    Attributes:
        ranking: the trained ranker and its history.
        retrieval: the trained two-tower model, or None for sources without ids.
        metrics: ``ranking_*`` metrics on the held-out day (``evaluation`` keys) and
            ``retrieval_recall_at_k`` / ``retrieval_k`` / ``retrieval_users`` with retrieval.
        train, validation, test: the rows of each part of the split.
        trained_on: (first, last) training day; evaluated_on: the held-out day.
        popular_items: the popularity fallback (empty without item ids).
        seen_items: the training window's positive (user_id, item_id) pairs.
    """

    ranking: ZooTrainingResult
    retrieval: TrainingResult | None
    metrics: dict[str, float]
    train: pd.DataFrame
    validation: pd.DataFrame | None
    test: pd.DataFrame
    trained_on: tuple[dt.date, dt.date]
    evaluated_on: dt.date
    popular_items: list[tuple[str, float]]
    seen_items: pd.DataFrame


def promotion_metric(spec: FeatureSpec) -> tuple[str, bool]:
    """The metric that decides champion vs challenger, and whether higher is better: the
    held-out RMSE for a rating label, else the AUC of the served score (pCTR; for a
    multi-task ranker its click task's AUC, ``ranking_ctr_auc``, copied to ``ranking_auc``)."""
    return ("ranking_rmse", False) if spec.label.kind == "regression" else ("ranking_auc", True)


@dataclass
class TrainedRanker:
    """One zoo ranker trained on a window's temporal split and scored on its test part.

    Attributes:
        result: the trained model, its per-epoch history, rows, seconds, config, best epoch.
        metrics: ``models.training.registry.evaluate_model`` on the test part (None values dropped).
        train, validation, test: the rows of each part of the split.
        trained_on: (first, last) training day; evaluated_on: the held-out day.
    """

    result: ZooTrainingResult
    metrics: dict[str, float]
    train: pd.DataFrame
    validation: pd.DataFrame | None
    test: pd.DataFrame
    trained_on: tuple[dt.date, dt.date]
    evaluated_on: dt.date


def ranker_metrics(model: FeatureModel, frame: pd.DataFrame) -> dict[str, float]:
    """A trained ranker's ``evaluate_model`` metrics on ``frame`` (None values dropped).

    A multi-task ranker is served for its pCTR (``/predict``'s score): its click task's
    AUC and logloss are also reported as the ``auc`` / ``logloss`` that promotion, the
    automatic choice (``models.selection``) and the reports compare.
    """
    metrics = {name: float(value) for name, value in evaluate_model(model, frame).items() if value is not None}
    if model.multitask:
        metrics["auc"], metrics["logloss"] = metrics["ctr_auc"], metrics["ctr_logloss"]
    return metrics


def promotion_score(model: FeatureModel, frame: pd.DataFrame) -> float:
    """The promotion metric (``promotion_metric``) of a ranker's served score on rows:
    the AUC of its pCTR (a multi-task ranker's click output) for a click label, the RMSE
    of its prediction for a rating label. What the automatic choice and sweeps compare
    on the validation day, without the task metrics a day may be too small for.

    Raises:
        ValueError: an empty frame, a missing label, or a click label of one class.
    """
    if frame.empty:
        raise ValueError("cannot score a ranker on an empty frame")
    spec = model.fitted.spec
    scores = predict_tasks(model, feature_arrays(frame, spec))
    labels = label_array(frame, spec)
    if spec.label.kind == "regression":
        return float(evaluation.rmse(labels, scores["prediction"]))
    return float(evaluation.auc(labels, scores["pctr"]))


def train_ranker(
    examples: pd.DataFrame,
    spec: FeatureSpec,
    days: Sequence[dt.date],
    config: str | os.PathLike[str] | Mapping[str, Any] | ModelSpec = DEFAULT_RANKER,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    on_epoch_end: EpochHook | None = None,
    train_stream: ParquetWindow | None = None,
    mixed_precision: bool | None = None,
) -> TrainedRanker:
    """Train a zoo config on the window's temporal split (early stopping on the validation
    day) and evaluate it on the held-out day.

    Args:
        examples: ``training_examples`` rows of ``days``.
        spec: the source's feature spec.
        days: the window's days, oldest first (one day is split inside the day).
        config: the zoo model config.
        checkpoint_dir: where per-epoch checkpoints go; None: none.
        on_epoch_end: progress after each epoch (``models.training.registry.EpochHook``).
        train_stream: the training days as Parquet files (a window larger than memory);
            ``examples`` then holds only the validation and test days (at least 3 days).
        mixed_precision: overrides the config's ``training.mixed_precision`` when given.

    Raises:
        ValueError: no days, a part of the split is empty, or the config does not fit the
            source (e.g. a multi-task model without conversion labels).
    """
    if not days:
        raise ValueError("no days of training_examples to train on")
    if train_stream is not None:
        validation, test = split_streamed_window(examples, days)
        train = train_stream
    else:
        train, validation, test = split_training_window(examples, days)
    result = train_model(
        config, train, validation, feature_spec=spec, checkpoint_dir=checkpoint_dir, on_epoch_end=on_epoch_end,
        mixed_precision=mixed_precision,
    )  # fmt: skip
    return TrainedRanker(
        result=result,
        metrics=ranker_metrics(result.model, test),
        train=train,
        validation=validation,
        test=test,
        trained_on=trained_span(days),
        evaluated_on=days[-1],
    )


def train_recommender(
    examples: pd.DataFrame,
    spec: FeatureSpec,
    days: Sequence[dt.date],
    item_features: pd.DataFrame | None,
    *,
    ranker: str | os.PathLike[str] | Mapping[str, Any] | ModelSpec = DEFAULT_RANKER,
    retrieval_config: RetrievalConfig = DEFAULT_RETRIEVAL,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    on_epoch_end: EpochHook | None = None,
    ranker_run: TrainedRanker | None = None,
    train_stream: ParquetWindow | None = None,
    train_positives: pd.DataFrame | None = None,
    mixed_precision: bool | None = None,
) -> TrainedRecommender:
    """Train and evaluate a source's ranker (and retrieval, where it has ids).

    Args:
        examples: ``training_examples`` rows of ``days`` (plus ``true_pctr`` on the
            synthetic source's held-out day, for the Bayes-optimal logloss).
        spec: the source's feature spec.
        days: the window's days, oldest first (one day is split inside the day).
        item_features: the ``item_features`` table (retrieval candidates); None without ids.
        ranker: the zoo model config of the ranker.
        retrieval_config: the two-tower settings.
        checkpoint_dir: where the ranker's per-epoch checkpoints go; None: none.
        on_epoch_end: progress after each of the ranker's epochs (``EpochHook``).
        ranker_run: a ranker already trained on this window's split (e.g. the choice of
            ``models.selection.select_ranker``); None trains ``ranker``.
        train_stream: the training days as Parquet files, streamed (``train_ranker``).
        train_positives: with ``train_stream``, the positive rows of the training days:
            retrieval, popularity and seen items read them (with the validation day) in
            memory, as they read only positives anyway.
        mixed_precision: overrides the ranker config's ``training.mixed_precision``.

    Raises:
        ValueError: no days, or a part of the split is empty.
    """
    if ranker_run is None:
        ranker_run = train_ranker(
            examples, spec, days, ranker, checkpoint_dir, on_epoch_end, train_stream, mixed_precision
        )
    train, validation, test = ranker_run.train, ranker_run.validation, ranker_run.test
    ranking = ranker_run.result
    metrics = {f"ranking_{name}": value for name, value in ranker_run.metrics.items()}
    retrieval = None
    popular: list[tuple[str, float]] = []
    seen = pd.DataFrame({"user_id": [], "item_id": []})
    in_memory_train = train_positives if isinstance(train, ParquetWindow) else train
    if in_memory_train is None:
        in_memory_train = validation.iloc[:0]
    fitted_rows = in_memory_train if validation is None else pd.concat([in_memory_train, validation])
    if spec.has_ids:
        retrieval = train_retrieval(fitted_rows, spec, retrieval_config)
        k = min(RETRIEVAL_K, len(item_features))
        seen = fitted_rows.loc[fitted_rows[POSITIVE_COLUMN] == 1, ["user_id", "item_id"]].drop_duplicates()
        retrieval_metrics = evaluate_retrieval(retrieval.model, test, item_features, spec, k=k, seen=seen)
        metrics.update({f"retrieval_{name}": float(value) for name, value in retrieval_metrics.items()})
        popular = popular_items(fitted_rows)
    return TrainedRecommender(
        ranking=ranking,
        retrieval=retrieval,
        metrics=metrics,
        train=train,
        validation=validation,
        test=test,
        trained_on=ranker_run.trained_on,
        evaluated_on=ranker_run.evaluated_on,
        popular_items=popular,
        seen_items=seen,
    )

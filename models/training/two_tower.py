"""Train and evaluate the pipeline's retrieval model on ``training_examples`` frames.

DataFrames in, models and plain dicts out, so orchestration code (Dagster assets, a
notebook, a CLI) only moves frames around. The two-tower model learns from the
positive interactions (``is_positive``: clicks for CTR sources, ratings at or above the
spec's threshold for rating sources); its towers embed the ids plus the string columns
of the user and item roles of the feature spec. Rankers are trained by the config-driven
zoo (``models.training.registry``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras

from models import evaluation
from models.inputs.batches import array_batches, build_for_fit
from models.inputs.features import feature_arrays, require_columns, string_vocabulary
from models.retrieval.evaluation import KS, evaluate_retriever
from models.retrieval.popularity import POSITIVE_COLUMN
from models.retrieval.two_tower import RetrievalConfig, TwoTowerModel, build_index, build_retrieval_model, embed_rows
from models.training.registry import TrainingResult
from reclake.feature_spec import FeatureSpec


def retrieval_features(spec: FeatureSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(query, candidate) tower inputs: each id plus its role's string columns.

    Raises:
        ValueError: the source has no user and item ids (no retrieval for it).
    """
    if not spec.has_ids:
        raise ValueError(f"source {spec.source!r} has no user and item ids: it has no retrieval model")
    strings = {role: tuple(c.name for c in spec.role_columns(role) if c.dtype == "string") for role in ("user", "item")}
    return ("user_id", *strings["user"]), ("item_id", *strings["item"])


def positive_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows marked ``is_positive`` (clicks, or ratings at or above the spec's threshold)."""
    require_columns(frame, [POSITIVE_COLUMN], "training frame")
    return frame[frame[POSITIVE_COLUMN] == 1]


def _string_arrays(frame: pd.DataFrame, spec: FeatureSpec, names: Iterable[str]) -> dict[str, np.ndarray]:
    return feature_arrays(frame, spec, names=tuple(names))


def train_retrieval(
    train: pd.DataFrame, spec: FeatureSpec, config: RetrievalConfig = RetrievalConfig()
) -> TrainingResult:
    """Fit a two-tower retrieval model on the positive interactions of ``train``.

    Args:
        train: ``training_examples`` rows (ids, role columns and ``is_positive``).
        spec: the source's feature spec.
        config: architecture and training settings.

    Returns:
        The trained ``TwoTowerModel`` with its per-epoch loss.

    Raises:
        ValueError: if the source has no ids, a column is missing, or there is no positive row.
    """
    query, candidate = retrieval_features(spec)
    positives = positive_rows(train)
    if positives.empty:
        raise ValueError("cannot train the retrieval model: the training frame has no positive interaction")
    features = _string_arrays(positives, spec, (*query, *candidate))
    vocabularies = {
        name: string_vocabulary(name, values, config.vocabulary_min_count) for name, values in features.items()
    }
    keras.utils.set_random_seed(config.seed)
    items, counts = np.unique(features["item_id"], return_counts=True)
    model = build_retrieval_model(
        vocabularies,
        config,
        query_features=query,
        candidate_features=candidate,
        # In-batch negatives are drawn by popularity: the log-Q correction needs each
        # candidate's share of the training positives.
        candidate_counts=dict(zip(items.tolist(), counts.tolist(), strict=True))
        if config.sampling_bias_correction
        else None,
    )
    rows = len(positives)
    dataset = array_batches(features, config.batch_size, config.seed)
    build_for_fit(model, dataset)
    started = time.perf_counter()
    history = model.fit(dataset, epochs=config.epochs, verbose=0)
    return TrainingResult(
        model=model,
        history={name: [float(v) for v in values] for name, values in history.history.items()},
        examples=rows,
        seconds=time.perf_counter() - started,
    )


def latest_per_user(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Each user's newest value of ``columns`` in ``frame``, indexed by ``user_id``."""
    ordered = frame.sort_values("event_ts", kind="stable") if "event_ts" in frame.columns else frame
    return ordered.groupby("user_id")[list(columns)].last()


def evaluate_retrieval(
    model: TwoTowerModel,
    test: pd.DataFrame,
    candidates: pd.DataFrame,
    spec: FeatureSpec,
    k: int = 50,
    seen: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Recall@k of two-tower retrieval over a candidate catalogue, and, given ``seen``,
    the zoo retrievers' full-catalogue metrics, so the served model and the zoo compare.

    Each user with a positive interaction in ``test`` is a query (with their newest user
    columns in ``test``); the relevant set is the items of those interactions. With
    ``seen`` (the positive ``user_id, item_id`` pairs the model was fitted on) the users
    who have some are also ranked every catalogue item with their seen items masked, by
    ``models.retrieval.evaluation.evaluate_retriever`` (the function that scores the zoo's
    retrievers; K = 10 and 100, capped at the catalogue); those keys are added (``hr@10``, ``ndcg@10``, ...) with ``ranked_users`` and
    ``cold_users`` (held-out users without seen pairs, only counted).

    Args:
        model: a trained two-tower model.
        test: held-out ``training_examples`` rows.
        candidates: the catalogue, one row per item with the candidate tower's columns
            (e.g. the ``item_features`` table).
        spec: the source's feature spec.
        k: cut-off; must not exceed the catalogue size.

    Returns:
        ``{"recall_at_k", "k", "users"}``.
    """
    query, candidate = retrieval_features(spec)
    positives = positive_rows(test)
    if positives.empty:
        raise ValueError("cannot evaluate retrieval: the test frame has no positive interaction")
    relevant = positives.groupby("user_id")["item_id"].agg(lambda ids: set(ids.astype(str)))
    users = latest_per_user(test, query[1:]).loc[relevant.index].reset_index()
    index = build_index(model, _string_arrays(candidates, spec, candidate), k)
    queries = {name: tf.constant(values) for name, values in _string_arrays(users, spec, query).items()}
    _, item_ids = index(model.query_tower(queries))
    recommended = [[item.decode() for item in row] for row in item_ids.numpy()]
    metrics: dict[str, Any] = {
        "recall_at_k": evaluation.recall_at_k(recommended, list(relevant), k),
        "k": int(k),
        "users": int(len(relevant)),
    }
    if seen is not None:
        metrics.update(_catalogue_metrics(model, users, positives, candidates, spec, seen))
    return metrics


def _catalogue_metrics(
    model: TwoTowerModel,
    users: pd.DataFrame,
    positives: pd.DataFrame,
    candidates: pd.DataFrame,
    spec: FeatureSpec,
    seen: pd.DataFrame,
) -> dict[str, Any]:
    """``models.retrieval.evaluation.evaluate_retriever`` of the served model, as
    ``ranked_users`` / ``cold_users`` and the metrics (see ``evaluate_retrieval``)."""
    scorer = _ServedTwoTower(model, users, candidates, spec)
    known = set(scorer.catalogue)
    pairs = [frame[["user_id", "item_id"]].astype(str) for frame in (seen, positives)]
    seen, held_out = (frame[frame["item_id"].isin(known)] for frame in pairs)
    cold = int((~users["user_id"].astype(str).isin(set(seen["user_id"]))).sum())
    if len(scorer.catalogue) < KS[0] or cold == len(users):
        return {"ranked_users": int(len(users)) - cold, "cold_users": cold}
    metrics = evaluate_retriever(scorer, seen, held_out)
    ranked = int(metrics.pop("users"))  # ``users`` of evaluate_retrieval counts every held-out user
    return {**metrics, "ranked_users": ranked}


class _ServedTwoTower:
    """The served two-tower as ``evaluate_retriever`` reads a retriever: each held-out
    user's query (their newest user columns) against every catalogue item."""

    def __init__(self, model: TwoTowerModel, users: pd.DataFrame, candidates: pd.DataFrame, spec: FeatureSpec):
        query, candidate = retrieval_features(spec)
        catalogue = candidates.drop_duplicates("item_id").astype({"item_id": str}).sort_values("item_id")
        self.catalogue = catalogue["item_id"].to_numpy()
        self._item_vectors = embed_rows(model.candidate_tower, _string_arrays(catalogue, spec, candidate))
        self._users = users.astype({"user_id": str}).set_index("user_id", drop=False)
        self._query = query
        self._model, self._spec = model, spec

    def scores(self, user_ids: np.ndarray) -> np.ndarray:
        rows = self._users.loc[np.asarray(user_ids).astype(str)]
        query_vectors = embed_rows(self._model.query_tower, _string_arrays(rows, self._spec, self._query))
        return query_vectors.astype(np.float64) @ self._item_vectors.astype(np.float64).T

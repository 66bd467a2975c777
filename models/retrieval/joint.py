"""Joint retrieval + rating model: the TFRS multi-task recipe.

One user embedding and one item embedding feed two tasks:

- retrieval: ``score(u, i) = <user, item>``, trained with ``tfrs.tasks.Retrieval``
  (in-batch softmax, accidental hits removed, optional log-Q correction as in
  ``models.retrieval.two_tower``);
- ranking: ``rating(u, i) = MLP([user, item])``, trained with squared error
  (``tfrs.tasks.Ranking``).

The loss is ``retrieval_weight * retrieval + ranking_weight * ranking`` with the TFRS
tasks' own reductions, as in the tutorial: the retrieval term is the softmax
cross-entropy *summed* over the batch's queries, the rating term the *mean* squared
error, so with ``batch_size`` B equal weights already favour retrieval by about a
factor of B. With ``ranking_weight = 0`` the model is a pure two-tower retriever; with
``retrieval_weight = 0`` a pure rating regressor whose embeddings serve the MLP only.

``fit_joint(interactions, config)`` trains on ``user_id, item_id, rating`` rows and
returns a ``JointRecommender`` with ``score_all`` (full-catalogue retrieval scores, for
``evaluation.ranking_metrics``) and ``predict_ratings`` (for ``evaluation.rmse``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from models.inputs.batches import array_batches, build_for_fit
from models.inputs.features import require_columns, string_vocabulary
from models.retrieval.two_tower import CandidateProbability, catalogue_scores, epoch_callback

SCORING_BATCH = 8192


@dataclass(frozen=True)
class JointConfig:
    """Settings of the joint model and its training loop.

    Attributes:
        embedding_dim: Width of the user and item embeddings.
        rating_units: Hidden ReLU layer widths of the rating MLP (a ``Dense(1)`` follows).
        retrieval_weight: Weight of the retrieval loss (>= 0).
        ranking_weight: Weight of the rating loss (>= 0); not both weights may be 0.
        sampling_bias_correction: Log-Q correction of the in-batch negatives
            (``models.retrieval.two_tower``), with item probabilities from the training rows.
        learning_rate: Adagrad learning rate.
        batch_size: Training batch size (also in-batch negatives + 1).
        epochs: Passes over the training rows.
        vocabulary_min_count: Ids seen fewer times share the OOV embedding.
        seed: Seed for initialisation and shuffling.
    """

    embedding_dim: int = 32
    rating_units: tuple[int, ...] = (256, 128)
    retrieval_weight: float = 1.0
    ranking_weight: float = 1.0
    sampling_bias_correction: bool = True
    learning_rate: float = 0.1
    batch_size: int = 512
    epochs: int = 5
    vocabulary_min_count: int = 1
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "batch_size", "epochs", "vocabulary_min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"JointConfig.{name} must be >= 1, got {getattr(self, name)}")
        if any(units < 1 for units in self.rating_units):
            raise ValueError(f"JointConfig.rating_units must all be >= 1, got {self.rating_units}")
        if self.retrieval_weight < 0 or self.ranking_weight < 0:
            raise ValueError(
                f"JointConfig weights must be >= 0, got retrieval_weight={self.retrieval_weight}, "
                f"ranking_weight={self.ranking_weight}"
            )
        if self.retrieval_weight == 0 and self.ranking_weight == 0:
            raise ValueError("JointConfig: retrieval_weight and ranking_weight are both 0, nothing would be learned")
        if self.learning_rate <= 0:
            raise ValueError(f"JointConfig.learning_rate must be > 0, got {self.learning_rate}")


def _id_embedding(vocabulary: Sequence[str], dim: int, name: str) -> keras.Sequential:
    lookup = keras.layers.StringLookup(vocabulary=list(vocabulary), num_oov_indices=1, name=f"{name}_lookup")
    return keras.Sequential([lookup, keras.layers.Embedding(lookup.vocabulary_size(), dim)], name=f"{name}_model")


class JointModel(tfrs.Model):
    """Shared user / item embeddings with a retrieval task and a rating task.

    Args:
        user_vocabulary: Known user ids.
        item_vocabulary: Known item ids.
        config: Architecture and loss weights.
        item_counts: Item id -> training rows; required when
            ``config.sampling_bias_correction`` is set.

    Call input: dict with ``[B]`` string ``user_id`` and ``item_id``.
    Call output: ``(user embeddings [B, D], item embeddings [B, D], ratings [B])``.
    """

    def __init__(
        self,
        user_vocabulary: Sequence[str],
        item_vocabulary: Sequence[str],
        config: JointConfig,
        item_counts: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.user_model = _id_embedding(user_vocabulary, config.embedding_dim, "user")
        self.item_model = _id_embedding(item_vocabulary, config.embedding_dim, "item")
        self.rating_model = keras.Sequential(
            [keras.layers.Dense(units, activation="relu") for units in config.rating_units] + [keras.layers.Dense(1)],
            name="rating_model",
        )
        self.rating_task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError())
        self.retrieval_task = tfrs.tasks.Retrieval(remove_accidental_hits=True)
        self.epoch_loss = keras.metrics.Mean(name="epoch_loss")  # Keras resets it every epoch
        self.item_probability = None
        if config.sampling_bias_correction:
            if item_counts is None:
                raise ValueError("sampling_bias_correction needs item_counts (training rows per item)")
            self.item_probability = CandidateProbability(item_counts, name="item_probability")

    def call(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        users = self.user_model(features["user_id"])
        items = self.item_model(features["item_id"])
        ratings = tf.squeeze(self.rating_model(tf.concat([users, items], axis=1)), axis=1)
        return users, items, ratings

    def task_losses(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """``(retrieval loss, rating loss)`` of one batch (features include ``rating``)."""
        users, items, ratings = self(features)
        probability = None if self.item_probability is None else self.item_probability(features["item_id"])
        retrieval = self.retrieval_task(
            users,
            items,
            candidate_ids=features["item_id"],
            candidate_sampling_probability=probability,
            compute_metrics=False,
        )
        rating = self.rating_task(labels=features["rating"], predictions=ratings)
        return retrieval, rating

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        retrieval, rating = self.task_losses(features)
        loss = self.config.retrieval_weight * retrieval + self.config.ranking_weight * rating
        self.epoch_loss.update_state(loss)
        return loss


@dataclass
class JointRecommender:
    """A trained ``JointModel`` and what it was trained on.

    Attributes:
        model: The trained model.
        config: Its settings.
        item_ids: The training items (``str``), the default catalogue of ``score_all``.
        rating_range: ``(min, max)`` training rating; predictions are clipped to it.
        loss: Mean weighted training loss of the batches, per epoch.
        examples: Training rows.
        seconds: Wall-clock training time (including any ``on_epoch_end`` calls).
    """

    model: JointModel
    config: JointConfig
    item_ids: np.ndarray
    rating_range: tuple[float, float]
    loss: list[float]
    examples: int
    seconds: float

    def _embed(self, tower: keras.Model, ids: Sequence | np.ndarray) -> np.ndarray:
        ids = np.asarray(ids).astype(str)
        blocks = [tower(tf.constant(ids[s : s + SCORING_BATCH])).numpy() for s in range(0, len(ids), SCORING_BATCH)]
        return np.concatenate(blocks) if blocks else np.zeros((0, self.config.embedding_dim), np.float32)

    def score_all(self, user_ids: Sequence | np.ndarray, item_ids: Sequence | np.ndarray | None = None) -> np.ndarray:
        """Retrieval scores (embedding dot products) of every (user, item) pair.

        Args:
            user_ids: Users (rows); unknown users share the OOV embedding.
            item_ids: Catalogue (columns); ``item_ids`` of the model when ``None``. Items
                the model never saw rank below every known item.

        Returns:
            ``[len(user_ids), len(item_ids)]`` float scores, higher is better.
        """
        scores = self._embed(self.model.user_model, user_ids) @ self._embed(self.model.item_model, self.item_ids).T
        return scores if item_ids is None else catalogue_scores(scores, self.item_ids, item_ids)

    def predict_ratings(self, user_ids: Sequence | np.ndarray, item_ids: Sequence | np.ndarray) -> np.ndarray:
        """Predicted rating of each (user, item) pair, clipped to the training rating range.

        Returns:
            ``[len(user_ids)]`` float32.

        Raises:
            ValueError: if the two sequences differ in length.
        """
        users, items = np.asarray(user_ids).astype(str), np.asarray(item_ids).astype(str)
        if len(users) != len(items):
            raise ValueError(f"got {len(users)} user ids but {len(items)} item ids")
        blocks = [
            self.model(
                {
                    "user_id": tf.constant(users[s : s + SCORING_BATCH]),
                    "item_id": tf.constant(items[s : s + SCORING_BATCH]),
                }
            )[2].numpy()
            for s in range(0, len(users), SCORING_BATCH)
        ]
        predictions = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        return np.clip(predictions, *self.rating_range)


def fit_joint(
    interactions: pd.DataFrame,
    config: JointConfig = JointConfig(),
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    rating_column: str = "rating",
    on_epoch_end: Callable[[int, JointRecommender], None] | None = None,
) -> JointRecommender:
    """Train the joint retrieval + rating model on rated interactions.

    Every row is a retrieval positive and a rating target.

    Args:
        interactions: Rows with the user, item and rating columns.
        config: Model settings and loss weights.
        on_epoch_end: Called after every epoch with the 1-based epoch and the model as
            trained so far (e.g. to follow validation metrics per epoch).

    Returns:
        The trained ``JointRecommender``.

    Raises:
        ValueError: on an empty frame, a missing column, or null / non-finite values.
    """
    require_columns(interactions, (user_column, item_column, rating_column), "interactions frame")
    if interactions.empty:
        raise ValueError("cannot train the joint model on an empty interactions frame")
    if interactions[[user_column, item_column]].isna().any().any():
        raise ValueError("interactions hold null user or item ids")
    ratings = pd.to_numeric(interactions[rating_column], errors="raise").to_numpy(dtype=np.float32)
    if not np.isfinite(ratings).all():
        raise ValueError(f"column {rating_column!r} holds missing or non-finite ratings")
    features = {
        "user_id": interactions[user_column].astype(str).to_numpy(dtype=object),
        "item_id": interactions[item_column].astype(str).to_numpy(dtype=object),
        "rating": ratings,
    }
    item_ids, item_counts = np.unique(features["item_id"], return_counts=True)
    keras.utils.set_random_seed(config.seed)
    model = JointModel(
        string_vocabulary("user_id", features["user_id"], config.vocabulary_min_count),
        string_vocabulary("item_id", features["item_id"], config.vocabulary_min_count),
        config,
        item_counts=dict(zip(item_ids.tolist(), item_counts.tolist(), strict=True)),
        name="joint",
    )
    model.compile(optimizer=keras.optimizers.Adagrad(learning_rate=config.learning_rate))
    dataset = array_batches(features, config.batch_size, config.seed)
    recommender = JointRecommender(
        model=model,
        config=config,
        item_ids=item_ids.astype(str),
        rating_range=(float(ratings.min()), float(ratings.max())),
        loss=[],
        examples=len(interactions),
        seconds=0.0,
    )
    build_for_fit(model, dataset)
    started = time.perf_counter()
    model.fit(dataset, epochs=config.epochs, verbose=0, callbacks=[epoch_callback(recommender, on_epoch_end)])
    recommender.seconds = time.perf_counter() - started
    return recommender

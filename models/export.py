"""Export the recommender as one SavedModel, and load it back for serving.

The SavedModel holds the ranking model, the two-tower query tower, a brute-force index
over every item of ``item_features``, and id -> feature lookup tables built from the
``user_features`` and ``item_features`` tables. Its three signatures (see
``docs/data-contracts.md``) need only request-time inputs; everything else is looked up
inside the graph, so serving computes features exactly as the exporter saw them:

- ``predict(user_id, item_id, device, slot_position, hour_of_day) -> pctr``
- ``retrieve(user_id) -> item_ids, scores`` (two-tower dot products)
- ``recommend(user_id, hour_of_day, device) -> item_ids, scores, known_user``: retrieve
  K candidates, score them with the ranker at slot position 1, sort by pCTR.

``assets/reclake_model.json`` next to the graph carries the version, metrics and the
popularity fallback list for unknown users.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras

from models.features import (
    DEVICES,
    HOURS_OF_DAY,
    INTEGER_FEATURES,
    ITEM_LOOKUP_FEATURES,
    NUMERIC_FEATURES,
    RANKING_FEATURES,
    REQUEST_FEATURES,
    SLOT_POSITIONS,
    STRING_FEATURES,
    USER_LOOKUP_FEATURES,
    feature_arrays,
    require_columns,
)
from models.retrieval import TwoTowerModel, build_index

MAX_CANDIDATES = 100
METADATA_FILE = os.path.join("assets", "reclake_model.json")
REQUIRED_METADATA = ("model_version", "trained_on", "evaluated_on", "metrics")
RERANK_SLOT_POSITION = 1
SEEN_SCORE = -1.0  # ``recommend`` score of a candidate the user has already interacted with
_PAIR_SEPARATOR = "\x1f"
UNKNOWN_CATEGORY = ""
"""Stand-in for the segment / category of an unknown user / item: out of every
vocabulary, so the models use their OOV embedding."""

_STRING = tf.TensorSpec([None], tf.string)
_INT64 = tf.TensorSpec([None], tf.int64)

# The ``rank`` signature takes every ranking feature as it is in ``training_examples``.
RANK_INPUT_SIGNATURE: dict[str, tf.TensorSpec] = {
    **{name: tf.TensorSpec([None], tf.string, name=name) for name in STRING_FEATURES},
    **{name: tf.TensorSpec([None], tf.int64, name=name) for name in INTEGER_FEATURES},
    **{feature.name: tf.TensorSpec([None], tf.float32, name=feature.name) for feature in NUMERIC_FEATURES},
}


class FeatureLookup(tf.Module):
    """``id -> feature values`` table with one default row for unknown ids.

    Args:
        ids: Unique ids, one per row.
        columns: Feature name -> values aligned with ``ids``.
        defaults: Feature name -> value returned for ids not in ``ids``.
    """

    def __init__(self, ids: np.ndarray, columns: dict[str, np.ndarray], defaults: dict[str, Any], name: str) -> None:
        super().__init__(name=name)
        self.size = len(ids)
        self.rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(ids.astype(str)), tf.range(self.size, dtype=tf.int64)
            ),
            default_value=self.size,
        )
        self.columns = {}
        for column, values in columns.items():
            with_default = np.append(values, [defaults[column]])
            with_default = with_default.astype(str) if values.dtype == object else with_default.astype(values.dtype)
            self.columns[column] = tf.Variable(with_default, trainable=False, name=column)

    def lookup(self, ids: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """Return (feature name -> ``[B]`` values, ``[B]`` bool: id was in the table)."""
        rows = self.rows.lookup(ids)
        return {column: tf.gather(values, rows) for column, values in self.columns.items()}, rows < self.size


class RecommenderModule(tf.Module):
    """The exported graph: lookups, query tower, index and ranker behind three signatures.

    Args:
        ranking_model: Raw ranking features -> pCTR ``[B]``.
        query_tower: ``{"user_id", "user_segment"}`` -> query embedding.
        index: Top-K index over candidate embeddings (ids as identifiers).
        users: Lookup of ``USER_LOOKUP_FEATURES`` by ``user_id``.
        items: Lookup of ``ITEM_LOOKUP_FEATURES`` by ``item_id``.
        candidate_count: K, the number of candidates ``retrieve`` / ``recommend`` return.
    """

    def __init__(
        self,
        ranking_model: keras.Model,
        query_tower: keras.Model,
        index: keras.Model,
        users: FeatureLookup,
        items: FeatureLookup,
        candidate_count: int,
        seen_pairs: tuple[np.ndarray, np.ndarray],
    ) -> None:
        super().__init__(name="reclake_recommender")
        seen_keys = np.char.add(np.char.add(seen_pairs[0].astype(str), _PAIR_SEPARATOR), seen_pairs[1].astype(str))
        self.seen = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(np.append(seen_keys, _PAIR_SEPARATOR)),  # never empty: an impossible pair
                tf.ones([len(seen_keys) + 1], tf.int64),
            ),
            default_value=0,
        )
        self.ranking_model = ranking_model
        self.query_tower = query_tower
        self.index = index
        self.users = users
        self.items = items
        self.candidate_count = candidate_count

    def _pctr(
        self,
        user_id: tf.Tensor,
        item_id: tf.Tensor,
        device: tf.Tensor,
        slot_position: tf.Tensor,
        hour_of_day: tf.Tensor,
    ) -> tf.Tensor:
        user_features, _ = self.users.lookup(user_id)
        item_features, _ = self.items.lookup(item_id)
        features = {
            "user_id": user_id,
            "item_id": item_id,
            "device": device,
            "slot_position": slot_position,
            "hour_of_day": hour_of_day,
            **user_features,
            **item_features,
        }
        return tf.cast(self.ranking_model(features, training=False), tf.float32)

    def _retrieve(self, user_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        user_features, _ = self.users.lookup(user_id)
        query = self.query_tower({"user_id": user_id, "user_segment": user_features["user_segment"]})
        return self.index(query, k=self.candidate_count)

    @tf.function(input_signature=[_STRING, _STRING, _STRING, _INT64, _INT64])
    def predict(self, user_id, item_id, device, slot_position, hour_of_day):
        return {"pctr": self._pctr(user_id, item_id, device, slot_position, hour_of_day)}

    @tf.function(input_signature=[RANK_INPUT_SIGNATURE])
    def rank(self, features):
        """pCTR from full feature rows (point-in-time features included), no lookups."""
        return {"pctr": tf.cast(self.ranking_model(features, training=False), tf.float32)}

    @tf.function(input_signature=[_STRING])
    def retrieve(self, user_id):
        scores, item_ids = self._retrieve(user_id)
        return {"item_ids": item_ids, "scores": tf.cast(scores, tf.float32)}

    @tf.function(input_signature=[_STRING, _INT64, _STRING])
    def recommend(self, user_id, hour_of_day, device):
        _, candidates = self._retrieve(user_id)
        batch, k = tf.shape(candidates)[0], tf.shape(candidates)[1]
        flat_hour = tf.repeat(hour_of_day, k)
        pctr = self._pctr(
            tf.repeat(user_id, k),
            tf.reshape(candidates, [-1]),
            tf.repeat(device, k),
            tf.fill(tf.shape(flat_hour), tf.constant(RERANK_SLOT_POSITION, tf.int64)),
            flat_hour,
        )
        flat_users, flat_items = tf.repeat(user_id, k), tf.reshape(candidates, [-1])
        seen = self.seen.lookup(tf.strings.join([flat_users, flat_items], separator=_PAIR_SEPARATOR)) > 0
        pctr = tf.where(seen, tf.constant(SEEN_SCORE, tf.float32), pctr)
        scores, order = tf.math.top_k(tf.reshape(pctr, [batch, k]), k=self.candidate_count)
        _, known_user = self.users.lookup(user_id)
        return {
            "item_ids": tf.gather(candidates, order, batch_dims=1),
            "scores": scores,
            "known_user": known_user,
        }


def _unique_ids(table: pd.DataFrame, id_column: str, what: str) -> np.ndarray:
    ids = table[id_column].astype(str).to_numpy()
    if len(ids) == 0:
        raise ValueError(f"{what} is empty")
    index = pd.Index(ids)
    duplicated = index[index.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"{what} has duplicate {id_column}s, e.g. {duplicated[:5]}")
    return ids


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"metadata value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def export_recommender(
    ranking_model: keras.Model,
    retrieval_model: TwoTowerModel,
    user_features: pd.DataFrame,
    item_features: pd.DataFrame,
    popular_items: Sequence[tuple[str, float]],
    metadata: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    cold_start_ctr: float = 0.05,
    seen_items: pd.DataFrame | None = None,
) -> str:
    """Write the recommender SavedModel (signatures per the data contract) to ``path``.

    Args:
        ranking_model: Trained ranker (``training.train_ranking(...).model``).
        retrieval_model: Trained two-tower model (``training.train_retrieval(...).model``).
        user_features: The ``user_features`` table (``user_id`` + ``USER_LOOKUP_FEATURES``).
        item_features: The ``item_features`` table (``item_id`` + ``ITEM_LOOKUP_FEATURES``);
            every row becomes a retrieval candidate.
        popular_items: ``[(item_id, score), ...]`` best first: the fallback for unknown users.
        metadata: ``model_version``, ``trained_on`` ([first_day, last_day]),
            ``evaluated_on`` (day) and ``metrics`` (dict); JSON-serialisable.
        path: Local directory to create; must not exist or be empty.
        cold_start_ctr: ``user_ctr_7d`` / ``item_ctr_7d`` used for ids missing from the
            tables; the smoothed CTR of an id with no history (dbt var ``ctr_prior``).
        seen_items: ``user_id, item_id`` pairs the user has already consumed (e.g. the
            clicks of the training window); ``recommend`` ranks them last with score
            ``SEEN_SCORE`` and ``Recommender.recommend`` leaves them out.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: on a missing column or metadata key, duplicate or null ids/features,
            an empty table or an empty popularity list.
        FileExistsError: if ``path`` exists and is not empty.
    """
    missing_keys = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing_keys:
        raise ValueError(f"metadata is missing {missing_keys}; required keys are {list(REQUIRED_METADATA)}")
    if not popular_items:
        raise ValueError("popular_items is empty: unknown users would get no recommendations")
    require_columns(user_features, ("user_id", *USER_LOOKUP_FEATURES), "user_features")
    require_columns(item_features, ("item_id", *ITEM_LOOKUP_FEATURES), "item_features")
    path = os.fspath(path)
    if os.path.isdir(path) and os.listdir(path):
        raise FileExistsError(f"export directory {path} is not empty")

    user_ids = _unique_ids(user_features, "user_id", "user_features")
    item_ids = _unique_ids(item_features, "item_id", "item_features")
    user_columns = feature_arrays(user_features, USER_LOOKUP_FEATURES)
    item_columns = feature_arrays(item_features, ITEM_LOOKUP_FEATURES)
    users = FeatureLookup(
        user_ids,
        user_columns,
        {"user_segment": UNKNOWN_CATEGORY, "user_ctr_7d": cold_start_ctr, "user_impressions_7d": 0.0},
        name="user_features",
    )
    items = FeatureLookup(
        item_ids,
        item_columns,
        {
            "category": UNKNOWN_CATEGORY,
            "price": float(np.median(item_columns["price"])),
            "item_ctr_7d": cold_start_ctr,
            "item_impressions_7d": 0.0,
        },
        name="item_features",
    )
    candidate_count = min(MAX_CANDIDATES, len(item_ids))
    index = build_index(
        retrieval_model, {"item_id": item_ids, "category": item_columns["category"]}, candidate_count
    )
    if seen_items is None:
        seen_items = pd.DataFrame({"user_id": [], "item_id": []})
    require_columns(seen_items, ("user_id", "item_id"), "seen_items")
    seen_pairs = (seen_items["user_id"].astype(str).to_numpy(), seen_items["item_id"].astype(str).to_numpy())
    module = RecommenderModule(
        ranking_model, retrieval_model.query_tower, index, users, items, candidate_count, seen_pairs
    )
    tf.saved_model.save(
        module,
        path,
        signatures={
            "predict": module.predict.get_concrete_function(),
            "retrieve": module.retrieve.get_concrete_function(),
            "recommend": module.recommend.get_concrete_function(),
            "rank": module.rank.get_concrete_function(),
        },
    )
    document = {
        "model_version": metadata["model_version"],
        "trained_on": list(metadata["trained_on"]),
        "evaluated_on": metadata["evaluated_on"],
        "metrics": metadata["metrics"],
        "popular_items": [[str(item_id), float(score)] for item_id, score in popular_items],
        "candidate_count": candidate_count,
    }
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, METADATA_FILE), "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, default=_json_default)
    return path


@dataclass(frozen=True)
class ScoredItem:
    """One recommended item and its score (pCTR, or click share for the fallback)."""

    item_id: str
    score: float


@dataclass(frozen=True)
class Recommendation:
    """Recommendations for one user.

    Attributes:
        user_id: The requested user.
        items: Best first.
        fallback: ``None`` for model recommendations, ``"popularity"`` when the user is
            unknown to the model and the popularity list was served instead.
    """

    user_id: str
    items: list[ScoredItem]
    fallback: str | None


def _check_in(values: Sequence[Any], allowed: Sequence[Any], name: str) -> None:
    bad = sorted({v for v in values if v not in allowed}, key=str)
    if bad:
        raise ValueError(f"{name} must be one of {list(allowed)}; got {bad[:5]}")


class Recommender:
    """A loaded recommender SavedModel, called through its signatures.

    Args:
        path: The SavedModel directory written by ``export_recommender``.

    Attributes:
        metadata: The parsed ``assets/reclake_model.json``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = os.fspath(path)
        metadata_path = os.path.join(path, METADATA_FILE)
        if not os.path.isfile(metadata_path):
            raise FileNotFoundError(f"{path} is not a Reclake SavedModel: {METADATA_FILE} is missing")
        with open(metadata_path, encoding="utf-8") as handle:
            self.metadata: dict[str, Any] = json.load(handle)
        self._saved_model = tf.saved_model.load(path)
        self._signatures = self._saved_model.signatures

    @property
    def model_version(self) -> str:
        return str(self.metadata["model_version"])

    @property
    def candidate_count(self) -> int:
        return int(self.metadata["candidate_count"])

    def recommend(
        self, user_ids: Sequence[str], top_k: int, hour_of_day: int, device: str
    ) -> list[Recommendation]:
        """Recommend up to ``top_k`` items per user; unknown users get the popularity list.

        Args:
            user_ids: Users to recommend for.
            top_k: Items per user, >= 1; at most ``candidate_count`` model items minus the
                user's seen items (and at most the length of the popularity list for
                unknown users) are returned.
            hour_of_day: Request hour (0..23), used by the ranker for every user.
            device: Request device (one of ``features.DEVICES``).

        Returns:
            One ``Recommendation`` per user, in input order; items sorted by score, descending.

        Raises:
            ValueError: on empty ``user_ids``, ``top_k < 1``, or an out-of-range hour/device.
        """
        if len(user_ids) == 0:
            raise ValueError("user_ids is empty")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        _check_in([hour_of_day], HOURS_OF_DAY, "hour_of_day")
        _check_in([device], DEVICES, "device")
        batch = len(user_ids)
        outputs = self._signatures["recommend"](
            user_id=tf.constant([str(u) for u in user_ids]),
            hour_of_day=tf.fill([batch], tf.constant(hour_of_day, tf.int64)),
            device=tf.fill([batch], tf.constant(device)),
        )
        popular = [ScoredItem(str(item_id), float(score)) for item_id, score in self.metadata["popular_items"][:top_k]]
        recommendations = []
        for user_id, item_row, score_row, known in zip(
            user_ids, outputs["item_ids"].numpy(), outputs["scores"].numpy(), outputs["known_user"].numpy(), strict=True
        ):
            if known:
                unseen = [(i, s) for i, s in zip(item_row, score_row, strict=True) if s != SEEN_SCORE]
                items = [ScoredItem(i.decode(), float(s)) for i, s in unseen[:top_k]]
                recommendations.append(Recommendation(str(user_id), items, None))
            else:
                recommendations.append(Recommendation(str(user_id), popular, "popularity"))
        return recommendations

    def retrieve(self, user_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Two-tower candidates per user: (item_ids ``[B, K]`` str, scores ``[B, K]``)."""
        outputs = self._signatures["retrieve"](user_id=tf.constant([str(u) for u in user_ids]))
        return outputs["item_ids"].numpy().astype(str), outputs["scores"].numpy()

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """pCTR for (user_id, item_id, device, slot_position, hour_of_day) rows.

        Returns:
            float32 ``[len(rows)]``.

        Raises:
            ValueError: on empty input, a missing column, nulls, or out-of-range
                device / slot_position / hour_of_day.
        """
        if rows.empty:
            raise ValueError("rows is empty")
        arrays = feature_arrays(rows, REQUEST_FEATURES)
        _check_in(arrays["device"], DEVICES, "device")
        _check_in(arrays["slot_position"], SLOT_POSITIONS, "slot_position")
        _check_in(arrays["hour_of_day"], HOURS_OF_DAY, "hour_of_day")
        outputs = self._signatures["predict"](**{name: tf.constant(values) for name, values in arrays.items()})
        return outputs["pctr"].numpy()


    def rank(self, examples: pd.DataFrame) -> np.ndarray:
        """pCTR for ``training_examples`` rows, using their own (point-in-time) features.

        This is how two exported models are compared on the same held-out rows.

        Returns:
            float32 ``[len(examples)]``.
        """
        if examples.empty:
            raise ValueError("examples is empty")
        arrays = feature_arrays(examples, RANKING_FEATURES)
        outputs = self._signatures["rank"](**{name: tf.constant(values) for name, values in arrays.items()})
        return outputs["pctr"].numpy()


def load_recommender(path: str | os.PathLike[str]) -> Recommender:
    """Load a SavedModel written by ``export_recommender``."""
    return Recommender(path)

"""Candidate retrieval: a TFRS two-tower model.

The query tower embeds string query features (by default ``user_id`` and
``user_segment``: ``DEFAULT_QUERY_FEATURES``), the candidate tower string candidate
features (by default ``item_id`` and ``category``: ``DEFAULT_CANDIDATE_FEATURES``);
both project to the same width and are scored by dot product. Which features each tower
reads is a constructor argument, so a per-source feature spec (e.g. MovieLens:
``user_id`` + user attributes against ``item_id`` + item attributes) plugs in directly.

Training uses ``tfrs.tasks.Retrieval`` with in-batch negatives (the other positives of
the batch), removing accidental hits where the same candidate appears twice in a batch.
Two options (``RetrievalConfig``):

- ``sampling_bias_correction``: in-batch negatives are drawn in proportion to
  popularity, which over-penalises popular items. With this flag every logit is
  corrected by ``- log p(candidate)`` (the "log-Q" correction of Yi et al., RecSys 2019),
  with ``p`` the candidate's share of the training positives.
- ``history_length = N > 0``: the query tower also reads ``HISTORY_FEATURE``
  (``user_history``, as ``training_examples`` carries it), a ``[B, N]`` string tensor of
  the user's previous N candidate ids (newest first, padded with ``""``; the order does
  not matter to the pooling), embedded and mean-pooled with the padding masked out. The
  history has its own embedding table (same vocabulary as the candidate ids), not the
  candidate tower's: the query tower then stays self-contained (it is exported alone)
  and the two roles of an item, "what the user watched" and "what to recommend", can
  learn different vectors.

``fit_two_tower`` trains the model on an interactions frame (one row per positive
user-item pair, e.g. MovieLens ratings) and returns a ``TwoTowerRetriever`` that scores
full catalogues (``score_all``) or builds a top-k index (``index``).
``build_index(model, candidates, k)`` indexes a catalogue for the exported SavedModel.

One module on purpose (about 700 lines): the towers, the in-batch softmax with its log-Q
correction, the training loop and the scorer share one set of shapes and conventions;
splitting them would spread one model over files that cannot be read alone.
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
from models.inputs.features import HISTORY_COLUMN, require_columns, string_vocabulary
from models.retrieval.index import TopKIndex
from models.retrieval.index import build_index as build_embedding_index

DEFAULT_QUERY_FEATURES = ("user_id", "user_segment")
DEFAULT_CANDIDATE_FEATURES = ("item_id", "category")
HISTORY_FEATURE = HISTORY_COLUMN
"""Query feature holding the user's previous candidate ids (``history_length > 0``)."""
TRAINING_HISTORIES = ("preceding", "latest_other")
"""How ``fit_two_tower`` fills a training row's history: ``preceding_items`` or
``latest_other_items``."""
PADDING = ""
"""Pads history sequences; never a vocabulary entry of a pooled feature."""
EMBEDDING_BATCH = 4096


@dataclass(frozen=True)
class RetrievalConfig:
    """Hyper-parameters of the two-tower model and its training loop.

    Attributes:
        embedding_dim: Width of every embedding and of the tower outputs.
        learning_rate: Adagrad learning rate.
        batch_size: Training batch size; also the number of in-batch negatives + 1.
        epochs: Passes over the positives.
        vocabulary_min_count: Ids seen fewer times share the OOV embedding.
        seed: Seed for weight initialisation and shuffling.
        sampling_bias_correction: Subtract ``log p(candidate)`` from every logit, with
            ``p`` the candidate's share of the training positives (needs
            ``candidate_counts`` when building the model).
        history_length: Number of previous candidate ids the query tower mean-pools
            (``HISTORY_FEATURE``); 0 disables the history.
    """

    embedding_dim: int = 32
    learning_rate: float = 0.1
    batch_size: int = 512
    epochs: int = 5
    vocabulary_min_count: int = 2
    seed: int = 42
    sampling_bias_correction: bool = False
    history_length: int = 0

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "batch_size", "epochs", "vocabulary_min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"RetrievalConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"RetrievalConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.history_length < 0:
            raise ValueError(f"RetrievalConfig.history_length must be >= 0, got {self.history_length}")


class Tower(keras.Model):
    """Embeds string features and projects their concatenation to ``embedding_dim``.

    Args:
        vocabularies: Single-valued feature name -> vocabulary (values outside map to one
            OOV bucket).
        embedding_dim: Embedding and output width.
        pooled_vocabularies: Multi-valued feature name -> vocabulary. Such a feature is a
            ``[B, N]`` string tensor padded with ``""``; its embeddings are averaged over
            the non-padding entries (a row of padding only gives a zero vector).

    Call input: dict with a ``[B]`` string tensor per single-valued feature and a
    ``[B, N]`` one per pooled feature; other keys are ignored.
    Call output: ``[B, embedding_dim]`` float32.
    """

    def __init__(
        self,
        vocabularies: Mapping[str, Sequence[str]],
        embedding_dim: int,
        pooled_vocabularies: Mapping[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocabularies = {name: tuple(values) for name, values in vocabularies.items()}
        self.pooled_vocabularies = {name: tuple(values) for name, values in (pooled_vocabularies or {}).items()}
        if not self.vocabularies and not self.pooled_vocabularies:
            raise ValueError(f"tower {self.name!r} needs at least one feature")
        for name, values in self.pooled_vocabularies.items():
            if PADDING in values:
                raise ValueError(f"pooled feature {name!r}: the padding value {PADDING!r} cannot be a vocabulary entry")
        self.embedding_dim = embedding_dim
        self.feature_names = tuple(self.vocabularies)
        self.pooled_feature_names = tuple(self.pooled_vocabularies)
        all_vocabularies = {**self.vocabularies, **self.pooled_vocabularies}
        self.lookups = {
            name: keras.layers.StringLookup(vocabulary=list(vocabulary), num_oov_indices=1, name=f"{name}_lookup")
            for name, vocabulary in all_vocabularies.items()
        }
        self.embeddings = {
            name: keras.layers.Embedding(lookup.vocabulary_size(), embedding_dim, name=f"{name}_embedding")
            for name, lookup in self.lookups.items()
        }
        self.projection = keras.layers.Dense(embedding_dim, name="projection")

    def _pooled(self, name: str, values: tf.Tensor) -> tf.Tensor:
        embedded = self.embeddings[name](self.lookups[name](values))  # [B, N, D]
        present = tf.cast(tf.not_equal(values, PADDING), embedded.dtype)[:, :, tf.newaxis]
        count = tf.maximum(tf.reduce_sum(present, axis=1), 1.0)
        return tf.reduce_sum(embedded * present, axis=1) / count

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        embedded = [self.embeddings[name](self.lookups[name](inputs[name])) for name in self.feature_names]
        embedded += [self._pooled(name, inputs[name]) for name in self.pooled_feature_names]
        return self.projection(tf.concat(embedded, axis=1))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocabularies": {name: list(values) for name, values in self.vocabularies.items()},
            "embedding_dim": self.embedding_dim,
            "pooled_vocabularies": {name: list(values) for name, values in self.pooled_vocabularies.items()},
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Tower:
        return cls(
            config["vocabularies"],
            config["embedding_dim"],
            config.get("pooled_vocabularies"),
            name=config["name"],
        )


class CandidateProbability(tf.Module):
    """In-graph ``candidate id -> share of the training positives`` table.

    Args:
        counts: Candidate id -> number of training positives (all >= 1).

    Ids not in ``counts`` get the share of a candidate seen once.
    """

    def __init__(self, counts: Mapping[str, int], name: str = "candidate_probability") -> None:
        super().__init__(name=name)
        if not counts:
            raise ValueError("candidate_counts is empty")
        ids = np.array([str(key) for key in counts], dtype=object)
        values = np.array(list(counts.values()), dtype=np.float64)
        if (values < 1).any():
            raise ValueError("candidate_counts must all be >= 1")
        total = values.sum()
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(ids.astype(str)), tf.constant(values / total, tf.float32)),
            default_value=tf.constant(1.0 / total, tf.float32),
        )

    def __call__(self, candidate_ids: tf.Tensor) -> tf.Tensor:
        return self.table.lookup(candidate_ids)


class TwoTowerModel(tfrs.Model):
    """Query tower + candidate tower, trained with ``tfrs.tasks.Retrieval``.

    Args:
        vocabularies: Vocabulary of every query and candidate feature.
        config: Architecture settings (embedding width, log-Q correction, history length).
        query_features: String features of the query tower (``[B]`` each).
        candidate_features: String features of the candidate tower; must include
            ``candidate_id``.
        candidate_id: The candidate identifier feature: accidental hits are removed by
            it, log-Q probabilities and the history are keyed by it.
        candidate_counts: Candidate id -> training positives; required when
            ``config.sampling_bias_correction`` is set.

    Raises:
        ValueError: if a feature lacks a vocabulary, ``candidate_id`` is not a candidate
            feature, or the log-Q correction is on without ``candidate_counts``.
    """

    def __init__(
        self,
        vocabularies: Mapping[str, Sequence[str]],
        config: RetrievalConfig,
        *,
        query_features: Sequence[str] = DEFAULT_QUERY_FEATURES,
        candidate_features: Sequence[str] = DEFAULT_CANDIDATE_FEATURES,
        candidate_id: str = "item_id",
        candidate_counts: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.query_features = tuple(query_features)
        self.candidate_features = tuple(candidate_features)
        self.candidate_id = candidate_id
        if candidate_id not in self.candidate_features:
            raise ValueError(
                f"candidate_id {candidate_id!r} must be one of the candidate features {self.candidate_features}"
            )
        missing = [name for name in (*self.query_features, *self.candidate_features) if name not in vocabularies]
        if missing:
            raise ValueError(f"no vocabulary for feature(s) {missing}; vocabularies cover {sorted(vocabularies)}")
        pooled = {HISTORY_FEATURE: vocabularies[candidate_id]} if config.history_length else None
        self.query_tower = Tower(
            {name: vocabularies[name] for name in self.query_features}, config.embedding_dim, pooled, name="query_tower"
        )
        self.candidate_tower = Tower(
            {name: vocabularies[name] for name in self.candidate_features}, config.embedding_dim, name="candidate_tower"
        )
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True)
        self.epoch_loss = keras.metrics.Mean(name="epoch_loss")  # Keras resets it every epoch
        self.candidate_probability = None
        if config.sampling_bias_correction:
            if candidate_counts is None:
                raise ValueError("sampling_bias_correction needs candidate_counts (training positives per candidate)")
            self.candidate_probability = CandidateProbability(candidate_counts)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        candidate_ids = features[self.candidate_id]
        probability = None if self.candidate_probability is None else self.candidate_probability(candidate_ids)
        loss = self.task(
            self.query_tower(features),
            self.candidate_tower(features),
            candidate_ids=candidate_ids,
            candidate_sampling_probability=probability,
            compute_metrics=False,
        )
        self.epoch_loss.update_state(loss)
        return loss


def build_retrieval_model(
    vocabularies: Mapping[str, Sequence[str]], config: RetrievalConfig, **model_options: Any
) -> TwoTowerModel:
    """Create and compile a two-tower model (Adagrad).

    Args:
        vocabularies: Vocabulary of every tower feature.
        config: Architecture and optimiser settings.
        **model_options: ``TwoTowerModel`` keyword arguments (``query_features``,
            ``candidate_features``, ``candidate_id``, ``candidate_counts``).

    Returns:
        A compiled, untrained ``TwoTowerModel``.
    """
    model = TwoTowerModel(vocabularies, config, name="two_tower", **model_options)
    model.compile(optimizer=keras.optimizers.Adagrad(learning_rate=config.learning_rate))
    return model


def embed_rows(tower: Tower, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Run a tower over feature arrays in batches; ``[N, D]`` float32."""
    rows = len(next(iter(features.values())))
    outputs = [
        tower({name: tf.constant(values[start : start + EMBEDDING_BATCH]) for name, values in features.items()}).numpy()
        for start in range(0, rows, EMBEDDING_BATCH)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, tower.embedding_dim), np.float32)


def unique_candidates(candidates: Mapping[str, np.ndarray], candidate_id: str) -> dict[str, np.ndarray]:
    """Keep one row per candidate id; repeated rows must agree on every feature.

    Args:
        candidates: Feature name -> ``[N]`` values, including ``candidate_id``.
        candidate_id: The identifier feature.

    Returns:
        The same features as ``str`` arrays, one row per id, in order of first occurrence.

    Raises:
        ValueError: if ``candidate_id`` is missing, the arrays differ in length, or an id
            repeats with different feature values.
    """
    if candidate_id not in candidates:
        raise ValueError(f"candidates lack the identifier feature {candidate_id!r}; they have {sorted(candidates)}")
    columns = {name: np.asarray(values).astype(str) for name, values in candidates.items()}
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"candidate feature arrays differ in length: {lengths}")
    frame = pd.DataFrame(columns)
    distinct = frame.drop_duplicates()
    conflicting = distinct[candidate_id][distinct[candidate_id].duplicated()]
    if not conflicting.empty:
        raise ValueError(
            f"candidate {candidate_id}s repeat with different feature values, e.g. {conflicting.unique()[:5].tolist()}"
        )
    return {name: distinct[name].to_numpy(dtype=object) for name in columns}


def build_index(
    model: TwoTowerModel, candidates: Mapping[str, np.ndarray], k: int, kind: str = "brute_force", **options: Any
) -> TopKIndex:
    """Embed every candidate and load them into a top-k index keyed by candidate id.

    Args:
        model: A trained two-tower model.
        candidates: One array per candidate feature of the model (``item_id`` and
            ``category`` by default). Repeated ids are indexed once; they must carry the
            same features.
        k: Default number of candidates per query (a call may pass its own ``k``); at
            most the number of distinct candidates.
        kind: ``"brute_force"`` or ``"approximate"`` (see ``models.retrieval.index``).
        **options: Options of the approximate index (``num_partitions``, ``nprobe``, ``seed``).

    Returns:
        A layer mapping query embeddings ``[B, D]`` (and an optional ``k``) to
        ``(scores [B, k], candidate ids [B, k])``, scores descending.

    Raises:
        ValueError: if there are no candidates, a feature is missing, an id repeats with
            different features, or ``k`` is out of range.
    """
    missing = [name for name in model.candidate_features if name not in candidates]
    if missing:
        raise ValueError(f"candidates lack the candidate feature(s) {missing}")
    unique = unique_candidates({name: candidates[name] for name in model.candidate_features}, model.candidate_id)
    ids = unique[model.candidate_id]
    if ids.size == 0:
        raise ValueError("cannot build a retrieval index over zero candidates")
    if not 1 <= k <= ids.size:
        raise ValueError(f"k must be between 1 and the number of candidates ({ids.size}), got {k}")
    return build_embedding_index(kind, embed_rows(model.candidate_tower, unique), ids, k=k, **options)


def chronological_order(interactions: pd.DataFrame, user_column: str, time_column: str) -> np.ndarray:
    """Row positions sorted by user, then time; equal times keep their frame order."""
    by_time = np.argsort(interactions[time_column].to_numpy(), kind="stable")
    users = interactions[user_column].to_numpy()[by_time]
    return by_time[np.argsort(users, kind="stable")]


def _sorted_sequences(
    interactions: pd.DataFrame, user_column: str, item_column: str, time_column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(order, users, items, position)``: rows in ``chronological_order``, their user and
    item ids as ``str`` and each row's 0-based position within its user's sequence."""
    order = chronological_order(interactions, user_column, time_column)
    users = interactions[user_column].astype(str).to_numpy()[order]
    items = interactions[item_column].astype(str).to_numpy()[order]
    rows = np.arange(len(order))
    first_of_user = np.r_[True, users[1:] != users[:-1]] if len(order) else np.zeros(0, bool)
    position = rows - np.maximum.accumulate(np.where(first_of_user, rows, 0)) if len(order) else rows
    return order, users, items, position


def preceding_items(
    interactions: pd.DataFrame,
    length: int,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str = "timestamp",
) -> np.ndarray:
    """For every row, the ``length`` items its user interacted with just before it.

    This is the point-in-time history (``user_history`` of ``training_examples``):
    nothing after the row leaks into it.

    Args:
        interactions: Rows with the user, item and time columns.
        length: History length N (>= 1).

    Returns:
        ``[len(interactions), N]`` ``str`` array in the frame's row order; each row holds
        the user's previous items newest first, padded with ``""``. Rows with equal
        times are ordered as in the frame.
    """
    if length < 1:
        raise ValueError(f"history length must be >= 1, got {length}")
    order, _, items, position = _sorted_sequences(interactions, user_column, item_column, time_column)
    history = np.full((len(order), length), PADDING, dtype=object)
    for offset in range(1, length + 1):
        has = position >= offset
        history[has, offset - 1] = items[np.flatnonzero(has) - offset]
    in_frame_order = np.empty_like(history)
    in_frame_order[order] = history
    return in_frame_order


def latest_items(
    interactions: pd.DataFrame,
    user_ids: Sequence | np.ndarray,
    length: int,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str = "timestamp",
) -> np.ndarray:
    """Each user's last ``length`` items: the history a query made now would carry.

    Returns:
        ``[len(user_ids), length]`` ``str`` array, newest first, padded with ``""`` (all
        padding for users without interactions).
    """
    if length < 1:
        raise ValueError(f"history length must be >= 1, got {length}")
    _, users, items, position = _sorted_sequences(interactions, user_column, item_column, time_column)
    known_users = pd.Index(pd.unique(users))
    user_row = known_users.get_indexer(users)
    from_end = np.bincount(user_row, minlength=len(known_users))[user_row] - 1 - position
    kept = from_end < length
    table = np.full((len(known_users) + 1, length), PADDING, dtype=object)  # last row: unknown users
    table[user_row[kept], from_end[kept]] = items[kept]
    rows = known_users.get_indexer(np.asarray(user_ids).astype(str))
    return table[np.where(rows >= 0, rows, len(known_users))]


def latest_other_items(
    interactions: pd.DataFrame,
    length: int,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str = "timestamp",
) -> np.ndarray:
    """For every row, its user's last ``length`` items other than the row's own item.

    The history a row gets when every training row should see the profile that queries
    will carry (``latest_items``), as in random-split protocols whose held-out rows are
    spread over each user's whole timeline. Unlike ``preceding_items`` it reads items
    after the row: do not use it when the test set lies in the future.

    Returns:
        ``[len(interactions), length]`` ``str`` array in the frame's row order, newest
        first, padded with ``""``.
    """
    latest = latest_items(
        interactions,
        interactions[user_column].astype(str).to_numpy(),
        length + 1,
        user_column,
        item_column,
        time_column,
    )
    other = latest != interactions[item_column].astype(str).to_numpy()[:, None]
    # Stable sort moves the row's own item (at most once in the last length + 1, unless
    # repeated) behind the others; padding already sits at the end.
    kept = np.take_along_axis(latest, np.argsort(~other, axis=1, kind="stable"), axis=1)[:, :length]
    kept[np.arange(length)[None, :] >= other.sum(axis=1, keepdims=True)] = PADDING
    return kept


def epoch_callback(recommender: Any, on_epoch_end: Callable[[int, Any], None] | None) -> keras.callbacks.Callback:
    """A Keras callback that appends each epoch's mean loss (the model's ``epoch_loss``
    metric) to ``recommender.loss``, then calls ``on_epoch_end(epoch, recommender)`` with
    the 1-based epoch when given."""

    def after_epoch(epoch: int, logs: dict[str, float]) -> None:
        recommender.loss.append(float(logs["epoch_loss"]))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, recommender)

    return keras.callbacks.LambdaCallback(on_epoch_end=after_epoch)


def catalogue_scores(scores: np.ndarray, model_item_ids: np.ndarray, item_ids: Sequence | np.ndarray) -> np.ndarray:
    """Reorder score columns to a given catalogue; unknown items rank below known ones.

    Args:
        scores: ``[U, I]`` scores over ``model_item_ids``.
        model_item_ids: ``[I]`` the items the columns of ``scores`` belong to (``str``).
        item_ids: The catalogue to score (any id type; compared as ``str``).

    Returns:
        ``[U, len(item_ids)]`` float64; a catalogue item the model does not know gets
        its row's lowest score minus 1, so it ranks after every item the model scored.
    """
    position = pd.Index(np.asarray(model_item_ids).astype(str)).get_indexer(np.asarray(item_ids).astype(str))
    known = position >= 0
    result = np.empty((scores.shape[0], len(position)), dtype=np.float64)
    result[:, known] = scores[:, position[known]]
    if not known.all():
        floor = scores.min(axis=1, keepdims=True) - 1.0 if scores.shape[1] else np.zeros((scores.shape[0], 1))
        result[:, ~known] = floor
    return result


def _string_columns(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    arrays = {}
    for name in names:
        column = frame[name]
        if column.isna().any():
            raise ValueError(f"feature column {name!r} holds {int(column.isna().sum())} null value(s)")
        arrays[name] = column.astype(str).to_numpy(dtype=object)
    return arrays


@dataclass
class TwoTowerRetriever:
    """A trained two-tower model with the user and item rows it needs to score.

    Attributes:
        model: The trained ``TwoTowerModel``.
        config: Its settings.
        user_features: Query features per known user: ``user_id`` plus the latest value
            of every other query feature (``str`` arrays, one row per user).
        candidates: Candidate features, one row per distinct candidate id.
        history_source: The interactions the query histories are read from.
        loss: Mean training loss (summed over each batch's queries) per epoch.
        examples: Training positives.
        seconds: Wall-clock training time (including any ``on_epoch_end`` calls).
    """

    model: TwoTowerModel
    config: RetrievalConfig
    user_features: pd.DataFrame
    candidates: dict[str, np.ndarray]
    history_source: pd.DataFrame
    loss: list[float]
    examples: int
    seconds: float
    user_column: str = "user_id"
    time_column: str = "timestamp"

    @property
    def item_ids(self) -> np.ndarray:
        """The candidate ids, in the column order of ``item_embeddings``."""
        return self.candidates[self.model.candidate_id]

    def queries(self, user_ids: Sequence | np.ndarray) -> dict[str, np.ndarray]:
        """Query tower inputs for ``user_ids``; unknown users get ``""`` (OOV) features and no history."""
        ids = np.asarray(user_ids).astype(str)
        known = self.user_features.reindex(ids)
        arrays = {
            name: (
                ids.astype(object) if name == self.user_column else known[name].fillna(PADDING).to_numpy(dtype=object)
            )
            for name in self.model.query_features
        }
        if self.config.history_length:
            arrays[HISTORY_FEATURE] = latest_items(
                self.history_source,
                ids,
                self.config.history_length,
                user_column=self.user_column,
                item_column=self.model.candidate_id,
                time_column=self.time_column,
            )
        return arrays

    def user_embeddings(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        """``[len(user_ids), D]`` query embeddings."""
        return embed_rows(self.model.query_tower, self.queries(user_ids))

    def item_embeddings(self) -> np.ndarray:
        """``[len(item_ids), D]`` candidate embeddings."""
        return embed_rows(self.model.candidate_tower, self.candidates)

    def score_all(self, user_ids: Sequence | np.ndarray, item_ids: Sequence | np.ndarray | None = None) -> np.ndarray:
        """Dot-product scores of every (user, item) pair.

        Args:
            user_ids: Users (rows).
            item_ids: Catalogue (columns); ``item_ids`` of the model when ``None``. Items
                the model never saw rank below every known item (``catalogue_scores``).

        Returns:
            ``[len(user_ids), len(item_ids)]`` float scores, higher is better: the input
            of ``evaluation.ranking_metrics``.
        """
        scores = self.user_embeddings(user_ids) @ self.item_embeddings().T
        return scores if item_ids is None else catalogue_scores(scores, self.item_ids, item_ids)

    def index(self, k: int = 10, kind: str = "brute_force", **options: Any) -> TopKIndex:
        """A top-k index over the training candidates (``build_index``)."""
        return build_index(self.model, self.candidates, k, kind, **options)


def fit_two_tower(
    interactions: pd.DataFrame,
    config: RetrievalConfig = RetrievalConfig(),
    *,
    query_features: Sequence[str] = ("user_id",),
    candidate_features: Sequence[str] = ("item_id",),
    candidate_id: str = "item_id",
    user_column: str = "user_id",
    time_column: str = "timestamp",
    training_history: str = "preceding",
    on_epoch_end: Callable[[int, TwoTowerRetriever], None] | None = None,
) -> TwoTowerRetriever:
    """Train a two-tower model on positive user-item interactions.

    Every row is one positive pair (e.g. a MovieLens rating or a clicked impression);
    its query features are the row's values, plus, with ``config.history_length``, a
    history of the user's items. Vocabularies, log-Q counts and the candidate table come
    from ``interactions``; queries made after training carry the user's latest query
    feature values and latest items.

    Args:
        interactions: Rows with ``user_column``, ``time_column`` and every feature.
        config: Model and training settings.
        query_features: String columns of the query tower (must include ``user_column``).
        candidate_features: String columns of the candidate tower (must include
            ``candidate_id``); an id repeating with different values is an error.
        candidate_id: The item identifier column.
        user_column: The user identifier column.
        time_column: Orders each user's interactions (histories, latest feature values).
        training_history: A training row's history: ``"preceding"`` (the items before
            it: point in time, right for temporal splits) or ``"latest_other"`` (the
            user's latest items except the row's own: the profile queries carry, right
            for random splits whose held-out rows span each user's timeline).
        on_epoch_end: Called after every epoch with the 1-based epoch and the retriever
            as trained so far (e.g. to follow validation metrics per epoch).

    Returns:
        The trained ``TwoTowerRetriever``.

    Raises:
        ValueError: on an empty frame, a missing column, null features, or bad settings.
    """
    require_columns(
        interactions, (user_column, time_column, *query_features, *candidate_features), "interactions frame"
    )
    if interactions.empty:
        raise ValueError("cannot train a two-tower model on an empty interactions frame")
    if training_history not in TRAINING_HISTORIES:
        raise ValueError(f"training_history must be one of {list(TRAINING_HISTORIES)}, got {training_history!r}")
    if user_column not in query_features:
        raise ValueError(f"query_features must include the user column {user_column!r}, got {list(query_features)}")
    features = _string_columns(interactions, list(dict.fromkeys((*query_features, *candidate_features))))
    vocabularies = {
        name: string_vocabulary(name, values, config.vocabulary_min_count) for name, values in features.items()
    }
    if config.history_length:
        history_of = preceding_items if training_history == "preceding" else latest_other_items
        features[HISTORY_FEATURE] = history_of(
            interactions, config.history_length, user_column, candidate_id, time_column
        )
    ids, counts = np.unique(features[candidate_id], return_counts=True)
    keras.utils.set_random_seed(config.seed)
    model = build_retrieval_model(
        vocabularies,
        config,
        query_features=query_features,
        candidate_features=candidate_features,
        candidate_id=candidate_id,
        candidate_counts=dict(zip(ids.tolist(), counts.tolist(), strict=True)),
    )
    dataset = array_batches(features, config.batch_size, config.seed)
    latest = interactions.iloc[chronological_order(interactions, user_column, time_column)]
    user_features = latest.groupby(latest[user_column].astype(str))[list(query_features)].last().astype(str)
    retriever = TwoTowerRetriever(
        model=model,
        config=config,
        user_features=user_features,
        candidates=unique_candidates({name: features[name] for name in candidate_features}, candidate_id),
        history_source=interactions[[user_column, candidate_id, time_column]],
        loss=[],
        examples=len(interactions),
        seconds=0.0,
        user_column=user_column,
        time_column=time_column,
    )
    build_for_fit(model, dataset)
    started = time.perf_counter()
    model.fit(dataset, epochs=config.epochs, verbose=0, callbacks=[epoch_callback(retriever, on_epoch_end)])
    retriever.seconds = time.perf_counter() - started
    return retriever

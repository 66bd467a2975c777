"""Retrieval-family zoo models: trained, chosen and evaluated on a source's training window.

The zoo's *retrievers* rank the whole catalogue for a user (the *rankers* of
``models.training.registry`` score impressions). ``RETRIEVER_TYPES`` is their registry: the
config ``type:`` names one, its ``model:`` and ``training:`` sections become the model
library's settings (``RetrieverType.settings_for``):

- ``popularity``: ``models.retrieval.baselines.Popularity``, the same ranking for everyone;
- ``ease``: ``models.retrieval.baselines.EASE``, closed-form item-item regression;
- ``ease_recency``: ``models.retrieval.recency.RecencyEASE``, EASE over a profile weighted by how
  recently the user met each item, as of the end of the training window;
- ``bpr_mf``: ``models.retrieval.baselines.BPRMF``, matrix factorisation with the BPR loss;
- ``two_tower``: ``models.retrieval.two_tower.fit_two_tower`` (log-Q correction, pooled history),
  its towers reading the ids plus the spec's string user / item columns, as the
  pipeline's retrieval does (``models.training.two_tower.retrieval_features``);
- ``sasrec``: ``models.retrieval.sequence.fit_sasrec``, next-item self-attention;
- ``joint``: ``models.retrieval.joint.fit_joint``, retrieval + rating on shared embeddings.

``train_retriever`` takes ``training_examples`` rows, keeps the positive interactions
(``models.training.two_tower.positive_rows``: the spec's definition of a positive), splits the
window in time as the ranker zoo does (``models.inputs.splits.split_training_window``:
train days, a validation day, the newest day tests) and

1. for the TensorFlow models trained in epochs, trains on the train days while ranking
   the validation day's positives after every epoch (early stopping on
   ``training.selection_metric``), which chooses the epoch count;
2. fits the model on the train and validation days (the TensorFlow models for the
   chosen epoch count, with a checkpoint per epoch; BPR-MF for its configured epochs,
   its fit having no per-epoch hook; without a validation day, windows of two days,
   every model trains its configured epochs);
3. ranks every catalogue item for each test-day user with training interactions, their
   training items masked (``evaluation.ranking_metrics``).

The catalogue is every item of the window's ``training_examples``. Every model is seen
through ``ZooRetriever``: ``scores(user_ids)`` (its own scoring) and ``factors``, the
same ranking as ``query_vectors @ item_vectors.T + item_bias``, which is the form
``models.export.retrievers`` serves.

One module on purpose (about 850 lines): every zoo retriever is adapted to the same
``ZooRetriever`` interface, fitted, tuned in epochs on the validation day and evaluated
the same way; keeping the adapters beside the loop that treats them alike is what makes
their figures comparable.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf
import tf_keras as keras

from models.inputs.features import require_columns
from models.inputs.splits import split_training_window, trained_span
from models.retrieval.baselines import BPRMF, EASE, BPRConfig, EASEConfig, InteractionIndex, Popularity
from models.retrieval.evaluation import evaluate_retriever
from models.retrieval.joint import JointConfig, JointRecommender, fit_joint
from models.retrieval.recency import RecencyEASE, RecencyEASEConfig, unix_seconds
from models.retrieval.sequence import SASRec, SASRecConfig, fit_sasrec
from models.retrieval.two_tower import RetrievalConfig, TwoTowerRetriever, fit_two_tower
from models.training.config import ModelSpec, load_spec
from models.training.registry import CHECKPOINT_PATTERN
from models.training.retriever_kinds import RETRIEVER_KINDS, RetrieverKind, RetrieverTrainingConfig
from models.training.two_tower import positive_rows, retrieval_features
from reclake.feature_spec import FeatureSpec

RetrieverFit = Callable[[pd.DataFrame, np.ndarray, FeatureSpec, Any, "EpochHook | None"], "ZooRetriever"]
"""``fit(interactions, catalogue, feature_spec, settings, on_epoch_end)`` -> a fitted retriever."""

"""Cut-offs of the reported metrics (those above the catalogue size are left out)."""
REPORTED_METRICS = ("hr@10", "hr@100", "recall@10", "ndcg@10", "mrr@10")
RETRIEVER_CONFIG_FILE = "retriever_config.json"
"""Written next to a retriever's checkpoints: ``{"spec"}``, the config that trained it."""
EMBEDDING_BATCH = 4096

EpochHook = Callable[[int, "EmbeddingRetriever"], None]
"""Called after every epoch with the 1-based epoch and the model as trained so far."""


def positive_interactions(examples: pd.DataFrame, feature_spec: FeatureSpec) -> pd.DataFrame:
    """The positive interactions of ``training_examples`` rows, as the retrievers read them.

    Positives are the rows ``models.training.two_tower.positive_rows`` keeps (``is_positive``: a
    click, or a rating at or above the spec's threshold).

    Args:
        examples: ``training_examples`` rows (``event_id``, ``event_ts``, the ids,
            ``label``, ``is_positive`` and the spec's string user / item columns).
        feature_spec: The source's feature spec; it must have user and item ids.

    Returns:
        ``user_id``, ``item_id`` (str), ``rating`` (float64: the spec's label),
        ``timestamp`` (``event_ts``), then the spec's string user and item columns (null
        as ``""``), ordered by time (ties by ``event_id``), index ``0..n-1``.

    Raises:
        ValueError: the spec has no ids, or a column is missing.
    """
    query, candidate = retrieval_features(feature_spec)
    side_columns = [*query[1:], *candidate[1:]]
    require_columns(
        examples, ("event_id", "event_ts", "user_id", "item_id", "label", *side_columns), "training examples"
    )
    positives = positive_rows(examples).sort_values(["event_ts", "event_id"], kind="stable")
    frame = pd.DataFrame(
        {
            "user_id": positives["user_id"].astype(str).to_numpy(),
            "item_id": positives["item_id"].astype(str).to_numpy(),
            "rating": positives["label"].to_numpy(dtype=np.float64),
            "timestamp": positives["event_ts"].to_numpy(),
        }
    )
    for name in side_columns:
        frame[name] = positives[name].fillna("").astype(str).to_numpy()
    return frame


def _ids(values: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    return np.asarray(values).astype(str)


@dataclass(frozen=True)
class Factors:
    """A retriever's scores as ``query_vectors @ item_vectors.T + item_bias``.

    Attributes:
        query_vectors: ``[U, D]`` float32, one row per user asked for.
        item_vectors: ``[I, D]`` float32, one row per catalogue item.
        item_bias: ``[I]`` float32.
    """

    query_vectors: np.ndarray
    item_vectors: np.ndarray
    item_bias: np.ndarray


class ZooRetriever(ABC):
    """A fitted retrieval-family model: users in, a score per catalogue item out.

    Attributes:
        catalogue: ``[I]`` sorted ``str`` item ids: the columns of ``scores`` and the
            rows of ``Factors.item_vectors``.
    """

    catalogue: np.ndarray

    @property
    @abstractmethod
    def examples(self) -> int:
        """Training interactions (distinct user-item pairs for the matrix models)."""

    @property
    @abstractmethod
    def seconds(self) -> float:
        """Wall-clock fitting time."""

    @property
    @abstractmethod
    def epochs(self) -> int | None:
        """Passes over the interactions; ``None`` for closed-form models."""

    @abstractmethod
    def scores(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        """``[len(user_ids), I]`` scores of users seen in training (the model's own
        scoring, higher is better)."""

    @abstractmethod
    def factors(self, user_ids: Sequence | np.ndarray) -> Factors:
        """``scores(user_ids)`` in factorised form: the same values up to float32
        rounding, except that catalogue items the model never saw share one score below
        every other (``scores`` puts them below each row's lowest)."""

    @property
    def examples_per_second(self) -> float:
        """Training interactions x passes over them / seconds."""
        return self.examples * (self.epochs or 1) / self.seconds if self.seconds > 0 else 0.0


class MatrixRetriever(ZooRetriever):
    """A ``models.retrieval.baselines`` model fitted on the binary user x catalogue matrix.

    Args:
        model: The fitted model (``score_users`` over the matrix's rows).
        index: Its users (rows) and the catalogue (columns).
        matrix: The training matrix.
        seconds: Fitting time.
        epochs: Passes of an iterative model; ``None`` for a closed-form one.
    """

    def __init__(
        self, model: Any, index: InteractionIndex, matrix: sp.csr_matrix, seconds: float, epochs: int | None
    ) -> None:
        self.model = model
        self.index = index
        self.matrix = matrix
        self.catalogue = index.item_ids
        self._seconds = seconds
        self._epochs = epochs

    @property
    def examples(self) -> int:
        return int(self.matrix.nnz)

    @property
    def seconds(self) -> float:
        return self._seconds

    @property
    def epochs(self) -> int | None:
        return self._epochs

    def rows(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        """Matrix rows of ``user_ids``; ValueError naming users not seen in training."""
        return self.index.user_indices(_ids(user_ids))

    def scores(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        return np.asarray(self.model.score_users(self.rows(user_ids)), dtype=np.float64)


class PopularityRetriever(MatrixRetriever):
    """Popularity: query 1, item vector its training count."""

    def factors(self, user_ids: Sequence | np.ndarray) -> Factors:
        users = len(self.rows(user_ids))
        return Factors(
            np.ones((users, 1), np.float32),
            self.model.counts.astype(np.float32)[:, np.newaxis],
            np.zeros(len(self.catalogue), np.float32),
        )


class EASERetriever(MatrixRetriever):
    """EASE: query the user's interaction row, item vectors the weight matrix's columns."""

    def factors(self, user_ids: Sequence | np.ndarray) -> Factors:
        return Factors(
            self.matrix[self.rows(user_ids)].toarray().astype(np.float32),
            self.model.weights.T.astype(np.float32),
            np.zeros(len(self.catalogue), np.float32),
        )


class RecencyEASERetriever(MatrixRetriever):
    """EASE over each user's profile weighted by recency as of the end of the training
    window (``models.retrieval.recency``): query the weighted profile, item vectors the weight
    matrix's columns. Requests are taken to come just after the newest training interaction.

    Args:
        as_of: Unix seconds of the requests the profiles are built for.
    """

    model: RecencyEASE

    def __init__(
        self, model: RecencyEASE, index: InteractionIndex, matrix: sp.csr_matrix, seconds: float, as_of: float
    ) -> None:
        super().__init__(model, index, matrix, seconds, None)
        self.as_of = as_of

    def _profiles(self, user_ids: Sequence | np.ndarray) -> sp.csr_matrix:
        rows = self.rows(user_ids)
        return self.model.profiles(rows, np.full(len(rows), self.as_of))

    def scores(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        return np.asarray(self._profiles(user_ids) @ self.model.weights, dtype=np.float64)

    def factors(self, user_ids: Sequence | np.ndarray) -> Factors:
        return Factors(
            self._profiles(user_ids).toarray().astype(np.float32),
            self.model.weights.T.astype(np.float32),
            np.zeros(len(self.catalogue), np.float32),
        )


class BPRRetriever(MatrixRetriever):
    """BPR-MF: query the user factors, item vectors the item factors, bias the item bias."""

    def factors(self, user_ids: Sequence | np.ndarray) -> Factors:
        return Factors(
            self.model.user_factors[self.rows(user_ids)].astype(np.float32),
            self.model.item_factors.astype(np.float32),
            self.model.item_bias.astype(np.float32),
        )


class EmbeddingRetriever(ZooRetriever):
    """A TensorFlow model scoring by dot products of user and item embeddings.

    Args:
        model: The trained model of the library (``score_all(user_ids, item_ids)``,
            ``loss``, ``examples``, ``seconds``).
        catalogue: The zoo's catalogue; items the model never saw rank last.
    """

    def __init__(self, model: Any, catalogue: np.ndarray) -> None:
        self.model = model
        self.catalogue = catalogue

    @property
    def examples(self) -> int:
        return int(self.model.examples)

    @property
    def seconds(self) -> float:
        return float(self.model.seconds)

    @property
    def epochs(self) -> int:
        return len(self.model.loss)

    @property
    def loss(self) -> list[float]:
        """Mean training loss per epoch so far."""
        return list(self.model.loss)

    @property
    @abstractmethod
    def keras_model(self) -> keras.Model:
        """The network whose weights the checkpoints hold."""

    @property
    @abstractmethod
    def model_item_ids(self) -> np.ndarray:
        """``[N]`` the items the model has vectors for (``str``)."""

    @abstractmethod
    def model_item_vectors(self) -> np.ndarray:
        """``[N, D]`` their vectors."""

    @abstractmethod
    def query_vectors(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        """``[len(user_ids), D]`` query vectors (from each user's latest history where
        the model reads one)."""

    def stop_training(self) -> None:
        """End training after the current epoch (call it from an ``EpochHook``)."""
        self.keras_model.stop_training = True

    def save_checkpoint(self, path: str) -> None:
        """Save the network's weights as a TensorFlow checkpoint at ``path``."""
        self.keras_model.save_weights(path)

    def scores(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        return self.model.score_all(_ids(user_ids), self.catalogue)

    def factors(self, user_ids: Sequence | np.ndarray) -> Factors:
        queries = np.asarray(self.query_vectors(user_ids), np.float32)
        vectors = np.asarray(self.model_item_vectors(), np.float32)
        position = pd.Index(self.model_item_ids).get_indexer(self.catalogue)
        known = position >= 0
        items = np.zeros((len(self.catalogue), vectors.shape[1]), np.float32)
        items[known] = vectors[position[known]]
        bias = np.zeros(len(self.catalogue), np.float32)
        if not known.all():
            # Below every dot product of these queries and items (Cauchy-Schwarz).
            largest_query = float(np.linalg.norm(queries, axis=1).max(initial=0.0))
            largest_item = float(np.linalg.norm(vectors, axis=1).max(initial=0.0))
            bias[~known] = -(largest_query * largest_item) - 1.0
        return Factors(queries, items, bias)


def _in_batches(embed: Callable[[np.ndarray], Any], ids: np.ndarray, width: int) -> np.ndarray:
    blocks = [np.asarray(embed(ids[start : start + EMBEDDING_BATCH])) for start in range(0, len(ids), EMBEDDING_BATCH)]
    return np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32)


class TwoTowerZooRetriever(EmbeddingRetriever):
    """``models.retrieval.two_tower.TwoTowerRetriever``: query tower output . candidate tower output."""

    model: TwoTowerRetriever

    @property
    def keras_model(self) -> keras.Model:
        return self.model.model

    @property
    def model_item_ids(self) -> np.ndarray:
        return _ids(self.model.item_ids)

    def model_item_vectors(self) -> np.ndarray:
        return self.model.item_embeddings()

    def query_vectors(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        return self.model.user_embeddings(_ids(user_ids))


class SASRecZooRetriever(EmbeddingRetriever):
    """``models.retrieval.sequence.SASRec``: the last position's output . the item embeddings."""

    model: SASRec

    @property
    def keras_model(self) -> keras.Model:
        return self.model.network

    def stop_training(self) -> None:
        self.model.stop_training = True

    @property
    def model_item_ids(self) -> np.ndarray:
        return _ids(self.model.item_ids)

    def model_item_vectors(self) -> np.ndarray:
        return self.model.network.item_vectors().numpy()

    def query_vectors(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        windows = self.model.user_windows(_ids(user_ids))
        return _in_batches(
            lambda rows: self.model.network(rows, training=False)[:, -1, :].numpy(),
            windows,
            self.model.config.embedding_dim,
        )


class JointZooRetriever(EmbeddingRetriever):
    """``models.retrieval.joint.JointRecommender``: user embedding . item embedding."""

    model: JointRecommender

    @property
    def keras_model(self) -> keras.Model:
        return self.model.model

    @property
    def model_item_ids(self) -> np.ndarray:
        return _ids(self.model.item_ids)

    def model_item_vectors(self) -> np.ndarray:
        return self._embed(self.model.model.item_model, self.model_item_ids)

    def query_vectors(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        return self._embed(self.model.model.user_model, _ids(user_ids))

    def _embed(self, tower: keras.Model, ids: np.ndarray) -> np.ndarray:
        return _in_batches(lambda rows: tower(tf.constant(rows)).numpy(), ids, self.model.config.embedding_dim)


def _catalogue_index(interactions: pd.DataFrame, catalogue: np.ndarray) -> InteractionIndex:
    """Rows: the users of ``interactions``; columns: the whole catalogue."""
    return InteractionIndex(user_ids=np.unique(_ids(interactions["user_id"])), item_ids=catalogue)


def _matrix_fit(
    cls: type[MatrixRetriever], model: Any, interactions: pd.DataFrame, catalogue: np.ndarray, epochs: int | None
) -> MatrixRetriever:
    index = _catalogue_index(interactions, catalogue)
    matrix = index.matrix(interactions)
    started = time.perf_counter()
    model.fit(matrix)
    return cls(model, index, matrix, time.perf_counter() - started, epochs)


def _fit_popularity(
    interactions: pd.DataFrame, catalogue: np.ndarray, feature_spec: FeatureSpec, settings: None, on_epoch_end: None
) -> ZooRetriever:
    return _matrix_fit(PopularityRetriever, Popularity(), interactions, catalogue, None)


def _fit_ease(
    interactions: pd.DataFrame,
    catalogue: np.ndarray,
    feature_spec: FeatureSpec,
    settings: EASEConfig,
    on_epoch_end: None,
) -> ZooRetriever:
    return _matrix_fit(EASERetriever, EASE(settings), interactions, catalogue, None)


def _fit_ease_recency(
    interactions: pd.DataFrame,
    catalogue: np.ndarray,
    feature_spec: FeatureSpec,
    settings: RecencyEASEConfig,
    on_epoch_end: None,
) -> ZooRetriever:
    index = _catalogue_index(interactions, catalogue)
    started = time.perf_counter()
    model = RecencyEASE(settings).fit(interactions, index)
    seconds = time.perf_counter() - started
    as_of = float(unix_seconds(interactions["timestamp"]).max()) + 1.0
    return RecencyEASERetriever(model, index, index.matrix(interactions), seconds, as_of)


def _fit_bpr(
    interactions: pd.DataFrame,
    catalogue: np.ndarray,
    feature_spec: FeatureSpec,
    settings: BPRConfig,
    on_epoch_end: None,
) -> ZooRetriever:
    return _matrix_fit(BPRRetriever, BPRMF(settings), interactions, catalogue, settings.epochs)


def _epoch_hook(
    on_epoch_end: EpochHook | None, wrap: Callable[[Any], EmbeddingRetriever]
) -> Callable[[int, Any], None] | None:
    if on_epoch_end is None:
        return None
    return lambda epoch, model: on_epoch_end(epoch, wrap(model))


def _fit_two_tower(
    interactions: pd.DataFrame,
    catalogue: np.ndarray,
    feature_spec: FeatureSpec,
    settings: RetrievalConfig,
    on_epoch_end: EpochHook | None,
) -> ZooRetriever:
    query, candidate = retrieval_features(feature_spec)
    frame = interactions.copy()
    if len(candidate) > 1:
        # One value per item, as the candidate tower's catalogue needs: its latest one.
        frame[list(candidate[1:])] = frame.groupby("item_id")[list(candidate[1:])].transform("last")
    wrap = functools.partial(TwoTowerZooRetriever, catalogue=catalogue)
    model = fit_two_tower(
        frame,
        settings,
        query_features=query,
        candidate_features=candidate,
        on_epoch_end=_epoch_hook(on_epoch_end, wrap),
    )
    return wrap(model)


def _fit_sasrec(
    interactions: pd.DataFrame,
    catalogue: np.ndarray,
    feature_spec: FeatureSpec,
    settings: SASRecConfig,
    on_epoch_end: EpochHook | None,
) -> ZooRetriever:
    wrap = functools.partial(SASRecZooRetriever, catalogue=catalogue)
    return wrap(fit_sasrec(interactions, settings, on_epoch_end=_epoch_hook(on_epoch_end, wrap)))


def _fit_joint(
    interactions: pd.DataFrame,
    catalogue: np.ndarray,
    feature_spec: FeatureSpec,
    settings: JointConfig,
    on_epoch_end: EpochHook | None,
) -> ZooRetriever:
    wrap = functools.partial(JointZooRetriever, catalogue=catalogue)
    return wrap(fit_joint(interactions, settings, on_epoch_end=_epoch_hook(on_epoch_end, wrap)))


RETRIEVER_FITS: dict[str, RetrieverFit] = {
    "popularity": _fit_popularity,
    "ease": _fit_ease,
    "ease_recency": _fit_ease_recency,
    "bpr_mf": _fit_bpr,
    "two_tower": _fit_two_tower,
    "sasrec": _fit_sasrec,
    "joint": _fit_joint,
}
"""Retriever type -> the function that fits it (its settings: ``RETRIEVER_KINDS``)."""


@dataclass(frozen=True)
class RetrieverType:
    """A retriever type as the zoo trains it: its kind (settings, keys) and its fit.

    Attributes:
        kind: What a config of the type may set (``retriever_kinds.RetrieverKind``).
        fit: ``fit(interactions, catalogue, feature_spec, settings, on_epoch_end)`` ->
            the fitted ``ZooRetriever`` (``on_epoch_end`` only for ``kind.in_epochs``).
    """

    kind: RetrieverKind
    fit: RetrieverFit

    @property
    def in_epochs(self) -> bool:
        return self.kind.in_epochs

    def settings_for(
        self, model: Mapping[str, Any], training: RetrieverTrainingConfig, epochs: int | None = None
    ) -> Any:
        """``RetrieverKind.settings_for``."""
        return self.kind.settings_for(model, training, epochs)


RETRIEVER_TYPES: dict[str, RetrieverType] = {
    name: RetrieverType(RETRIEVER_KINDS[name], fit) for name, fit in RETRIEVER_FITS.items()
}
"""Retriever type -> how the zoo configures and fits it; the same names as ``RETRIEVER_KINDS``."""


def retriever_type(spec: ModelSpec) -> RetrieverType:
    """The registry entry of a retriever spec.

    Raises:
        ValueError: naming the retriever types, if the spec's type is not one.
    """
    if spec.type not in RETRIEVER_TYPES:
        raise ValueError(f"{spec.describe()}: {spec.type!r} is not a retriever type; known: {sorted(RETRIEVER_TYPES)}")
    return RETRIEVER_TYPES[spec.type]


def _choose_epochs(
    kind: RetrieverType,
    spec: ModelSpec,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    catalogue: np.ndarray,
    feature_spec: FeatureSpec,
) -> tuple[dict[str, list[float]], int]:
    """Train on ``train`` and rank ``validation`` after every epoch.

    Returns:
        ``(history, best epoch)``: ``loss`` and ``val_<metric>`` per epoch, and the
        1-based epoch with the highest ``training.selection_metric`` (the first on ties).
    """
    training: RetrieverTrainingConfig = spec.training
    names = list(dict.fromkeys((*REPORTED_METRICS, training.selection_metric)))
    history: dict[str, list[float]] = {}
    best = {"epoch": 0, "value": -np.inf}

    def after_epoch(epoch: int, retriever: EmbeddingRetriever) -> None:
        metrics = evaluate_retriever(retriever, train, validation)
        if training.selection_metric not in metrics:
            raise ValueError(
                f"{spec.describe()}: training.selection_metric {training.selection_metric!r} is not a metric of this "
                f"catalogue; available: {sorted(name for name in metrics if '@' in name)}"
            )
        for name in names:
            if name in metrics:
                history.setdefault(f"val_{name}", []).append(float(metrics[name]))
        value = float(metrics[training.selection_metric])
        if value > best["value"]:
            best.update(epoch=epoch, value=value)
        elif training.early_stopping_patience is not None and epoch - best["epoch"] >= training.early_stopping_patience:
            retriever.stop_training()

    retriever = kind.fit(train, catalogue, feature_spec, kind.settings_for(spec.model, training), after_epoch)
    return {"loss": retriever.loss, **history}, int(best["epoch"])


def _checkpoint_hook(checkpoint_dir: str | os.PathLike[str], spec: ModelSpec) -> EpochHook:
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RETRIEVER_CONFIG_FILE).write_text(json.dumps({"spec": spec.to_dict()}, indent=2), encoding="utf-8")

    def save(epoch: int, retriever: EmbeddingRetriever) -> None:
        retriever.save_checkpoint(str(directory / CHECKPOINT_PATTERN.format(epoch=epoch)))

    return save


@dataclass
class TrainedRetriever:
    """One retriever config trained on a window's temporal split and scored on its test day.

    Attributes:
        spec: The config.
        feature_spec: The source's feature spec.
        retriever: The model fitted on the train and validation days.
        metrics: ``REPORTED_METRICS`` on the test day (those the catalogue allows),
            ``users`` ranked and ``cold_users``.
        history: Per epoch of the validation run, ``loss`` and ``val_<metric>``; empty
            for models not trained in epochs or windows without a validation day.
        best_epoch: The epoch count chosen on the validation day (the fitted model's),
            or ``None``.
        fitted_on: The positive interactions of the train and validation days.
        test: The positive interactions of the test day.
        trained_on: (first, last) training day; evaluated_on: the test day.
    """

    spec: ModelSpec
    feature_spec: FeatureSpec
    retriever: ZooRetriever
    metrics: dict[str, float]
    history: dict[str, list[float]]
    best_epoch: int | None
    fitted_on: pd.DataFrame
    test: pd.DataFrame
    trained_on: tuple[dt.date, dt.date]
    evaluated_on: dt.date

    @property
    def catalogue(self) -> np.ndarray:
        """``[I]`` sorted item ids."""
        return self.retriever.catalogue

    @functools.cached_property
    def known_users(self) -> np.ndarray:
        """Sorted ids of the users with training interactions: the model ranks for them."""
        return np.unique(_ids(self.fitted_on["user_id"]))

    @functools.cached_property
    def seen(self) -> sp.csr_matrix:
        """``[known_users, catalogue]`` binary matrix of the training interactions: what
        each known user is never recommended."""
        return InteractionIndex(user_ids=self.known_users, item_ids=self.catalogue).matrix(self.fitted_on)

    @functools.cached_property
    def popularity(self) -> np.ndarray:
        """``[I]`` each catalogue item's share of the distinct (user, item) training
        pairs (how many users liked it, as the ``popularity`` model counts): the ranking
        of unknown users."""
        counts = Popularity().fit(self.seen).counts  # the popularity model's own counts
        return counts / counts.sum()

    def served_scores(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        """``[len(user_ids), I]`` float64 scores as the export serves them: a known user's
        model scores with their training items at ``-inf``; an unknown user's the
        popularity shares."""
        ids = _ids(user_ids)
        rows = pd.Index(self.known_users).get_indexer(ids)
        known = rows >= 0
        scores = np.tile(self.popularity, (len(ids), 1))
        if known.any():
            personal = self.retriever.scores(ids[known]).astype(np.float64)
            personal[self.seen[rows[known]].toarray() > 0] = -np.inf
            scores[known] = personal
        return scores

    def recommend(self, user_ids: Sequence | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The in-memory top ``k`` of ``served_scores``; equal scores keep catalogue order.
        When fewer than ``k`` items are left, the remaining columns hold ``""`` and ``-inf``.

        Returns:
            ``(item_ids [B, k] str, scores [B, k] float64)``, best first.

        Raises:
            ValueError: ``k`` outside ``1 .. len(catalogue)``.
        """
        if not 1 <= k <= len(self.catalogue):
            raise ValueError(f"k must be between 1 and the catalogue size {len(self.catalogue)}, got {k}")
        scores = self.served_scores(user_ids)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(scores, order, axis=1)
        return np.where(np.isfinite(best), self.catalogue[order], ""), best


def train_retriever(
    config: str | os.PathLike[str] | Mapping[str, Any] | ModelSpec,
    examples: pd.DataFrame,
    feature_spec: FeatureSpec,
    days: Sequence[dt.date],
    checkpoint_dir: str | os.PathLike[str] | None = None,
    catalogue: Sequence[str] | np.ndarray | None = None,
) -> TrainedRetriever:
    """Train a retriever config on the window's temporal split and evaluate it on the test day.

    Args:
        config: A bundled retriever config name (``"ease"``), a YAML path, a dict or a spec.
        examples: ``training_examples`` rows of ``days``: every row, or only the positive
            ones (all a retriever reads) when ``catalogue`` is given.
        feature_spec: The source's feature spec; it must have user and item ids.
        days: The window's days, oldest first (one day is split inside the day).
        checkpoint_dir: Where the TensorFlow models write a checkpoint per epoch of the
            final fit (``epoch-NNN``, next to ``retriever_config.json``); ``None``: none.
        catalogue: The item ids to rank; default every item of ``examples``.

    Returns:
        The fitted model, its test-day metrics and the validation run's history.

    Raises:
        ValueError: the config is not a retriever's, the spec has no ids, no days, a part
            of the split is empty or holds no positive interaction of a known user.
    """
    spec = load_spec(config)
    kind = retriever_type(spec)
    if not days:
        raise ValueError("no days of training_examples to train on")
    train, validation, test = split_training_window(examples, days)
    catalogue = np.unique(_ids(examples["item_id"] if catalogue is None else catalogue))
    train_positives = positive_interactions(train, feature_spec)
    if train_positives.empty:
        raise ValueError(f"the training days {days[0]} .. {days[-1]} hold no positive interaction before the test part")
    test_positives = positive_interactions(test, feature_spec)
    if test_positives.empty:
        raise ValueError(f"the test part ({days[-1]}) holds no positive interaction to evaluate on")
    history: dict[str, list[float]] = {}
    best_epoch = None
    fitted_on = train_positives
    if validation is not None:
        validation_positives = positive_interactions(validation, feature_spec)
        if kind.in_epochs:
            if validation_positives.empty:
                raise ValueError("the validation part holds no positive interaction to choose the epoch count on")
            history, best_epoch = _choose_epochs(
                kind, spec, train_positives, validation_positives, catalogue, feature_spec
            )
        fitted_on = pd.concat([train_positives, validation_positives], ignore_index=True)
    settings = kind.settings_for(spec.model, spec.training, epochs=best_epoch)
    hook = _checkpoint_hook(checkpoint_dir, spec) if kind.in_epochs and checkpoint_dir is not None else None
    retriever = kind.fit(fitted_on, catalogue, feature_spec, settings, hook)
    ranking = evaluate_retriever(retriever, fitted_on, test_positives)
    metrics = {name: float(ranking[name]) for name in REPORTED_METRICS if name in ranking}
    metrics.update(users=int(ranking["users"]), cold_users=int(ranking["cold_users"]))
    return TrainedRetriever(
        spec=spec,
        feature_spec=feature_spec,
        retriever=retriever,
        metrics=metrics,
        history=history,
        best_epoch=best_epoch,
        fitted_on=fitted_on,
        test=test_positives,
        trained_on=trained_span(days),
        evaluated_on=days[-1],
    )

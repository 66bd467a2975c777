"""Export a trained zoo retriever as a SavedModel with a ``retrieve`` signature.

Every retriever of ``models.training.retrievers`` is served in one factorised form: a query
vector per known user, computed at export time (for the two-tower with history and for
SASRec from the user's latest items: this is how their history is served), a vector
and a bias per catalogue item, and ``scores = query . item + bias``. Popularity, EASE
(query: the user's interaction row, items: the weight matrix's columns, so its export
holds users x items plus items x items floats) and BPR-MF fit the same form.

``retrieve(user_id: string [B], k: int32 scalar) -> {item_ids: string [B, k], scores:
float32 [B, k]}``, best first, ``k`` clipped to ``1 .. item_count``:

- a known user's training items are never returned: they score ``-inf`` and, when fewer
  than ``k`` items are left, the last columns hold ``""`` with ``-inf``;
- an unknown user gets the popularity ranking (each item's share of the distinct
  (user, item) training pairs);
- equal scores keep catalogue order (sorted item ids), as ``TrainedRetriever.recommend``.

``assets/reclake_model.json`` next to the graph carries the version, the metrics, the
config, the feature spec, the input spec and the popularity list.
``load_retriever(path)`` wraps the SavedModel for Python callers and tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf

from models.export.savedmodel import METADATA_FILE, REQUIRED_METADATA, SavedModelExport
from models.export.saving import save_module
from models.training.retrievers import Factors, TrainedRetriever

RETRIEVE_INPUTS = {"user_id": "string", "k": "int"}
RETRIEVE_OUTPUTS = ("item_ids", "scores")
POPULAR_ITEMS = 100
"""Length of the ``popular_items`` list in the metadata."""
PARITY_USERS = 1000
"""Test users on whom ``export_retriever`` compares the export with the in-memory model."""
PARITY_K = 10
SCORE_RTOL = 1e-5
"""Relative score difference (of a row's largest score) ``topk_agreement`` takes for float32 rounding."""
PADDING_ID = ""


class FactorisedRetriever(tf.Module):
    """The exported graph: user lookup, query and item vectors, masks and the popularity fallback.

    Args:
        user_ids: ``[U]`` known users (unique).
        factors: Their query vectors ``[U, D]``, item vectors ``[I, D]``, item bias ``[I]``.
        item_ids: ``[I]`` the catalogue, in the row order of the item vectors.
        popularity: ``[I]`` the score of each item for unknown users.
        seen: ``[U, I]`` matrix whose stored entries are the items each user must not get.
    """

    def __init__(
        self, user_ids: np.ndarray, factors: Factors, item_ids: np.ndarray, popularity: np.ndarray, seen: sp.csr_matrix
    ) -> None:
        super().__init__(name="reclake_retriever")
        users, items = len(user_ids), len(item_ids)
        if factors.query_vectors.shape[0] != users or seen.shape != (users, items):
            raise ValueError(
                f"{users} users need {users} query vectors and a [{users}, {items}] seen matrix, got "
                f"{factors.query_vectors.shape[0]} and {seen.shape}"
            )
        if (
            factors.item_vectors.shape[0] != items
            or factors.item_bias.shape != (items,)
            or popularity.shape != (items,)
        ):
            raise ValueError(f"{items} catalogue items need one item vector, bias and popularity score each")
        self.item_count = items
        self.user_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(user_ids.astype(str)), tf.range(users, dtype=tf.int64)),
            default_value=-1,
        )
        self.query_vectors = tf.Variable(
            factors.query_vectors.astype(np.float32), trainable=False, name="query_vectors"
        )
        self.item_vectors = tf.Variable(factors.item_vectors.astype(np.float32), trainable=False, name="item_vectors")
        self.item_bias = tf.Variable(factors.item_bias.astype(np.float32), trainable=False, name="item_bias")
        self.item_ids = tf.Variable(item_ids.astype(str), trainable=False, dtype=tf.string, name="item_ids")
        self.popularity = tf.Variable(popularity.astype(np.float32), trainable=False, name="popularity")
        # Row u's masked items: seen_items[seen_splits[u] : seen_splits[u + 1]] (CSR).
        csr = sp.csr_matrix(seen)
        self.seen_splits = tf.Variable(csr.indptr.astype(np.int64), trainable=False, name="seen_splits")
        self.seen_items = tf.Variable(csr.indices.astype(np.int64), trainable=False, name="seen_items")

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="user_id"), tf.TensorSpec([], tf.int32, name="k")]
    )
    def retrieve(self, user_id: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = self.user_rows.lookup(user_id)
        known = rows >= 0
        safe_rows = tf.maximum(rows, 0)
        personal = tf.matmul(tf.gather(self.query_vectors, safe_rows), self.item_vectors, transpose_b=True)
        personal += self.item_bias[tf.newaxis, :]
        scores = tf.where(known[:, tf.newaxis], personal, tf.ones_like(personal) * self.popularity[tf.newaxis, :])
        starts = tf.gather(self.seen_splits, safe_rows)
        counts = tf.where(known, tf.gather(self.seen_splits, safe_rows + 1) - starts, tf.zeros_like(starts))
        positions = tf.ragged.range(starts, starts + counts)
        masked = tf.stack([positions.value_rowids(), tf.gather(self.seen_items, positions.flat_values)], axis=1)
        scores = tf.tensor_scatter_nd_update(
            scores, masked, tf.fill(tf.shape(masked)[:1], tf.constant(-np.inf, tf.float32))
        )
        best, columns = tf.math.top_k(scores, k=tf.clip_by_value(k, 1, self.item_count))
        item_ids = tf.where(tf.math.is_finite(best), tf.gather(self.item_ids, columns), tf.constant(PADDING_ID))
        return {"item_ids": item_ids, "scores": best}


@dataclass(frozen=True)
class RetrieverExport:
    """Where a retriever was exported and how well the export matches the model.

    Attributes:
        path: The SavedModel folder.
        topk_agreement: Share of the checked test users whose exported top ``PARITY_K``
            is the in-memory model's (``topk_agreement``).
        users_checked: How many test users were compared.
    """

    path: str
    topk_agreement: float
    users_checked: int


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"metadata value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def export_retriever(
    trained: TrainedRetriever, metadata: Mapping[str, Any], path: str | os.PathLike[str]
) -> RetrieverExport:
    """Write a trained retriever's SavedModel to ``path`` and check it against the model.

    Args:
        trained: ``models.training.retrievers.train_retriever``'s result.
        metadata: ``model_version``, ``trained_on`` ([first_day, last_day]),
            ``evaluated_on`` (day) and ``metrics`` (dict); JSON-serialisable.
        path: Local directory to create; must not exist or be empty.

    Returns:
        The path and the top-k agreement with ``trained.recommend`` on up to
        ``PARITY_USERS`` test users with training interactions.

    Raises:
        ValueError: a missing metadata key.
        FileExistsError: ``path`` exists and is not empty.
    """
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ValueError(f"metadata is missing {missing}; required keys are {list(REQUIRED_METADATA)}")
    path = os.fspath(path)
    if os.path.isdir(path) and os.listdir(path):
        raise FileExistsError(f"export directory {path} is not empty")
    users = trained.known_users
    factors = trained.retriever.factors(users)
    module = FactorisedRetriever(users, factors, trained.catalogue, trained.popularity, trained.seen)
    save_module(module, path, {"retrieve": module.retrieve})

    spec = trained.feature_spec
    popular = np.argsort(-trained.popularity, kind="stable")[:POPULAR_ITEMS]
    document = {
        "model_version": metadata["model_version"],
        "trained_on": list(metadata["trained_on"]),
        "evaluated_on": metadata["evaluated_on"],
        "metrics": metadata["metrics"],
        "model": trained.spec.to_dict(),
        "source": spec.source,
        "label": {"column": spec.label.column, "kind": spec.label.kind},
        "feature_spec": spec.to_dict(),
        "inputs": {"retrieve": dict(RETRIEVE_INPUTS)},
        "outputs": list(RETRIEVE_OUTPUTS),
        "popular_items": [
            [str(trained.catalogue[i]), float(trained.popularity[i])] for i in popular if trained.popularity[i] > 0
        ],
        "item_count": int(len(trained.catalogue)),
        "user_count": int(len(users)),
        "embedding_dim": int(factors.query_vectors.shape[1]),
    }
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, METADATA_FILE), "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, default=_json_default)

    test_users = np.unique(trained.test["user_id"].astype(str).to_numpy())
    checked = test_users[np.isin(test_users, users)][:PARITY_USERS]
    agreement = topk_agreement(load_retriever(path), trained, checked, min(PARITY_K, len(trained.catalogue)))
    return RetrieverExport(path=path, topk_agreement=agreement, users_checked=int(len(checked)))


class ExportedRetriever(SavedModelExport):
    """A SavedModel written by ``export_retriever``, called through its ``retrieve`` signature.

    Attributes:
        metadata: The parsed ``assets/reclake_model.json``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        if "retrieve" not in self._signatures:
            raise ValueError(f"{os.fspath(path)} has no retrieve signature; it has {sorted(self._signatures)}")
        self._retrieve = self._signatures["retrieve"]

    def retrieve(self, user_ids: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` items per user.

        Returns:
            ``(item_ids [B, k] str, scores [B, k] float32)``, best first (``""`` and
            ``-inf`` where a known user has fewer than ``k`` items left).

        Raises:
            ValueError: empty ``user_ids`` or ``k`` outside ``1 .. item_count``.
        """
        if len(user_ids) == 0:
            raise ValueError("user_ids is empty")
        if not 1 <= k <= self.item_count:
            raise ValueError(f"k must be between 1 and {self.item_count} (the catalogue), got {k}")
        outputs = self._retrieve(user_id=tf.constant([str(u) for u in user_ids]), k=tf.constant(k, tf.int32))
        return outputs["item_ids"].numpy().astype(str), outputs["scores"].numpy()


def load_retriever(path: str | os.PathLike[str]) -> ExportedRetriever:
    """Load a SavedModel written by ``export_retriever``."""
    return ExportedRetriever(path)


def topk_agreement(exported: ExportedRetriever, trained: TrainedRetriever, user_ids: Sequence[str], k: int) -> float:
    """Share of ``user_ids`` whose exported top ``k`` is a top ``k`` of the in-memory model.

    A user's exported list agrees when it holds no item twice and the in-memory scores
    (``trained.served_scores``; ``-inf`` for the padding ``""``) of its items equal, rank
    by rank, the in-memory top ``k`` scores, within ``SCORE_RTOL`` of the row's largest
    score: the same list, up to items whose scores differ by float32 rounding only
    (ties the float64 scores of the model happen to break).

    Raises:
        ValueError: empty ``user_ids`` or ``k`` out of range.
    """
    exported_ids, _ = exported.retrieve(list(user_ids), k)
    scores = trained.served_scores(user_ids)
    _, expected = trained.recommend(user_ids, k)
    columns = pd.Index(trained.catalogue).get_indexer(exported_ids.ravel()).reshape(exported_ids.shape)
    if ((columns < 0) & (exported_ids != PADDING_ID)).any():
        return 0.0
    got = np.where(columns >= 0, np.take_along_axis(scores, np.maximum(columns, 0), axis=1), -np.inf)
    finite = np.where(np.isfinite(expected), np.abs(expected), 0.0)
    tolerance = SCORE_RTOL * np.maximum(finite.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    same = (got == expected) | (np.abs(got - expected) <= tolerance)
    distinct = [len(set(row[row != PADDING_ID])) == int((row != PADDING_ID).sum()) for row in exported_ids]
    return float(np.mean(same.all(axis=1) & np.array(distinct)))

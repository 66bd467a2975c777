"""Candidate retrieval: a TFRS two-tower model trained on clicked impressions.

The query tower embeds ``user_id`` and ``user_segment``, the candidate tower ``item_id``
and ``category`` (``features.QUERY_FEATURES`` / ``CANDIDATE_FEATURES``); both project to
the same width and are scored by dot product. Training uses ``tfrs.tasks.Retrieval``
with in-batch negatives (other clicked items in the batch), removing accidental hits
where the same item appears twice in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from models.features import CANDIDATE_FEATURES, QUERY_FEATURES


@dataclass(frozen=True)
class RetrievalConfig:
    """Hyper-parameters of the two-tower model and its training loop.

    Attributes:
        embedding_dim: Width of the id/segment/category embeddings and of the tower output.
        learning_rate: Adagrad learning rate.
        batch_size: Training batch size; also the number of in-batch negatives + 1.
        epochs: Passes over the clicked impressions.
        vocabulary_min_count: Ids clicked fewer times share the OOV embedding.
        seed: Seed for weight initialisation and shuffling.
    """

    embedding_dim: int = 32
    learning_rate: float = 0.1
    batch_size: int = 512
    epochs: int = 5
    vocabulary_min_count: int = 2
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "batch_size", "epochs", "vocabulary_min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"RetrievalConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"RetrievalConfig.learning_rate must be > 0, got {self.learning_rate}")


class Tower(keras.Model):
    """Embeds string features and projects their concatenation to ``embedding_dim``.

    Args:
        vocabularies: Feature name -> vocabulary (values outside map to one OOV bucket).
        embedding_dim: Embedding and output width.

    Call input: dict with a ``[B]`` string tensor per vocabulary feature.
    Call output: ``[B, embedding_dim]`` float32.
    """

    def __init__(self, vocabularies: dict[str, tuple[str, ...]], embedding_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vocabularies = vocabularies
        self.embedding_dim = embedding_dim
        self.feature_names = tuple(vocabularies)
        self.lookups = {
            name: keras.layers.StringLookup(vocabulary=list(vocabulary), num_oov_indices=1, name=f"{name}_lookup")
            for name, vocabulary in vocabularies.items()
        }
        self.embeddings = {
            name: keras.layers.Embedding(lookup.vocabulary_size(), embedding_dim, name=f"{name}_embedding")
            for name, lookup in self.lookups.items()
        }
        self.projection = keras.layers.Dense(embedding_dim, name="projection")

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        embedded = [self.embeddings[name](self.lookups[name](inputs[name])) for name in self.feature_names]
        return self.projection(tf.concat(embedded, axis=1))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocabularies": {name: list(values) for name, values in self.vocabularies.items()},
            "embedding_dim": self.embedding_dim,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Tower:
        vocabularies = {name: tuple(values) for name, values in config["vocabularies"].items()}
        return cls(vocabularies, config["embedding_dim"], name=config["name"])


class TwoTowerModel(tfrs.Model):
    """Query tower + candidate tower, trained with ``tfrs.tasks.Retrieval``.

    Args:
        vocabularies: Vocabulary per query and candidate feature (``QUERY_FEATURES`` and
            ``CANDIDATE_FEATURES``), learned from the clicked training impressions.
        config: Architecture settings.
    """

    def __init__(self, vocabularies: dict[str, tuple[str, ...]], config: RetrievalConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.query_tower = Tower(
            {name: vocabularies[name] for name in QUERY_FEATURES}, config.embedding_dim, name="query_tower"
        )
        self.candidate_tower = Tower(
            {name: vocabularies[name] for name in CANDIDATE_FEATURES}, config.embedding_dim, name="candidate_tower"
        )
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.task(
            self.query_tower(features),
            self.candidate_tower(features),
            candidate_ids=features["item_id"],
            compute_metrics=False,
        )


def build_retrieval_model(vocabularies: dict[str, tuple[str, ...]], config: RetrievalConfig) -> TwoTowerModel:
    """Create and compile a two-tower model (Adagrad).

    Returns:
        A compiled, untrained ``TwoTowerModel``.
    """
    model = TwoTowerModel(vocabularies, config, name="two_tower")
    model.compile(optimizer=keras.optimizers.Adagrad(learning_rate=config.learning_rate))
    return model


def build_index(
    model: TwoTowerModel, candidates: dict[str, np.ndarray], k: int
) -> tfrs.layers.factorized_top_k.BruteForce:
    """Embed every candidate and load them into an exact (brute-force) top-k index.

    Args:
        model: A trained two-tower model.
        candidates: ``item_id`` and ``category`` arrays, one entry per candidate item
            (ids must be unique).
        k: Number of candidates the index returns per query; at most the number of items.

    Returns:
        A ``BruteForce`` layer mapping query embeddings ``[B, D]`` to
        ``(scores [B, k], item_ids [B, k])``, scores descending.

    Raises:
        ValueError: if there are no candidates, ids repeat, or ``k`` is out of range.
    """
    item_ids = np.asarray(candidates["item_id"], dtype=object)
    if item_ids.size == 0:
        raise ValueError("cannot build a retrieval index over zero candidates")
    if len(set(item_ids)) != item_ids.size:
        raise ValueError("candidate item_ids must be unique")
    if not 1 <= k <= item_ids.size:
        raise ValueError(f"k must be between 1 and the number of candidates ({item_ids.size}), got {k}")
    embeddings = model.candidate_tower({name: tf.constant(candidates[name]) for name in CANDIDATE_FEATURES})
    index = tfrs.layers.factorized_top_k.BruteForce(k=k, name="item_index")
    index.index(embeddings, identifiers=tf.constant(item_ids.astype(str)))
    return index

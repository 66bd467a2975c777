"""The in-graph preprocessing every ranker shares, built from fitted feature statistics.

``FeatureEncoder`` takes the raw model inputs of a feature spec (strings, int64s and
floats, one ``[B]`` tensor per feature) and applies each column's transform inside the
graph: vocabulary lookup with out-of-vocabulary buckets, hashing, quantile bucketizing
(all three then embedded), ``log1p`` and standardization, and cyclical sin/cos; plus
hashed crosses of column pairs. A SavedModel of any ranker therefore needs no
Python-side preprocessing, and serving cannot drift from training.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf
import tf_keras as keras

from models.inputs.features import FittedFeatures
from reclake.feature_spec import FeatureColumn

_CROSS_SEPARATOR = "\x1f"


def transformed_numeric(column: FeatureColumn, values: tf.Tensor) -> tf.Tensor:
    """In-graph twin of ``features.transform_numeric``: ``log1p(max(x, 0))`` or identity, float32."""
    values = tf.cast(values, tf.float32)
    return tf.math.log1p(tf.maximum(values, 0.0)) if column.log else values


def _as_string(values: tf.Tensor) -> tf.Tensor:
    return values if values.dtype == tf.string else tf.strings.as_string(values)


def vocabulary_lookup(column: FeatureColumn, features: FittedFeatures) -> keras.layers.Layer:
    """The lookup of an ``embedding`` column: its fitted vocabulary to rows, unseen values
    to the column's ``oov_buckets`` rows (``vocabulary_size()`` rows in all)."""
    layer = keras.layers.StringLookup if column.dtype == "string" else keras.layers.IntegerLookup
    return layer(
        vocabulary=list(features.vocabularies[column.name]),
        num_oov_indices=column.oov_buckets,
        name=f"{column.name}_lookup",
    )


class FeatureEncoder(keras.layers.Layer):
    """Raw features -> per-field embeddings and a numeric block.

    Args:
        features: the spec and the statistics fitted on the training window.
        embedding_dim: one width for every embedded field (factorization models need
            it); None: each column's own ``dim`` from the spec.

    Call output: ``[B, sum of embedding widths + numeric width]`` float32, the fields'
    embeddings flattened and concatenated with the numeric block.
    """

    def __init__(self, features: FittedFeatures, embedding_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.features = features
        self.embedding_dim = embedding_dim
        spec = features.spec
        self.lookups: dict[str, keras.layers.Layer] = {}
        self.embeddings: dict[str, keras.layers.Embedding] = {}
        self.normalized: list[FeatureColumn] = []
        self.cyclical: list[FeatureColumn] = []
        for column in spec.model_features:
            width = embedding_dim or column.dim
            if column.transform == "embedding":
                lookup = vocabulary_lookup(column, features)
                size = lookup.vocabulary_size()
            elif column.transform == "hashing":
                lookup = keras.layers.Hashing(num_bins=column.hash_buckets, name=f"{column.name}_hashing")
                size = column.hash_buckets
            elif column.transform == "bucketize":
                boundaries = list(features.boundaries[column.name])
                lookup = keras.layers.Discretization(bin_boundaries=boundaries, name=f"{column.name}_buckets")
                size = len(boundaries) + 1
            elif column.transform == "normalize":
                self.normalized.append(column)
                continue
            else:
                self.cyclical.append(column)
                continue
            self.lookups[column.name] = lookup
            self.embeddings[column.name] = keras.layers.Embedding(size, width, name=f"{column.name}_embedding")
        for cross in spec.crosses:
            self.lookups[cross.name] = keras.layers.Hashing(num_bins=cross.hash_buckets, name=f"{cross.name}_hashing")
            self.embeddings[cross.name] = keras.layers.Embedding(
                cross.hash_buckets, embedding_dim or cross.dim, name=f"{cross.name}_embedding"
            )
        self.normalization = None
        if self.normalized:
            self.normalization = keras.layers.Normalization(
                mean=[features.moments[c.name][0] for c in self.normalized],
                variance=[features.moments[c.name][1] for c in self.normalized],
                name="numeric_normalization",
            )

    @property
    def field_names(self) -> list[str]:
        """Embedded fields in output order: embedded columns, then crosses."""
        return list(self.lookups)

    def _field_input(self, name: str, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        crosses = {cross.name: cross for cross in self.features.spec.crosses}
        if name in crosses:
            first, second = crosses[name].columns
            return tf.strings.join([_as_string(inputs[first]), _as_string(inputs[second])], separator=_CROSS_SEPARATOR)
        column = self.features.spec.column(name) if name not in ("user_id", "item_id") else None
        if column is not None and column.transform == "bucketize":
            return tf.cast(inputs[name], tf.float32)
        return inputs[name]

    def field_embedding_list(self, inputs: dict[str, tf.Tensor]) -> list[tf.Tensor]:
        """One ``[B, width]`` embedding per field (``field_names`` order)."""
        return [self.embeddings[name](self.lookups[name](self._field_input(name, inputs))) for name in self.lookups]

    def field_embeddings(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """Embeddings stacked ``[B, fields, embedding_dim]``; needs one ``embedding_dim``."""
        if self.embedding_dim is None:
            raise ValueError("field_embeddings needs an encoder built with one embedding_dim")
        return tf.stack(self.field_embedding_list(inputs), axis=1)

    @property
    def numeric_width(self) -> int:
        return len(self.normalized) + 2 * len(self.cyclical)

    def numeric_features(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """Standardized numeric columns, then sin/cos of the cyclical ones: ``[B, numeric_width]``."""
        blocks = []
        if self.normalization is not None:
            columns = [transformed_numeric(c, inputs[c.name]) for c in self.normalized]
            blocks.append(self.normalization(tf.stack(columns, axis=1)))
        for column in self.cyclical:
            angle = tf.cast(inputs[column.name], tf.float32) * (2.0 * math.pi / float(column.period))
            phase = tf.stack([tf.sin(angle), tf.cos(angle)], axis=1)
            # A period the training window did not cover is fed as zeros (FittedFeatures.incomplete_cycles).
            blocks.append(phase * 0.0 if column.name in self.features.incomplete_cycles else phase)
        if not blocks:
            batch = tf.shape(next(iter(inputs.values())))[0]
            return tf.zeros([batch, 0], tf.float32)
        return tf.concat(blocks, axis=1)

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.concat([*self.field_embedding_list(inputs), self.numeric_features(inputs)], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "features": self.features.to_dict(), "embedding_dim": self.embedding_dim}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureEncoder:
        settings = dict(config)
        features = FittedFeatures.from_dict(settings.pop("features"))
        return cls(features, **settings)

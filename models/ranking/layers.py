"""Serialisable Keras layers the zoo models are built from.

Every layer here is registered with ``keras.utils.register_keras_serializable`` under
the ``reclake`` package and returns every constructor argument from ``get_config``, so
``keras.layers.deserialize(keras.layers.serialize(layer))`` rebuilds it. Layers that
``tensorflow-recommenders`` already provides (``tfrs.layers.dcn.Cross``) are used
directly by the models instead of being re-implemented here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras as keras

PACKAGE = "reclake"
CROSS_SEPARATOR = "&"
"""Joins the two tokens of a hashed feature cross: ``"user_segment=seg_1&category=cat_03"``."""


def _require_positive_ints(name: str, values: Sequence[int]) -> None:
    if any(int(v) < 1 for v in values):
        raise ValueError(f"{name} must all be >= 1, got {list(values)}")


@keras.utils.register_keras_serializable(package=PACKAGE)
class MLP(keras.layers.Layer):
    """A stack of dense layers with the same activation, each followed by dropout.

    Unlike ``tfrs.layers.blocks.MLP`` every layer (the last one too) is activated and
    the block is serialisable; task heads add their own ``Dense(1)`` logit on top.

    Args:
        units: Width of each dense layer, in order; empty means the identity.
        activation: Activation of every layer (a Keras activation name or callable).
        dropout: Dropout rate after every layer, in ``[0, 1)``; applied only in training.

    Input shape: ``[batch_size, input_dim]``.
    Output shape: ``[batch_size, units[-1]]`` (``[batch_size, input_dim]`` if ``units``
    is empty).

    Example:

        ```python
        tower = MLP([64, 32], dropout=0.1)
        hidden = tower(tf.ones([4, 10]), training=True)  # [4, 32]
        ```
    """

    def __init__(
        self, units: Sequence[int], activation: str | Any = "relu", dropout: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        _require_positive_ints("MLP units", units)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP dropout must be in [0, 1), got {dropout}")
        self.units = [int(u) for u in units]
        self.activation = keras.activations.get(activation)
        self.dropout = float(dropout)
        self.dense_layers = [
            keras.layers.Dense(width, activation=self.activation, name=f"dense_{i}")
            for i, width in enumerate(self.units)
        ]
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        x = inputs
        for dense in self.dense_layers:
            x = dense(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": list(self.units),
            "activation": keras.activations.serialize(self.activation),
            "dropout": self.dropout,
        }


@keras.utils.register_keras_serializable(package=PACKAGE)
class FactorizationMachine(keras.layers.Layer):
    """The pairwise interaction term of a factorisation machine.

    For field vectors ``v_1..v_n`` (each ``k`` wide) it returns
    ``sum_{i<j} <v_i, v_j>``, computed in ``O(k n)`` with Rendle's identity

        sum_{i<j} <v_i, v_j> = 1/2 * sum_f [ (sum_i v_{i,f})^2 - sum_i v_{i,f}^2 ]

    instead of the ``O(k n^2)`` double sum. The linear term and bias of a full FM are
    left to the model (a ``Dense(1)`` over the one-hot and numeric inputs).

    Input shape: ``[batch_size, num_fields, k]``.
    Output shape: ``[batch_size, 1]``.

    Example:

        ```python
        fields = tf.stack([user_embedding, item_embedding, device_embedding], axis=1)
        pairwise = FactorizationMachine()(fields)  # [B, 1]
        ```

    References:
        S. Rendle, "Factorization Machines", ICDM 2010, Lemma 3.1 (Eq. 4).
    """

    def build(self, input_shape: tf.TensorShape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"FactorizationMachine takes [batch, fields, k] inputs, got shape {input_shape}")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        square_of_sum = tf.square(tf.reduce_sum(inputs, axis=1))
        sum_of_squares = tf.reduce_sum(tf.square(inputs), axis=1)
        return 0.5 * tf.reduce_sum(square_of_sum - sum_of_squares, axis=1, keepdims=True)


@keras.utils.register_keras_serializable(package=PACKAGE)
class NumericFieldEmbedding(keras.layers.Layer):
    """Gives each real-valued feature a learned vector, scaled by the feature's value.

    This is how a factorisation machine treats a real-valued input ``x_i``: its field
    vector is ``x_i * v_i``, so numeric features take part in the pairwise term next to
    the categorical embeddings.

    Args:
        embedding_dim: Width ``k`` of every field vector.
        embeddings_initializer: Initialiser of the ``[num_features, k]`` vectors.

    Input shape: ``[batch_size, num_features]`` (standardised values).
    Output shape: ``[batch_size, num_features, embedding_dim]``.

    Example:

        ```python
        numeric_fields = NumericFieldEmbedding(8)(standardised)  # [B, 5] -> [B, 5, 8]
        ```

    References:
        S. Rendle, "Factorization Machines", ICDM 2010, Section III (real-valued ``x_i``).
    """

    def __init__(self, embedding_dim: int, embeddings_initializer: str | Any = "uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _require_positive_ints("NumericFieldEmbedding embedding_dim", [embedding_dim])
        self.embedding_dim = int(embedding_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape: tf.TensorShape) -> None:
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"NumericFieldEmbedding takes [batch, num_features] inputs, got shape {input_shape}")
        self.field_vectors = self.add_weight(
            name="field_vectors",
            shape=(int(input_shape[-1]), self.embedding_dim),
            initializer=self.embeddings_initializer,
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs[:, :, tf.newaxis] * tf.cast(self.field_vectors, inputs.dtype)[tf.newaxis]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "embedding_dim": self.embedding_dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }


@keras.utils.register_keras_serializable(package=PACKAGE)
class MixtureOfExperts(keras.layers.Layer):
    """Multi-gate mixture of experts: shared expert MLPs, one softmax gate per task.

    Each task ``t`` gets ``sum_e g_t(x)_e * expert_e(x)`` with
    ``g_t(x) = softmax(W_t x)``, so tasks share the experts but weight them differently
    per example (MMoE, Eq. 5 and 6).

    Args:
        num_experts: Number of expert networks.
        expert_units: Hidden layer widths of every expert (an ``MLP``).
        num_tasks: Number of gates, one per task.
        activation: Activation of the expert layers.
        dropout: Dropout rate inside the experts.

    Input shape: ``[batch_size, input_dim]``.
    Output shape: a list of ``num_tasks`` tensors ``[batch_size, expert_units[-1]]``.

    Example:

        ```python
        ctr_input, cvr_input = MixtureOfExperts(4, [32], num_tasks=2)(shared_features)
        ```

    References:
        J. Ma et al., "Modeling Task Relationships in Multi-task Learning with
        Multi-gate Mixture-of-Experts", KDD 2018.
    """

    def __init__(
        self,
        num_experts: int,
        expert_units: Sequence[int],
        num_tasks: int,
        activation: str | Any = "relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _require_positive_ints("MixtureOfExperts num_experts and num_tasks", [num_experts, num_tasks])
        if not expert_units:
            raise ValueError("MixtureOfExperts expert_units must name at least one layer width")
        self.num_experts = int(num_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.num_tasks = int(num_tasks)
        self.activation = keras.activations.get(activation)
        self.dropout = float(dropout)
        self.experts = [
            MLP(self.expert_units, self.activation, self.dropout, name=f"expert_{i}") for i in range(self.num_experts)
        ]
        self.gates = [
            keras.layers.Dense(self.num_experts, activation="softmax", name=f"gate_{t}") for t in range(self.num_tasks)
        ]

    def gate_weights(self, inputs: tf.Tensor) -> tf.Tensor:
        """Each task's weights over the experts: ``[batch_size, num_tasks, num_experts]``, rows sum to 1."""
        return tf.stack([gate(inputs) for gate in self.gates], axis=1)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> list[tf.Tensor]:
        experts = tf.stack([expert(inputs, training=training) for expert in self.experts], axis=1)  # [B, E, D]
        weights = tf.cast(self.gate_weights(inputs), experts.dtype)  # [B, T, E]
        mixed = tf.einsum("bte,bed->btd", weights, experts)
        return tf.unstack(mixed, num=self.num_tasks, axis=1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "expert_units": list(self.expert_units),
            "num_tasks": self.num_tasks,
            "activation": keras.activations.serialize(self.activation),
            "dropout": self.dropout,
        }


@keras.utils.register_keras_serializable(package=PACKAGE)
class HashedFeatureCrosses(keras.layers.Layer):
    """Hashes feature values and pairwise crosses of them into ``num_bins`` buckets.

    Each feature value becomes the token ``"<name>=<value>"`` (so equal values of
    different features hash apart) and each configured pair ``(a, b)`` the token
    ``"<a>=<value_a>&<b>=<value_b>"``; ``keras.layers.Hashing`` (FarmHash64, stable
    across processes) maps every token to a bucket. With one weight per bucket this is
    the hashed logistic regression of large-scale CTR systems: no vocabulary, unseen
    values and crosses still get a (possibly shared) bucket.

    Args:
        features: Names of the features hashed on their own.
        crosses: Pairs of feature names hashed as a cross.
        num_bins: Number of hash buckets.
        salt: Optional hashing salt (see ``keras.layers.Hashing``).

    Input shape: dict of feature name -> ``[batch_size]`` string tensor, holding every
    name in ``features`` and ``crosses``.
    Output shape: ``[batch_size, len(features) + len(crosses)]`` int64 bucket ids.

    Example:

        ```python
        hashing = HashedFeatureCrosses(["device"], [("device", "category")], num_bins=2**18)
        buckets = hashing({"device": tf.constant(["mobile"]), "category": tf.constant(["cat_01"])})
        ```

    References:
        K. Weinberger et al., "Feature Hashing for Large Scale Multitask Learning",
        ICML 2009; H. B. McMahan et al., "Ad Click Prediction: a View from the
        Trenches", KDD 2013.
    """

    def __init__(
        self,
        features: Sequence[str],
        crosses: Sequence[Sequence[str]],
        num_bins: int,
        salt: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _require_positive_ints("HashedFeatureCrosses num_bins", [num_bins])
        self.features = [str(name) for name in features]
        self.crosses = [[str(a), str(b)] for a, b in (self._checked_pair(pair) for pair in crosses)]
        if not self.features and not self.crosses:
            raise ValueError("HashedFeatureCrosses needs at least one feature or cross")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"HashedFeatureCrosses features repeat a name: {self.features}")
        self.num_bins = int(num_bins)
        self.salt = None if salt is None else int(salt)
        self.hashing = keras.layers.Hashing(num_bins=self.num_bins, salt=self.salt, name="hashing")

    @staticmethod
    def _checked_pair(pair: Sequence[str]) -> tuple[str, str]:
        if isinstance(pair, str) or len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"a feature cross must be a pair of two different feature names, got {pair!r}")
        return pair[0], pair[1]

    @property
    def input_names(self) -> list[str]:
        """Every feature name the layer reads, in first-use order."""
        names = list(self.features)
        for pair in self.crosses:
            names.extend(name for name in pair if name not in names)
        return names

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(f"HashedFeatureCrosses inputs lack feature(s) {missing}")
        tokens = {name: tf.strings.join([f"{name}=", inputs[name]]) for name in self.input_names}
        columns = [tokens[name] for name in self.features]
        columns += [tf.strings.join([tokens[a], tokens[b]], separator=CROSS_SEPARATOR) for a, b in self.crosses]
        return self.hashing(tf.stack(columns, axis=1))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "features": list(self.features),
            "crosses": [list(pair) for pair in self.crosses],
            "num_bins": self.num_bins,
            "salt": self.salt,
        }

"""Single-task rankers: FM, DeepFM, DCN-v2 (stacked / parallel), hashed LR, biased MF.

All take the raw model features of a feature spec and return one value ``[B]``: pCTR
for a binary label, the predicted target for a regression label (a rating). The
embedding models share ``models.inputs.encoder.FeatureEncoder`` for their field embeddings and
numeric block; the pipeline serves any of them through ``models.export.savedmodel``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from models.inputs.encoder import FeatureEncoder, transformed_numeric, vocabulary_lookup
from models.inputs.features import FittedFeatures
from models.ranking.base import FeatureModel
from models.ranking.layers import MLP, PACKAGE, FactorizationMachine, HashedFeatureCrosses, NumericFieldEmbedding

DCN_STRUCTURES = ("stacked", "parallel")
NUMERIC_BUCKET_RANGE = 3.0
"""Hashed LR buckets numeric features on [-3, 3] standard deviations around the mean;
values beyond fall into the two outermost buckets."""


def _check_embedding_dim(embedding_dim: int) -> int:
    if int(embedding_dim) < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    return int(embedding_dim)


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return float(dropout)


@keras.utils.register_keras_serializable(package=PACKAGE)
class FM(FeatureModel):
    """Factorisation machine over the ranking features: linear term + pairwise term.

    ``logit = w0 + <w, x> + sum_{i<j} <v_i, v_j>`` where ``x`` is the one-hot
    categorical fields and the standardised numeric features, ``v_i`` the categorical
    field embeddings of ``RankingFeatureEncoder`` and, for a numeric feature ``x_i``,
    ``x_i * u_i`` with a learned vector ``u_i`` (``NumericFieldEmbedding``). The
    pairwise term uses the ``O(k n)`` identity (``FactorizationMachine``).

    Args:
        fitted: The feature spec and the statistics fitted on the training frame.
        embedding_dim: Width ``k`` of every field vector.

    Call input: dict of raw ranking features, ``[B]`` each. Call output: pCTR ``[B]``.

    Example:

        ```python
        model = FM(FittedFeatures.fit(spec, train), embedding_dim=8)
        pctr = model(feature_arrays(train.head(4)))  # [4]
        ```

    References:
        S. Rendle, "Factorization Machines", ICDM 2010.
    """

    def __init__(self, fitted: FittedFeatures, embedding_dim: int = 8, **kwargs: Any) -> None:
        super().__init__(fitted, **kwargs)
        self.embedding_dim = _check_embedding_dim(embedding_dim)
        self.encoder = FeatureEncoder(fitted, self.embedding_dim, name="encoder")
        self.numeric_fields = NumericFieldEmbedding(self.embedding_dim, name="numeric_fields")
        self.pairwise = FactorizationMachine(name="pairwise")
        # First-order weights: a 1-wide "embedding" per categorical value + the numeric block.
        self.linear_encoder = FeatureEncoder(fitted, 1, name="linear_encoder")
        self.linear = keras.layers.Dense(1, kernel_initializer="zeros", name="linear")

    def fm_parts(self, inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Shared pieces of FM and DeepFM.

        Returns:
            ``(fields [B, n_fields, k], dense [B, n_categorical * k + n_numeric],
            fm_logit [B, 1])``: every field vector, the flat encoder output the deep part
            of DeepFM reads, and the linear + pairwise FM logit.
        """
        categorical = self.encoder.field_embeddings(inputs)
        numeric = self.encoder.numeric_features(inputs)
        fields = tf.concat([categorical, self.numeric_fields(numeric)], axis=1)
        dense = tf.concat([tf.reshape(categorical, [-1, categorical.shape[1] * categorical.shape[2]]), numeric], axis=1)
        fm_logit = self.linear(self.linear_encoder(inputs)) + self.pairwise(fields)
        return fields, dense, fm_logit

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        _, _, fm_logit = self.fm_parts(inputs)
        return self.single_output(fm_logit)

    def hyperparameters(self) -> dict[str, Any]:
        return {"embedding_dim": self.embedding_dim}


@keras.utils.register_keras_serializable(package=PACKAGE)
class DeepFM(FM):
    """DeepFM: a factorisation machine and an MLP on the same field embeddings.

    ``logit = fm_logit + mlp_logit`` where the MLP reads the concatenated categorical
    embeddings and standardised numeric features, the very embeddings the FM's
    pairwise term uses (no separate wide input, no pre-training).

    Args:
        fitted: The feature spec and the statistics fitted on the training frame.
        embedding_dim: Width of every field vector.
        deep_units: Hidden ReLU layer widths of the deep part.
        dropout: Dropout rate after each hidden layer.

    Call input: dict of raw ranking features, ``[B]`` each. Call output: pCTR ``[B]``.

    Example:

        ```python
        model = DeepFM(fitted, embedding_dim=8, deep_units=[64, 32])
        ```

    References:
        H. Guo et al., "DeepFM: A Factorization-Machine based Neural Network for CTR
        Prediction", IJCAI 2017.
    """

    def __init__(
        self,
        fitted: FittedFeatures,
        embedding_dim: int = 8,
        deep_units: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(fitted, embedding_dim, **kwargs)
        if not deep_units:
            raise ValueError("DeepFM deep_units must name at least one layer width (without it, use FM)")
        self.deep_units = tuple(int(u) for u in deep_units)
        self.dropout = _check_dropout(dropout)
        self.deep = MLP(self.deep_units, dropout=self.dropout, name="deep")
        self.deep_logit = keras.layers.Dense(1, kernel_initializer="zeros", name="deep_logit")

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        _, dense, fm_logit = self.fm_parts(inputs)
        return self.single_output(fm_logit + self.deep_logit(self.deep(dense, training=training)))

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "deep_units": list(self.deep_units), "dropout": self.dropout}


@keras.utils.register_keras_serializable(package=PACKAGE)
class DCNv2(FeatureModel):
    """DCN-v2: ``tfrs`` Cross layers and a ReLU MLP over the encoded features.

    ``x0`` is the ``RankingFeatureEncoder`` output. Each cross layer computes
    ``x_{l+1} = x0 * (W x_l + b) + x_l`` (``W = U V`` of rank ``projection_dim`` when
    set). The *stacked* structure feeds the cross network's output into the MLP; the
    *parallel* structure runs both on ``x0`` and concatenates their outputs. A
    ``Dense(1)`` on top gives the logit.

    Args:
        fitted: The feature spec and the statistics fitted on the training frame.
        embedding_dim: Width of every categorical embedding.
        cross_layers: Number of cross layers (0 allowed for the stacked structure: a
            plain MLP over the embeddings).
        projection_dim: Rank of the low-rank cross kernel ``W = U V``; ``None`` for a
            full-rank ``d x d`` kernel.
        diag_scale: Added to the diagonal of ``W`` (stabilises low-rank crosses).
        deep_units: Hidden ReLU layer widths of the MLP.
        structure: ``"stacked"`` or ``"parallel"``.
        dropout: Dropout rate after each MLP layer.

    Call input: dict of raw ranking features, ``[B]`` each. Call output: pCTR ``[B]``.

    Example:

        ```python
        model = DCNv2(fitted, cross_layers=3, projection_dim=16, structure="parallel")
        ```

    References:
        R. Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for
        Web-scale Learning to Rank Systems", WWW 2021 (Eq. 1, 2; Figure 2).
    """

    def __init__(
        self,
        fitted: FittedFeatures,
        embedding_dim: int = 8,
        cross_layers: int = 3,
        projection_dim: int | None = None,
        diag_scale: float = 0.0,
        deep_units: Sequence[int] = (64, 32),
        structure: str = "stacked",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(fitted, **kwargs)
        if structure not in DCN_STRUCTURES:
            raise ValueError(f"DCNv2 structure must be one of {list(DCN_STRUCTURES)}, got {structure!r}")
        if cross_layers < 0:
            raise ValueError(f"DCNv2 cross_layers must be >= 0, got {cross_layers}")
        if projection_dim is not None and projection_dim < 1:
            raise ValueError(f"DCNv2 projection_dim must be >= 1 or null (full rank), got {projection_dim}")
        if structure == "parallel" and (cross_layers == 0 or not deep_units):
            raise ValueError("a parallel DCNv2 needs cross_layers >= 1 and at least one deep_units entry")
        self.embedding_dim = _check_embedding_dim(embedding_dim)
        self.cross_layers = int(cross_layers)
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.diag_scale = float(diag_scale)
        self.deep_units = tuple(int(u) for u in deep_units)
        self.structure = structure
        self.dropout = _check_dropout(dropout)
        self.encoder = FeatureEncoder(fitted, self.embedding_dim, name="encoder")
        self.crosses = [
            tfrs.layers.dcn.Cross(projection_dim=self.projection_dim, diag_scale=self.diag_scale, name=f"cross_{i}")
            for i in range(self.cross_layers)
        ]
        self.deep = MLP(self.deep_units, dropout=self.dropout, name="deep")
        self.logit = keras.layers.Dense(1, kernel_initializer="zeros", name="logit")

    def _cross_network(self, x0: tf.Tensor) -> tf.Tensor:
        x = x0
        for cross in self.crosses:
            x = cross(x0, x)
        return x

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        x0 = self.encoder(inputs)
        if self.structure == "stacked":
            hidden = self.deep(self._cross_network(x0), training=training)
        else:
            hidden = tf.concat([self._cross_network(x0), self.deep(x0, training=training)], axis=1)
        return self.single_output(self.logit(hidden))

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "embedding_dim": self.embedding_dim,
            "cross_layers": self.cross_layers,
            "projection_dim": self.projection_dim,
            "diag_scale": self.diag_scale,
            "deep_units": list(self.deep_units),
            "structure": self.structure,
            "dropout": self.dropout,
        }


@keras.utils.register_keras_serializable(package=PACKAGE)
class HashedLogisticRegression(FeatureModel):
    """Logistic regression on hashed features and hashed pairwise feature crosses.

    Every configured feature value and every configured pair of values is hashed
    (``HashedFeatureCrosses``) into one of ``num_bins`` buckets with one weight each:
    ``logit = b + sum of the bucket weights``. Numeric features are first cut into
    buckets ``numeric_bucket_width`` standard deviations wide (after their ``log1p``)
    using the training moments. The weights are an embedding table of width 1, so each
    step touches only the buckets of its batch: train it with a sparse-friendly
    optimiser (FTRL-Proximal or Adagrad).

    Args:
        fitted: Supplies the numeric moments and bucket boundaries (vocabularies are
            unused: hashing needs none).
        num_bins: Number of hash buckets (weights).
        features: Model features hashed on their own; empty: every model feature.
        crosses: Pairs of model features hashed as crosses; None: the feature spec's crosses.
        numeric_bucket_width: Bucket width for numeric features, in standard deviations.

    Call input: dict of raw ranking features, ``[B]`` each. Call output: pCTR ``[B]``.

    Example:

        ```python
        model = HashedLogisticRegression(
            vocabularies, num_bins=2**18, features=RANKING_FEATURES,
            crosses=[("user_segment", "category"), ("slot_position", "device")],
        )
        ```

    References:
        H. B. McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD 2013;
        O. Chapelle et al., "Simple and Scalable Response Prediction for Display
        Advertising", ACM TIST 2014 (hashed quadratic features).
    """

    def __init__(
        self,
        fitted: FittedFeatures,
        num_bins: int = 2**20,
        features: Sequence[str] = (),
        crosses: Sequence[Sequence[str]] | None = None,
        numeric_bucket_width: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(fitted, **kwargs)
        known = fitted.spec.model_feature_names
        features = tuple(features) or known
        crosses = [list(c.columns) for c in fitted.spec.crosses] if crosses is None else crosses
        unknown = sorted({str(n) for n in [*features, *(n for pair in crosses for n in pair)]} - set(known))
        if unknown:
            raise ValueError(f"HashedLogisticRegression: unknown feature(s) {unknown}; choose from {list(known)}")
        self.columns = {c.name: c for c in fitted.spec.model_features}
        if not 0.0 < numeric_bucket_width <= 2 * NUMERIC_BUCKET_RANGE:
            raise ValueError(
                f"numeric_bucket_width must be in (0, {2 * NUMERIC_BUCKET_RANGE}] standard deviations, "
                f"got {numeric_bucket_width}"
            )
        self.numeric_bucket_width = float(numeric_bucket_width)
        self.hashing = HashedFeatureCrosses(features, crosses, num_bins, name="hashing")
        used = set(self.hashing.input_names)
        self.bucketizers = {
            name: keras.layers.Discretization(
                bin_boundaries=self._bucket_boundaries(*fitted.moments[name])
                if name in fitted.moments
                else list(fitted.boundaries[name]),
                name=f"{name}_buckets",
            )
            for name in used
            if name in fitted.moments or name in fitted.boundaries
        }
        self.bucket_weights = keras.layers.Embedding(
            self.hashing.num_bins, 1, embeddings_initializer="zeros", name="bucket_weights"
        )
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")

    def _bucket_boundaries(self, mean: float, variance: float) -> list[float]:
        std = float(np.sqrt(variance)) if variance > 0 else 1.0
        steps = np.arange(-NUMERIC_BUCKET_RANGE, NUMERIC_BUCKET_RANGE + 1e-9, self.numeric_bucket_width)
        return [float(mean + std * step) for step in steps]

    def bucket_ids(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """The hash buckets of every feature and cross: int64 ``[B, len(features) + len(crosses)]``."""
        strings = {}
        for name in self.hashing.input_names:
            column = self.columns[name]
            if column.dtype == "string":
                strings[name] = tf.convert_to_tensor(inputs[name], dtype=tf.string)
            elif name in self.bucketizers:
                values = transformed_numeric(column, inputs[name]) if name in self.fitted.moments else inputs[name]
                bucket = self.bucketizers[name](tf.cast(values, tf.float32))
                strings[name] = tf.strings.as_string(tf.cast(bucket, tf.int64))
            else:
                strings[name] = tf.strings.as_string(tf.cast(inputs[name], tf.int64))
        return self.hashing(strings)

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        logit = tf.reduce_sum(self.bucket_weights(self.bucket_ids(inputs)), axis=1) + self.bias  # [B, 1]
        return self.single_output(logit)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "num_bins": self.hashing.num_bins,
            "features": list(self.hashing.features),
            "crosses": [list(pair) for pair in self.hashing.crosses],
            "numeric_bucket_width": self.numeric_bucket_width,
        }


@keras.utils.register_keras_serializable(package=PACKAGE)
class BiasedMF(FeatureModel):
    """Biased matrix factorisation over the ids: ``mu + b_u + b_i + p_u . q_i``.

    The classic rating baseline as a zoo ranker: it reads only ``user_id`` and
    ``item_id`` (every other feature is ignored), ``mu`` is the output offset (the
    label's prior), and the ids' vocabularies come from the training window, unseen ids
    sharing the out-of-vocabulary rows the spec gives them. With a binary label the sum
    is a logit (logistic MF). ``l2`` penalises the squared norms of the batch's factor
    vectors and biases (mean over the batch), the SGD form of the ridge penalty of
    ``models.retrieval.baselines.BiasedMF``'s ALS.

    Args:
        fitted: The feature spec (it must have user and item ids) and its statistics.
        factors: Width of ``p_u`` and ``q_i``.
        l2: Penalty weight on ``|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2``.

    Call input: dict of raw features (only the ids are read), ``[B]`` each. Call output:
    the predicted label ``[B]`` (a rating, or a probability for a binary label).

    References:
        Y. Koren, R. Bell, C. Volinsky, "Matrix Factorization Techniques for Recommender
        Systems", IEEE Computer 2009.
    """

    needs_ids = True

    def __init__(self, fitted: FittedFeatures, factors: int = 16, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(fitted, **kwargs)
        if not fitted.spec.has_ids:
            raise ValueError(f"biased MF needs user and item ids; the {fitted.spec.source} spec has none")
        self.factors = _check_embedding_dim(factors)
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)
        self.lookups, self.vectors, self.biases = {}, {}, {}
        for column in fitted.spec.id_features:
            lookup = vocabulary_lookup(column, fitted)
            rows = lookup.vocabulary_size()
            self.lookups[column.name] = lookup
            self.vectors[column.name] = keras.layers.Embedding(
                rows,
                self.factors,
                embeddings_initializer=keras.initializers.RandomNormal(0.0, 0.05),
                name=f"{column.name}_factors",
            )
            self.biases[column.name] = keras.layers.Embedding(
                rows, 1, embeddings_initializer="zeros", name=f"{column.name}_bias"
            )

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        rows = {name: lookup(inputs[name]) for name, lookup in self.lookups.items()}
        user, item = (self.vectors[name](rows[name]) for name in ("user_id", "item_id"))
        user_bias, item_bias = (self.biases[name](rows[name]) for name in ("user_id", "item_id"))
        if training and self.l2 > 0:
            squares = [tf.reduce_sum(tf.square(t), axis=1) for t in (user, item, user_bias, item_bias)]
            self.add_loss(self.l2 * tf.reduce_mean(tf.add_n(squares)))
        logit = user_bias + item_bias + tf.reduce_sum(user * item, axis=1, keepdims=True)
        return self.single_output(logit)

    def hyperparameters(self) -> dict[str, Any]:
        return {"factors": self.factors, "l2": self.l2}

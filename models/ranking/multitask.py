"""Multi-task ad rankers over all impressions: ESMM and MMoE.

Both predict click and post-click conversion from the raw ranking features and return
``{"pctr", "pcvr", "pctcvr"}`` (each ``[B]``) with ``pctcvr = pctr * pcvr``. They are
trained on every impression with two losses (``base.MULTITASK_LABELS``): ``pctr``
against ``clicked`` and ``pctcvr`` against ``converted``. ``pcvr`` never gets a loss
of its own, so the conversion tower is never fitted on clicked impressions only (the
sample selection bias ESMM removes) yet still estimates ``P(convert | click)`` for every
impression.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import tensorflow as tf
import tf_keras as keras

from models.inputs.encoder import FeatureEncoder
from models.inputs.features import FittedFeatures
from models.ranking.base import FeatureModel, probability
from models.ranking.layers import MLP, PACKAGE, MixtureOfExperts


def _check_common(embedding_dim: int, dropout: float) -> None:
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _task_outputs(pctr: tf.Tensor, pcvr: tf.Tensor) -> dict[str, tf.Tensor]:
    return {"pctr": pctr, "pcvr": pcvr, "pctcvr": pctr * pcvr}


@keras.utils.register_keras_serializable(package=PACKAGE)
class ESMM(FeatureModel):
    """Entire Space Multi-task Model: a CTR tower and a CVR tower on shared embeddings.

    ``pctr = sigmoid(ctr_tower(x))``, ``pcvr = sigmoid(cvr_tower(x))`` and
    ``pctcvr = pctr * pcvr``, where ``x`` is the shared ``RankingFeatureEncoder``
    output. Losses are taken on ``pctr`` (click) and ``pctcvr`` (click and convert)
    over the entire impression space; ``pcvr`` is the by-product ``P(convert | click)``.

    Args:
        fitted: The feature spec and the statistics fitted on the training frame.
        embedding_dim: Width of every (shared) categorical embedding.
        ctr_units: Hidden ReLU layer widths of the CTR tower.
        cvr_units: Hidden ReLU layer widths of the CVR tower.
        dropout: Dropout rate after each tower layer.

    Call input: dict of raw ranking features, ``[B]`` each.
    Call output: ``{"pctr", "pcvr", "pctcvr"}``, float32 ``[B]`` each.

    Example:

        ```python
        model = ESMM(fitted, embedding_dim=8, ctr_units=[64, 32], cvr_units=[64, 32])
        outputs = model(feature_arrays(frame.head(4)))  # outputs["pctcvr"]: [4]
        ```

    References:
        X. Ma et al., "Entire Space Multi-Task Model: An Effective Approach for
        Estimating Post-Click Conversion Rate", SIGIR 2018.
    """

    multitask: ClassVar[bool] = True

    def __init__(
        self,
        fitted: FittedFeatures,
        embedding_dim: int = 8,
        ctr_units: Sequence[int] = (64, 32),
        cvr_units: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(fitted, **kwargs)
        _check_common(embedding_dim, dropout)
        self.embedding_dim = int(embedding_dim)
        self.ctr_units = tuple(int(u) for u in ctr_units)
        self.cvr_units = tuple(int(u) for u in cvr_units)
        self.dropout = float(dropout)
        self.encoder = FeatureEncoder(fitted, self.embedding_dim, name="encoder")
        self.ctr_tower = MLP(self.ctr_units, dropout=self.dropout, name="ctr_tower")
        self.ctr_logit = keras.layers.Dense(1, kernel_initializer="zeros", name="ctr_logit")
        self.cvr_tower = MLP(self.cvr_units, dropout=self.dropout, name="cvr_tower")
        self.cvr_logit = keras.layers.Dense(1, kernel_initializer="zeros", name="cvr_logit")

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        x = self.encoder(inputs)
        pctr = probability(self.ctr_logit(self.ctr_tower(x, training=training)))
        pcvr = probability(self.cvr_logit(self.cvr_tower(x, training=training)))
        return _task_outputs(pctr, pcvr)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "embedding_dim": self.embedding_dim,
            "ctr_units": list(self.ctr_units),
            "cvr_units": list(self.cvr_units),
            "dropout": self.dropout,
        }


@keras.utils.register_keras_serializable(package=PACKAGE)
class MMoE(FeatureModel):
    """Multi-gate Mixture-of-Experts with a CTR task and a CVR task.

    The shared ``RankingFeatureEncoder`` output feeds ``num_experts`` expert MLPs; each
    task mixes them with its own softmax gate (``MixtureOfExperts``) and ends in a task
    tower. The two tasks are CTR and CVR, combined as in ESMM: ``pctcvr = pctr * pcvr``
    and the losses are on ``pctr`` and ``pctcvr`` over all impressions. (The other
    choice, a CTCVR task with ``pcvr = pctcvr / pctr`` clipped to [0, 1], can give
    ``pctcvr > pctr`` and an unbounded ratio; the product keeps every output a
    probability.)

    Args:
        fitted: The feature spec and the statistics fitted on the training frame.
        embedding_dim: Width of every (shared) categorical embedding.
        num_experts: Number of shared experts.
        expert_units: Hidden ReLU layer widths of every expert.
        tower_units: Hidden ReLU layer widths of each task tower (may be empty).
        dropout: Dropout rate inside experts and towers.

    Call input: dict of raw ranking features, ``[B]`` each.
    Call output: ``{"pctr", "pcvr", "pctcvr"}``, float32 ``[B]`` each.

    Example:

        ```python
        model = MMoE(fitted, num_experts=4, expert_units=[64], tower_units=[32])
        ```

    References:
        J. Ma et al., "Modeling Task Relationships in Multi-task Learning with
        Multi-gate Mixture-of-Experts", KDD 2018.
    """

    multitask: ClassVar[bool] = True

    def __init__(
        self,
        fitted: FittedFeatures,
        embedding_dim: int = 8,
        num_experts: int = 4,
        expert_units: Sequence[int] = (64,),
        tower_units: Sequence[int] = (32,),
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(fitted, **kwargs)
        _check_common(embedding_dim, dropout)
        self.embedding_dim = int(embedding_dim)
        self.tower_units = tuple(int(u) for u in tower_units)
        self.dropout = float(dropout)
        self.encoder = FeatureEncoder(fitted, self.embedding_dim, name="encoder")
        self.experts = MixtureOfExperts(num_experts, expert_units, num_tasks=2, dropout=self.dropout, name="experts")
        self.ctr_tower = MLP(self.tower_units, dropout=self.dropout, name="ctr_tower")
        self.ctr_logit = keras.layers.Dense(1, kernel_initializer="zeros", name="ctr_logit")
        self.cvr_tower = MLP(self.tower_units, dropout=self.dropout, name="cvr_tower")
        self.cvr_logit = keras.layers.Dense(1, kernel_initializer="zeros", name="cvr_logit")

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        ctr_input, cvr_input = self.experts(self.encoder(inputs), training=training)
        pctr = probability(self.ctr_logit(self.ctr_tower(ctr_input, training=training)))
        pcvr = probability(self.cvr_logit(self.cvr_tower(cvr_input, training=training)))
        return _task_outputs(pctr, pcvr)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "embedding_dim": self.embedding_dim,
            "num_experts": self.experts.num_experts,
            "expert_units": list(self.experts.expert_units),
            "tower_units": list(self.tower_units),
            "dropout": self.dropout,
        }

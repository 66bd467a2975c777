"""What every zoo model shares: raw-feature input, vocabulary-carrying config, outputs.

A zoo model takes the raw model features of a feature spec (the dict that
``features.feature_arrays`` returns) and does its own preprocessing
(``models.inputs.encoder.FeatureEncoder``), so a trained model can be exported without
Python-side feature code. Single-task rankers return one value ``[B]``: a probability
for a binary label, the (transformed) target for a regression label; multi-task
rankers return ``{"pctr", "pcvr", "pctcvr"}``, each ``[B]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import tensorflow as tf
import tf_keras as keras

from models.inputs.features import FittedFeatures

MULTITASK_LABELS: dict[str, str] = {"pctr": "clicked", "pctcvr": "converted"}
"""Multi-task output -> the ``training_examples`` label column its loss is taken against.
``pcvr`` has no loss of its own: it is trained only through ``pctcvr = pctr * pcvr``."""


def probability(logit: tf.Tensor) -> tf.Tensor:
    """``sigmoid`` of a ``[B, 1]`` logit as float32 ``[B]`` (float32 even under mixed precision)."""
    return tf.squeeze(tf.sigmoid(tf.cast(logit, tf.float32)), axis=1)


class FeatureModel(keras.Model):
    """Base of the zoo models: raw feature columns in, probabilities out.

    The config of a model is its fitted features (``FittedFeatures.to_dict``: the spec
    and its statistics) plus the keyword arguments of its constructor, so
    ``cls.from_config(model.get_config())`` rebuilds the same architecture and
    ``set_weights`` makes it the same model.

    Args:
        fitted: The feature spec and the statistics fitted on the training frame.
        **kwargs: Passed to ``keras.Model`` (e.g. ``name``).

    Attributes:
        multitask: Whether ``call`` returns the multi-task dict (``MULTITASK_LABELS``
            outputs plus ``pcvr``) instead of one probability.
        needs_ids: Whether the model only works on sources with user and item ids.
    """

    multitask: ClassVar[bool] = False
    needs_ids: ClassVar[bool] = False

    def __init__(self, fitted: FittedFeatures, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fitted = fitted
        # Added to a single-task head's output: the training target's mean (regression)
        # or base-rate logit (binary). With the output layers' kernels starting at zero,
        # training starts from the prior instead of from noise around 0.
        self.output_offset = self.add_weight(name="output_offset", shape=(), initializer="zeros", trainable=False)

    def set_output_offset(self, targets: Any) -> None:
        """Start a single-task head at the prior of ``targets``: their mean for a
        regression label, the logit of their rate for a binary one."""
        mean = float(np.mean(targets))
        if not self.regression:
            rate = min(max(mean, 1e-4), 1 - 1e-4)
            mean = float(np.log(rate / (1 - rate)))
        self.output_offset.assign(mean)

    @property
    def regression(self) -> bool:
        """Whether the model predicts a regression label (e.g. a rating) rather than a probability."""
        return self.fitted.spec.label.kind == "regression"

    def single_output(self, logit: tf.Tensor) -> tf.Tensor:
        """A single-task head's ``[B, 1]`` output as ``[B]`` float32: ``sigmoid`` for a
        binary label, the value itself for a regression label."""
        logit = tf.cast(logit, tf.float32) + self.output_offset
        if self.regression:
            return tf.squeeze(logit, axis=1)
        return probability(logit)

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments (besides ``fitted`` and ``name``), JSON-compatible."""
        raise NotImplementedError(f"{type(self).__name__} must define hyperparameters()")

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "fitted": self.fitted.to_dict(), **self.hyperparameters()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureModel:
        settings = dict(config)
        fitted = FittedFeatures.from_dict(settings.pop("fitted"))
        return cls(fitted, **settings)

"""What every zoo model shares: raw-feature input, vocabulary-carrying config, outputs.

A zoo model takes the raw ranking feature columns of ``models.features`` (the dict that
``features.feature_arrays`` returns) and does its own preprocessing, exactly like
``models.ranking.DCNRanker``, so a trained model can be exported without Python-side
feature code. Single-task rankers return one probability ``[B]``; multi-task rankers
return ``{"pctr", "pcvr", "pctcvr"}``, each ``[B]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import tensorflow as tf
import tf_keras as keras

from models.features import FeatureVocabularies

MULTITASK_LABELS: dict[str, str] = {"pctr": "clicked", "pctcvr": "converted"}
"""Multi-task output -> the ``training_examples`` label column its loss is taken against.
``pcvr`` has no loss of its own: it is trained only through ``pctcvr = pctr * pcvr``."""


def probability(logit: tf.Tensor) -> tf.Tensor:
    """``sigmoid`` of a ``[B, 1]`` logit as float32 ``[B]`` (float32 even under mixed precision)."""
    return tf.squeeze(tf.sigmoid(tf.cast(logit, tf.float32)), axis=1)


class FeatureModel(keras.Model):
    """Base of the zoo models: raw feature columns in, probabilities out.

    The config of a model is its vocabularies (``FeatureVocabularies.to_dict``) plus the
    keyword arguments of its constructor, so ``cls.from_config(model.get_config())``
    rebuilds the same architecture and ``set_weights`` makes it the same model.

    Args:
        vocabularies: Vocabularies and numeric moments learned from the training frame.
        **kwargs: Passed to ``keras.Model`` (e.g. ``name``).

    Attributes:
        multitask: Whether ``call`` returns the multi-task dict (``MULTITASK_LABELS``
            outputs plus ``pcvr``) instead of one probability.
    """

    multitask: ClassVar[bool] = False

    def __init__(self, vocabularies: FeatureVocabularies, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocabularies = vocabularies

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments (besides ``vocabularies`` and ``name``), JSON-compatible."""
        raise NotImplementedError(f"{type(self).__name__} must define hyperparameters()")

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "vocabularies": self.vocabularies.to_dict(), **self.hyperparameters()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureModel:
        settings = dict(config)
        vocabularies = FeatureVocabularies.from_dict(settings.pop("vocabularies"))
        return cls(vocabularies, **settings)

"""Reclake model code: feature definitions, retrieval and ranking models, training,
evaluation and export. Plain library code (no Dagster).

tensorflow-recommenders is built on Keras 2, so this package routes ``tf.keras`` to
``tf_keras`` by setting ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported. Import
``models`` (or any of its submodules) before anything else imports TensorFlow; if
TensorFlow was already imported with Keras 3 active, importing this package fails with
an error that says how to fix it.
"""

import os
import sys

from reclake.runtime import configure_process

_LEGACY_KERAS_VALUES = ("1", "true", "True")

configure_process()


def _require_legacy_keras() -> None:
    """Raise RuntimeError unless ``tf.keras`` is (or will be) Keras 2 (``tf_keras``)."""
    setting = os.environ["TF_USE_LEGACY_KERAS"]
    if setting not in _LEGACY_KERAS_VALUES:
        raise RuntimeError(
            f"TF_USE_LEGACY_KERAS={setting!r} selects Keras 3, but tensorflow-recommenders "
            "needs Keras 2: unset it or set TF_USE_LEGACY_KERAS=1."
        )
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None:
        return  # TensorFlow will read the variable when it is first imported.
    model_class = tensorflow.keras.Model
    if not model_class.__module__.startswith("tf_keras."):
        raise RuntimeError(
            "TensorFlow was imported with Keras 3 active (tf.keras.Model is "
            f"{model_class.__module__}.{model_class.__name__}), but tensorflow-recommenders "
            "needs Keras 2. Set TF_USE_LEGACY_KERAS=1 in the environment, or import "
            "`models` before anything imports tensorflow."
        )


_require_legacy_keras()

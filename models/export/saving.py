"""Writing a SavedModel of a ``tf.Module`` that holds Keras models, without Keras's extras."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

import tensorflow as tf


@contextlib.contextmanager
def _without_keras_layer_traces() -> Iterator[None]:
    """Keras's option that ``model.save(save_traces=False)`` sets, for ``tf.saved_model.save``.

    By default every Keras layer inside the module traces its ``call`` once more so that
    ``keras.models.load_model`` could rebuild it; the SavedModels here are loaded with
    ``tf.saved_model.load`` and called through their own signatures only, which carry
    their own graphs, so those traces are dead weight (a quarter of the export time).
    Without the option's module (another Keras), nothing changes.
    """
    try:
        from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope
    except ImportError:  # pragma: no cover - depends on the installed Keras
        yield
        return
    with keras_option_scope(save_traces=False, in_tf_saved_model_scope=True):
        yield


def save_module(
    module: tf.Module,
    path: str | os.PathLike[str],
    signatures: Mapping[str, tf.types.experimental.PolymorphicFunction],
) -> None:
    """``tf.saved_model.save(module, path, signatures)`` without Keras's per-layer traces.

    ``signatures`` are ``tf.function`` s with an input signature, not yet traced: the
    save traces each once. Saving is part of a trace's cache key, so a concrete function
    taken before the save (``fn.get_concrete_function()``) was traced a second time in it:
    a fifth of a ranker-and-retrieval export.
    """
    with _without_keras_layer_traces():
        tf.saved_model.save(module, os.fspath(path), signatures=dict(signatures))

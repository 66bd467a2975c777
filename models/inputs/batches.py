"""Batches of in-memory arrays as a ``tf.data.Dataset``, shuffled without copying rows,
and Keras models built for such batches before ``fit``."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs


def array_batches(arrays: Any, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Batches of ``batch_size`` rows of ``arrays`` (a nest, e.g. a dict of equal-length
    arrays or a ``(features, labels)`` tuple), in a new random order on every pass when
    ``seed`` is given, in row order otherwise.

    Only the row numbers are shuffled (one int64 per row); each batch is then gathered
    from the arrays in one op. Shuffling the rows themselves (``from_tensor_slices(...)
    .shuffle(n)``) moves every row through the shuffle buffer one at a time: on 250k
    rows of ~30 features that took longer than the training step. The order is the
    same one that shuffle would give with the same seed.
    """
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    rows = int(tf.nest.flatten(tensors)[0].shape[0])
    order = tf.data.Dataset.range(rows)
    if seed is not None:
        order = order.shuffle(rows, seed=seed, reshuffle_each_iteration=True)
    return (
        order.batch(batch_size)
        .map(
            lambda picked: tf.nest.map_structure(lambda t: tf.gather(t, picked), tensors),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def build_for_fit(model: Any, dataset: tf.data.Dataset) -> None:
    """Create a compiled Keras ``model``'s variables and its optimizer's before
    ``model.fit(dataset)``, from a two-row batch of zeros shaped like ``dataset``'s
    elements (the dataset itself is not read, so its shuffle order is untouched).

    ``fit`` traces its train step once when the step creates no variable. When the
    first step creates them (layers built lazily, the optimizer's slots), TensorFlow
    traces it a second time for a function that creates none: that second trace cost
    about a second per fit of a small ranker here (more with the cores busy), a quarter
    of a test's or a small day's whole fit.

    Call it inside the strategy scope the model was built in. Elements that are not
    plain tensors (ragged or sparse), and strategies of more than one replica (whose
    metric variables cannot be updated outside a replica), leave the model as it is.

    Args:
        model: A compiled Keras model; a TensorFlow Recommenders model (``tfrs.Model``,
            which has no ``call``) is run through its ``compute_loss``.
        dataset: What ``fit`` will get: elements ``(features, labels)`` or ``features``.
    """
    specs = dataset.element_spec
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return
    if not all(isinstance(spec, tf.TensorSpec) for spec in tf.nest.flatten(specs)):
        return
    batch = tf.nest.map_structure(
        lambda spec: tf.zeros([2, *(1 if size is None else size for size in spec.shape[1:])], spec.dtype), specs
    )
    if isinstance(model, tfrs.models.Model):
        model.compute_loss(batch, training=True)
    else:
        features, labels = batch if isinstance(batch, tuple) else (batch, None)
        predictions = model(features, training=False)
        if labels is not None:  # the compiled loss and metrics create their trackers on first use
            model.compute_loss(features, labels, predictions)
            model.compute_metrics(features, labels, predictions, None)
            model.reset_metrics()
    optimizer = model.optimizer
    # Keras 2's legacy optimizers (FTRL here) create their slots in ``_create_all_weights``.
    build = getattr(optimizer, "build", None) or getattr(optimizer, "_create_all_weights", None)
    if build is not None:
        build(model.trainable_variables)

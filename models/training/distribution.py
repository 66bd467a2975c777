"""The one place that decides how a zoo model is distributed and in which precision.

- ``TF_CONFIG`` set: ``MultiWorkerMirroredStrategy`` (synchronous data parallelism
  across the workers it lists, and across each worker's GPUs);
- else GPUs visible: ``MirroredStrategy`` over the local GPUs;
- else: the default strategy (one device, no distribution).

``MultiWorkerMirroredStrategy`` configures TensorFlow's collective ops, which must
happen before the process runs its first TensorFlow op, and it can be created only once
per process; ``choose_strategy`` therefore caches its answer. Call it first thing in a
worker process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator

import tensorflow as tf
import tf_keras as keras

TF_CONFIG = "TF_CONFIG"
MIXED_PRECISION_POLICY = "mixed_float16"

logger = logging.getLogger(__name__)


def parse_tf_config(tf_config: str) -> list[str]:
    """Check a ``TF_CONFIG`` value and return its worker addresses.

    Args:
        tf_config: The JSON cluster spec, e.g.
            ``{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 0}}``.

    Returns:
        The ``cluster.worker`` addresses.

    Raises:
        ValueError: if it is not JSON, lacks ``cluster.worker`` or ``task``, or the task
            index is outside the worker list.
    """
    try:
        parsed = json.loads(tf_config)
        workers = list(parsed["cluster"]["worker"])
        task = parsed["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{TF_CONFIG} must be JSON like "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}; '
            f"could not read it ({error!r}): {tf_config!r}"
        ) from error
    if task_type == "worker" and not 0 <= task_index < len(workers):
        raise ValueError(f"{TF_CONFIG} task index {task_index} is outside its {len(workers)} worker(s)")
    return workers


def gpus_visible() -> bool:
    """Whether TensorFlow sees at least one GPU."""
    return bool(tf.config.list_physical_devices("GPU"))


@functools.cache
def choose_strategy() -> tf.distribute.Strategy:
    """Pick the ``tf.distribute`` strategy for this process (cached: one per process).

    Returns:
        ``MultiWorkerMirroredStrategy`` when the ``TF_CONFIG`` environment variable is
        set, ``MirroredStrategy`` when GPUs are visible, the default strategy otherwise.

    Raises:
        ValueError: if ``TF_CONFIG`` is set but is not a cluster spec with workers and
            a task.
    """
    tf_config = os.environ.get(TF_CONFIG)
    if tf_config:
        workers = parse_tf_config(tf_config)
        logger.info("TF_CONFIG lists %d worker(s): using MultiWorkerMirroredStrategy", len(workers))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if gpus_visible():
        logger.info("GPUs visible: using MirroredStrategy")
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process should write shared artefacts (checkpoints, config files).

    True for single-process strategies and for the chief of a multi-worker cluster.
    """
    return bool(strategy.extended.should_checkpoint)


@contextlib.contextmanager
def mixed_precision_policy(enabled: bool) -> Iterator[None]:
    """Build models under Keras' ``mixed_float16`` policy when ``enabled`` (GPU only).

    Layers take their dtype policy when they are created, so wrap model construction
    (not training) in this context; the previous global policy is restored on exit.
    Compiling under the policy wraps the optimiser in a loss-scale optimiser.

    Args:
        enabled: Whether to use mixed precision; ``False`` leaves the policy alone.

    Raises:
        ValueError: if ``enabled`` and no GPU is visible (float16 is slower than
            float32 on CPUs).
    """
    if not enabled:
        yield
        return
    if not gpus_visible():
        raise ValueError("mixed_precision: true needs a GPU, and TensorFlow sees none; set it to false")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICY)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def describe_training(strategy: tf.distribute.Strategy) -> dict[str, object]:
    """Where a model trains, for metadata: the devices TensorFlow sees (``gpus``: their
    names, empty on CPU; ``device``: ``GPU`` or ``CPU``), the strategy's class and its
    number of replicas in sync, and the global Keras precision policy at call time."""
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            names.append(str(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)))
        except (ValueError, RuntimeError):
            names.append(gpu.name)
    return {
        "device": "GPU" if gpus else "CPU",
        "gpus": names,
        "cpus": len(tf.config.list_physical_devices("CPU")),
        "strategy": type(strategy).__name__,
        "replicas": int(strategy.num_replicas_in_sync),
        "precision_policy": keras.mixed_precision.global_policy().name,
    }

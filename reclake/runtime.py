"""The process flags every Reclake process needs, set in one place before heavy imports.

Each entry point (the Dagster code location, ``make run``, the BentoML service, pytest,
the benchmarks) calls ``configure_process()`` first, before anything imports TensorFlow,
BentoML or Great Expectations. Those libraries read their flags from the environment once,
at import, so this is the one module that writes the environment; settings are read by
``reclake.settings`` and passed on explicitly from there.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PROCESS_FLAGS: dict[str, str] = {
    # tensorflow-recommenders is Keras-2 only: tf.keras must resolve to tf_keras.
    "TF_USE_LEGACY_KERAS": "1",
    # No usage reports from the tools Reclake runs.
    "BENTOML_DO_NOT_TRACK": "True",
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "False",
}
"""Flags a Reclake process runs with; a value already in the environment is kept."""

QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "2"}
"""TensorFlow's C++ start-up lines (CPU features, no CUDA) read as errors on a CPU
machine; hidden unless ``RECLAKE_TF_LOG=1``."""


def configure_process(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the process flags in ``environ`` (``os.environ`` by default) where unset.

    Idempotent, cheap and import-free: call it at the top of an entry point.
    """
    env = os.environ if environ is None else environ
    for name, value in PROCESS_FLAGS.items():
        env.setdefault(name, value)
    if env.get("RECLAKE_TF_LOG") != "1":
        for name, value in QUIET_TENSORFLOW.items():
            env.setdefault(name, value)

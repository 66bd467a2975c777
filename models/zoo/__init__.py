"""The ranking and multi-task model zoo, built and trained from YAML configs.

- ``rankers``: single-task pCTR models (FM, DeepFM, DCN-v2 stacked / parallel, hashed
  logistic regression) over the raw ranking features of ``models.features``;
- ``multitask``: ESMM and MMoE, predicting ``{"pctr", "pcvr", "pctcvr"}`` from every
  impression;
- ``layers``: the serialisable Keras layers they are made of;
- ``config`` / ``registry``: ``build_model`` / ``train_model`` from a config under
  ``models/configs/`` chosen by its ``type:``;
- ``distribution``: which ``tf.distribute`` strategy and precision training uses;
- ``examples``: ``training_examples`` frames from the synthetic generator, for
  benchmarks and tests.

Typical use::

    from models.zoo import train_model, evaluate_model

    result = train_model("deepfm", train_frame, validation_frame)
    metrics = evaluate_model(result.model, test_frame)
"""

from models.zoo.config import ModelSpec, TrainingConfig, load_spec
from models.zoo.registry import (
    MODEL_TYPES,
    ZooTrainingResult,
    build_model,
    evaluate_model,
    load_checkpoint,
    predict_tasks,
    train_model,
)

__all__ = [
    "MODEL_TYPES",
    "ModelSpec",
    "TrainingConfig",
    "ZooTrainingResult",
    "build_model",
    "evaluate_model",
    "load_checkpoint",
    "load_spec",
    "predict_tasks",
    "train_model",
]

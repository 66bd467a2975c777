"""Config-driven entry point: build, train, predict with and evaluate any zoo model.

``build_model`` turns a model config (``config.load_spec``) and vocabularies into a
compiled Keras model; ``train_model`` does the rest from a ``training_examples`` frame:
vocabularies, distribution strategy (``distribution.choose_strategy``), early stopping
on a validation frame and optional per-epoch checkpoints.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras
from scipy.optimize import minimize_scalar

from models import evaluation
from models.inputs.batches import array_batches, build_for_fit
from models.inputs.features import FittedFeatures, feature_arrays, label_array, require_columns
from models.inputs.stream import ParquetWindow, peak_rss_mb
from models.ranking.base import MULTITASK_LABELS, FeatureModel
from models.ranking.multitask import ESMM, MMoE
from models.ranking.rankers import FM, BiasedMF, DCNv2, DeepFM, HashedLogisticRegression
from models.training.config import ModelSpec, load_spec
from models.training.distribution import choose_strategy, describe_training, is_chief, mixed_precision_policy
from reclake.feature_spec import FeatureSpec

MODEL_TYPES: dict[str, type[FeatureModel]] = {
    "fm": FM,
    "deepfm": DeepFM,
    "dcn_v2": DCNv2,
    "hashed_lr": HashedLogisticRegression,
    "biased_mf": BiasedMF,
    "esmm": ESMM,
    "mmoe": MMoE,
}
CHECKPOINT_PATTERN = "epoch-{epoch:03d}"
"""Weights checkpoint name per epoch inside ``checkpoint_dir`` (TensorFlow checkpoint format)."""
MODEL_CONFIG_FILE = "model_config.json"
"""Written next to the checkpoints: ``{"spec", "model"}`` (the model's ``get_config``)."""
EpochHook = Callable[[int, int, dict[str, float]], None]
"""Progress after each training epoch: (1-based epoch, epochs configured, that epoch's metrics)."""


TRUE_PCTR_COLUMN = "true_pctr"
"""Optional column of the generator's true click probability (synthetic data only)."""


@dataclass
class TrainingResult:
    """A trained model and what happened while training it.

    Attributes:
        model: The trained Keras model.
        history: Metric name -> one value per epoch (e.g. ``loss``, ``auc``).
        examples: Number of training rows used.
        seconds: Wall-clock training time.
    """

    model: keras.Model
    history: dict[str, list[float]]
    examples: int
    seconds: float

    @property
    def examples_per_second(self) -> float:
        epochs = max((len(v) for v in self.history.values()), default=1)
        return self.examples * epochs / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ZooTrainingResult(TrainingResult):
    """``models.training.two_tower.TrainingResult`` plus what the config-driven run decided.

    Attributes:
        spec: The model config that was trained.
        best_epoch: 1-based epoch whose weights the returned model holds when early
            stopping ran on a validation frame; ``None`` otherwise (last epoch).
        calibration_shift: Logit shift ``training.recalibrate`` added on the validation
            frame; ``None`` when it did not run.
    """

    spec: ModelSpec
    best_epoch: int | None
    calibration_shift: float | None = None
    environment: dict[str, Any] | None = None
    """Where and how it trained: ``distribution.describe_training`` (devices, strategy,
    replicas, precision policy) plus ``streamed`` (read from Parquet in bounded memory)
    and ``peak_rss_mb`` of the process after training."""


def model_class(spec: ModelSpec) -> type[FeatureModel]:
    """The model class a spec's ``type`` names.

    Raises:
        ValueError: naming the known types, if ``type`` is unknown.
    """
    if spec.type not in MODEL_TYPES:
        raise ValueError(f"{spec.describe()}: unknown model type {spec.type!r}; known: {sorted(MODEL_TYPES)}")
    return MODEL_TYPES[spec.type]


def _check_spec(spec: ModelSpec) -> type[FeatureModel]:
    cls = model_class(spec)
    parameters = inspect.signature(cls.__init__).parameters
    allowed = [
        name for name, p in parameters.items() if name not in ("self", "fitted") and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    unknown = sorted(set(spec.model) - set(allowed))
    if unknown:
        raise ValueError(f"{spec.describe()}: 'model' has unknown key(s) {unknown}; {cls.__name__} takes {allowed}")
    if cls.multitask and spec.training.label is not None:
        raise ValueError(
            f"{spec.describe()}: training.label applies to single-task models; {cls.__name__} is multi-task"
        )
    if spec.training.loss_weights is not None:
        if not cls.multitask:
            raise ValueError(f"{spec.describe()}: training.loss_weights applies to multi-task models only")
        unknown_outputs = sorted(set(spec.training.loss_weights) - set(MULTITASK_LABELS))
        if unknown_outputs:
            raise ValueError(
                f"{spec.describe()}: training.loss_weights keys {unknown_outputs} are not outputs with a loss "
                f"{sorted(MULTITASK_LABELS)}"
            )
    return cls


def build_model(config: str | os.PathLike[str] | Mapping[str, Any] | ModelSpec, fitted: FittedFeatures) -> FeatureModel:
    """Create and compile the model a config describes, for a feature spec.

    Single-task models get binary cross-entropy and an ``auc`` metric for a binary
    label, mean squared error and an ``rmse`` metric for a regression label; multi-task
    models one binary cross-entropy per ``base.MULTITASK_LABELS`` output (weighted by
    ``training.loss_weights``) and an ``auc`` metric on each. Call it inside a
    distribution strategy's ``scope()`` to distribute the model.

    Args:
        config: A bundled config name (``"fm"``), a YAML path, a config dict or a spec.
        fitted: The feature spec and the statistics fitted on the training frame.

    Returns:
        A compiled, untrained model: raw model features in; one value ``[B]`` out, or
        ``{"pctr", "pcvr", "pctcvr"}`` for multi-task models.

    Raises:
        ValueError: on an unknown type or key, an invalid value, or a multi-task model
            for a source without click and conversion labels.
    """
    spec = load_spec(config)
    cls = _check_spec(spec)
    if cls.multitask and not set(MULTITASK_LABELS.values()) <= set(fitted.spec.label_columns):
        raise ValueError(
            f"{spec.describe()}: a multi-task model needs the labels {sorted(MULTITASK_LABELS.values())}; "
            f"the {fitted.spec.source} spec has {list(fitted.spec.label_columns)}"
        )
    try:
        model = cls(fitted, name=spec.type, **spec.model)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{spec.describe()}: {error}") from error
    optimizer = spec.training.build_optimizer()
    if cls.multitask:
        weights = {output: 1.0 for output in MULTITASK_LABELS}
        weights.update(spec.training.loss_weights or {})
        model.compile(
            optimizer=optimizer,
            loss={output: keras.losses.BinaryCrossentropy() for output in MULTITASK_LABELS},
            loss_weights=weights,
            metrics={output: [keras.metrics.AUC(name="auc")] for output in MULTITASK_LABELS},
        )
    elif model.regression and (spec.training.label in (None, fitted.spec.label.column)):
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.MeanSquaredError(),
            metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
        )
    else:
        model.compile(
            optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(), metrics=[keras.metrics.AUC(name="auc")]
        )
    return model


def training_labels(frame: pd.DataFrame, spec: ModelSpec, fitted: FittedFeatures) -> np.ndarray | dict[str, np.ndarray]:
    """The labels a model config is fitted on, for a feature spec.

    Returns:
        Single-task models: ``training.label`` (default: the spec's label) as float32,
        0/1 for binary labels, the clipped / log-transformed target for the spec's
        regression label. Multi-task models: output name -> 0/1 label array
        (``base.MULTITASK_LABELS``).

    Raises:
        ValueError: if a label column is missing, is not a label of the spec, holds a bad
            value, or (multi-task) a conversion has no click.
    """
    if not model_class(spec).multitask:
        column = spec.training.label or fitted.spec.label.column
        if column not in fitted.spec.label_columns:
            raise ValueError(
                f"{spec.describe()}: training.label {column!r} is not a label of the {fitted.spec.source} spec "
                f"{list(fitted.spec.label_columns)}"
            )
        labels = label_array(frame, fitted.spec, column)
        return fitted.training_target(labels) if column == fitted.spec.label.column else labels
    require_columns(frame, list(MULTITASK_LABELS.values()), "labelled frame")
    labels = {output: label_array(frame, fitted.spec, column) for output, column in MULTITASK_LABELS.items()}
    if (labels["pctcvr"] > labels["pctr"]).any():
        raise ValueError("labelled frame has converted = 1 on impressions with clicked = 0")
    return labels


def _dataset(features: dict[str, np.ndarray], labels: Any, batch_size: int, seed: int | None) -> tf.data.Dataset:
    options = tf.data.Options()
    # In-memory data has no files to shard by: each worker takes its share of the batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return array_batches((features, labels), batch_size, seed).with_options(options)


def _checkpoint_callbacks(
    checkpoint_dir: str | os.PathLike[str], spec: ModelSpec, model: FeatureModel, strategy: tf.distribute.Strategy
) -> list[keras.callbacks.Callback]:
    directory = Path(checkpoint_dir)
    if is_chief(strategy):
        directory.mkdir(parents=True, exist_ok=True)
        document = {"spec": spec.to_dict(), "model": model.get_config()}
        (directory / MODEL_CONFIG_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")
    return [keras.callbacks.ModelCheckpoint(str(directory / CHECKPOINT_PATTERN), save_weights_only=True)]


def train_model(
    config: str | os.PathLike[str] | Mapping[str, Any] | ModelSpec,
    train: pd.DataFrame | ParquetWindow,
    validation: pd.DataFrame | None = None,
    *,
    feature_spec: FeatureSpec,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    verbose: int = 0,
    on_epoch_end: EpochHook | None = None,
    mixed_precision: bool | None = None,
) -> ZooTrainingResult:
    """Train the model a config describes on ``training_examples`` rows of a source.

    The feature statistics (vocabularies, bucket boundaries, moments) are fitted on
    ``train`` for ``feature_spec``; the model is built in ``strategy``'s scope. With
    a ``validation`` frame, Keras ``EarlyStopping`` watches the validation loss with
    ``training.early_stopping_patience`` and restores the best epoch's weights.

    Args:
        config: A bundled config name (``"deepfm"``), a YAML path, a config dict or a spec.
        train: Rows with every model feature of ``feature_spec`` and the label column(s):
            a frame, or a ``models.inputs.stream.ParquetWindow`` (a window larger than
            memory: statistics fitted by SQL over its files, batches streamed from them
            through a bounded shuffle buffer, a new row-group order each epoch).
        validation: Optional held-out rows of the same shape, for early stopping.
        feature_spec: The source's feature spec.
        checkpoint_dir: If given, weights are saved after every epoch as
            ``epoch-NNN`` TensorFlow checkpoints, next to ``model_config.json``
            (``{"spec", "model"}``); ``load_checkpoint`` restores one.
        strategy: Distribution strategy; ``distribution.choose_strategy()`` when ``None``.
        verbose: Keras ``fit`` verbosity.
        on_epoch_end: called after each epoch with ``(epoch, epochs, logs)``: the 1-based
            epoch, the configured number and that epoch's metrics (progress for a console).
        mixed_precision: overrides the config's ``training.mixed_precision`` when given
            (the pipeline's setting); ``"auto"``-like callers pass ``gpus_visible()``.

    Returns:
        The trained model, per-epoch history (``loss``, ``auc`` or per-output metrics,
        ``val_*`` with validation), rows, seconds, the spec and the best epoch.

    Raises:
        ValueError: on an empty frame, a missing column, null features, bad labels, or
            an invalid config.
    """
    strategy = strategy or choose_strategy()  # first: multi-worker set-up precedes other TF ops
    spec = load_spec(config)
    _check_spec(spec)
    if train.empty:
        raise ValueError("cannot train a model on an empty training frame")
    if validation is not None and validation.empty:
        raise ValueError("the validation frame is empty; pass None to train without early stopping")
    settings = spec.training
    precision = settings.mixed_precision if mixed_precision is None else mixed_precision
    streamed = isinstance(train, ParquetWindow)
    keras.utils.set_random_seed(settings.seed)  # first: the datasets' shuffles take the global seed
    if streamed:
        fitted = train.fit(feature_spec)
        offset_target = None
        if not model_class(spec).multitask:
            column = settings.label or feature_spec.label.column
            offset_target = [train.mean(column)]
            if column == feature_spec.label.column and (fitted.label_clip is not None or feature_spec.label.log):
                # The prior of a transformed regression target: its mean over one bounded pass.
                total, rows = 0.0, 0
                for _, target in train.batches(feature_spec, _labels_of(spec, fitted), 65_536, None):
                    total, rows = total + float(np.sum(target, dtype=np.float64)), rows + len(target)
                offset_target = [total / max(rows, 1)]
        train_data = train.dataset(
            feature_spec,
            _labels_of(spec, fitted),
            settings.batch_size,
            settings.seed,
            list(MULTITASK_LABELS) if model_class(spec).multitask else None,
        )
    else:
        fitted = FittedFeatures.fit(feature_spec, train)
        labels = training_labels(train, spec, fitted)
        offset_target = labels
        train_data = _dataset(feature_arrays(train, feature_spec), labels, settings.batch_size, settings.seed)
    with strategy.scope(), mixed_precision_policy(precision):
        model = build_model(spec, fitted)
        if not model.multitask:
            model.set_output_offset(offset_target)
        build_for_fit(model, train_data)  # one trace of the train step instead of two
        policy = keras.mixed_precision.global_policy().name

    callbacks: list[keras.callbacks.Callback] = []
    validation_data = None
    early_stopping = None
    if validation is not None:
        validation_data = _dataset(
            feature_arrays(validation, feature_spec),
            training_labels(validation, spec, fitted),
            settings.batch_size,
            None,
        )
        if settings.early_stopping_patience is not None:
            early_stopping = keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=settings.early_stopping_patience, restore_best_weights=True
            )
            callbacks.append(early_stopping)
    if checkpoint_dir is not None:
        callbacks.extend(_checkpoint_callbacks(checkpoint_dir, spec, model, strategy))
    if on_epoch_end is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch_end(
                    epoch + 1, settings.epochs, {name: float(value) for name, value in (logs or {}).items()}
                )
            )
        )

    started = time.perf_counter()
    history = model.fit(
        train_data,
        epochs=settings.epochs,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=verbose,
    )
    shift = None
    if settings.recalibrate and validation is not None and not model.multitask and not model.regression:
        shift = recalibrate_intercept(
            model, feature_arrays(validation, feature_spec), training_labels(validation, spec, fitted)
        )
    return ZooTrainingResult(
        model=model,
        history={name: [float(v) for v in values] for name, values in history.history.items()},
        examples=len(train),
        seconds=time.perf_counter() - started,
        spec=spec,
        best_epoch=None if early_stopping is None else early_stopping.best_epoch + 1,
        calibration_shift=shift,
        environment={
            **describe_training(strategy),
            "precision_policy": policy,
            "streamed": streamed,
            "peak_rss_mb": peak_rss_mb(),
        },
    )


def _labels_of(spec: ModelSpec, fitted: FittedFeatures) -> Callable[[pd.DataFrame], Any]:
    """A chunk of rows -> its training labels (what ``ParquetWindow.batches`` converts with)."""
    return lambda chunk: training_labels(chunk, spec, fitted)


def recalibrate_intercept(model: FeatureModel, features: dict[str, np.ndarray], labels: np.ndarray) -> float:
    """Shift a single-task binary model's output logit so that its logloss on these rows is lowest.

    The best constant shift ``d`` of the logits solves ``mean(sigmoid(logit + d)) =
    mean(label)``: afterwards the model's mean prediction on the rows equals their rate.
    The shift is added to the model's ``output_offset`` (exported with it).

    Returns:
        The shift applied, in logits.
    """
    probabilities = np.clip(predict_values(model, features).astype(np.float64), 1e-7, 1 - 1e-7)
    logits = np.log(probabilities / (1 - probabilities))
    labels = np.asarray(labels, dtype=np.float64)
    shift = float(
        minimize_scalar(
            lambda d: evaluation.logloss(labels, 1 / (1 + np.exp(-(logits + d)))),
            bounds=(-5.0, 5.0),
            method="bounded",
            options={"xatol": 1e-6},
        ).x
    )
    model.output_offset.assign_add(shift)
    return shift


def load_checkpoint(checkpoint_dir: str | os.PathLike[str], epoch: int) -> FeatureModel:
    """Rebuild a model from a ``train_model`` checkpoint directory, with one epoch's weights.

    Args:
        checkpoint_dir: The ``checkpoint_dir`` given to ``train_model``.
        epoch: 1-based epoch whose ``epoch-NNN`` checkpoint to load (e.g. ``best_epoch``).

    Returns:
        The model, uncompiled, for inference; its weights are restored when it is first
        called (Keras' deferred restoration of subclassed models).

    Raises:
        FileNotFoundError: if ``model_config.json`` or the epoch's checkpoint is missing.
    """
    directory = Path(checkpoint_dir)
    config_file = directory / MODEL_CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{directory} is not a zoo checkpoint directory: {MODEL_CONFIG_FILE} is missing")
    checkpoint = directory / CHECKPOINT_PATTERN.format(epoch=epoch)
    if not Path(f"{checkpoint}.index").is_file():
        available = sorted(p.name.removesuffix(".index") for p in directory.glob("epoch-*.index"))
        raise FileNotFoundError(f"no checkpoint {checkpoint.name} in {directory}; available: {available}")
    document = json.loads(config_file.read_text(encoding="utf-8"))
    model = model_class(load_spec(document["spec"])).from_config(document["model"])
    model.load_weights(str(checkpoint)).expect_partial()  # the optimiser state is not restored
    return model


def predict_values(model: FeatureModel, features: dict[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    """A single-task model's output per row, in label units (a probability, or a
    regression label with the spec's log transform undone), float32 ``[N]``."""
    rows = len(next(iter(features.values())))
    if rows == 0:
        return np.zeros(0, dtype=np.float32)
    dataset = array_batches(features, batch_size)
    values = np.concatenate([model(batch, training=False).numpy() for batch in dataset])
    if model.regression and model.fitted.spec.label.log:
        values = np.expm1(values)
    return values.astype(np.float32)


def predict_tasks(
    model: FeatureModel, features: dict[str, np.ndarray], batch_size: int = 8192
) -> dict[str, np.ndarray]:
    """Score feature arrays with any zoo model.

    Returns:
        ``{"pctr", "pcvr", "pctcvr"}`` float32 arrays for multi-task models; for
        single-task models ``{"pctr"}`` for a binary label (pCVR for a model trained
        with ``label: converted``) or ``{"prediction"}`` for a regression label.
    """
    if not model.multitask:
        return {"prediction" if model.regression else "pctr": predict_values(model, features, batch_size)}
    rows = len(next(iter(features.values())))
    if rows == 0:
        return {output: np.zeros(0, dtype=np.float32) for output in ("pctr", "pcvr", "pctcvr")}
    dataset = array_batches(features, batch_size)
    batches = [model(batch, training=False) for batch in dataset]
    return {output: np.concatenate([b[output].numpy() for b in batches]) for output in batches[0]}


def evaluate_model(model: FeatureModel, test: pd.DataFrame, label: str | None = None) -> dict[str, Any]:
    """Offline metrics of a zoo model on held-out ``training_examples`` rows.

    Single-task binary models: ``auc``, ``logloss``, ``normalized_entropy``,
    ``calibration`` (mean prediction over observed rate), ``examples``, and
    ``bayes_logloss`` when a ``true_pctr`` column is present (synthetic data).
    Regression models: ``rmse``, ``mae``, ``examples``. Multi-task models: ``ctr_auc``,
    ``ctr_logloss``, ``ctcvr_auc``, ``ctcvr_logloss`` over every row, ``cvr_auc`` over the
    clicked rows (``None`` if they hold a single class) and ``examples``.

    Args:
        model: a trained zoo model.
        test: held-out rows with the model's features and labels.
        label: the label a single-task model was trained on; default the spec's label.

    Raises:
        ValueError: on an empty frame, missing columns, or a label column of one class.
    """
    if test.empty:
        raise ValueError("cannot evaluate a model on an empty frame")
    spec = model.fitted.spec
    features = feature_arrays(test, spec)
    if not model.multitask:
        column = label or spec.label.column
        labels = label_array(test, spec, column)
        predictions = predict_values(model, features)
        if model.regression and column == spec.label.column:
            return {
                "rmse": evaluation.rmse(labels, predictions),
                "mae": evaluation.mae(labels, predictions),
                "examples": int(len(test)),
            }
        metrics: dict[str, Any] = {
            "auc": evaluation.auc(labels, predictions),
            "logloss": evaluation.logloss(labels, predictions),
            "normalized_entropy": evaluation.normalized_entropy(labels, predictions),
            "calibration": float(predictions.mean() / labels.mean()) if labels.mean() > 0 else None,
            "examples": int(len(test)),
        }
        if TRUE_PCTR_COLUMN in test.columns and column == "clicked":
            true_pctr = test[TRUE_PCTR_COLUMN]
            if true_pctr.isna().any():
                raise ValueError(f"column {TRUE_PCTR_COLUMN!r} has {int(true_pctr.isna().sum())} missing value(s)")
            metrics["bayes_logloss"] = evaluation.bayes_logloss(labels, true_pctr.to_numpy())
        return metrics
    require_columns(test, list(MULTITASK_LABELS.values()), "test frame")
    predictions = predict_tasks(model, features)
    clicked, converted = (label_array(test, spec, column) for column in MULTITASK_LABELS.values())
    on_clicked = clicked == 1
    cvr_auc = None
    if 0 < converted[on_clicked].sum() < on_clicked.sum():
        cvr_auc = evaluation.auc(converted[on_clicked], predictions["pcvr"][on_clicked])
    return {
        "ctr_auc": evaluation.auc(clicked, predictions["pctr"]),
        "ctr_logloss": evaluation.logloss(clicked, predictions["pctr"]),
        "ctcvr_auc": evaluation.auc(converted, predictions["pctcvr"]),
        "ctcvr_logloss": evaluation.logloss(converted, predictions["pctcvr"]),
        "cvr_auc": cvr_auc,
        "examples": int(len(test)),
    }

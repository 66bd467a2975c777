"""Model configs: one YAML document per model, parsed and checked into a ``ModelSpec``.

A config has three top-level keys (see ``models/configs/*.yaml`` for one per model)::

    type: deepfm            # which model (registry.MODEL_TYPES or retriever_kinds.RETRIEVER_KINDS)
    model:                  # the model's settings, e.g. embedding_dim
      embedding_dim: 8
    training:               # how it is trained; every key is optional
      learning_rate: 0.003

and a ranker may add a fourth, ``search_space:``, with what a sweep may tune
(``models.sweep``)::

    search_space:
      model.embedding_dim: {type: int, low: 4, high: 16, step: 4}
      training.learning_rate: {type: float, low: 0.0005, high: 0.01, log: true}

The type decides the model's family (``model_family``): *rankers* score impressions
from every feature (``models.training.registry``; ``training`` holds ``TrainingConfig``
fields), *retrievers* rank the whole catalogue for a user (``models.training.retrievers``;
``training`` holds the ``RetrieverTrainingConfig`` fields the type takes).

Unknown keys are errors that name the key and the config they came from, so a typo
cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tf_keras as keras
import yaml

from models.configs import CONFIG_DIR, config_names
from models.training.retriever_kinds import RETRIEVER_KINDS, RetrieverTrainingConfig

"""Where ``load_spec("<name>")`` looks for ``<name>.yaml``."""

SPEC_KEYS = ("type", "model", "training", "search_space")
RANKER = "ranker"
RETRIEVER = "retriever"
FAMILIES = (RANKER, RETRIEVER)


def _ftrl(**options: Any) -> keras.optimizers.Optimizer:
    # The legacy FTRL applies sparse updates (only the rows a batch touched); the
    # current tf_keras Ftrl densifies embedding gradients and rewrites every row.
    return keras.optimizers.legacy.Ftrl(**options)


OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "adagrad": keras.optimizers.Adagrad,
    "ftrl": _ftrl,
    "sgd": keras.optimizers.SGD,
}


@dataclass(frozen=True)
class TrainingConfig:
    """How a zoo model is trained (the ``training:`` section of a model config).

    Attributes:
        optimizer: One of ``OPTIMIZERS``: ``adam``, ``adamw`` (Adam with decoupled weight
            decay: ``optimizer_options: {weight_decay: ...}``), ``adagrad`` or ``sgd``, or ``ftrl``
            (FTRL-Proximal with sparse updates, for the hashed logistic regression).
        learning_rate: Optimiser learning rate.
        optimizer_options: Further keyword arguments of the optimiser, e.g.
            ``{l1_regularization_strength: 0.001}`` for FTRL.
        batch_size: Global batch size (split across replicas when distributed).
        epochs: Maximum passes over the training frame.
        early_stopping_patience: Epochs without a lower validation loss before training
            stops (the best epoch's weights are restored); ``None`` trains all
            ``epochs``. Used only when a validation frame is given.
        label: Label column of a single-task model; ``None``: the feature spec's label
            (``clicked`` for CTR sources, ``rating`` for MovieLens). Another binary label
            of the spec (e.g. ``converted``) trains a model of that label. Multi-task
            models always use ``clicked`` and ``converted``. Vocabularies and their
            minimum counts come from the feature spec.
        loss_weights: Multi-task models only: weight of each loss, keyed by output
            (``pctr``, ``pctcvr``); both 1.0 when ``None``.
        mixed_precision: Build the model in ``mixed_float16`` (needs a GPU).
        recalibrate: After training, shift a single-task binary model's output logit by
            the constant that minimises the validation logloss (intercept
            recalibration: the mean prediction then equals the validation day's rate).
            Needs a validation frame; the per-epoch checkpoints hold the weights before.
        seed: Seed for weight initialisation and shuffling.
    """

    optimizer: str = "adam"
    learning_rate: float = 0.003
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 512
    epochs: int = 10
    early_stopping_patience: int | None = 2
    label: str | None = None
    loss_weights: Mapping[str, float] | None = None
    mixed_precision: bool = False
    recalibrate: bool = True
    seed: int = 42

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"training.optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"training.{name} must be >= 1, got {getattr(self, name)}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(
                f"training.early_stopping_patience must be >= 1 or null, got {self.early_stopping_patience}"
            )
        if self.loss_weights is not None and any(w < 0 for w in self.loss_weights.values()):
            raise ValueError(f"training.loss_weights must be >= 0, got {dict(self.loss_weights)}")

    def build_optimizer(self) -> keras.optimizers.Optimizer:
        """A new optimiser instance (create it inside the strategy scope).

        Raises:
            ValueError: if ``optimizer_options`` holds an argument the optimiser lacks.
        """
        try:
            return OPTIMIZERS[self.optimizer](learning_rate=self.learning_rate, **self.optimizer_options)
        except TypeError as error:
            raise ValueError(
                f"training.optimizer_options {dict(self.optimizer_options)} do not fit the {self.optimizer} optimiser: "
                f"{error}"
            ) from error


def model_family(model_type: str) -> str:
    """``RETRIEVER`` for the types of ``models.training.retriever_kinds.RETRIEVER_KINDS``, ``RANKER``
    for every other type (``models.training.registry`` checks those when it builds them).

    The one place that tells the two families apart.
    """
    return RETRIEVER if model_type in RETRIEVER_KINDS else RANKER


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model config.

    Attributes:
        type: Model type name (a key of ``registry.MODEL_TYPES`` or of
            ``retriever_kinds.RETRIEVER_KINDS``).
        model: The model's settings (keyword arguments of a ranker's class, or of a
            retriever's settings dataclass).
        training: Training settings: ``TrainingConfig`` for a ranker,
            ``RetrieverTrainingConfig`` for a retriever.
        source: The YAML file it was read from, or ``None`` for an in-memory dict.
        search_space: A ranker's optional ``search_space:`` section: what a sweep may
            tune (``models.sweep.SearchSpace`` checks it); ``None`` when absent.
    """

    type: str
    model: Mapping[str, Any]
    training: TrainingConfig | RetrieverTrainingConfig
    source: str | None = None
    search_space: Mapping[str, Any] | None = None

    @property
    def family(self) -> str:
        """``RANKER`` or ``RETRIEVER`` (``model_family``)."""
        return model_family(self.type)

    def describe(self) -> str:
        """``"<type> from <file>"`` for messages."""
        return f"{self.type!r} config from {self.source or 'a dict'}"

    def to_dict(self) -> dict[str, Any]:
        """The config as a YAML/JSON-compatible dict (inverse of ``model_spec_from_dict``)."""
        training = dataclasses.asdict(self.training)
        if isinstance(self.training, RetrieverTrainingConfig):
            allowed = RETRIEVER_KINDS[self.type].training_keys
            training = {name: value for name, value in training.items() if name in allowed}
        else:
            training["optimizer_options"] = dict(self.training.optimizer_options)
            if self.training.loss_weights is not None:
                training["loss_weights"] = dict(self.training.loss_weights)
        document = {"type": self.type, "model": dict(self.model), "training": training}
        if self.search_space is not None:
            document["search_space"] = dict(self.search_space)
        return document


def _unknown_keys(given: Mapping[str, Any], allowed: list[str], where: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def model_spec_from_dict(config: Mapping[str, Any], source: str | None = None) -> ModelSpec:
    """Check a config mapping and turn it into a ``ModelSpec``.

    Args:
        config: ``{"type": ..., "model": {...}, "training": {...}}``; ``model`` and
            ``training`` may be omitted (defaults).
        source: Where it came from, for error messages.

    Raises:
        ValueError: if ``type`` is missing, a section is not a mapping, or a key is unknown
            or out of range (a ranker's ``model`` keys are checked when it is built, a
            retriever's here).
    """
    where = f"model config {source or '(dict)'}"
    if not isinstance(config, Mapping):
        raise ValueError(f"{where} must be a mapping with keys {list(SPEC_KEYS)}, got {type(config).__name__}")
    _unknown_keys(config, list(SPEC_KEYS), where)
    if not isinstance(config.get("type"), str):
        raise ValueError(f"{where} needs a string 'type' naming the model, got {config.get('type')!r}")
    sections = {}
    for section in ("model", "training"):
        value = config.get(section) or {}
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: '{section}' must be a mapping, got {type(value).__name__}")
        sections[section] = dict(value)
    search_space = config.get("search_space")
    if search_space is not None and not isinstance(search_space, Mapping):
        raise ValueError(f"{where}: 'search_space' must be a mapping, got {type(search_space).__name__}")
    if model_family(config["type"]) == RETRIEVER:
        if search_space is not None:
            raise ValueError(f"{where}: 'search_space' applies to rankers only (models.sweep)")
        return _retriever_spec(config["type"], sections, where, source)
    _unknown_keys(sections["training"], [f.name for f in dataclasses.fields(TrainingConfig)], f"{where} 'training'")
    try:
        training = TrainingConfig(**sections["training"])
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    return ModelSpec(
        type=config["type"],
        model=sections["model"],
        training=training,
        source=source,
        search_space=None if search_space is None else dict(search_space),
    )


def _retriever_spec(model_type: str, sections: dict[str, dict[str, Any]], where: str, source: str | None) -> ModelSpec:
    """Check a retriever config's sections against its type and build its spec."""
    kind = RETRIEVER_KINDS[model_type]
    _unknown_keys(sections["model"], list(kind.model_keys), f"{where} 'model' ({model_type})")
    _unknown_keys(sections["training"], list(kind.training_keys), f"{where} 'training' ({model_type})")
    try:
        training = RetrieverTrainingConfig(**sections["training"])
        kind.settings_for(sections["model"], training)  # the library checks every value
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from error
    return ModelSpec(type=model_type, model=sections["model"], training=training, source=source)


def bundled_configs(family: str | None = None) -> list[str]:
    """Names of the bundled model configs (``models/configs/<name>.yaml``), sorted.

    Args:
        family: ``RANKER`` or ``RETRIEVER`` to list one family only; ``None``: all.

    Raises:
        ValueError: on another family name.
    """
    names = config_names()
    if family is None:
        return names
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    return [name for name in names if load_spec(name).family == family]


def config_path(name: str) -> Path:
    """The path of the bundled config ``models/configs/<name>.yaml``.

    Raises:
        FileNotFoundError: listing the bundled config names if there is no such file.
    """
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no model config named {name!r} in {CONFIG_DIR}; available: {bundled_configs()}")
    return path


def load_spec(config: str | os.PathLike[str] | Mapping[str, Any] | ModelSpec) -> ModelSpec:
    """Read a model config given as a bundled name, a YAML path, a dict or a spec.

    Args:
        config: A bundled config name (``"deepfm"`` -> ``models/configs/deepfm.yaml``),
            a path to a YAML file, a config dict, or an already parsed ``ModelSpec``.

    Raises:
        FileNotFoundError: if a name or path points at no file.
        ValueError: if the config is malformed (see ``model_spec_from_dict``).
    """
    if isinstance(config, ModelSpec):
        return config
    if isinstance(config, Mapping):
        return model_spec_from_dict(config)
    text = os.fspath(config)
    is_path = text.endswith((".yaml", ".yml")) or os.sep in text
    path = Path(text) if is_path else config_path(text)
    if not path.is_file():
        raise FileNotFoundError(f"model config file {path} does not exist")
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    return model_spec_from_dict(document, source=str(path))

"""Put an exported recommender SavedModel into a BentoML model store, and read it back.

Every function names its store explicitly by the BentoML home that holds it (the store is
``<bentoml_home>/models``), so one process can use several stores and nothing depends on
``BENTOML_HOME`` having been set before BentoML was imported. ``bentoml serve`` reads its
store from ``BENTOML_HOME``: serve with the same home. The bento model folder holds the
SavedModel at ``<model.path>/savedmodel``, where ``serving.service`` loads it.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import bentoml
from bentoml._internal.models.model import ModelStore

SAVEDMODEL_SUBDIR = "savedmodel"


def model_store(bentoml_home: str | os.PathLike[str]) -> ModelStore:
    """The model store of the BentoML home ``bentoml_home`` (created when missing)."""
    return ModelStore(os.path.join(os.fspath(bentoml_home), "models"))


def save_to_bento_store(
    bentoml_home: str | os.PathLike[str],
    savedmodel_dir: str | os.PathLike[str],
    name: str,
    metadata: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    version: str | None = None,
) -> str:
    """Copy a SavedModel directory into a new BentoML model.

    Args:
        bentoml_home: The BentoML home whose store receives the model.
        savedmodel_dir: Local SavedModel written by ``models.export.savedmodel.export_recommender``.
        name: Bento model name (lowercase letters, digits, ``_ - .``).
        metadata: JSON-like metadata stored with the model (e.g. metrics, training window).
        labels: String labels (e.g. ``{"stage": "candidate"}``).
        version: Tag version; BentoML generates a unique one when ``None``. Saving a
            version that already exists fails.

    Returns:
        The full tag, ``"<name>:<version>"``: pass it to the service through
        ``RECLAKE_BENTO_MODEL_TAG``.

    Raises:
        FileNotFoundError: if ``savedmodel_dir`` holds no ``saved_model.pb``.
        ValueError: on an invalid name, version, metadata or label.
    """
    source = os.fspath(savedmodel_dir)
    if not os.path.isfile(os.path.join(source, "saved_model.pb")):
        raise FileNotFoundError(f"{source} is not a SavedModel directory (no saved_model.pb)")
    tag = name if version is None else f"{name}:{version}"
    with bentoml.models.create(
        tag, metadata=dict(metadata or {}), labels=dict(labels or {}), _model_store=model_store(bentoml_home)
    ) as model:
        shutil.copytree(source, model.path_of(SAVEDMODEL_SUBDIR))
    return str(model.tag)


def savedmodel_path(bentoml_home: str | os.PathLike[str], tag: str) -> str:
    """Local path of the SavedModel inside the bento model ``tag`` of ``bentoml_home``'s store.

    Raises:
        bentoml.exceptions.NotFound: if the store has no model with that tag.
    """
    return bentoml.models.get(tag, _model_store=model_store(bentoml_home)).path_of(SAVEDMODEL_SUBDIR)


def list_versions(bentoml_home: str | os.PathLike[str], name: str) -> list[dict[str, Any]]:
    """Every version of a model in ``bentoml_home``'s store, newest first: tag, creation time, labels, metadata."""
    models = [model for model in bentoml.models.list(_model_store=model_store(bentoml_home)) if model.tag.name == name]
    models.sort(key=lambda model: model.creation_time, reverse=True)
    return [
        {
            "tag": str(model.tag),
            "created": model.creation_time.isoformat(timespec="seconds"),
            "labels": dict(model.info.labels),
            "metadata": dict(model.info.metadata),
        }
        for model in models
    ]

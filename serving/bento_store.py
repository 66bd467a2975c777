"""Put an exported recommender SavedModel into the BentoML model store.

The store lives under ``$BENTOML_HOME`` (default ``~/bentoml``). The bento model folder
holds the SavedModel at ``<model.path>/savedmodel``, where ``serving.service`` loads it.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import bentoml

SAVEDMODEL_SUBDIR = "savedmodel"


def save_to_bento_store(
    savedmodel_dir: str | os.PathLike[str],
    name: str,
    metadata: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    version: str | None = None,
) -> str:
    """Copy a SavedModel directory into a new BentoML model.

    Args:
        savedmodel_dir: Local SavedModel written by ``models.export.export_recommender``.
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
    with bentoml.models.create(tag, metadata=dict(metadata or {}), labels=dict(labels or {})) as model:
        shutil.copytree(source, model.path_of(SAVEDMODEL_SUBDIR))
    return str(model.tag)


def savedmodel_path(tag: str) -> str:
    """Local path of the SavedModel inside the stored bento model ``tag``.

    Raises:
        bentoml.exceptions.NotFound: if the store has no model with that tag.
    """
    return bentoml.models.get(tag).path_of(SAVEDMODEL_SUBDIR)


def list_versions(name: str) -> list[dict[str, Any]]:
    """Every stored version of a model, newest first: tag, creation time, labels, metadata."""
    models = [model for model in bentoml.models.list() if model.tag.name == name]
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

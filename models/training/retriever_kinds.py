"""The retriever types a model config may name, and the settings each takes.

A retriever config's ``type:`` names one of ``RETRIEVER_KINDS``; its ``model:`` and
``training:`` sections become the model library's settings dataclass
(``RetrieverKind.settings_for``). This module only describes the types (the config
parser checks configs against it); ``models.training.retrievers`` fits them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.retrieval.baselines import BPRConfig, EASEConfig
from models.retrieval.joint import JointConfig
from models.retrieval.recency import RecencyEASEConfig
from models.retrieval.sequence import SASRecConfig
from models.retrieval.two_tower import RetrievalConfig

EARLY_STOPPING_KEYS = ("early_stopping_patience", "selection_metric")
"""``training:`` keys only the types trained in epochs take."""

SELECTION_METRIC_PATTERN = re.compile(r"^[a-z_]+@[1-9][0-9]*$")


@dataclass(frozen=True)
class RetrieverTrainingConfig:
    """How a retrieval-family zoo model is trained (the ``training:`` section of its config).

    Which keys a config may set depends on its type
    (``RetrieverKind.training_keys``): closed-form models (EASE,
    popularity) take none, BPR-MF its optimiser loop, the TensorFlow models trained in
    epochs all of them.

    Attributes:
        learning_rate: Optimiser learning rate; ``None``: the model library's default.
        batch_size: Training batch size; ``None``: the library's default.
        epochs: Passes over the training interactions; for models trained in epochs the
            upper bound of the count chosen on the validation day. ``None``: the
            library's default.
        seed: Seed of initialisation and shuffling; ``None``: the library's default.
        early_stopping_patience: Epochs without a better ``selection_metric`` on the
            validation day before the validation run stops; ``None`` runs every epoch
            (the best one is still chosen).
        selection_metric: The ``evaluation.ranking_metrics`` key (``<name>@<K>``, e.g.
            ``recall@10``) the epoch count maximises on the validation day.
    """

    learning_rate: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    seed: int | None = None
    early_stopping_patience: int | None = 2
    selection_metric: str = "recall@10"

    LOOP_FIELDS = ("learning_rate", "batch_size", "epochs", "seed")
    """Fields that are settings of the model library's training loop."""

    def __post_init__(self) -> None:
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"training.{name} must be >= 1, got {value}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(
                f"training.early_stopping_patience must be >= 1 or null, got {self.early_stopping_patience}"
            )
        if not isinstance(self.selection_metric, str) or not SELECTION_METRIC_PATTERN.match(self.selection_metric):
            raise ValueError(
                f"training.selection_metric must name a ranking metric as <name>@<K> (e.g. recall@10), "
                f"got {self.selection_metric!r}"
            )

    def loop_settings(self) -> dict[str, Any]:
        """The ``LOOP_FIELDS`` the config sets (not ``None``), as keyword arguments."""
        return {name: getattr(self, name) for name in self.LOOP_FIELDS if getattr(self, name) is not None}


@dataclass(frozen=True)
class RetrieverKind:
    """What a config of one retrieval-family model type may set.

    Attributes:
        settings: The library's settings dataclass the config's ``model:`` and
            ``training:`` sections build, or ``None`` for a model without settings.
        in_epochs: Trained by TensorFlow in epochs, with a per-epoch hook: the epoch
            count is chosen on the validation day and checkpoints are written.
    """

    settings: type | None = None
    in_epochs: bool = False

    def _settings_fields(self) -> tuple[str, ...]:
        return () if self.settings is None else tuple(f.name for f in dataclasses.fields(self.settings))

    @property
    def model_keys(self) -> tuple[str, ...]:
        """Keys of the config's ``model:`` section: the settings that are not loop settings."""
        return tuple(name for name in self._settings_fields() if name not in RetrieverTrainingConfig.LOOP_FIELDS)

    @property
    def training_keys(self) -> tuple[str, ...]:
        """Keys of the config's ``training:`` section (``RetrieverTrainingConfig`` fields)."""
        loop = tuple(name for name in RetrieverTrainingConfig.LOOP_FIELDS if name in self._settings_fields())
        return loop + (EARLY_STOPPING_KEYS if self.in_epochs else ())

    def settings_for(
        self, model: Mapping[str, Any], training: RetrieverTrainingConfig, epochs: int | None = None
    ) -> Any:
        """The library settings of a config's sections (YAML lists become tuples).

        Args:
            model: The ``model:`` section.
            training: The parsed ``training:`` section.
            epochs: Overrides the configured epoch count.

        Raises:
            ValueError: a value the library rejects.
        """
        if self.settings is None:
            return None
        values = {name: tuple(value) if isinstance(value, list) else value for name, value in model.items()}
        values.update(training.loop_settings())
        if epochs is not None:
            values["epochs"] = epochs
        return self.settings(**values)


RETRIEVER_KINDS: dict[str, RetrieverKind] = {
    "popularity": RetrieverKind(),
    "ease": RetrieverKind(EASEConfig),
    "ease_recency": RetrieverKind(RecencyEASEConfig),
    "bpr_mf": RetrieverKind(BPRConfig),
    "two_tower": RetrieverKind(RetrievalConfig, in_epochs=True),
    "sasrec": RetrieverKind(SASRecConfig, in_epochs=True),
    "joint": RetrieverKind(JointConfig, in_epochs=True),
}
"""Retriever type -> its settings."""

"""Progress lines for long steps, in the run's log (the UI's run view, `make run`'s console)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # the registry imports TensorFlow: not at code-location load
    from models.zoo.registry import EpochHook


def epoch_logger(context: dg.AssetExecutionContext, what: str) -> EpochHook:
    """An ``EpochHook`` that logs ``<what> epoch 2/5: loss 0.1623, val_loss 0.161, ...``."""

    def log_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> None:
        metrics = ", ".join(f"{name} {value:.4g}" for name, value in logs.items())
        context.log.info(f"{what} epoch {epoch}/{epochs}: {metrics}")

    return log_epoch

"""Progress lines for long steps, in the run's log (the UI's run view, `make run`'s console)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:  # the registry imports TensorFlow: not at code-location load
    from models.training.registry import EpochHook


def epoch_logger(context: dg.AssetExecutionContext, what: str) -> EpochHook:
    """An ``EpochHook`` that logs ``<what> epoch 2/5: loss 0.1623, val_loss 0.161, ...``."""

    def log_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> None:
        context.log.info(f"{what} epoch {epoch}/{epochs}: {metrics_line(logs)}")

    return log_epoch


def readable(value: Any) -> Any:
    """A metric as a person reads it: whole numbers as ints, others to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if value.is_integer() and abs(value) >= 1:
        return int(value)
    return float(f"{value:.4g}")


def metrics_line(metrics: Mapping[str, Any]) -> str:
    """``auc 0.5687, logloss 0.1605, examples 4000``: metrics on one readable line."""
    return ", ".join(f"{name} {readable(value)}" for name, value in metrics.items())

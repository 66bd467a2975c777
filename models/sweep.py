"""Bounded hyper-parameter sweeps of a zoo ranker with Optuna, judged on the validation day.

A ranker's config may carry a ``search_space:`` section (``models.training.config``):
dotted paths into the config mapped to a distribution::

    search_space:
      model.embedding_dim: {type: int, low: 4, high: 16, step: 4}
      training.learning_rate: {type: float, low: 0.0005, high: 0.01, log: true}
      model.deep_units: {type: categorical, choices: [[64, 32], [128, 64]]}

``sweep`` samples configs with a seeded TPE sampler (``optuna.samplers.TPESampler``),
trains each on the train rows with early stopping on the validation rows, prunes a trial
whose per-epoch validation metric trails the median of earlier trials at the same epoch
(``optuna.pruners.MedianPruner``), and stops after ``trials`` trials or ``seconds``
seconds, whichever comes first (a trial running at the deadline stops at its next epoch
once another trial has finished). The best trial is the one with the best promotion
metric (``models.recommender.promotion_score``: AUC, or RMSE for ratings) on the whole
validation frame; its trained model is kept, so the winner is not trained twice.

Reproducible: the same seed, rows and config give the same trials and best params as
long as the sweep ends on ``trials``, not on ``seconds``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from models.inputs.stream import ParquetWindow
from models.recommender import promotion_metric, promotion_score
from models.training.config import load_spec
from models.training.registry import EpochHook, ZooTrainingResult, train_model
from reclake.feature_spec import FeatureSpec

KINDS = ("int", "float", "categorical")
SECTIONS = ("model", "training")
DEFAULT_SEED = 42
# Keras' per-epoch validation metric that trails the exact one, per selection metric:
# single-task binary, multi-task (its click output), regression.
_EPOCH_SIGNALS = {"auc": ("val_auc", "val_pctr_auc"), "rmse": ("val_rmse",)}
_PRIMITIVES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Dimension:
    """One tunable value of a config: a dotted ``path`` and its distribution.

    Attributes:
        path: ``model.<key>`` or ``training.<key>[.<key>...]`` (e.g.
            ``training.optimizer_options.l2_regularization_strength``).
        kind: ``int``, ``float`` or ``categorical``.
        low, high: bounds of ``int`` / ``float`` (inclusive).
        step: grid step of ``int`` (default 1) or ``float`` (default none).
        log: sample ``int`` / ``float`` on a log scale.
        choices: the values of ``categorical`` (lists allowed, e.g. layer widths).
    """

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value a trial samples for this dimension."""
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.path, float(self.low), float(self.high), step=self.step, log=self.log)
        if all(isinstance(choice, _PRIMITIVES) for choice in self.choices):
            return trial.suggest_categorical(self.path, list(self.choices))
        # Optuna stores primitive choices only: lists travel as JSON text.
        return json.loads(trial.suggest_categorical(self.path, [json.dumps(c) for c in self.choices]))

    def decode(self, stored: Any) -> Any:
        """A value as Optuna stored it (``trial.params``) -> the config value."""
        if self.kind == "categorical" and not all(isinstance(c, _PRIMITIVES) for c in self.choices):
            return json.loads(stored)
        return stored


def parse_search_space(space: Mapping[str, Any], where: str = "search_space") -> list[Dimension]:
    """Check a ``search_space:`` mapping and turn it into dimensions.

    Raises:
        ValueError: naming the path, on a path outside ``model`` / ``training``, an
            unknown type or key, bounds that are missing or not ``low < high``, or
            empty choices.
    """
    if not space:
        raise ValueError(f"{where} is empty")
    dimensions = []
    for path, definition in space.items():
        at = f"{where} {path!r}"
        if str(path).split(".")[0] not in SECTIONS or "." not in str(path):
            raise ValueError(f"{at}: the path must start with one of {list(SECTIONS)}, e.g. model.embedding_dim")
        if not isinstance(definition, Mapping) or definition.get("type") not in KINDS:
            raise ValueError(f"{at}: expected a mapping with 'type' one of {list(KINDS)}, got {definition!r}")
        kind = definition["type"]
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "step", "log"}
        unknown = sorted(set(definition) - allowed)
        if unknown:
            raise ValueError(f"{at}: unknown key(s) {unknown}; a {kind} dimension takes {sorted(allowed)}")
        if kind == "categorical":
            choices = definition.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"{at}: 'choices' must be a non-empty list")
            dimensions.append(Dimension(path, kind, choices=tuple(choices)))
            continue
        low, high = definition.get("low"), definition.get("high")
        if not isinstance(low, int | float) or not isinstance(high, int | float) or not low < high:
            raise ValueError(f"{at}: needs numbers low < high, got low={low!r}, high={high!r}")
        if definition.get("log") and low <= 0:
            raise ValueError(f"{at}: a log-scale dimension needs low > 0, got {low}")
        dimensions.append(Dimension(path, kind, low, high, definition.get("step"), bool(definition.get("log"))))
    return dimensions


def apply_params(document: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A config document with each dotted path of ``params`` set to its value (a copy,
    without its ``search_space``)."""
    updated = copy.deepcopy({key: value for key, value in document.items() if key != "search_space"})
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = updated
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return updated


@dataclass
class SweepResult:
    """What a sweep tried and found.

    Attributes:
        best_params: dotted path -> value of the best trial.
        best_value: the best trial's ``promotion_score`` on the validation frame.
        best_config: the config document with the best params applied (trainable as is).
        best_result: the best trial's trained model, history, seconds and spec.
        trials: per trial ``number``, ``state`` (``COMPLETE`` / ``PRUNED`` / ``FAIL``),
            ``value`` (None unless complete), ``params`` and ``seconds``.
        seconds: wall-clock time of the whole sweep.
    """

    best_params: dict[str, Any]
    best_value: float
    best_config: dict[str, Any]
    best_result: ZooTrainingResult
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def sweep(
    config: Any,
    train: pd.DataFrame | ParquetWindow,
    validation: pd.DataFrame,
    *,
    feature_spec: FeatureSpec,
    trials: int = 10,
    seconds: float | None = None,
    seed: int = DEFAULT_SEED,
    on_epoch_end: EpochHook | None = None,
) -> SweepResult:
    """Sweep a ranker config's ``search_space`` on a validation frame.

    Args:
        config: a ranker config with a ``search_space`` (a bundled name, a YAML path, a
            dict or a ``ModelSpec``).
        train: rows every trial trains on: a frame, or a ``ParquetWindow`` (streamed).
        validation: rows for early stopping, pruning and the trial's score.
        feature_spec: the source's feature spec; its promotion metric
            (``models.recommender.promotion_score``: AUC, or RMSE for ratings) judges the trials.
        trials: at most this many trials.
        seconds: at most this long (None: no time bound).
        seed: the TPE sampler's seed.
        on_epoch_end: progress after each epoch of each trial.

    Returns:
        The best trial's params, score, config and trained model, and every trial.

    Raises:
        ValueError: a config without a ``search_space`` or with a bad one, ``trials`` < 1,
            or no trial completed (every one pruned or failed).
    """
    spec = load_spec(config)
    if spec.search_space is None:
        raise ValueError(f"{spec.describe()} has no search_space to sweep")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    dimensions = parse_search_space(spec.search_space, f"{spec.describe()} search_space")
    document = spec.to_dict()
    metric, higher_is_better = promotion_metric(feature_spec)
    signals = _EPOCH_SIGNALS[metric.removeprefix("ranking_")]
    started = time.perf_counter()
    deadline = None if seconds is None else started + seconds
    best: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        params = {dimension.path: dimension.suggest(trial) for dimension in dimensions}

        def on_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> None:
            if on_epoch_end is not None:
                on_epoch_end(epoch, epochs, logs)
            signal = next((logs[name] for name in signals if name in logs), None)
            if signal is not None:
                trial.report(signal, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {epoch}: {signal:.5f} trails the median of earlier trials")
            if deadline is not None and time.perf_counter() > deadline and "result" in best:
                raise optuna.TrialPruned(f"epoch {epoch}: the sweep's {seconds} s are spent")

        result = train_model(
            apply_params(document, params), train, validation, feature_spec=feature_spec, on_epoch_end=on_epoch
        )
        value = promotion_score(result.model, validation)
        better = "value" not in best or (value > best["value"] if higher_is_better else value < best["value"])
        if better:
            best.update(value=value, result=result, number=trial.number)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if higher_is_better else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    study.optimize(objective, n_trials=trials, timeout=seconds, catch=(ValueError,))
    if "result" not in best:
        raise ValueError(f"{spec.describe()}: no trial of the sweep completed ({len(study.trials)} pruned or failed)")
    decoders = {dimension.path: dimension.decode for dimension in dimensions}
    best_trial = study.trials[best["number"]]
    best_params = {path: decoders[path](value) for path, value in best_trial.params.items()}
    return SweepResult(
        best_params=best_params,
        best_value=best["value"],
        best_config=apply_params(document, best_params),
        best_result=best["result"],
        trials=[
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "params": {path: decoders[path](value) for path, value in trial.params.items()},
                "seconds": (trial.duration.total_seconds() if trial.duration else None),
            }
            for trial in study.trials
        ],
        seconds=time.perf_counter() - started,
    )

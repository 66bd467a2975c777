"""Choose a source's ranker automatically: train candidate zoo rankers, keep the best on the validation day.

``select_ranker`` is what ``ranker_config: auto`` runs instead of training one named
config. It trains each candidate config that applies to the source (multi-task models
need click and conversion labels, id models user and item ids) on the window's temporal
split (``models.inputs.splits.split_training_window``: train days, early stopping on the
validation day), in the order given, within a time budget, and keeps the best by the
source's promotion metric (``models.recommender.promotion_metric``: AUC of the served
pCTR, RMSE for a rating label) on the validation day. Every candidate is also scored on
the held-out day, for the report only: the held-out day never decides.

A window without a validation day (two days) selects on the newest ``SELECTION_SHARE``
of its training rows instead, and the chosen config is then trained again as
``train_ranker`` would (on every training row, no early stopping). With
``sweep_trials`` > 0, a candidate whose config has a ``search_space`` is swept
(``models.sweep``) instead of trained once, within what is left of the budget.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from models.inputs.features import label_array
from models.inputs.splits import split_streamed_window, split_training_window, trained_span
from models.inputs.stream import ParquetWindow
from models.ranking.base import MULTITASK_LABELS
from models.recommender import TrainedRanker, promotion_metric, promotion_score, ranker_metrics, train_ranker
from models.sweep import DEFAULT_SEED, SweepResult, sweep
from models.training.config import RANKER, load_spec
from models.training.registry import MODEL_TYPES, EpochHook, ZooTrainingResult, train_model
from reclake.feature_spec import FeatureSpec

AUTO = "auto"
"""The ``ranker_config`` value that selects the ranker with ``select_ranker``."""
DEFAULT_CANDIDATES = ("hashed_lr", "fm", "deepfm", "dcn_v2_stacked", "esmm", "mmoe")
"""Simplest first: when the budget runs out, the baselines have been tried."""
SELECTION_SHARE = 0.1
"""Share of the newest training rows that select when the window has no validation day."""
FEW_POSITIVES = 100
"""Below this many positive selecting rows, the report warns that the choice is within noise."""
FEW_RATED_ROWS = 1000
"""Below this many selecting rows of a rating label, the report warns that the choice is within noise."""

TRAINED, SKIPPED, NOT_APPLICABLE, FAILED = "trained", "skipped", "not applicable", "failed"


def not_applicable(config: Any, spec: FeatureSpec) -> str | None:
    """Why a ranker config cannot train on a source, or None when it can.

    Raises:
        FileNotFoundError, ValueError: a config that does not load (a typo in the list
            of candidates fails fast instead of being skipped).
    """
    model_spec = load_spec(config)
    if model_spec.family != RANKER:
        return f"{model_spec.type} is a retriever, not a ranker"
    model_class = MODEL_TYPES.get(model_spec.type)
    if model_class is None:
        return None  # train_model names the known types
    if model_class.multitask and not set(MULTITASK_LABELS.values()) <= set(spec.label_columns):
        return f"needs click and conversion labels; the {spec.source} spec has {list(spec.label_columns)}"
    if model_class.needs_ids and not spec.has_ids:
        return f"reads user and item ids; the {spec.source} spec has none"
    return None


@dataclass
class Candidate:
    """One candidate of a selection and how it fared.

    Attributes:
        config: the candidate's config name (or path).
        status: ``trained``, ``skipped`` (out of budget), ``not applicable`` or ``failed``.
        reason: why it was skipped, not applicable or failed; empty when trained.
        validation: ``{metric: promotion_score}`` on the selecting rows (empty unless trained).
        test: ``ranker_metrics`` on the held-out day (empty unless trained).
        seconds: training (or sweeping) time.
        best_epoch: the epoch early stopping kept, when it ran.
        sweep: the candidate's sweep, when it was swept.
    """

    config: str
    status: str
    reason: str = ""
    validation: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    best_epoch: int | None = None
    sweep: SweepResult | None = None


@dataclass
class Selection:
    """The outcome of ``select_ranker``.

    Attributes:
        chosen: the chosen ranker, as ``train_ranker`` returns it (metrics on the held-out day).
        chosen_config: the chosen candidate's name.
        metric: the ``ranker_metrics`` key that decided (``auc`` or ``rmse``).
        higher_is_better: whether a higher ``metric`` is better.
        candidates: every candidate, in the order tried.
        selected_on: which rows decided, in words.
        budget_s: the time budget; seconds: the time spent.
        selecting_rows: how many rows chose; selecting_positives: how many of them are
            positive (None for a rating label).
    """

    chosen: TrainedRanker
    chosen_config: str
    metric: str
    higher_is_better: bool
    candidates: list[Candidate]
    selected_on: str
    budget_s: float
    seconds: float
    selecting_rows: int = 0
    selecting_positives: int | None = None

    @property
    def runner_up(self) -> Candidate | None:
        """The best trained candidate after the chosen one, or None when it is alone."""
        ranked = _ranked([c for c in self.candidates if c.status == TRAINED], self.metric, self.higher_is_better)
        return ranked[1] if len(ranked) > 1 else None

    @property
    def margin(self) -> float | None:
        """How much better the chosen candidate is than the runner-up on the selecting
        rows, in ``metric`` units (>= 0); None without a runner-up."""
        runner_up = self.runner_up
        if runner_up is None:
            return None
        chosen = next(c for c in self.candidates if c.config == self.chosen_config)
        return abs(chosen.validation[self.metric] - runner_up.validation[self.metric])

    def summary(self) -> dict[str, Any]:
        """The selection as JSON-ready values: the choice, its margin and every candidate."""
        runner_up = self.runner_up
        return {
            "chosen": self.chosen_config,
            "metric": self.metric,
            "selected_on": self.selected_on,
            "runner_up": runner_up.config if runner_up else None,
            "margin": None if self.margin is None else round(self.margin, 5),
            "budget_s": self.budget_s,
            "seconds": round(self.seconds, 1),
            "selecting_rows": self.selecting_rows,
            "selecting_positives": self.selecting_positives,
            "candidates": {
                c.config: {
                    "status": c.status,
                    **({"reason": c.reason} if c.reason else {}),
                    **({f"validation_{self.metric}": round(c.validation[self.metric], 5)} if c.validation else {}),
                    **({f"test_{k}": round(v, 5) for k, v in c.test.items() if k in _TEST_COLUMNS[self.metric]}),
                    "seconds": round(c.seconds, 1),
                    **({"sweep_trials": len(c.sweep.trials), "sweep_params": c.sweep.best_params} if c.sweep else {}),
                }
                for c in self.candidates
            },
        }

    def markdown(self) -> str:
        """Every candidate's validation and held-out figures as a Markdown table, the
        chosen one first, then the choice and its margin in a sentence."""
        tests = _TEST_COLUMNS[self.metric]
        header = f"| candidate | status | validation {self.metric} | " + " | ".join(f"test {k}" for k in tests)
        lines = [header + " | seconds | note |", "|---" * (5 + len(tests)) + "|"]
        trained = _ranked([c for c in self.candidates if c.status == TRAINED], self.metric, self.higher_is_better)
        for c in trained + [c for c in self.candidates if c.status != TRAINED]:
            name = f"**{c.config}** (chosen)" if c.config == self.chosen_config else c.config
            validation = f"{c.validation[self.metric]:.4f}" if c.validation else "-"
            figures = " | ".join(f"{c.test[k]:.4f}" if k in c.test else "-" for k in tests)
            note = c.reason or (f"swept {len(c.sweep.trials)} trials: {c.sweep.best_params}" if c.sweep else "")
            if c.best_epoch:
                note = f"best epoch {c.best_epoch}" + (f"; {note}" if note else "")
            lines.append(f"| {name} | {c.status} | {validation} | {figures} | {c.seconds:.1f} | {note} |")
        runner_up = self.runner_up
        verdict = f"Chosen: {self.chosen_config}, by validation {self.metric} on {self.selected_on}"
        if runner_up is not None:
            verdict += f", {self.margin:.4f} {'above' if self.higher_is_better else 'below'} {runner_up.config}"
        verdict += "."
        if self.selecting_positives is not None and self.selecting_positives < FEW_POSITIVES:
            verdict += (
                f" Caution: only {self.selecting_positives} positive(s) among {self.selecting_rows} rows chose;"
                " AUC differences this small are within noise."
            )
        if self.selecting_positives is None and 0 < self.selecting_rows < FEW_RATED_ROWS:
            verdict += (
                f" Caution: only {self.selecting_rows} rated rows chose; RMSE differences this small are within noise."
            )
        return "\n".join([*lines, "", verdict])

    def tracked_children(self) -> list[Any]:
        """Every candidate as an MLflow child run (``models.tracking.ChildRun``): params,
        validation metric, held-out figures and seconds; a swept candidate's trials nest
        under it (params, validation metric, seconds, Optuna state)."""
        from models.tracking import ChildRun

        children = []
        for c in self.candidates:
            trials = [
                ChildRun(
                    name=f"{c.config}: trial {trial['number']}",
                    params={"candidate": c.config, "trial": trial["number"], **trial["params"]},
                    metrics={f"validation_{self.metric}": trial["value"], "seconds": trial["seconds"]},
                    tags={"reclake.selection": "sweep", "reclake.status": trial["state"]},
                    status=_TRIAL_STATUS.get(trial["state"], "FAILED"),
                )
                for trial in (c.sweep.trials if c.sweep else [])
            ]
            children.append(
                ChildRun(
                    name=f"ranker:{c.config}",
                    params={
                        "candidate": c.config,
                        **({"best_epoch": c.best_epoch} if c.best_epoch else {}),
                        **({"sweep_best": c.sweep.best_params} if c.sweep else {}),
                    },
                    metrics={
                        **{f"validation_{k}": v for k, v in c.validation.items()},
                        **{f"test_{k}": v for k, v in c.test.items()},
                        "seconds": c.seconds,
                    },
                    tags={
                        "reclake.selection": "ranker",
                        "reclake.status": c.status,
                        **({"reclake.reason": c.reason} if c.reason else {}),
                        "reclake.chosen": str(c.config == self.chosen_config).lower(),
                    },
                    status=_RUN_STATUS[c.status],
                    children=trials,
                )
            )
        return children


_RUN_STATUS = {TRAINED: "FINISHED", FAILED: "FAILED", SKIPPED: "KILLED", NOT_APPLICABLE: "KILLED"}
_TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "RUNNING": "KILLED"}
_TEST_COLUMNS = {"auc": ("auc", "logloss"), "rmse": ("rmse", "mae")}


def _ranked(candidates: list[Candidate], metric: str, higher_is_better: bool) -> list[Candidate]:
    """Best first; ties keep the earlier (cheaper) candidate first."""
    return sorted(candidates, key=lambda c: -c.validation[metric] if higher_is_better else c.validation[metric])


def selection_frames(
    examples: pd.DataFrame, days: Sequence[dt.date], train_stream: ParquetWindow | None = None
) -> tuple[pd.DataFrame | ParquetWindow, pd.DataFrame, pd.DataFrame, bool]:
    """(fit, select, test, refit): the rows candidates train on, the rows that choose,
    the held-out day, and whether the chosen config must be trained again.

    With a validation day, ``fit`` / ``select`` / ``test`` are ``split_training_window``'s
    train / validation / test and no refit is needed. Without one, ``select`` is the
    newest ``SELECTION_SHARE`` of the training rows (by event time) and the chosen config
    is refit on all of them. With ``train_stream`` (the training days as Parquet;
    ``examples`` then holds only the newest two days), ``fit`` is the stream.

    Raises:
        ValueError: no days, or a part too small to split.
    """
    if not days:
        raise ValueError("no days of training_examples to train on")
    if train_stream is not None:
        return train_stream, *split_streamed_window(examples, days), False
    train, validation, test = split_training_window(examples, days)
    if validation is not None:
        return train, validation, test, False
    ordered = train.sort_values(["event_ts", "event_id"], kind="stable")
    cut = int(len(ordered) * (1 - SELECTION_SHARE))
    fit, select = ordered.iloc[:cut], ordered.iloc[cut:]
    if fit.empty or select.empty:
        raise ValueError(f"{len(train)} training rows are too few to hold out {SELECTION_SHARE:.0%} for the choice")
    return fit, select, test, True


def select_ranker(
    examples: pd.DataFrame,
    spec: FeatureSpec,
    days: Sequence[dt.date],
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    *,
    budget_s: float = 600.0,
    sweep_trials: int = 0,
    sweep_seed: int = DEFAULT_SEED,
    epoch_hook: Callable[[str], EpochHook | None] | None = None,
    log: Callable[[str], None] | None = None,
    train_stream: ParquetWindow | None = None,
) -> Selection:
    """Train the candidates that apply to the source and keep the best on the validation day.

    The candidates are tried in order. A candidate starts only while the budget is not
    spent and what is left of it covers the slowest candidate so far (the first always
    starts); the others are ``skipped``. A candidate whose training raises ``ValueError``
    (e.g. rows its config cannot fit) is ``failed`` with the message.

    Args:
        examples: ``training_examples`` rows of ``days`` (with ``train_stream``, of
            the newest two).
        spec: the source's feature spec.
        days: the window's days, oldest first.
        candidates: ranker config names (or YAML paths), simplest first.
        budget_s: seconds the candidates may take together.
        sweep_trials: > 0: sweep each candidate with a ``search_space`` with at most this
            many trials (``models.sweep.sweep``, bounded by the budget left); 0: no sweeps.
        sweep_seed: the sweeps' sampler seed.
        epoch_hook: candidate name -> its per-epoch progress hook (or None).
        log: called with one line per candidate.
        train_stream: the training days as Parquet files (a window larger than memory):
            every candidate and sweep trial trains streamed from them.

    Returns:
        The chosen ranker (with held-out metrics, as ``train_ranker`` returns) and every
        candidate's figures.

    Raises:
        ValueError: no candidates, or none of them trained.
        FileNotFoundError: a candidate names no config.
    """
    if not candidates:
        raise ValueError("no candidate rankers to choose from")
    promoted_by, higher_is_better = promotion_metric(spec)
    metric = promoted_by.removeprefix("ranking_")
    fit, select, test, refit = selection_frames(examples, days, train_stream)
    if refit:
        selected_on = "the newest training rows"
    else:
        selected_on = f"the validation day ({days[-2]})" if len(days) > 1 else f"the validation slice of {days[0]}"
    log = log or (lambda line: None)
    started = time.perf_counter()
    tried: list[Candidate] = []
    results: dict[str, tuple[ZooTrainingResult, Mapping[str, Any] | str]] = {}
    slowest = 0.0
    for name in candidates:
        reason = not_applicable(name, spec)
        if reason is not None:
            tried.append(Candidate(name, NOT_APPLICABLE, reason))
            continue
        left = budget_s - (time.perf_counter() - started)
        if any(c.status in (TRAINED, FAILED) for c in tried) and (left <= 0 or left < slowest):
            tried.append(Candidate(name, SKIPPED, f"{max(left, 0):.0f} s of the {budget_s:.0f} s budget left"))
            log(f"{name}: skipped, {tried[-1].reason}")
            continue
        hook = epoch_hook(name) if epoch_hook else None
        candidate_started = time.perf_counter()
        try:
            swept = None
            if sweep_trials > 0 and load_spec(name).search_space is not None:
                swept = sweep(
                    name, fit, select, feature_spec=spec, trials=sweep_trials, seconds=max(left, 1.0),
                    seed=sweep_seed, on_epoch_end=hook,
                )  # fmt: skip
                result, config = swept.best_result, swept.best_config
            else:
                result, config = train_model(name, fit, select, feature_spec=spec, on_epoch_end=hook), name
            candidate = Candidate(
                name,
                TRAINED,
                validation={metric: promotion_score(result.model, select)},
                test=ranker_metrics(result.model, test),
                best_epoch=result.best_epoch,
                sweep=swept,
            )
            results[name] = (result, config)
        except ValueError as error:
            candidate = Candidate(name, FAILED, str(error))
        candidate.seconds = time.perf_counter() - candidate_started
        slowest = max(slowest, candidate.seconds)
        tried.append(candidate)
        figure = f"validation {metric} {candidate.validation[metric]:.4f}" if candidate.validation else candidate.reason
        log(f"{name}: {candidate.status}, {figure}, {candidate.seconds:.1f} s")
    ranked = _ranked([c for c in tried if c.status == TRAINED], metric, higher_is_better)
    if not ranked:
        raise ValueError(f"no candidate ranker trained on {spec.source}: " + "; ".join(
            f"{c.config}: {c.status} ({c.reason})" for c in tried))  # fmt: skip
    best = ranked[0]
    result, config = results[best.config]
    if refit:
        chosen = train_ranker(
            examples, spec, days, config, on_epoch_end=epoch_hook(best.config) if epoch_hook else None
        )
    else:
        chosen = TrainedRanker(
            result=result,
            metrics=best.test,
            train=fit,
            validation=select,
            test=test,
            trained_on=trained_span(days),
            evaluated_on=days[-1],
        )
    return Selection(
        chosen=chosen,
        chosen_config=best.config,
        metric=metric,
        higher_is_better=higher_is_better,
        candidates=tried,
        selected_on=selected_on,
        budget_s=budget_s,
        seconds=time.perf_counter() - started,
        selecting_rows=len(select),
        selecting_positives=None if metric == "rmse" else int(label_array(select, spec).sum()),
    )

"""Choose a source's served retrieval automatically: the retrieval variants the one-SavedModel
export can embed, and the popularity baseline it falls back on, compared on the validation day.

``select_retriever`` is what ``ranker_config: auto`` runs for sources with user and item
ids, beside ``models.selection.select_ranker``. The candidates are the two-tower settings
the export (``models.export.savedmodel``, signature ``recommend_features``) can serve as
they are: two-tower models over the ids and the spec's string columns
(``models.retrieval.two_tower.RetrievalConfig``; pooled history is *not* a candidate,
because the exported query tower reads only single-valued features), plus ``popularity``:
the positive-event counts the export already serves to unknown users
(``models.retrieval.popularity.popular_items``). Each candidate is fitted on the window's
training days and ranks the whole catalogue for every validation-day user who has
training positives, with their training positives masked, by
``models.retrieval.evaluation.evaluate_retriever`` (``evaluation.ranking_metrics``, the
call that scores the zoo's retrievers): ``hr@10`` decides. Every candidate is also scored
on the held-out day (masking the training and validation positives) for the report only.

The served model always embeds a two-tower (the export has no popularity-only retrieval
for known users): the best two-tower on the validation day. When popularity beats every
two-tower, the choice says so (``popularity_won``) and the report says that the served
two-tower's candidates are below the popularity baseline on the validation day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models import evaluation
from models.inputs.splits import split_streamed_window
from models.recommender import DEFAULT_RETRIEVAL
from models.retrieval.evaluation import evaluate_retriever
from models.retrieval.popularity import POSITIVE_COLUMN, popular_items
from models.retrieval.two_tower import RetrievalConfig
from models.selection import FAILED, SKIPPED, TRAINED, selection_frames
from models.training.two_tower import evaluate_retrieval, train_retrieval
from reclake.feature_spec import FeatureSpec

POPULARITY = "popularity"
"""The baseline candidate: items ranked by their positive events in the training days."""
RETRIEVER_CANDIDATES: dict[str, RetrievalConfig | None] = {
    POPULARITY: None,
    "two_tower_logq_d32": DEFAULT_RETRIEVAL,
    "two_tower_logq_d64": dataclasses.replace(DEFAULT_RETRIEVAL, embedding_dim=64),
    "two_tower_logq_d32_lr0.05": dataclasses.replace(DEFAULT_RETRIEVAL, learning_rate=0.05),
    "two_tower_d32": RetrievalConfig(sampling_bias_correction=False),
}
"""Cheapest first: the baseline, today's default two-tower, then its variants. Every
two-tower here is exportable as it is (single-valued tower features, no pooled history)."""
METRIC = "hr@10"
"""What chooses: full-catalogue hit ratio at 10 (``evaluation.ranking_metrics``)."""
FALLBACK_METRIC = "recall_at_k"
"""What chooses when no validation user has training positives (every one cold) or the
catalogue has fewer than 10 items: Recall@k of the top-k lists, unmasked."""
REPORTED = ("hr@10", "recall@10", "ndcg@10", "recall_at_k")
FEW_USERS = 100
"""Below this many ranked validation users, the verdict warns that the choice is within noise."""


class PopularityScorer:
    """The popularity candidate as ``evaluate_retriever`` reads a retriever: every user
    gets the catalogue ranked by the items' positive events in ``fit`` (unseen items 0)."""

    def __init__(self, fit: pd.DataFrame, catalogue: Sequence[str]) -> None:
        self.catalogue = np.array(sorted({str(item) for item in catalogue}), dtype=object).astype(str)
        shares = dict(popular_items(fit, limit=max(len(self.catalogue), 1)))
        self._row = np.array([shares.get(item, 0.0) for item in self.catalogue], dtype=np.float64)

    def scores(self, user_ids: Sequence | np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._row, (len(np.asarray(user_ids)), len(self._row)))

    def top(self, k: int) -> list[str]:
        """The ``k`` most popular catalogue items (ties by id, as ``popular_items`` orders them)."""
        order = np.lexsort((self.catalogue, -self._row))
        return self.catalogue[order[:k]].tolist()


@dataclass
class RetrieverCandidate:
    """One retrieval candidate and how it fared.

    Attributes:
        name: the candidate's name (``RETRIEVER_CANDIDATES``).
        config: its two-tower settings; None for popularity.
        status: ``trained``, ``skipped`` (out of budget) or ``failed``.
        reason: why it was skipped or failed; empty when trained.
        validation: ``REPORTED`` figures on the validation day (empty unless trained).
        test: the same on the held-out day (report only).
        seconds: fitting and evaluating time.
    """

    name: str
    config: RetrievalConfig | None
    status: str
    reason: str = ""
    validation: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def params(self) -> dict[str, Any]:
        """The candidate's settings, for reports and tracking."""
        return {"kind": POPULARITY} if self.config is None else {"kind": "two_tower", **dataclasses.asdict(self.config)}


@dataclass
class RetrieverSelection:
    """The outcome of ``select_retriever``.

    Attributes:
        chosen: the best candidate on the validation day (may be ``popularity``).
        served: the two-tower candidate the SavedModel embeds (the best two-tower).
        served_config: its settings (what ``train_recommender`` refits on train + validation).
        metric: what decided (``hr@10``, or ``recall_at_k`` when no user could be ranked).
        candidates: every candidate, in the order tried.
        selected_on: which rows decided, in words; selecting_users: the users ranked.
        budget_s, seconds: the time budget and the time spent.
    """

    chosen: str
    served: str
    served_config: RetrievalConfig
    metric: str
    candidates: list[RetrieverCandidate]
    selected_on: str
    selecting_users: int
    budget_s: float
    seconds: float

    @property
    def popularity_won(self) -> bool:
        return self.chosen == POPULARITY

    def _ranked(self) -> list[RetrieverCandidate]:
        trained = [c for c in self.candidates if c.status == TRAINED and self.metric in c.validation]
        return sorted(trained, key=lambda c: -c.validation[self.metric])

    @property
    def runner_up(self) -> RetrieverCandidate | None:
        ranked = self._ranked()
        return ranked[1] if len(ranked) > 1 else None

    @property
    def margin(self) -> float | None:
        """The chosen candidate's lead over the runner-up on the validation day (>= 0)."""
        ranked = self._ranked()
        return ranked[0].validation[self.metric] - ranked[1].validation[self.metric] if len(ranked) > 1 else None

    def verdict(self) -> str:
        """The choice, its margin and what is served, in sentences."""
        runner_up = self.runner_up
        text = f"Chosen retrieval: {self.chosen}, by validation {self.metric} on {self.selected_on}"
        text += f" ({self.selecting_users} users ranked)"
        if runner_up is not None:
            text += f", {self.margin:.4f} above {runner_up.name}"
        text += "."
        if self.selecting_users < FEW_USERS:
            text += (
                f" Caution: only {self.selecting_users} validation user(s) could be ranked;"
                " differences this small are within noise."
            )
        if self.popularity_won:
            text += (
                f" Popularity beat every two-tower on the validation day: the SavedModel can only embed a two-tower"
                f" for known users, so it serves {self.served} (the best two-tower), whose candidates are re-ranked"
                " by the ranker; unknown users get the popularity list."
            )
        else:
            text += f" The SavedModel embeds {self.served}, refit on the training and validation days."
        return text

    def summary(self) -> dict[str, Any]:
        """The choice as JSON-ready values: chosen, served, margin and every candidate."""
        runner_up = self.runner_up
        return {
            "chosen": self.chosen,
            "served": self.served,
            "popularity_won": self.popularity_won,
            "metric": self.metric,
            "selected_on": self.selected_on,
            "selecting_users": self.selecting_users,
            "runner_up": runner_up.name if runner_up else None,
            "margin": None if self.margin is None else round(self.margin, 5),
            "budget_s": self.budget_s,
            "seconds": round(self.seconds, 1),
            "candidates": {
                c.name: {
                    "status": c.status,
                    **({"reason": c.reason} if c.reason else {}),
                    **{f"validation_{k}": round(v, 5) for k, v in c.validation.items()},
                    **{f"test_{k}": round(v, 5) for k, v in c.test.items()},
                    "seconds": round(c.seconds, 1),
                }
                for c in self.candidates
            },
        }

    def markdown(self) -> str:
        """Every candidate's validation and held-out figures as a Markdown table, best
        first, then the verdict."""
        columns = [m for m in REPORTED if any(m in c.validation for c in self.candidates)]
        header = "| candidate | status | " + " | ".join(f"validation {m}" for m in columns)
        header += " | " + " | ".join(f"test {m}" for m in columns) + " | seconds | note |"
        lines = [header, "|---" * (4 + 2 * len(columns)) + "|"]
        ranked = self._ranked()
        for c in ranked + [c for c in self.candidates if c not in ranked]:
            name = c.name
            if c.name == self.chosen:
                name = f"**{name}** (chosen)"
            if c.name == self.served and self.served != self.chosen:
                name += " (served)"
            figures = [f"{part[m]:.4f}" if m in part else "-" for part in (c.validation, c.test) for m in columns]
            lines.append(f"| {name} | {c.status} | {' | '.join(figures)} | {c.seconds:.1f} | {c.reason} |")
        return "\n".join([*lines, "", self.verdict()])

    def tracked_children(self) -> list[Any]:
        """Every candidate as an MLflow child run (``models.tracking.ChildRun``)."""
        from models.tracking import ChildRun

        return [
            ChildRun(
                name=f"retriever:{c.name}",
                params={"candidate": c.name, **c.params},
                metrics={
                    **{f"validation_{k}": v for k, v in c.validation.items()},
                    **{f"test_{k}": v for k, v in c.test.items()},
                    "seconds": c.seconds,
                },
                tags={
                    "reclake.selection": "retriever",
                    "reclake.status": c.status,
                    **({"reclake.reason": c.reason} if c.reason else {}),
                    "reclake.chosen": str(c.name == self.chosen).lower(),
                    "reclake.served": str(c.name == self.served).lower(),
                },
                status=_RUN_STATUS[c.status],
            )
            for c in self.candidates
        ]


_RUN_STATUS = {TRAINED: "FINISHED", FAILED: "FAILED", SKIPPED: "KILLED"}


def _positives(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame[POSITIVE_COLUMN] == 1, ["user_id", "item_id"]].astype(str).drop_duplicates()


def _figures(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in REPORTED if k in metrics and metrics[k] is not None}


def _popularity_figures(
    scorer: PopularityScorer, seen: pd.DataFrame, day: pd.DataFrame, k: int
) -> tuple[dict[str, float], int]:
    """The popularity candidate's ``REPORTED`` figures on a day, as the two-tower's are
    computed (``evaluate_retrieval``): Recall@k of one top-k list, and the masked
    full-catalogue metrics of the users with training positives."""
    positives = _positives(day)
    positives = positives[positives["item_id"].isin(set(scorer.catalogue))]
    relevant = positives.groupby("user_id")["item_id"].agg(set)
    figures = {"recall_at_k": float(evaluation.recall_at_k([scorer.top(k)] * len(relevant), list(relevant), k))}
    ranked = 0
    if len(scorer.catalogue) >= 10 and positives["user_id"].isin(set(seen["user_id"])).any():
        metrics = evaluate_retriever(scorer, seen, positives)
        ranked = int(metrics["users"])
        figures.update(_figures(metrics))
    return figures, ranked


def _fit_and_score(
    config: RetrievalConfig | None,
    fit: pd.DataFrame,
    select: pd.DataFrame,
    test: pd.DataFrame,
    spec: FeatureSpec,
    catalogue: pd.DataFrame,
    k: int,
) -> tuple[dict[str, float], dict[str, float], int]:
    """One candidate fitted on ``fit``: (validation figures, held-out figures, users ranked
    on the validation day). Validation masks the ``fit`` positives, the held-out day the
    ``fit`` and ``select`` ones; a held-out day that cannot be scored (no positive) leaves
    its figures empty.

    Raises:
        ValueError: the candidate cannot be fitted or scored on the validation day.
    """
    seen_fit = _positives(fit)
    seen_all = pd.concat([seen_fit, _positives(select)]).drop_duplicates()
    if config is None:
        scorer = PopularityScorer(fit, catalogue["item_id"].astype(str))
        validation, users = _popularity_figures(scorer, seen_fit, select, k)

        def held_out() -> dict[str, float]:
            return _popularity_figures(scorer, seen_all, test, k)[0]
    else:
        model = train_retrieval(fit, spec, config).model
        metrics = evaluate_retrieval(model, select, catalogue, spec, k=k, seen=seen_fit)
        validation, users = _figures(metrics), int(metrics.get("ranked_users", 0))

        def held_out() -> dict[str, float]:
            return _figures(evaluate_retrieval(model, test, catalogue, spec, k=k, seen=seen_all))

    try:
        return validation, held_out(), users
    except ValueError:  # e.g. no positive on the held-out day: the report shows "-"
        return validation, {}, users


def select_retriever(
    examples: pd.DataFrame,
    spec: FeatureSpec,
    days: Sequence[dt.date],
    item_features: pd.DataFrame,
    candidates: Mapping[str, RetrievalConfig | None] | None = None,
    *,
    budget_s: float = 600.0,
    k: int = 50,
    log: Callable[[str], None] | None = None,
    train_positives: pd.DataFrame | None = None,
) -> RetrieverSelection:
    """Fit the retrieval candidates on the training days and choose on the validation day.

    Popularity and the first two-tower always run (the SavedModel needs a two-tower);
    another starts only while what is left of ``budget_s`` covers the slowest so far,
    else it is ``skipped``. A candidate that raises ``ValueError`` is ``failed``.

    Args:
        examples: ``training_examples`` rows of ``days`` (with ``train_positives``, of
            the newest two).
        spec: the source's feature spec (must have user and item ids).
        days: the window's days, oldest first (split as ``models.selection.selection_frames``).
        item_features: the catalogue (one row per item, the candidate tower's columns).
        candidates: name -> two-tower settings (None: popularity); default ``RETRIEVER_CANDIDATES``.
        budget_s: seconds the candidates may take together.
        k: the Recall@k cut-off (capped at the catalogue).
        log: called with one line per candidate.
        train_positives: when the training days are streamed (a window larger than
            memory), their positive rows: what every candidate fits on, as retrieval
            reads only positives.

    Raises:
        ValueError: a source without ids, no two-tower candidate, or none trained.
    """
    if not spec.has_ids:
        raise ValueError(f"source {spec.source!r} has no user and item ids: no retrieval to choose")
    candidates = dict(RETRIEVER_CANDIDATES if candidates is None else candidates)
    if not any(config is not None for config in candidates.values()):
        raise ValueError("the retrieval candidates need at least one two-tower: the SavedModel embeds one")
    log = log or (lambda line: None)
    started = time.perf_counter()
    if train_positives is not None:
        select, test = split_streamed_window(examples, days)
        fit, refit = train_positives, False
    else:
        fit, select, test, refit = selection_frames(examples, days)
    selected_on = "the newest training rows" if refit else f"the validation day ({days[-2]})"
    catalogue = item_features.drop_duplicates("item_id")
    k = min(k, len(catalogue))
    tried: list[RetrieverCandidate] = []
    slowest = 0.0
    two_towers = 0
    ranked_users = 0
    for name, config in candidates.items():
        left = budget_s - (time.perf_counter() - started)
        always = config is None or two_towers == 0
        if not always and (left <= 0 or left < slowest):
            tried.append(RetrieverCandidate(name, config, SKIPPED, f"{max(left, 0):.0f} s of {budget_s:.0f} s left"))
            log(f"retriever {name}: skipped, {tried[-1].reason}")
            continue
        candidate_started = time.perf_counter()
        try:
            two_towers += config is not None
            validation, test_figures, users = _fit_and_score(config, fit, select, test, spec, catalogue, k)
            ranked_users = max(ranked_users, users)
            candidate = RetrieverCandidate(name, config, TRAINED, validation=validation, test=test_figures)
        except ValueError as error:
            candidate = RetrieverCandidate(name, config, FAILED, str(error))
        candidate.seconds = time.perf_counter() - candidate_started
        if config is not None:
            slowest = max(slowest, candidate.seconds)
        tried.append(candidate)
        figure = ", ".join(f"{m} {v:.4f}" for m, v in candidate.validation.items()) or candidate.reason
        log(f"retriever {name}: {candidate.status}, {figure}, {candidate.seconds:.1f} s")
    trained = [c for c in tried if c.status == TRAINED]
    metric = METRIC if trained and all(METRIC in c.validation for c in trained) else FALLBACK_METRIC
    ranked = sorted(trained, key=lambda c: -c.validation.get(metric, -np.inf))
    served = next((c for c in ranked if c.config is not None), None)
    if served is None:
        raise ValueError(f"no two-tower retrieval candidate trained on {spec.source}: " + "; ".join(
            f"{c.name}: {c.status} ({c.reason})" for c in tried))  # fmt: skip
    return RetrieverSelection(
        chosen=ranked[0].name,
        served=served.name,
        served_config=served.config,
        metric=metric,
        candidates=tried,
        selected_on=selected_on,
        selecting_users=ranked_users,
        budget_s=budget_s,
        seconds=time.perf_counter() - started,
    )

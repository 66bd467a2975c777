"""Benchmark: how close rankers get to the Bayes-optimal logloss on synthetic logs, by data size.

The synthetic generator knows every impression's true pCTR, so the logloss of the truth
on the test day (``bayes_logloss``) is the floor no model can beat on average. For each
``--days`` value this generates ``--warmup-days`` of history (they only feed the
trailing aggregates, as a warehouse with history does) plus that many days of the
world, trains each ``--configs`` ranker on all but the last two days, early-stops on the
second-to-last (restoring the best epoch) and scores the last one. Every size ends on
the same validation and test days of the same world (one seed), so sizes differ only in
how much history trains the model.

The true click logit has a user x item latent-factor term (8 factors per user and per
item) that only a model learning per-user and per-item factors captures, and only with
many clicks per user. ``no_factor_gap_pct`` measures its weight: the gap of the truth
with that term replaced by a constant (fitted on the validation day), the floor of any
model that learns everything but the factors. ``--users`` / ``--items`` shrink the world
so that each user and item gets more impressions.

Prints one JSON line: per size and config ``logloss``, ``bayes_logloss``, ``gap_pct``
(``100 * (logloss / bayes_logloss - 1)``), ``auc`` and the truth's ``true_auc``,
``calibration``, ``best_epoch``, ``train_rows``, ``clicks_per_user`` (training clicks /
users), ``train_s`` and ``examples_per_s``; ``no_factor_gap_pct``; ``noisy_factor_gap_pct``
(the gap of the truth computed from factors known up to an error of sd 0.1, 0.2, 0.3);
the core count. ``--configs`` with no name prints only the truth-based figures.

Usage: ``python bench/bayes_gap.py [--days 7 14 28] [--configs fm dcn_v2_stacked]
[--users 2000 --items 500] [--warmup-days 30]`` (about 20 minutes on 2 cores with the
defaults).
"""

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reclake.runtime import configure_process  # noqa: E402

configure_process()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402

from models import evaluation  # noqa: E402
from models.training.registry import evaluate_model, train_model  # noqa: E402
from reclake.feature_spec import load_feature_spec  # noqa: E402
from reclake.settings import SyntheticSettings  # noqa: E402
from sources.synthetic import SyntheticWorld, click_factor_term  # noqa: E402
from sources.training_examples import synthetic_training_examples  # noqa: E402

FACTOR_NOISE = (0.1, 0.2, 0.3)
"""Standard deviations of the error added to every true factor (whose spread is 0.45)."""


def _gap_pct(test: pd.DataFrame, probabilities: np.ndarray) -> float:
    labels = test["clicked"].to_numpy()
    bayes = evaluation.bayes_logloss(labels, test["true_pctr"].to_numpy())
    return round(100 * (evaluation.logloss(labels, probabilities) / bayes - 1), 2)


def _with_factor_term(frame: pd.DataFrame, world: SyntheticWorld, term: np.ndarray) -> np.ndarray:
    """The true pCTR of ``frame`` with its latent-factor term replaced by ``term``."""
    true = frame["true_pctr"].to_numpy()
    logit = np.log(true / (1 - true)) - click_factor_term(world, frame["user_id"], frame["item_id"]) + term
    return 1 / (1 + np.exp(-logit))


def no_factor_gap_pct(world: SyntheticWorld, validation: pd.DataFrame, test: pd.DataFrame) -> float:
    """Gap of the true pCTR without its latent-factor term (a constant in its place, fitted on validation)."""
    constant = minimize_scalar(
        lambda c: evaluation.logloss(validation["clicked"].to_numpy(), _with_factor_term(validation, world, c)),
        bounds=(-1.0, 1.0),
        method="bounded",
    ).x
    return _gap_pct(test, _with_factor_term(test, world, constant))


def noisy_factor_gap_pct(world: SyntheticWorld, test: pd.DataFrame, noise: float, seed: int = 0) -> float:
    """Gap of the true pCTR computed from factors known up to a Gaussian error of sd ``noise``:
    what a model that estimates every factor that well reaches."""
    rng = np.random.default_rng(seed)
    noisy = dataclasses.replace(
        world,
        user_factors=world.user_factors + rng.normal(0.0, noise, world.user_factors.shape),
        item_factors=world.item_factors + rng.normal(0.0, noise, world.item_factors.shape),
    )
    return _gap_pct(test, _with_factor_term(test, world, click_factor_term(noisy, test["user_id"], test["item_id"])))


def measure(config: str, train: pd.DataFrame, validation: pd.DataFrame, test: pd.DataFrame, users: int) -> dict:
    """Train ``config`` with early stopping on ``validation``; its metrics on ``test``."""
    result = train_model(config, train, validation, feature_spec=load_feature_spec("synthetic"))
    metrics = evaluate_model(result.model, test)
    return {
        "logloss": round(metrics["logloss"], 5),
        "bayes_logloss": round(metrics["bayes_logloss"], 5),
        "gap_pct": round(100 * (metrics["logloss"] / metrics["bayes_logloss"] - 1), 2),
        "auc": round(metrics["auc"], 4),
        "true_auc": round(evaluation.auc(test["clicked"].to_numpy(), test["true_pctr"].to_numpy()), 4),
        "calibration": round(metrics["calibration"], 3),
        "best_epoch": result.best_epoch or len(result.history["loss"]),
        "train_rows": len(train),
        "clicks_per_user": round(float(train["clicked"].sum()) / users, 1),
        "train_s": round(result.seconds, 1),
        "examples_per_s": round(result.examples_per_second),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[7, 14, 28])
    parser.add_argument(
        "--configs", nargs="*", default=["fm", "dcn_v2_stacked"], help="none: only the truth-based figures"
    )
    parser.add_argument("--events-per-day", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=SyntheticSettings.n_users)
    parser.add_argument("--items", type=int, default=SyntheticSettings.n_items)
    parser.add_argument("--warmup-days", type=int, default=30, help="history before the first training day")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if min(args.days) < 3:
        parser.error("every --days value must be >= 3 (train, validation and test days)")

    started = time.perf_counter()
    settings = SyntheticSettings(
        events_per_day=args.events_per_day, n_users=args.users, n_items=args.items, seed=args.seed
    )
    world = SyntheticWorld.create(settings)
    longest = max(args.days)
    last_day = dt.date.fromisoformat(settings.start_date) + dt.timedelta(days=args.warmup_days + longest - 1)
    calendar = [last_day - dt.timedelta(days=back) for back in range(args.warmup_days + longest - 1, -1, -1)]
    examples = synthetic_training_examples(settings, calendar)
    validation = examples[examples["event_date"] == calendar[-2]]
    test = examples[examples["event_date"] == calendar[-1]]
    sizes = {}
    for days in args.days:
        train = examples[(examples["event_date"] >= calendar[-days]) & (examples["event_date"] < calendar[-2])]
        sizes[days] = {config: measure(config, train, validation, test, args.users) for config in args.configs}
        print(f"{days} days: {json.dumps(sizes[days])}", file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "bayes_gap",
                "cores": os.cpu_count(),
                "events_per_day": args.events_per_day,
                "users": args.users,
                "items": args.items,
                "warmup_days": args.warmup_days,
                "test_day": calendar[-1].isoformat(),
                "no_factor_gap_pct": no_factor_gap_pct(world, validation, test),
                "noisy_factor_gap_pct": {noise: noisy_factor_gap_pct(world, test, noise) for noise in FACTOR_NOISE},
                "days": sizes,
                "total_s": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Benchmark: recommender quality on MovieLens-100K under two published protocols.

Reads ``u.data`` (tab-separated ``user, item, rating, unix seconds``; 100,000 ratings by
943 users of 1,682 movies) and prints one JSON line per protocol:

- ``tfrs_random_80_20``: the TensorFlow Recommenders tutorials' split
  (``protocols.tfrs_random_split``: TFDS record order, ``shuffle(100_000, seed=42)``,
  80,000 train / 20,000 test). Hyper-parameters are chosen on a random 20% of the
  training rows (models fitted on the other 80%), then the models are refitted on all
  training rows.
- ``recbole_user_8_1_1``: RecBole's ``RO`` + ``RS [0.8, 0.1, 0.1]`` split
  (``protocols.per_user_random_split``). Models are fitted on the train part and
  hyper-parameters chosen on the validation part; at test time the train and
  validation items are masked, as RecBole does.

Every rating is an interaction (implicit protocol); each user's masked items are removed
and all 1,682 items are ranked (``evaluation.ranking_metrics``). Per model the line holds
``hr@10``, ``hr@100``, ``recall@10`` (RecBole's: hits / |test items|), ``ndcg@10``,
``mrr@10``, ``micro_recall@10`` and ``micro_recall@100`` (share of test interactions
ranked in their user's top K: TFRS's top-K categorical accuracy), ``rmse`` on the test
ratings (rating models only, else null), ``train_s`` (fitting on the final training
set) and ``examples_per_s`` (training interactions / ``train_s``); tuned models add
``selected`` (the chosen hyper-parameters) and ``tuning_s``.

Usage: ``python bench/quality.py --data-dir ../shared/data/ml-100k``
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models import evaluation, protocols  # noqa: E402
from models.baselines import (  # noqa: E402
    BPRMF,
    EASE,
    BayesianMF,
    BiasedMF,
    EASEConfig,
    InteractionIndex,
    Popularity,
    RandomScores,
    Recommender,
    ScoreBlend,
)

EASE_L2_GRID = (100.0, 200.0, 300.0, 400.0, 600.0, 1000.0)
BLEND_BPR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
"""Weight of BPR-MF in the EASE + BPR-MF blend (EASE gets 1 - weight)."""
KS = (10, 100)
VALIDATION_SHARE = 0.2
VALIDATION_SEED = 0


def read_movielens_100k(data_dir: Path) -> pd.DataFrame:
    """``u.data`` as an interactions frame, rows in file order.

    Returns:
        Columns ``user_id, item_id, rating`` (int64) and ``timestamp`` (int64 Unix seconds).

    Raises:
        FileNotFoundError: if ``data_dir/u.data`` does not exist.
        ValueError: if the file does not have four tab-separated integer columns.
    """
    path = data_dir / "u.data"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass --data-dir pointing at the unpacked ml-100k folder")
    frame = pd.read_csv(path, sep="\t", header=None, names=list(protocols.INTERACTION_COLUMNS))
    if frame.isna().any().any() or not all(pd.api.types.is_integer_dtype(t) for t in frame.dtypes):
        raise ValueError(f"{path} must hold four tab-separated integer columns (user, item, rating, unix seconds)")
    return frame


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol's frames.

    Attributes:
        name: Name printed in the output line.
        tune_train / tune_validation: Fit on the first, choose hyper-parameters on the
            second (with ``tune_train``'s items masked).
        train: Final training rows.
        test_masked: Rows whose items are masked per user at test time.
        test: Held-out rows.
        selection_metric: ``ranking_metrics`` key maximised on validation.
    """

    name: str
    tune_train: pd.DataFrame
    tune_validation: pd.DataFrame
    train: pd.DataFrame
    test_masked: pd.DataFrame
    test: pd.DataFrame
    selection_metric: str


def tfrs_protocol(ratings: pd.DataFrame) -> Protocol:
    train, test = protocols.tfrs_random_split(ratings)
    order = np.random.default_rng(VALIDATION_SEED).permutation(len(train))
    held_out = int(VALIDATION_SHARE * len(train))
    return Protocol(
        name="tfrs_random_80_20",
        tune_train=train.iloc[order[held_out:]],
        tune_validation=train.iloc[order[:held_out]],
        train=train,
        test_masked=train,
        test=test,
        selection_metric="micro_recall@10",
    )


def recbole_protocol(ratings: pd.DataFrame) -> Protocol:
    train, validation, test = protocols.per_user_random_split(ratings, ratios=(0.8, 0.1, 0.1))
    return Protocol(
        name="recbole_user_8_1_1",
        tune_train=train,
        tune_validation=validation,
        train=train,
        test_masked=pd.concat([train, validation]),
        test=test,
        selection_metric="ndcg@10",
    )


class Evaluator:
    """Fits models on one protocol and measures them on its validation or test rows."""

    def __init__(self, protocol: Protocol, index: InteractionIndex) -> None:
        self.protocol = protocol
        self.index = index
        self.users = np.arange(index.shape[0])

    def fit(self, model: Recommender, frame: pd.DataFrame, ratings: bool) -> float:
        """Fit ``model`` on ``frame``; returns the seconds it took."""
        matrix = self.index.matrix(frame, "rating" if ratings else None)
        started = time.perf_counter()
        model.fit(matrix)
        return time.perf_counter() - started

    def ranking(self, model: Recommender, masked: pd.DataFrame, held_out: pd.DataFrame) -> dict[str, float | int]:
        return evaluation.ranking_metrics(
            model.score_users(self.users), self.index.matrix(masked), self.index.items_per_user(held_out), KS
        )

    def report(self, model: Recommender, train_s: float, rating_model: bool) -> dict[str, Any]:
        """Test metrics of a model fitted on ``protocol.train``."""
        protocol = self.protocol
        metrics = self.ranking(model, protocol.test_masked, protocol.test)
        rmse = None
        if rating_model:
            predicted = model.predict(
                self.index.user_indices(protocol.test["user_id"]), self.index.item_indices(protocol.test["item_id"])
            )
            rmse = round(evaluation.rmse(protocol.test["rating"].to_numpy(), predicted), 4)
        keys = [f"{name}@{k}" for name in ("hr", "micro_recall") for k in KS] + ["recall@10", "ndcg@10", "mrr@10"]
        return {
            **{key: round(float(metrics[key]), 4) for key in keys},
            "rmse": rmse,
            "train_s": round(train_s, 2),
            "examples_per_s": round(len(protocol.train) / train_s) if train_s > 0 else None,
        }

    def select(self, candidates: dict[Any, Callable[[], Recommender]]) -> tuple[Any, float]:
        """Fit each candidate on ``tune_train``, score it on ``tune_validation``.

        Returns:
            ``(best key, seconds spent)``.
        """
        protocol = self.protocol
        started = time.perf_counter()
        scored = {}
        for key, build in candidates.items():
            model = build()
            self.fit(model, protocol.tune_train, False)
            scored[key] = self.ranking(model, protocol.tune_train, protocol.tune_validation)[protocol.selection_metric]
        return max(scored, key=scored.get), time.perf_counter() - started


def run_protocol(protocol: Protocol, index: InteractionIndex) -> dict[str, Any]:
    """Tune, fit and evaluate every model on one protocol; returns the output line."""
    evaluator = Evaluator(protocol, index)
    results: dict[str, Any] = {}

    for name, model in (("random", RandomScores()), ("popularity", Popularity())):
        results[name] = evaluator.report(model, evaluator.fit(model, protocol.train, False), False)

    best_l2, ease_tuning_s = evaluator.select({l2: lambda l2=l2: EASE(EASEConfig(l2=l2)) for l2 in EASE_L2_GRID})
    ease = EASE(EASEConfig(l2=best_l2))
    ease_s = evaluator.fit(ease, protocol.train, False)
    results["ease"] = {
        **evaluator.report(ease, ease_s, False),
        "selected": {"l2": best_l2},
        "tuning_s": round(ease_tuning_s, 2),
    }

    bpr = BPRMF()
    bpr_s = evaluator.fit(bpr, protocol.train, False)
    results["bpr_mf"] = evaluator.report(bpr, bpr_s, False)

    # Blend weight: component models fitted on the tuning split, blends scored on validation.
    started = time.perf_counter()
    if protocol.tune_train is protocol.train:
        tune_ease, tune_bpr = ease, bpr
    else:
        tune_ease, tune_bpr = EASE(EASEConfig(l2=best_l2)), BPRMF()
        evaluator.fit(tune_ease, protocol.tune_train, False)
        evaluator.fit(tune_bpr, protocol.tune_train, False)
    validation_scores = {
        weight: evaluator.ranking(
            ScoreBlend([tune_ease, tune_bpr], [1 - weight, weight]), protocol.tune_train, protocol.tune_validation
        )[protocol.selection_metric]
        for weight in BLEND_BPR_WEIGHTS
    }
    best_weight = max(validation_scores, key=validation_scores.get)
    blend_tuning_s = time.perf_counter() - started
    blend = ScoreBlend([ease, bpr], [1 - best_weight, best_weight])
    results["ease_bpr_blend"] = {
        **evaluator.report(blend, ease_s + bpr_s, False),
        "selected": {"ease_l2": best_l2, "bpr_weight": best_weight},
        "tuning_s": round(blend_tuning_s, 2),
    }

    for name, model in (("biased_mf", BiasedMF()), ("bayesian_mf", BayesianMF())):
        results[name] = evaluator.report(model, evaluator.fit(model, protocol.train, True), True)

    return {
        "protocol": protocol.name,
        "train_rows": len(protocol.train),
        "test_rows": len(protocol.test),
        "test_users": int(protocol.test["user_id"].nunique()),
        "items_ranked": index.shape[1],
        "models": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "ml-100k")
    args = parser.parse_args()

    started = time.perf_counter()
    ratings = read_movielens_100k(args.data_dir)
    index = InteractionIndex.from_frames(ratings)
    for build in (tfrs_protocol, recbole_protocol):
        line = run_protocol(build(ratings), index)
        line["elapsed_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

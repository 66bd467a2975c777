"""Benchmark: ESMM and MMoE against a CVR model trained on clicked impressions only.

For each seed, generates ``--days`` synthetic days (the generator knows every
impression's true pCTR and pCVR), trains on all but the last two days, early-stops on
the second-to-last and scores the last one. Contenders:

- ``esmm`` / ``mmoe``: the bundled configs, trained on every impression (losses on
  CTR and CTCVR);
- ``naive``: the conventional pipeline: a pCVR model fitted on clicked impressions only
  (label ``converted``), multiplied by a separate pCTR model fitted on every impression.
  Both are the ESMM tower architecture on its own (``dcn_v2`` with no cross layer: the
  encoder and an MLP of ESMM's ``cvr_units``);
- ``truth``: the generator's own probabilities, the ceiling.

Prints one JSON line: per contender and seed, and their means over seeds,

- ``ctcvr_auc``: AUC of pCTCVR for ``converted`` over every test impression (the
  ranking an advertiser paying per conversion needs);
- ``cvr_auc_clicked``: AUC of pCVR for ``converted`` over the clicked test impressions
  (the only rows with an observed CVR label);
- ``pcvr_spearman_all``: rank correlation of pCVR with the true pCVR over every test
  impression, the space pCVR is used on at serving time;
- ``pcvr_expected_logloss_all``: mean cross-entropy of pCVR against the true pCVR
  over every test impression;
- ``naive`` only: ``ctcvr_auc_pcvr_alone``, ranking every impression by pCVR alone.

Usage: ``python bench/multitask.py [--days 6] [--events-per-day 20000] [--seeds 3]``
"""

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reclake.runtime import configure_process  # noqa: E402

configure_process()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models import evaluation  # noqa: E402
from models.inputs.features import feature_arrays  # noqa: E402
from models.training.config import load_spec  # noqa: E402
from models.training.registry import predict_tasks, train_model  # noqa: E402
from reclake.feature_spec import load_feature_spec  # noqa: E402
from reclake.settings import SyntheticSettings  # noqa: E402
from sources.training_examples import synthetic_training_examples  # noqa: E402

PROBABILITY_EPSILON = 1e-7
SPEC = load_feature_spec("synthetic")
"""The synthetic source's feature spec: the features and labels every contender trains on."""


def expected_logloss(true_probability: np.ndarray, predicted: np.ndarray) -> float:
    """Mean cross-entropy of ``predicted`` against Bernoulli(``true_probability``)."""
    p = np.clip(predicted.astype(np.float64), PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
    return float(-np.mean(true_probability * np.log(p) + (1 - true_probability) * np.log1p(-p)))


def cvr_metrics(test: pd.DataFrame, pctcvr: np.ndarray, pcvr: np.ndarray) -> dict[str, float]:
    """The benchmark's metrics for one contender on the test day."""
    clicked = test["clicked"].to_numpy() == 1
    converted = test["converted"].to_numpy()
    true_pcvr = test["true_pcvr"].to_numpy()
    return {
        "ctcvr_auc": evaluation.auc(converted, pctcvr),
        "cvr_auc_clicked": evaluation.auc(converted[clicked], pcvr[clicked]),
        "pcvr_spearman_all": float(pd.Series(pcvr).corr(pd.Series(true_pcvr), method="spearman")),
        "pcvr_expected_logloss_all": expected_logloss(true_pcvr, pcvr),
    }


def with_epochs(name: str, epochs: int):
    """The bundled config ``name`` with at most ``epochs`` epochs."""
    spec = load_spec(name)
    return dataclasses.replace(spec, training=dataclasses.replace(spec.training, epochs=epochs))


def single_tower_config(esmm_spec, label: str) -> dict:
    """The ESMM tower on its own: ``dcn_v2`` without cross layers, trained on ``label``."""
    return {
        "type": "dcn_v2",
        "model": {
            "embedding_dim": esmm_spec.model["embedding_dim"],
            "cross_layers": 0,
            "deep_units": list(esmm_spec.model["cvr_units"]),
        },
        "training": {**esmm_spec.to_dict()["training"], "label": label, "loss_weights": None},
    }


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    settings = SyntheticSettings(events_per_day=args.events_per_day, n_users=args.users, n_items=args.items, seed=seed)
    start = dt.date.fromisoformat(settings.start_date)
    days = [start + dt.timedelta(days=i) for i in range(args.days)]
    examples = synthetic_training_examples(settings, days)
    train = examples[examples["event_date"] < days[-2]]
    validation = examples[examples["event_date"] == days[-2]]
    test = examples[examples["event_date"] == days[-1]]
    features = feature_arrays(test, SPEC)

    results = {}
    for name in ("esmm", "mmoe"):
        predictions = predict_tasks(
            train_model(with_epochs(name, args.epochs), train, validation, feature_spec=SPEC).model, features
        )
        results[name] = cvr_metrics(test, predictions["pctcvr"], predictions["pcvr"])

    esmm_spec = with_epochs("esmm", args.epochs)
    ctr_model = train_model(single_tower_config(esmm_spec, "clicked"), train, validation, feature_spec=SPEC).model
    cvr_model = train_model(
        single_tower_config(esmm_spec, "converted"),
        train[train["clicked"] == 1],
        validation[validation["clicked"] == 1],
        feature_spec=SPEC,
    ).model
    pctr = predict_tasks(ctr_model, features)["pctr"]
    pcvr = predict_tasks(cvr_model, features)["pctr"]  # the single output: pCVR for label `converted`
    results["naive"] = cvr_metrics(test, pctr * pcvr, pcvr)
    results["naive"]["ctcvr_auc_pcvr_alone"] = evaluation.auc(test["converted"].to_numpy(), pcvr)
    results["truth"] = cvr_metrics(
        test, (test["true_pctr"] * test["true_pcvr"]).to_numpy(), test["true_pcvr"].to_numpy()
    )
    results["test_rows"] = {
        "impressions": int(len(test)),
        "clicks": int(test["clicked"].sum()),
        "conversions": int(test["converted"].sum()),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--events-per-day", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10, help="upper bound; early stopping decides")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.days < 3:
        parser.error("--days must be >= 3 (train, validation and test days)")

    started = time.perf_counter()
    per_seed = {seed: run_seed(seed, args) for seed in range(1, args.seeds + 1)}
    contenders = ("esmm", "mmoe", "naive", "truth")
    means = {
        name: {
            metric: round(float(np.mean([per_seed[s][name][metric] for s in per_seed])), 4)
            for metric in per_seed[1][name]
        }
        for name in contenders
    }
    print(
        json.dumps(
            {
                "benchmark": "multitask",
                "days": args.days,
                "events_per_day": args.events_per_day,
                "seeds": args.seeds,
                "mean": means,
                "per_seed": {
                    seed: {name: {k: round(v, 4) for k, v in values.items()} for name, values in result.items()}
                    for seed, result in per_seed.items()
                },
                "total_s": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

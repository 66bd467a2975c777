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

Models: the matrix baselines of ``models.retrieval.baselines`` (random, popularity, EASE, BPR-MF,
an EASE + BPR-MF blend, biased and Bayesian MF), EASE over a recency-weighted profile at
the request's time (``models.retrieval.recency``; TFRS split only, where every test rating is a
request at its own time), the same blended with a session co-occurrence matrix over a
second recency-weighted profile (``session_ease``, ``models.retrieval.sessions``; TFRS
split only), two linear rating blends fitted on the validation ratings
(``models.retrieval.rating_blend``: baseline predictors, item and user kNN baselines,
biased and Bayesian MF; ``rating_blend_session`` adds the user's time-weighted baseline
residuals around the rating's own time) and the TensorFlow models trained on the interaction frames:
the two-tower retriever without and with the log-Q correction and with a pooled history
of the user's 50 latest items (``models.retrieval.two_tower``), SASRec (``models.retrieval.sequence``), the
joint retrieval + rating model (``models.retrieval.joint``) and an EASE + joint blend. The
TensorFlow models' epoch count is chosen on validation: one run on the tuning rows is
scored after every epoch, then the model is refitted on the final training rows with the
best epoch count.

Every rating is an interaction (implicit protocol); each user's masked items are removed
and all 1,682 items are ranked (``evaluation.ranking_metrics``). Per model the line holds
``hr@10`` and ``hr@100`` (share of test interactions whose item ranks in its user's top
K: TFRS's top-K categorical accuracy, the quantity the targets are set on),
``user_hr@10`` / ``user_hr@100`` (share of users with at least one hit), ``recall@10``
(RecBole's: hits / |test items|, per user), ``ndcg@10`` and ``mrr@10`` (per user; null
for the request-time model), ``rmse`` on the test ratings (rating models only, else
null), ``train_s`` (fitting on the final training set) and ``examples_per_s`` (training
interactions / ``train_s``); tuned models add ``selected`` (the chosen
hyper-parameters) and ``tuning_s``.

Usage: ``python bench/quality.py --data-dir ../shared/data/ml-100k`` (9 to 11 minutes on
2 CPU cores before ``session_ease`` and the rating blends, most of it for the TensorFlow
models; each one's test line also goes to stderr as soon as it is measured).
``--models session_ease,rating_blend_session`` measures only the named rows (the models
they build on, such as EASE's ``l2``, are still tuned) and ``--protocols
tfrs_random_80_20`` only the named protocols.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from reclake.runtime import configure_process  # noqa: E402

configure_process()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models import evaluation  # noqa: E402
from models.inputs import protocols  # noqa: E402
from models.retrieval.baselines import (  # noqa: E402
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
from models.retrieval.joint import JointConfig, fit_joint  # noqa: E402
from models.retrieval.rating_blend import (  # noqa: E402
    KNNBaseline,
    KNNBaselineConfig,
    RatingBlend,
    SessionResiduals,
    baseline_predictors,
)
from models.retrieval.recency import RecencyEASE, RecencyEASEConfig  # noqa: E402
from models.retrieval.sequence import SASRecConfig, fit_sasrec  # noqa: E402
from models.retrieval.sessions import SessionEASE, SessionEASEConfig  # noqa: E402
from models.retrieval.two_tower import RetrievalConfig, fit_two_tower  # noqa: E402

EASE_L2_GRID = (100.0, 200.0, 300.0, 400.0, 600.0, 1000.0)
BLEND_BPR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
"""Weight of BPR-MF in the EASE + BPR-MF blend (EASE gets 1 - weight)."""
BLEND_JOINT_WEIGHTS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8)
"""Weight of the joint model in the EASE + joint blend (EASE gets 1 - weight)."""
KS = (10, 100)
REPORTED_RANKING_KEYS = [f"{name}@{k}" for name in ("hr", "user_hr") for k in KS] + ["recall@10", "ndcg@10", "mrr@10"]
RECENCY_DECAY_GRID = (60.0, 300.0, 900.0, 3600.0)
"""``RecencyEASE.decay_seconds`` candidates (seconds)."""
RECENCY_BASELINE_GRID = (0.01, 0.05, 0.2)
"""``RecencyEASE.baseline_weight`` candidates."""
SESSION_SECONDS_GRID = (30.0, 60.0, 120.0)
"""``SessionEASE.session_seconds`` candidates (time constant of the co-occurrence pair weight)."""
SESSION_PROFILE_GRID = ((60.0, 0.0), (60.0, 0.01), (300.0, 0.01))
"""``(session_decay_seconds, session_baseline_weight)`` candidates of the profile the co-occurrence multiplies."""
SESSION_WEIGHT_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)
"""``SessionEASE.session_weight`` candidates."""
SESSION_SELECTION_KEYS = ("hr@10", "hr@100")
"""``SessionEASE`` settings maximise the sum of these validation metrics (the issue's two targets)."""
VALIDATION_SHARE = 0.2
VALIDATION_SEED = 0

TWO_TOWER = RetrievalConfig(embedding_dim=32, learning_rate=0.1, batch_size=512, vocabulary_min_count=1)
LOG_Q = RetrievalConfig(**{**TWO_TOWER.__dict__, "sampling_bias_correction": True})
LOG_Q_HISTORY = RetrievalConfig(**{**LOG_Q.__dict__, "history_length": 50})
SASREC = SASRecConfig(max_length=50, embedding_dim=64, num_blocks=2, dropout=0.2, num_negatives=256, learning_rate=2e-3)
JOINT = JointConfig(embedding_dim=32, rating_units=(256, 128), batch_size=256)


@dataclass(frozen=True)
class FrameModelSpec:
    """A TensorFlow model of the bench, trained on interaction frames.

    Attributes:
        fit: ``fit(frame, epochs, on_epoch_end) -> model`` with ``score_all`` (and
            ``predict_ratings`` for rating models).
        max_epochs: Epochs of the validation run that chooses the epoch count.
        rating_model: Whether the model predicts ratings (the line reports its RMSE).
    """

    fit: Callable[[pd.DataFrame, int, Callable[[int, Any], None] | None], Any]
    max_epochs: int
    rating_model: bool = False


def _with_epochs(config: Any, epochs: int) -> Any:
    return type(config)(**{**config.__dict__, "epochs": epochs})


FRAME_MODELS: dict[str, FrameModelSpec] = {
    "two_tower": FrameModelSpec(lambda f, e, hook: fit_two_tower(f, _with_epochs(TWO_TOWER, e), on_epoch_end=hook), 6),
    "two_tower_logq": FrameModelSpec(lambda f, e, hook: fit_two_tower(f, _with_epochs(LOG_Q, e), on_epoch_end=hook), 6),
    # Random splits spread the held-out rows over each user's timeline, so a training
    # row's history is the profile queries carry (the latest items but its own).
    "two_tower_logq_history": FrameModelSpec(
        lambda f, e, hook: fit_two_tower(
            f, _with_epochs(LOG_Q_HISTORY, e), training_history="latest_other", on_epoch_end=hook
        ),
        6,
    ),
    "sasrec": FrameModelSpec(lambda f, e, hook: fit_sasrec(f, _with_epochs(SASREC, e), on_epoch_end=hook), 8),
    "joint": FrameModelSpec(lambda f, e, hook: fit_joint(f, _with_epochs(JOINT, e), on_epoch_end=hook), 6, True),
}


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
        timed_requests: Whether each held-out row is a request at its own time (the
            TFRS split: one request per test rating), so request-time models are measured.
    """

    name: str
    tune_train: pd.DataFrame
    tune_validation: pd.DataFrame
    train: pd.DataFrame
    test_masked: pd.DataFrame
    test: pd.DataFrame
    selection_metric: str
    timed_requests: bool = False


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
        selection_metric="hr@10",
        timed_requests=True,
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


class FrameModel:
    """A model fitted on interaction frames, seen through the baselines' protocol.

    ``score_users`` / ``predict`` take this bench's user and item indices and call the
    model's ``score_all`` / ``predict_ratings`` with the raw ids; the full score matrix is
    computed once, so later training of the model does not change it.
    """

    def __init__(self, model: Any, index: InteractionIndex) -> None:
        self.model = model
        self.index = index
        self._scores: np.ndarray | None = None

    def score_users(self, user_indices: Any) -> np.ndarray:
        if self._scores is None:
            self._scores = self.model.score_all(self.index.user_ids, self.index.item_ids)
        return self._scores[np.asarray(user_indices)]

    def predict(self, user_indices: Any, item_indices: Any) -> np.ndarray:
        return self.model.predict_ratings(self.index.user_ids[user_indices], self.index.item_ids[item_indices])


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
        return self.line(metrics, train_s, rmse)

    def line(self, metrics: dict[str, Any], train_s: float, rmse: float | None = None) -> dict[str, Any]:
        """A model's output entry: the reported ranking keys (null where ``metrics`` lacks one), RMSE, speed."""
        return {
            **{key: None if key not in metrics else round(float(metrics[key]), 4) for key in REPORTED_RANKING_KEYS},
            "rmse": rmse,
            "train_s": round(train_s, 2),
            "examples_per_s": round(len(self.protocol.train) / train_s) if train_s > 0 else None,
        }

    def request_ranking(self, model: Any, masked: pd.DataFrame, held_out: pd.DataFrame) -> dict[str, float]:
        """``hr@K`` of a request-time model: each held-out row is a request at its own timestamp.

        The row's user gets a full ranking as of that time (their ``masked`` items
        removed) and the row's item is the one relevant item; ``hr@K`` is the share of
        rows whose item ranks in the top K, the same quantity ``ranking_metrics`` pools
        for per-user models. User-level metrics have no per-request meaning and are left out.
        """
        users = self.index.user_indices(held_out["user_id"])
        return self.request_metrics(model.score_requests(users, held_out["timestamp"].to_numpy()), masked, held_out)

    def request_metrics(self, scores: np.ndarray, masked: pd.DataFrame, held_out: pd.DataFrame) -> dict[str, float]:
        """``hr@K`` of request scores (one row per ``held_out`` row, in its order); see ``request_ranking``."""
        users = self.index.user_indices(held_out["user_id"])
        targets = [[item] for item in self.index.item_indices(held_out["item_id"])]
        metrics = evaluation.ranking_metrics(scores, self.index.matrix(masked)[users], targets, KS)
        return {f"hr@{k}": metrics[f"hr@{k}"] for k in KS}

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

    def select_epochs(self, spec: FrameModelSpec) -> tuple[int, FrameModel, float]:
        """Train on ``tune_train`` for ``spec.max_epochs``, scoring ``tune_validation`` after each epoch.

        Returns:
            ``(best epoch, the model's scores at that epoch, seconds spent)``.
        """
        protocol = self.protocol
        scored: dict[int, tuple[float, FrameModel]] = {}

        def score(epoch: int, model: Any) -> None:
            frozen = FrameModel(model, self.index)
            metrics = self.ranking(frozen, protocol.tune_train, protocol.tune_validation)
            scored[epoch] = (metrics[protocol.selection_metric], frozen)

        started = time.perf_counter()
        spec.fit(protocol.tune_train, spec.max_epochs, score)
        best = max(scored, key=lambda epoch: scored[epoch][0])
        return best, scored[best][1], time.perf_counter() - started


def run_frame_models(
    evaluator: Evaluator,
    names: Sequence[str],
    tune_ease: EASE | None,
    ease: EASE | None,
    ease_s: float,
    with_blend: bool,
) -> dict[str, Any]:
    """Tune, fit and evaluate the ``FRAME_MODELS`` in ``names`` and the EASE + joint blend on one protocol.

    Args:
        evaluator: The protocol's evaluator.
        names: Which of ``FRAME_MODELS`` to run (``joint`` among them for the blend).
        tune_ease: EASE fitted on the tuning rows (for the blend weight).
        ease: EASE fitted on the final training rows.
        ease_s: Seconds ``ease`` took to fit.
        with_blend: Whether to measure the EASE + joint blend.

    Returns:
        Model name -> report.
    """
    protocol = evaluator.protocol
    results: dict[str, Any] = {}
    final: dict[str, FrameModel] = {}
    at_best_epoch: dict[str, FrameModel] = {}
    for name in names:
        spec = FRAME_MODELS[name]
        best_epoch, at_best_epoch[name], tuning_s = evaluator.select_epochs(spec)
        started = time.perf_counter()
        final[name] = FrameModel(spec.fit(protocol.train, best_epoch, None), evaluator.index)
        train_s = time.perf_counter() - started
        results[name] = {
            **evaluator.report(final[name], train_s, spec.rating_model),
            "selected": {"epochs": best_epoch},
            "tuning_s": round(tuning_s, 2),
        }
        print(f"{protocol.name} {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)

    if not with_blend:
        return results
    started = time.perf_counter()
    validation_scores = {
        weight: evaluator.ranking(
            ScoreBlend([tune_ease, at_best_epoch["joint"]], [1 - weight, weight]),
            protocol.tune_train,
            protocol.tune_validation,
        )[protocol.selection_metric]
        for weight in BLEND_JOINT_WEIGHTS
    }
    best_weight = max(validation_scores, key=validation_scores.get)
    blend_tuning_s = time.perf_counter() - started
    blend = ScoreBlend([ease, final["joint"]], [1 - best_weight, best_weight])
    results["ease_joint_blend"] = {
        **evaluator.report(blend, ease_s + results["joint"]["train_s"], False),
        "selected": {"joint_weight": best_weight},
        "tuning_s": round(blend_tuning_s, 2),
    }
    return results


def run_recency_ease(evaluator: Evaluator, l2: float) -> dict[str, Any]:
    """Tune ``RecencyEASE``'s decay and baseline weight on validation requests, then measure it on test.

    EASE's weights use ``l2`` (already chosen for EASE); the profile weighting is chosen
    on the tuning rows, then the model is refitted on the final training rows.
    """
    protocol = evaluator.protocol
    started = time.perf_counter()
    tuned = RecencyEASE(RecencyEASEConfig(l2=l2)).fit(protocol.tune_train, evaluator.index)
    scored = {
        (decay, baseline): evaluator.request_ranking(
            tuned.set_config(decay, baseline), protocol.tune_train, protocol.tune_validation
        )[protocol.selection_metric]
        for decay in RECENCY_DECAY_GRID
        for baseline in RECENCY_BASELINE_GRID
    }
    decay, baseline = max(scored, key=scored.get)
    tuning_s = time.perf_counter() - started
    started = time.perf_counter()
    model = RecencyEASE(RecencyEASEConfig(l2, decay, baseline)).fit(protocol.train, evaluator.index)
    train_s = time.perf_counter() - started
    return {
        **evaluator.line(evaluator.request_ranking(model, protocol.test_masked, protocol.test), train_s),
        "selected": {"l2": l2, "decay_seconds": decay, "baseline_weight": baseline},
        "tuning_s": round(tuning_s, 2),
    }


def run_session_ease(evaluator: Evaluator, l2: float, decay: float, baseline: float) -> dict[str, Any]:
    """Tune ``SessionEASE`` on validation requests, then measure it on test.

    EASE's ``l2`` and its profile (``decay``, ``baseline``) are ``ease`` / ``ease_recency``'s
    choices; the co-occurrence time constant, the session profile and the blend weight
    are chosen on the tuning rows (the sum of ``SESSION_SELECTION_KEYS``), then the model
    is refitted on the final training rows.
    """
    protocol = evaluator.protocol
    validation = protocol.tune_validation
    users = evaluator.index.user_indices(validation["user_id"])
    times = validation["timestamp"].to_numpy()
    started = time.perf_counter()
    scored: dict[tuple[float, float, float, float], float] = {}
    for seconds in SESSION_SECONDS_GRID:
        config = SessionEASEConfig(l2=l2, decay_seconds=decay, baseline_weight=baseline, session_seconds=seconds)
        tuned = SessionEASE(config).fit(protocol.tune_train, evaluator.index)
        for session_decay, session_baseline in SESSION_PROFILE_GRID:
            tuned.set_profiles(session_decay_seconds=session_decay, session_baseline_weight=session_baseline)
            ease_scores, session_scores = tuned.component_scores(users, times)
            for weight in SESSION_WEIGHT_GRID:
                metrics = evaluator.request_metrics(
                    (1.0 - weight) * ease_scores + weight * session_scores, protocol.tune_train, validation
                )
                scored[(seconds, session_decay, session_baseline, weight)] = sum(
                    metrics[key] for key in SESSION_SELECTION_KEYS
                )
            del ease_scores, session_scores
    seconds, session_decay, session_baseline, weight = max(scored, key=scored.get)
    tuning_s = time.perf_counter() - started
    config = SessionEASEConfig(
        l2=l2,
        decay_seconds=decay,
        baseline_weight=baseline,
        session_seconds=seconds,
        session_decay_seconds=session_decay,
        session_baseline_weight=session_baseline,
        session_weight=weight,
    )
    started = time.perf_counter()
    model = SessionEASE(config).fit(protocol.train, evaluator.index)
    train_s = time.perf_counter() - started
    return {
        **evaluator.line(evaluator.request_ranking(model, protocol.test_masked, protocol.test), train_s),
        "selected": dict(config.__dict__),
        "tuning_s": round(tuning_s, 2),
    }


RATING_COMPONENTS = ("baseline", "knn_item", "knn_user", "biased_mf", "bayesian_mf")
"""Rating models whose predictions ``rating_blend`` combines."""


def rating_columns(
    fitted_on: pd.DataFrame, requests: pd.DataFrame, index: InteractionIndex
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the ``RATING_COMPONENTS`` and ``SessionResiduals`` on ``fitted_on``; their columns for ``requests``.

    Returns:
        ``(model predictions [n, len(RATING_COMPONENTS)], session residual features [n, 3])``.
    """
    matrix = index.matrix(fitted_on, "rating")
    users, items = index.user_indices(requests["user_id"]), index.item_indices(requests["item_id"])
    mean, user_bias, item_bias = baseline_predictors(matrix)
    low, high = float(matrix.data.min()), float(matrix.data.max())
    predictions = {
        "baseline": np.clip(mean + user_bias[users] + item_bias[items], low, high),
        "knn_item": KNNBaseline().fit(matrix).predict(users, items),
        "knn_user": KNNBaseline(KNNBaselineConfig(user_based=True)).fit(matrix).predict(users, items),
        "biased_mf": BiasedMF().fit(matrix).predict(users, items),
        "bayesian_mf": BayesianMF().fit(matrix).predict(users, items),
    }
    features = SessionResiduals().fit(fitted_on, index).features(users, requests["timestamp"].to_numpy())
    return np.column_stack([predictions[name] for name in RATING_COMPONENTS]), features


def run_rating_blends(evaluator: Evaluator) -> dict[str, Any]:
    """``rating_blend`` (the models) and ``rating_blend_session`` (plus request-time session residuals).

    The components are fitted on the tuning rows and the blend weights fitted by least
    squares on the validation ratings; then the components are refitted on the final
    training rows and the same weights applied to their test predictions.
    """
    protocol = evaluator.protocol
    started = time.perf_counter()
    validation_models, validation_features = rating_columns(
        protocol.tune_train, protocol.tune_validation, evaluator.index
    )
    targets = protocol.tune_validation["rating"].to_numpy(dtype=np.float64)
    blends = {
        "rating_blend": RatingBlend().fit(validation_models, targets),
        "rating_blend_session": RatingBlend().fit(np.hstack([validation_models, validation_features]), targets),
    }
    tuning_s = time.perf_counter() - started
    started = time.perf_counter()
    test_models, test_features = rating_columns(protocol.train, protocol.test, evaluator.index)
    train_s = time.perf_counter() - started
    truth = protocol.test["rating"].to_numpy()
    names = ["intercept", *RATING_COMPONENTS]
    session_names = [f"session_residual_{int(tau)}s" for tau in SessionResiduals().config.time_constants]
    results = {}
    for name, columns, column_names in (
        ("rating_blend", test_models, names),
        ("rating_blend_session", np.hstack([test_models, test_features]), names + session_names),
    ):
        rmse = round(evaluation.rmse(truth, blends[name].predict(columns)), 4)
        results[name] = {
            **evaluator.line({}, train_s, rmse),
            "selected": dict(zip(column_names, np.round(blends[name].coefficients, 4).tolist(), strict=True)),
            "tuning_s": round(tuning_s, 2),
        }
    return results


MODEL_NAMES = (
    "random",
    "popularity",
    "ease",
    "ease_recency",
    "session_ease",
    "bpr_mf",
    "ease_bpr_blend",
    "biased_mf",
    "bayesian_mf",
    "rating_blend",
    "rating_blend_session",
    *FRAME_MODELS,
    "ease_joint_blend",
)
"""Every row the bench can print, in output order (``--models`` picks some of them)."""
REQUEST_TIME_MODELS = ("ease_recency", "session_ease")
"""Rows measured only on protocols with timed requests."""


def run_protocol(protocol: Protocol, index: InteractionIndex, models: Sequence[str] = MODEL_NAMES) -> dict[str, Any]:
    """Tune, fit and evaluate the chosen ``models`` on one protocol; returns the output line.

    A model another one builds on (EASE's ``l2`` for the EASE blends and the request-time
    models, ``joint`` for the EASE + joint blend) is tuned whenever needed, but only the
    chosen models get a row.
    """
    chosen = set(models)
    evaluator = Evaluator(protocol, index)
    results: dict[str, Any] = {}

    for name, model in (("random", RandomScores()), ("popularity", Popularity())):
        if name in chosen:
            results[name] = evaluator.report(model, evaluator.fit(model, protocol.train, False), False)

    frame_names = [name for name in FRAME_MODELS if name in chosen]
    if "ease_joint_blend" in chosen and "joint" not in frame_names:
        frame_names.append("joint")
    needs_ease = {"ease", "ease_bpr_blend", "ease_joint_blend", *REQUEST_TIME_MODELS} & chosen
    if needs_ease:
        best_l2, ease_tuning_s = evaluator.select({l2: lambda l2=l2: EASE(EASEConfig(l2=l2)) for l2 in EASE_L2_GRID})
        ease = EASE(EASEConfig(l2=best_l2))
        ease_s = evaluator.fit(ease, protocol.train, False)
        if "ease" in chosen:
            results["ease"] = {
                **evaluator.report(ease, ease_s, False),
                "selected": {"l2": best_l2},
                "tuning_s": round(ease_tuning_s, 2),
            }
        if protocol.tune_train is protocol.train:
            tune_ease = ease
        else:
            tune_ease = EASE(EASEConfig(l2=best_l2))
            evaluator.fit(tune_ease, protocol.tune_train, False)

    if protocol.timed_requests and {*REQUEST_TIME_MODELS} & chosen:
        recency = run_recency_ease(evaluator, best_l2)
        if "ease_recency" in chosen:
            results["ease_recency"] = recency
        if "session_ease" in chosen:
            selected = recency["selected"]
            results["session_ease"] = run_session_ease(
                evaluator, best_l2, selected["decay_seconds"], selected["baseline_weight"]
            )
            print(f"{protocol.name} session_ease: {json.dumps(results['session_ease'])}", file=sys.stderr, flush=True)

    if {"bpr_mf", "ease_bpr_blend"} & chosen:
        bpr = BPRMF()
        bpr_s = evaluator.fit(bpr, protocol.train, False)
        if "bpr_mf" in chosen:
            results["bpr_mf"] = evaluator.report(bpr, bpr_s, False)

    if "ease_bpr_blend" in chosen:
        # Blend weight: component models fitted on the tuning split, blends scored on validation.
        started = time.perf_counter()
        if protocol.tune_train is protocol.train:
            tune_bpr = bpr
        else:
            tune_bpr = BPRMF()
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
        if name in chosen:
            results[name] = evaluator.report(model, evaluator.fit(model, protocol.train, True), True)

    if {"rating_blend", "rating_blend_session"} & chosen:
        blends = run_rating_blends(evaluator)
        for name, line in blends.items():
            if name in chosen:
                results[name] = line
                print(f"{protocol.name} {name}: {json.dumps(line)}", file=sys.stderr, flush=True)

    if frame_names:
        frame_results = run_frame_models(
            evaluator,
            frame_names,
            tune_ease if needs_ease else None,
            ease if needs_ease else None,
            ease_s if needs_ease else 0.0,
            "ease_joint_blend" in chosen,
        )
        results.update({name: line for name, line in frame_results.items() if name in chosen})

    return {
        "protocol": protocol.name,
        "train_rows": len(protocol.train),
        "test_rows": len(protocol.test),
        "test_users": int(protocol.test["user_id"].nunique()),
        "items_ranked": index.shape[1],
        "models": {name: results[name] for name in MODEL_NAMES if name in results},
    }


PROTOCOLS: dict[str, Callable[[pd.DataFrame], Protocol]] = {
    "tfrs_random_80_20": tfrs_protocol,
    "recbole_user_8_1_1": recbole_protocol,
}


def parse_names(known: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma-separated subset of ``known``, kept in ``known``'s order."""

    def parse(text: str) -> tuple[str, ...]:
        names = {name.strip() for name in text.split(",") if name.strip()}
        unknown = names - set(known)
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"unknown or no names {sorted(unknown)}; choose from {','.join(known)}")
        return tuple(name for name in known if name in names)

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "ml-100k")
    parser.add_argument(
        "--models",
        type=parse_names(MODEL_NAMES),
        default=MODEL_NAMES,
        help=f"comma-separated rows to measure (default: all): {','.join(MODEL_NAMES)}",
    )
    parser.add_argument(
        "--protocols",
        type=parse_names(tuple(PROTOCOLS)),
        default=tuple(PROTOCOLS),
        help=f"comma-separated protocols (default: all): {','.join(PROTOCOLS)}",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    ratings = read_movielens_100k(args.data_dir)
    index = InteractionIndex.from_frames(ratings)
    for name in args.protocols:
        line = run_protocol(PROTOCOLS[name](ratings), index, args.models)
        line["elapsed_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

"""``models.served_quality``: calibration, quality and prediction drift of a served model
on a day, on data whose true probabilities are known; the alert thresholds of
``MonitoringResource`` applied to them; and which scores a day is judged on (those the
service logged for the day's events, written by the real prediction logger, or re-scored)."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import toy_examples

from models.served_quality import day_predictions, decile_table, normed_wasserstein, served_model_quality
from resources.monitoring import MonitoringResource
from serving.prediction_log import PredictionLogger, build_record
from serving.prediction_log_reader import SERVED_SCORE_COLUMNS, read_prediction_logs, served_event_scores

pytestmark = pytest.mark.unit


def clicks(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True pCTRs around 5% and clicks drawn from them."""
    rng = np.random.default_rng(seed)
    p = np.clip(rng.beta(2, 38, n), 1e-4, 0.9)
    return (rng.random(n) < p).astype(float), p


def test_true_probabilities_are_calibrated_and_a_scaled_model_is_not():
    labels, p = clicks(200_000)
    true = served_model_quality(labels, p, p[:20_000], "binary")
    assert true.ece < 0.003 and true.ratio == pytest.approx(1.0, abs=0.03)
    assert true.auc > 0.6 and true.prediction_drift < 0.05
    over = served_model_quality(labels, np.clip(p * 1.5, 0, 1), p[:20_000], "binary")
    assert over.ratio == pytest.approx(1.5, rel=0.05) and over.ece > 0.02
    assert over.prediction_drift > 0.1  # the scores moved away from the reference ones
    assert over.auc == pytest.approx(true.auc, abs=1e-9)  # a monotone change keeps the order
    assert len(true.deciles) == 10 and sum(d["rows"] for d in true.deciles) == len(labels)


def test_deciles_are_equal_count_bins_of_the_score():
    labels, p = clicks(10_000, seed=1)
    table = decile_table(labels, p)
    assert list(table["decile"]) == list(range(10)) and set(table["rows"]) == {1_000}
    assert table["predicted"].is_monotonic_increasing


def test_segments_show_where_the_model_is_off():
    labels, p = clicks(50_000, seed=2)
    segment = pd.Series(np.where(np.arange(len(p)) % 2 == 0, "even", "odd"))
    scores = np.where(segment == "even", p * 2, p)  # over-predicts one segment only
    quality = served_model_quality(labels, np.clip(scores, 0, 1), p, "binary", {"segment": segment})
    rows = {row["value"]: row for row in quality.segments["segment"]}
    assert rows["even"]["predicted"] / rows["even"]["observed"] == pytest.approx(2, rel=0.1)
    assert rows["odd"]["predicted"] / rows["odd"]["observed"] == pytest.approx(1, rel=0.1)


def test_a_rating_model_gets_rmse_and_no_calibration():
    rng = np.random.default_rng(3)
    ratings = rng.integers(1, 6, 5_000).astype(float)
    quality = served_model_quality(ratings, ratings + rng.normal(0, 0.5, 5_000), ratings, "regression")
    assert quality.rmse == pytest.approx(0.5, rel=0.1) and quality.ece is None and quality.auc is None
    assert set(quality.figures()) >= {"rmse", "mae", "ratio", "prediction_drift"}


def test_normed_wasserstein_is_scale_free_and_undefined_on_constants():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 20_000), rng.normal(0.5, 1, 20_000)
    assert normed_wasserstein(a, b) == pytest.approx(0.5, abs=0.05)
    assert normed_wasserstein(a * 100, b * 100) == pytest.approx(normed_wasserstein(a, b), rel=1e-9)
    assert normed_wasserstein(a, np.ones(10)) is None and normed_wasserstein(a, []) is None


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="aligned"):
        served_model_quality(np.ones(3), np.ones(2), [], "binary")
    with pytest.raises(ValueError, match="kind"):
        served_model_quality(np.ones(3), np.ones(3), [], "ranking")


def test_alerts_name_what_crossed_which_threshold():
    monitoring = MonitoringResource(drift_alert_share=0.3, calibration_alert_ece=0.01, calibration_alert_ratio=0.15,
                                    prediction_drift_alert=0.1)  # fmt: skip
    assert monitoring.feature_drift_alerts(0.29) == [] and monitoring.feature_drift_alerts(None) == []
    assert "30%" in monitoring.feature_drift_alerts(0.3)[0]
    assert monitoring.served_model_alerts({"ece": 0.005, "ratio": 1.1, "prediction_drift": 0.05}) == []
    alerts = monitoring.served_model_alerts({"ece": 0.02, "ratio": 0.8, "prediction_drift": 0.2})
    assert [a.split()[0] for a in alerts] == ["calibration", "predicted/observed", "prediction"]


def test_a_small_calibrated_day_does_not_alert_on_noise_but_a_miscalibrated_one_does():
    monitoring = MonitoringResource()
    quiet, loud = 0, 0
    for seed in range(20):
        labels, p = clicks(4_000, seed=100 + seed)
        calibrated = served_model_quality(labels, p, p, "binary")
        assert calibrated.ece_noise == pytest.approx(0.009, rel=0.35)  # sqrt(2/pi) * sd of a 400-row decile
        quiet += not monitoring.served_model_alerts(
            {k: v for k, v in calibrated.figures().items() if k != "prediction_drift"}
        )
        off = served_model_quality(labels, np.clip(p * 1.6, 0, 1), p, "binary")
        loud += bool(monitoring.served_model_alerts(off.figures()))
    assert quiet >= 19 and loud == 20


# ---- which scores a day is judged on: the service's own logs, or re-scored ------------------
LOG_DAY = dt.date(2024, 3, 1)


def _log_served_scores(root: Path, events: pd.DataFrame, scores: np.ndarray, version: str = "v-served") -> None:
    """Log ``/predict`` answers for ``events`` as the service does, with the real writer:
    the first 40 one row per request, the rest 20 rows per request (``{"rows": [...]}``),
    each row's request features plus its ``event_id``; and beside them what must not count:
    a shadow arm's answer, a popularity fallback, a row without an event id, a ``/recommend``."""
    columns = list(toy_examples.SPEC.request_features)
    rows = [
        {**{c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}, "event_id": event_id}
        for row, event_id in zip(events[columns].to_dict("records"), events["event_id"], strict=True)
    ]
    noon = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)

    def record(chunk: slice, **extra) -> dict:
        features = rows[chunk] if len(rows[chunk]) > 1 else rows[chunk][0]
        features = {"rows": features} if isinstance(features, list) else features
        fields = {"endpoint": "predict", "model_version": version, "features": features,
                  "scores": scores[chunk] * (2 if "shadow_of" in extra or "fallback" in extra else 1), "latency_ms": 2.0, "logged_at": noon,
                  **extra}  # fmt: skip
        return build_record(**fields)

    with PredictionLogger(str(root), "synthetic", flush_interval_s=0.05) as logger:
        for start in range(0, min(40, len(rows))):
            assert logger.log(record(slice(start, start + 1), request_id=f"one-{start}"))
        for start in range(40, len(rows), 20):
            assert logger.log(record(slice(start, start + 20), request_id=f"many-{start}"))
        # Never served: logged an hour earlier, they would win were they counted.
        earlier = dt.datetime(2024, 3, 1, 11, tzinfo=dt.UTC)
        assert logger.log(record(slice(0, 20), request_id="shadow", shadow_of="many-40", model_version="v-shadow",
                                 logged_at=earlier))  # fmt: skip
        assert logger.log(record(slice(0, 1), request_id="fallback", fallback="popularity", model_version="v-pop",
                                 logged_at=earlier))  # fmt: skip
        unlabelled = {**rows[0], "event_id": None}
        assert logger.log(build_record(endpoint="predict", model_version="v-other", features=unlabelled,
                                       scores=[0.99], latency_ms=1.0, logged_at=noon, request_id="no-id"))  # fmt: skip
        assert logger.log(build_record(endpoint="recommend", model_version="v-rec", features=rows[1],
                                       scores=[0.99], items=["i1"], latency_ms=1.0, logged_at=noon))  # fmt: skip
        # The same event scored again later: its first score stands.
        later = dt.datetime(2024, 3, 1, 13, tzinfo=dt.UTC)
        assert logger.log(build_record(endpoint="predict", model_version="v-again", features=rows[2],
                                       scores=[0.999], latency_ms=1.0, logged_at=later, request_id="again"))  # fmt: skip


def _day_events(n_rows: int = 3_000) -> pd.DataFrame:
    return toy_examples.make_training_examples(n_rows=n_rows, days=(LOG_DAY.isoformat(),), seed=11)


def _true_pctr(frame: pd.DataFrame) -> np.ndarray:
    """The pinned model's scores when re-scoring: the toy's true probabilities (calibrated)."""
    return frame["true_pctr"].to_numpy(float)


def test_a_day_is_judged_on_the_scores_the_service_logged_for_its_events(tmp_path):
    events = _day_events()
    logged = events.iloc[:2_000]
    served_scores = np.clip(logged["true_pctr"].to_numpy() * 1.5, 0, 1)  # the served model over-predicts
    _log_served_scores(tmp_path / "lake", logged, served_scores)

    logs = read_prediction_logs(str(tmp_path / "lake"), "synthetic", LOG_DAY)
    assert logs.quarantined.empty
    served = served_event_scores(logs.rows)
    assert list(served.columns) == SERVED_SCORE_COLUMNS and len(served) == 2_000
    assert served.set_index("event_id").loc[logged["event_id"].iloc[2], "score"] == pytest.approx(served_scores[2])
    predictions = day_predictions(events, served, _true_pctr)

    assert (predictions.predictions_from, predictions.served_rows) == ("service_logs", 2_000)
    assert predictions.model_versions == ["v-served"]
    assert list(predictions.rows["event_id"]) == list(logged["event_id"])  # only the matched events
    np.testing.assert_allclose(predictions.scores, served_scores)
    labels = predictions.rows[toy_examples.SPEC.label.column].to_numpy(float)
    quality = served_model_quality(labels, predictions.scores, _true_pctr(events), "binary")
    rescored = served_model_quality(labels, _true_pctr(predictions.rows), _true_pctr(events), "binary")
    # The served scores show the miscalibration re-scoring with the (calibrated) pinned model hides.
    assert quality.ratio == pytest.approx(1.5 * rescored.ratio, rel=0.02) and quality.ece > rescored.ece


def test_without_enough_logged_events_the_day_is_rescored(tmp_path):
    events = _day_events(1_000)
    _log_served_scores(tmp_path / "few", events.iloc[:60], np.full(60, 0.5))
    few = served_event_scores(read_prediction_logs(str(tmp_path / "few"), "synthetic", LOG_DAY).rows)
    other_day = _day_events(1_000).assign(event_id=lambda f: "other-" + f["event_id"])

    for served, matched in ((few, 60), (few.iloc[0:0], 0), (None, 0)):
        predictions = day_predictions(events, served, _true_pctr)
        assert (predictions.predictions_from, predictions.served_rows) == ("rescored", matched)
        assert len(predictions.rows) == len(events) and predictions.model_versions == []
        np.testing.assert_allclose(predictions.scores, events["true_pctr"])
    assert day_predictions(other_day, few, _true_pctr).served_rows == 0  # ids of other events never match

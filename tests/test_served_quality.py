"""``models.served_quality``: calibration, quality and prediction drift of a served model
on a day, on data whose true probabilities are known; and the alert thresholds of
``MonitoringResource`` applied to them."""

import numpy as np
import pandas as pd
import pytest

from models.served_quality import decile_table, normed_wasserstein, served_model_quality
from resources.monitoring import MonitoringResource

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

"""Tests for monitoring/: real Evidently drift reports and calibration maths (GX: test_data_quality.py)."""

from __future__ import annotations

import pandas as pd
import pytest
import toy_examples

from models.calibration import calibration_table, expected_calibration_error, predicted_to_observed_ratio
from monitoring.drift import build_drift_report, monitored_columns
from reclake.feature_spec import load_feature_spec

NUMERICAL, CATEGORICAL = monitored_columns(toy_examples.SPEC)


def training_examples(n: int, seed: int = 0) -> pd.DataFrame:
    """A `training_examples` frame of `n` rows of the synthetic spec."""
    return toy_examples.make_training_examples(n_rows=n, seed=seed)


def test_monitored_columns_are_the_rankers_inputs_without_ids():
    assert "price" in NUMERICAL and "user_positive_rate_7d" in NUMERICAL
    assert {"user_segment", "device", "slot_position", "hour_of_day"} <= set(CATEGORICAL)
    assert not {"user_id", "item_id"} & set(NUMERICAL + CATEGORICAL)
    assert "day_of_week" not in CATEGORICAL  # one value per daily partition: always "drifts"
    criteo_numerical, criteo_categorical = monitored_columns(load_feature_spec("criteo"))
    assert (len(criteo_numerical), len(criteo_categorical)) == (13, 26)


# --- drift -----------------------------------------------------------------------------


def test_drift_report_flags_the_shifted_columns_only(tmp_path):
    reference = training_examples(400, seed=1)
    # Same rows in a new order, so every unshifted column has an identical distribution.
    current = reference.sample(frac=1.0, random_state=7).reset_index(drop=True)
    current["price"] = current["price"] * 1.6 + 10.0
    current.loc[current.index[: len(current) * 2 // 3], "device"] = "tablet"
    html_path = tmp_path / "reports" / "dt=2024-03-04" / "drift_report.html"

    summary = build_drift_report(
        current, reference, NUMERICAL, CATEGORICAL, html_path
    )

    assert summary.drifted_columns == ["price", "device"]
    assert summary.drifted_share == pytest.approx(2 / len(NUMERICAL + CATEGORICAL))
    assert summary.dataset_drift is False
    assert (summary.current_rows, summary.reference_rows) == (400, 400)
    assert set(summary.column_scores) == set(NUMERICAL + CATEGORICAL)
    # Below 1,000 rows Evidently uses p-values: tiny for shifted columns, 1 for identical ones.
    assert summary.column_methods["price"] == "K-S p_value"
    assert summary.column_methods["device"] == "chi-square p_value"
    assert summary.column_scores["price"] < 1e-6
    assert summary.column_scores["device"] < 1e-6
    assert summary.column_scores["user_positive_rate_7d"] == pytest.approx(1.0)
    assert summary.column_scores["category"] == pytest.approx(1.0)

    html = html_path.read_text(encoding="utf-8")
    for column in NUMERICAL + CATEGORICAL:
        assert f'"column_name": "{column}"' in html  # the per-column drift table row


def test_drift_share_threshold_sets_dataset_drift(tmp_path):
    reference = training_examples(300, seed=2)
    current = reference.copy()
    current["price"] = current["price"] + 50.0

    summary = build_drift_report(
        current, reference, ["price", "user_positive_rate_7d"], ["device"], tmp_path / "r.html", drift_share=0.3
    )

    assert summary.drifted_columns == ["price"]
    assert summary.drifted_share == pytest.approx(1 / 3)
    assert summary.dataset_drift is True


def test_drift_report_rejects_missing_columns_and_empty_frames(tmp_path):
    frame = training_examples(50)
    with pytest.raises(ValueError, match=r"current frame is missing columns \['device'\]"):
        build_drift_report(frame.drop(columns=["device"]), frame, ["price"], ["device"], tmp_path / "r.html")
    with pytest.raises(ValueError, match="reference frame is empty"):
        build_drift_report(frame, frame.head(0), ["price"], ["device"], tmp_path / "r.html")
    with pytest.raises(ValueError, match="non-numeric numerical columns"):
        build_drift_report(frame, frame, ["device"], [], tmp_path / "r.html")
    with pytest.raises(ValueError, match="both numerical and categorical"):
        build_drift_report(frame, frame, ["price"], ["price"], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


# --- calibration -----------------------------------------------------------------------

# Six impressions, bins of width 0.1:
#   bin 0: 0.05 -> label 0               mean 0.05,  rate 0.0, n 1, gap 0.05
#   bin 1: 0.15, 0.12 -> labels 0, 1     mean 0.135, rate 0.5, n 2, gap 0.365
#   bin 5: 0.55 -> 1                     mean 0.55,  rate 1.0, n 1, gap 0.45
#   bin 8: 0.85 -> 0                     mean 0.85,  rate 0.0, n 1, gap 0.85
#   bin 9: 0.95 -> 1                     mean 0.95,  rate 1.0, n 1, gap 0.05
# ECE = (0.05 + 2 * 0.365 + 0.45 + 0.85 + 0.05) / 6 = 2.13 / 6 = 0.355
# mean prediction = 2.67 / 6 = 0.445, click rate = 3 / 6 = 0.5, ratio = 0.89
LABELS = [0, 0, 1, 1, 1, 0]
PREDICTIONS = [0.05, 0.15, 0.12, 0.55, 0.95, 0.85]


def test_calibration_table_by_hand():
    table = calibration_table(LABELS, PREDICTIONS, bins=10)

    assert list(table.columns) == ["bin", "lower", "upper", "mean_predicted", "observed_rate", "count"]
    assert table["bin"].tolist() == [0, 1, 5, 8, 9]
    assert table["count"].tolist() == [1, 2, 1, 1, 1]
    assert table["mean_predicted"].tolist() == pytest.approx([0.05, 0.135, 0.55, 0.85, 0.95])
    assert table["observed_rate"].tolist() == pytest.approx([0.0, 0.5, 1.0, 0.0, 1.0])
    assert table["lower"].tolist() == pytest.approx([0.0, 0.1, 0.5, 0.8, 0.9])
    assert table["upper"].tolist() == pytest.approx([0.1, 0.2, 0.6, 0.9, 1.0])


def test_calibration_summaries_by_hand():
    assert expected_calibration_error(LABELS, PREDICTIONS, bins=10) == pytest.approx(0.355)
    assert predicted_to_observed_ratio(LABELS, PREDICTIONS) == pytest.approx(0.89)
    # One bin holds everything: ECE is |0.445 - 0.5|.
    assert expected_calibration_error(LABELS, PREDICTIONS, bins=1) == pytest.approx(0.055)


def test_calibration_prediction_of_one_goes_in_last_bin():
    table = calibration_table([1, 0], [1.0, 0.0], bins=4)
    assert table["bin"].tolist() == [0, 3]


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="labels has 2 values but predictions has 3"):
        calibration_table([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"labels must be 0 or 1, found \[2.0\]"):
        calibration_table([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"predictions must be in \[0, 1\]"):
        expected_calibration_error([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        calibration_table([0, 1], [0.1, 0.2], bins=0)
    with pytest.raises(ValueError, match="no positive labels"):
        predicted_to_observed_ratio([0, 0], [0.1, 0.2])


def test_aggregates_are_monitored_once_history_fills_their_window():
    spec = toy_examples.SPEC
    assert not {a.name for a in spec.aggregate_features} & set(sum(monitored_columns(spec, history_days=0), []))
    week = set(sum(monitored_columns(spec, history_days=7), []))
    assert {"user_events_1d", "item_positive_rate_7d"} <= week and "user_events_30d" not in week
    assert "user_events_30d" in NUMERICAL

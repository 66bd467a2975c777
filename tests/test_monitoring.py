"""Tests for monitoring/: real Evidently drift reports, calibration maths, real GX validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.calibration import calibration_table, expected_calibration_error, predicted_to_observed_ratio
from monitoring.data_quality import validate_training_examples
from monitoring.drift import RECLAKE_CATEGORICAL_FEATURES, RECLAKE_NUMERICAL_FEATURES, build_drift_report


def training_examples(n: int, seed: int = 0) -> pd.DataFrame:
    """A valid `training_examples` frame of `n` rows (contract columns and rules)."""
    rng = np.random.default_rng(seed)
    clicked = (rng.random(n) < 0.1).astype("int64")
    converted = clicked * (rng.random(n) < 0.3).astype("int64")
    event_ts = pd.Timestamp("2024-03-04") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    user_impressions = rng.integers(0, 40, n)
    item_impressions = rng.integers(0, 200, n)
    user_clicks = rng.binomial(user_impressions, 0.05)
    item_clicks = rng.binomial(item_impressions, 0.05)
    return pd.DataFrame(
        {
            "event_id": [f"evt_{i:06d}" for i in range(n)],
            "event_date": event_ts.normalize(),
            "event_ts": event_ts,
            "user_id": [f"user_{i:04d}" for i in rng.integers(0, 50, n)],
            "item_id": [f"item_{i:04d}" for i in rng.integers(0, 80, n)],
            "user_segment": rng.choice(["seg_0", "seg_1", "seg_2", "seg_3"], n),
            "device": rng.choice(["mobile", "desktop", "tablet"], n, p=[0.3, 0.5, 0.2]),
            "slot_position": rng.integers(1, 11, n),
            "category": rng.choice([f"cat_{i:02d}" for i in range(5)], n),
            "price": rng.lognormal(3.0, 0.5, n),
            "hour_of_day": event_ts.hour.to_numpy(dtype="int64"),
            "day_of_week": event_ts.dayofweek.to_numpy(dtype="int64"),
            "user_impressions_7d": user_impressions,
            "user_clicks_7d": user_clicks,
            "user_ctr_7d": (user_clicks + 0.05 * 20) / (user_impressions + 20),
            "item_impressions_7d": item_impressions,
            "item_clicks_7d": item_clicks,
            "item_ctr_7d": (item_clicks + 0.05 * 20) / (item_impressions + 20),
            "clicked": clicked,
            "converted": converted,
        }
    )


# --- drift -----------------------------------------------------------------------------


def test_drift_report_flags_the_shifted_columns_only(tmp_path):
    reference = training_examples(400, seed=1)
    # Same rows in a new order, so every unshifted column has an identical distribution.
    current = reference.sample(frac=1.0, random_state=7).reset_index(drop=True)
    current["price"] = current["price"] * 1.6 + 10.0
    current.loc[current.index[: len(current) * 2 // 3], "device"] = "tablet"
    html_path = tmp_path / "reports" / "dt=2024-03-04" / "drift_report.html"

    summary = build_drift_report(
        current, reference, RECLAKE_NUMERICAL_FEATURES, RECLAKE_CATEGORICAL_FEATURES, html_path
    )

    assert summary.drifted_columns == ["price", "device"]
    assert summary.drifted_share == pytest.approx(2 / 10)
    assert summary.dataset_drift is False
    assert (summary.current_rows, summary.reference_rows) == (400, 400)
    assert set(summary.column_scores) == set(RECLAKE_NUMERICAL_FEATURES + RECLAKE_CATEGORICAL_FEATURES)
    # Below 1,000 rows Evidently uses p-values: tiny for shifted columns, 1 for identical ones.
    assert summary.column_methods["price"] == "K-S p_value"
    assert summary.column_methods["device"] == "chi-square p_value"
    assert summary.column_scores["price"] < 1e-6
    assert summary.column_scores["device"] < 1e-6
    assert summary.column_scores["user_ctr_7d"] == pytest.approx(1.0)
    assert summary.column_scores["category"] == pytest.approx(1.0)

    html = html_path.read_text(encoding="utf-8")
    for column in RECLAKE_NUMERICAL_FEATURES + RECLAKE_CATEGORICAL_FEATURES:
        assert f'"column_name": "{column}"' in html  # the per-column drift table row


def test_drift_share_threshold_sets_dataset_drift(tmp_path):
    reference = training_examples(300, seed=2)
    current = reference.copy()
    current["price"] = current["price"] + 50.0

    summary = build_drift_report(
        current, reference, ["price", "user_ctr_7d"], ["device"], tmp_path / "r.html", drift_share=0.3
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


# --- data quality (Great Expectations) -----------------------------------------------------


def failed_checks(result) -> set[tuple[str, str | None]]:
    return {(f["expectation_type"], f["column"]) for f in result.failed}


def test_clean_training_examples_pass():
    result = validate_training_examples(training_examples(300))

    assert result.success is True
    assert result.failed == []
    assert result.evaluated == result.statistics["evaluated_expectations"] > 20
    assert result.statistics["unsuccessful_expectations"] == 0


def test_broken_training_examples_name_the_failed_expectations():
    frame = training_examples(300)
    frame.loc[1, "event_id"] = frame.loc[0, "event_id"]
    frame.loc[2, ["clicked", "converted"]] = [2, 0]
    frame.loc[3, "price"] = -1.5

    result = validate_training_examples(frame)

    assert result.success is False
    assert failed_checks(result) == {
        ("expect_column_values_to_be_unique", "event_id"),
        ("expect_column_values_to_be_in_set", "clicked"),
        ("expect_column_values_to_be_between", "price"),
    }
    by_column = {f["column"]: f for f in result.failed}
    assert by_column["event_id"]["unexpected_count"] == 2  # both copies of the id
    assert by_column["clicked"]["unexpected_sample"] == [2]
    assert by_column["price"]["unexpected_sample"] == [-1.5]
    assert result.statistics["unsuccessful_expectations"] == 3


def test_conversion_without_click_and_missing_column_fail():
    frame = training_examples(100).drop(columns=["device"])
    no_click = frame.index[frame["clicked"] == 0][0]
    frame.loc[no_click, "converted"] = 1

    result = validate_training_examples(frame)

    assert failed_checks(result) == {
        ("expect_column_pair_values_a_to_be_greater_than_b", "clicked, converted"),
        ("expect_column_to_exist", "device"),
        ("expect_column_values_to_not_be_null", "device"),
        ("expect_column_values_to_be_in_set", "device"),
    }
    could_not_run = {f["expectation_type"] for f in result.failed if f["exception"] is not None}
    assert could_not_run == {"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set"}


def test_empty_frame_fails_row_count():
    result = validate_training_examples(training_examples(10).head(0))

    assert failed_checks(result) == {("expect_table_row_count_to_be_between", None)}
    assert result.failed[0]["observed_value"] == 0

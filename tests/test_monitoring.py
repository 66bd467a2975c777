"""Tests for monitoring/: real Evidently drift reports and calibration maths (GX: test_data_quality.py)."""

from __future__ import annotations

import pandas as pd
import pytest
import toy_examples

from models.calibration import calibration_table, expected_calibration_error, predicted_to_observed_ratio
from monitoring.drift import (
    CATEGORICAL_METHOD,
    DRIFT_THRESHOLD,
    NUMERICAL_METHOD,
    SAMPLE_ROWS,
    build_drift_report,
    monitored_columns,
)
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

    summary = build_drift_report(current, reference, NUMERICAL, CATEGORICAL, html_path)

    assert summary.drifted_columns == ["price", "device"]
    assert summary.drifted_share == pytest.approx(2 / len(NUMERICAL + CATEGORICAL))
    assert summary.dataset_drift is False
    assert (summary.current_rows, summary.reference_rows) == (400, 400)
    assert (summary.current_sampled, summary.reference_sampled) == (400, 400)  # under SAMPLE_ROWS: every row
    assert set(summary.column_scores) == set(NUMERICAL + CATEGORICAL)
    # The method is fixed per column type, whatever the size (no p-values below 1,000 rows):
    # distances, 0 for identical distributions, drift from DRIFT_THRESHOLD up.
    assert summary.column_methods["price"] == NUMERICAL_METHOD == "wasserstein"
    assert summary.column_methods["device"] == CATEGORICAL_METHOD == "jensenshannon"
    assert set(summary.column_methods.values()) == {NUMERICAL_METHOD, CATEGORICAL_METHOD}
    assert summary.column_scores["price"] > 5 * DRIFT_THRESHOLD
    assert summary.column_scores["device"] > 2 * DRIFT_THRESHOLD
    assert summary.column_scores["user_positive_rate_7d"] == pytest.approx(0.0, abs=1e-9)
    assert summary.column_scores["category"] == pytest.approx(0.0, abs=1e-9)
    assert summary.snapshot is not None  # for the Evidently workspace (test_evidently_workspace.py)

    html = html_path.read_text(encoding="utf-8")
    for column in NUMERICAL + CATEGORICAL:
        assert f'"column_name": "{column}"' in html  # the per-column drift table row


@pytest.fixture(scope="module")
def big_day():
    """60,000 impressions of one distribution, split at random into two halves of 30,000."""
    frame = toy_examples.make_training_examples(n_users=400, n_items=150, n_rows=60_000, seed=3)
    reference = frame.sample(frac=0.5, random_state=11)
    return frame.drop(reference.index), reference


def test_large_days_are_sampled_and_still_judged_right(tmp_path, big_day):
    """Both sides above SAMPLE_ROWS are compared on SAMPLE_ROWS rows each: an undrifted
    day stays far below the threshold everywhere, a small real shift is still caught."""
    current, reference = big_day
    assert len(current) > SAMPLE_ROWS and len(reference) > SAMPLE_ROWS

    calm = build_drift_report(current, reference, NUMERICAL, CATEGORICAL, tmp_path / "calm.html")

    assert (calm.current_rows, calm.reference_rows) == (30_000, 30_000)
    assert (calm.current_sampled, calm.reference_sampled) == (SAMPLE_ROWS, SAMPLE_ROWS)
    assert calm.drifted_columns == [] and calm.dataset_drift is False
    assert max(calm.column_scores.values()) < DRIFT_THRESHOLD / 2  # sampling noise only

    shifted = current.copy()
    shifted["price"] = shifted["price"] + 0.2 * reference["price"].std()  # a fifth of a standard deviation
    moved = shifted.index[shifted["device"] == "mobile"][: len(shifted) // 8]
    shifted.loc[moved, "device"] = "desktop"  # an eighth of the traffic changes device

    drifted = build_drift_report(shifted, reference, NUMERICAL, CATEGORICAL, tmp_path / "drifted.html")

    assert drifted.drifted_columns == ["price", "device"]
    assert drifted.column_scores["price"] == pytest.approx(0.2, abs=0.03)


def test_sampling_is_seeded_and_can_be_turned_off(tmp_path, big_day):
    current, reference = big_day
    columns = (["price", "user_events_7d"], ["device", "category"])

    first = build_drift_report(current, reference, *columns, tmp_path / "a.html", sample_rows=5_000)
    again = build_drift_report(current, reference, *columns, tmp_path / "b.html", sample_rows=5_000)
    other_seed = build_drift_report(current, reference, *columns, tmp_path / "c.html", sample_rows=5_000, seed=1)
    every_row = build_drift_report(current, reference, *columns, tmp_path / "d.html", sample_rows=None)

    assert first == again  # the same frames give the same sample, hence the same report
    assert first.column_scores != other_seed.column_scores
    assert (first.current_sampled, every_row.current_sampled) == (5_000, 30_000)
    assert first.column_methods == every_row.column_methods  # the same method at any size
    with pytest.raises(ValueError, match="sample_rows must be at least 1"):
        build_drift_report(current, reference, *columns, tmp_path / "e.html", sample_rows=0)


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

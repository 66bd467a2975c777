"""Real Great Expectations runs of the spec-driven mart suites, and a real Data Docs build.

Frames are built per feature spec (synthetic, movielens, criteo) by ``mart_frame``,
which follows the mart layouts of ``monitoring.data_quality.mart_columns`` and the rules
each spec states; each broken frame plants one violation and must fail exactly the
expectation that guards it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.data_quality import (
    ENTITY_MARTS,
    EVENT_MARTS,
    MARTS,
    DataDocsSite,
    build_data_docs,
    mart_columns,
    validate_mart,
)
from reclake.feature_spec import FeatureColumn, FeatureSpec, load_feature_spec

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 3, 4)
SPECS = ("synthetic", "movielens", "criteo")


def spec_of(source: str) -> FeatureSpec:
    return load_feature_spec(source)


# ---- frames that follow a spec -----------------------------------------------------------


def feature_values(column: FeatureColumn, n: int, rng: np.random.Generator) -> pd.Series:
    """``n`` values a spec column allows; a nullable column gets a few nulls."""
    if column.values is not None:
        values = pd.Series(rng.choice(np.array(column.values, dtype=object), n))
    elif column.dtype == "string":
        values = pd.Series([f"{column.name}_{i}" for i in rng.integers(0, 5, n)], dtype=object)
    else:
        low = column.min_value if column.min_value is not None else -3.0
        high = column.max_value if column.max_value is not None else low + 100.0
        values = pd.Series(rng.uniform(low, high, n))
        if column.dtype == "int":
            values = pd.Series(np.floor(values).astype("int64").clip(int(low), int(high)))
    if column.nullable:
        values = values.astype(object if column.dtype == "string" else "float64")
        values[rng.random(n) < 0.2] = None
    return values


def label_values(spec: FeatureSpec, n: int, rng: np.random.Generator) -> dict[str, pd.Series]:
    """The raw label columns a source has: 0/1 clicks and conversions, or 1..5 ratings."""
    labels: dict[str, pd.Series] = {}
    if spec.label.kind == "binary":
        clicked = (rng.random(n) < 0.3).astype("int64")
        labels["clicked"] = pd.Series(clicked)
        labels["converted"] = pd.Series(clicked * (rng.random(n) < 0.5).astype("int64"))
    else:
        labels["rating"] = pd.Series(rng.integers(1, 6, n).astype("float64"))
    return labels


def aggregates(entity: str, spec: FeatureSpec, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Counts that grow with the window, positives within events, smoothed rates."""
    columns: dict[str, np.ndarray] = {}
    events = np.zeros(n, dtype="int64")
    positives = np.zeros(n, dtype="int64")
    prior, weight = spec.aggregates.rate_prior, spec.aggregates.rate_prior_weight
    for window in sorted(spec.aggregates.windows_days):
        new_events = rng.integers(0, 5, n)
        positives = positives + rng.binomial(new_events, 0.3)
        events = events + new_events
        columns[f"{entity}_events_{window}d"] = events
        columns[f"{entity}_positives_{window}d"] = positives
        columns[f"{entity}_positive_rate_{window}d"] = (positives + prior * weight) / (events + weight)
    return columns


def mart_frame(mart: str, spec: FeatureSpec, n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A valid frame of ``mart`` for ``spec``: ``n`` events of DAY, or ``n`` ids."""
    rng = np.random.default_rng(seed)
    layout = mart_columns(mart, spec)
    if not layout:
        return pd.DataFrame({f"{ENTITY_MARTS[mart]}_id": pd.Series([], dtype=object)})
    data: dict[str, object] = {}
    if mart in EVENT_MARTS:
        event_ts = pd.Timestamp(DAY) + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)), unit="s")
        data["event_id"] = [f"{spec.source}-{i:05d}" for i in range(n)]
        data["event_ts"] = event_ts.astype("datetime64[us]")
        data["event_date"] = event_ts.normalize().astype("datetime64[us]")
        data["user_id"] = [f"u{i}" for i in rng.integers(0, 9, n)] if spec.user_id else [None] * n
        data["item_id"] = [f"i{i}" for i in rng.integers(0, 9, n)] if spec.item_id else [None] * n
        for name in ("clicked", "converted", "rating", "price", "bid_price", "market_price"):
            data[name] = pd.Series([None] * n, dtype="float64")
        data.update(label_values(spec, n, rng))
        if spec.source == "synthetic":
            data["bid_price"] = rng.uniform(0, 2, n)
            data["market_price"] = rng.uniform(0, 2, n)
        data["hour_of_day"] = event_ts.hour.to_numpy(dtype="int64")
        data["day_of_week"] = event_ts.dayofweek.to_numpy(dtype="int64")
        for column in spec.bronze_feature_columns:
            data[column.name] = feature_values(column, n, rng)
        data["label"] = pd.Series(data[spec.label.column]).astype("float64")
        threshold = spec.label.positive_threshold if spec.label.kind == "regression" else 1.0
        data["is_positive"] = (data["label"] >= threshold).astype("int64")
        for entity in spec.entities:
            data.update(aggregates(entity, spec, n, rng))
    else:
        entity = ENTITY_MARTS[mart]
        data[f"{entity}_id"] = [f"{entity[0]}{i}" for i in range(n)]
        for column in spec.bronze_feature_columns:
            if column.role == entity:
                data[column.name] = feature_values(column, n, rng)
        data.update(aggregates(entity, spec, n, rng))
    if "user_history" in layout:
        length = spec.aggregates.history_length
        data["user_history"] = [np.array([f"i{j}" for j in range(3)] + [""] * (length - 3)) for _ in range(n)]
    frame = pd.DataFrame(data)
    return frame[list(layout)]


def failed_checks(result) -> set[tuple[str, str | None]]:
    return {(f["expectation_type"], f["column"]) for f in result.failed}


def validate(frame: pd.DataFrame, mart: str, spec: FeatureSpec, **kwargs):
    days = [DAY] if mart in EVENT_MARTS else None
    return validate_mart(frame, mart, spec, days=days, **kwargs)


# ---- clean frames pass ----------------------------------------------------------------


@pytest.mark.parametrize("source", SPECS)
@pytest.mark.parametrize("mart", MARTS)
def test_clean_marts_pass(source: str, mart: str):
    spec = spec_of(source)
    frame = mart_frame(mart, spec)

    result = validate(frame, mart, spec)

    assert result.failed == []
    assert result.success is True
    assert result.suite == f"{source}.{mart}"
    assert result.rows == len(frame)
    assert result.evaluated == result.statistics["evaluated_expectations"] >= 1
    assert result.docs_page is None


def test_suites_follow_the_spec():
    """Criteo has no ids: fct_events must leave them null and the entity marts empty."""
    spec = spec_of("criteo")
    assert mart_columns("user_features", spec) == ()
    assert "user_history" not in mart_columns("training_examples", spec)
    assert {"i1", "c26", "label", "is_positive"} <= set(mart_columns("training_examples", spec))

    events = mart_frame("fct_events", spec)
    events.loc[3, "user_id"] = "u1"
    users = pd.DataFrame({"user_id": ["u1"]})

    assert failed_checks(validate(events, "fct_events", spec)) == {("expect_column_values_to_be_null", "user_id")}
    users_result = validate(users, "user_features", spec)
    assert failed_checks(users_result) == {("expect_table_row_count_to_equal", None)}
    assert users_result.failed[0]["observed_value"] == 1


# ---- one planted violation each ---------------------------------------------------------


def test_bad_binary_label_fails():
    spec = spec_of("synthetic")
    frame = mart_frame("fct_events", spec)
    row = frame.index[frame["label"] == 1][0]
    frame.loc[row, "label"] = 2.0

    result = validate(frame, "fct_events", spec)

    assert result.success is False
    assert failed_checks(result) == {("expect_column_values_to_be_in_set", "label")}
    assert result.failed[0]["unexpected_sample"] == [2.0]


def test_regression_label_disagreeing_with_is_positive_fails():
    spec = spec_of("movielens")
    threshold = spec.label.positive_threshold
    frame = mart_frame("fct_events", spec)
    row = frame.index[frame["label"] >= threshold][0]
    frame.loc[row, "is_positive"] = 0

    result = validate(frame, "fct_events", spec)

    assert failed_checks(result) == {("expect_column_values_to_be_in_set", "is_positive")}
    assert result.failed[0]["condition"] == f"label >= {threshold}"
    assert result.failed[0]["unexpected_count"] == 1


def test_rate_above_one_fails():
    spec = spec_of("movielens")
    rate = spec.aggregate_columns("user")[2]  # user_positive_rate_<shortest window>d
    frame = mart_frame("user_features", spec)
    frame.loc[5, rate] = 1.5

    result = validate(frame, "user_features", spec)

    assert failed_checks(result) == {("expect_column_values_to_be_between", rate)}
    assert result.failed[0]["unexpected_sample"] == [1.5]


@pytest.mark.parametrize(("mart", "key"), [("training_examples", "event_id"), ("user_features", "user_id")])
def test_duplicate_key_fails(mart: str, key: str):
    spec = spec_of("movielens")
    frame = mart_frame(mart, spec)
    frame.loc[1, key] = frame.loc[0, key]

    result = validate(frame, mart, spec)

    assert failed_checks(result) == {("expect_column_values_to_be_unique", key)}
    assert result.failed[0]["unexpected_count"] == 2  # both copies of the key


def test_value_outside_the_allowed_set_fails():
    spec = spec_of("synthetic")
    assert "smartwatch" not in spec.column("device").values
    frame = mart_frame("fct_events", spec)
    frame.loc[7, "device"] = "smartwatch"

    result = validate(frame, "fct_events", spec)

    assert failed_checks(result) == {("expect_column_values_to_be_in_set", "device")}
    assert result.failed[0]["unexpected_sample"] == ["smartwatch"]


def test_value_outside_the_spec_range_fails():
    spec = spec_of("synthetic")
    too_high = int(spec.column("slot_position").max_value) + 1
    frame = mart_frame("fct_events", spec)
    frame.loc[2, "slot_position"] = too_high

    result = validate(frame, "fct_events", spec)

    assert failed_checks(result) == {("expect_column_values_to_be_between", "slot_position")}
    assert result.failed[0]["unexpected_sample"] == [too_high]


def test_more_positives_than_events_fails():
    spec = spec_of("synthetic")
    longest = max(spec.aggregates.windows_days)  # no longer window must hold more positives
    events, positives = f"item_events_{longest}d", f"item_positives_{longest}d"
    frame = mart_frame("item_features", spec)
    frame.loc[4, positives] = frame.loc[4, events] + 1

    result = validate(frame, "item_features", spec)

    assert failed_checks(result) == {("expect_column_pair_values_a_to_be_greater_than_b", f"{events}, {positives}")}
    assert result.failed[0]["unexpected_count"] == 1


def test_null_in_a_non_nullable_column_fails_and_nullable_columns_may_be_null():
    spec = spec_of("movielens")
    assert (spec.column("gender").nullable, spec.column("year").nullable) == (False, True)
    frame = mart_frame("fct_events", spec)
    frame.loc[0, "gender"] = None
    frame.loc[1, "year"] = None

    result = validate(frame, "fct_events", spec)

    assert failed_checks(result) == {("expect_column_values_to_not_be_null", "gender")}
    assert result.failed[0]["unexpected_count"] == 1


def test_event_outside_the_validated_days_fails():
    spec = spec_of("criteo")
    frame = mart_frame("fct_events", spec)
    frame.loc[0, "event_date"] = pd.Timestamp(DAY + dt.timedelta(days=1))

    result = validate(frame, "fct_events", spec)

    assert failed_checks(result) == {("expect_column_values_to_be_between", "event_date")}
    assert result.failed[0]["unexpected_sample"] == ["2024-03-05T00:00:00"]


def test_missing_column_is_named():
    spec = spec_of("synthetic")
    shorter, longest = sorted(spec.aggregates.windows_days)[-2:]
    missing = f"user_events_{longest}d"
    frame = mart_frame("user_features", spec).drop(columns=[missing])

    result = validate(frame, "user_features", spec)

    by_type = {f["expectation_type"]: f for f in result.failed if f["exception"] is None}
    assert by_type["expect_table_columns_to_match_set"]["missing_columns"] == [missing]
    could_not_run = {f["column"] for f in result.failed if f["exception"] is not None}
    assert could_not_run == {
        missing,  # not null, >= 0
        f"{missing}, user_positives_{longest}d",  # positives <= events
        f"{missing}, user_events_{shorter}d",  # a longer window holds the shorter one
    }


def test_bad_arguments_are_named():
    spec = spec_of("synthetic")
    frame = mart_frame("fct_events", spec)
    with pytest.raises(ValueError, match="unknown mart 'fct_impressions'"):
        validate_mart(frame, "fct_impressions", spec, days=[DAY])
    with pytest.raises(ValueError, match="fct_events: pass the validated days"):
        validate_mart(frame, "fct_events", spec)
    with pytest.raises(ValueError, match="user_features is validated as a whole table"):
        validate_mart(frame, "user_features", spec, days=[DAY])
    with pytest.raises(TypeError, match="frame must be a pandas DataFrame, got list"):
        validate_mart([], "fct_events", spec, days=[DAY])


# ---- Data Docs --------------------------------------------------------------------------


def test_data_docs_site_records_validations_and_builds_html(tmp_path):
    spec = spec_of("synthetic")
    site = DataDocsSite(tmp_path / "data_docs")
    events = mart_frame("fct_events", spec)
    broken = events.copy()
    broken.loc[0, "device"] = "smartwatch"

    passed = validate(events, "fct_events", spec, site=site)
    failed = validate(broken, "fct_events", spec, site=site)
    users = validate(mart_frame("user_features", spec), "user_features", spec, site=site)

    assert (passed.success, failed.success, users.success) == (True, False, True)
    for result in (passed, failed, users):
        assert result.docs_page is not None and result.docs_page.endswith(".html")
        assert result.docs_page.startswith(str(site.site_dir))
    assert "smartwatch" in open(failed.docs_page).read()
    assert (site.site_dir / "expectations" / "synthetic" / "fct_events.html").is_file()

    index = build_data_docs(tmp_path / "data_docs")
    assert index == site.index_path and index.is_file()
    html = index.read_text()
    assert "synthetic.fct_events" in html and "synthetic.user_features" in html

    histories = {h.suite: h for h in site.histories(source="synthetic")}
    assert set(histories) == {"synthetic.fct_events", "synthetic.user_features"}
    events_history = histories["synthetic.fct_events"]
    assert (events_history.runs, events_history.passed_runs) == (2, 1)
    assert events_history.latest_success is False
    assert events_history.latest_run == DAY.isoformat()
    assert events_history.latest_evaluated - events_history.latest_successful == 1
    assert events_history.latest_page == failed.docs_page
    assert site.histories(source="criteo") == []


def test_a_long_history_keeps_the_newest_results_in_gx_and_counts_every_one(tmp_path):
    """Beyond ``results_per_suite`` a suite's older results move to the archive: GX's
    store, its pages and its index hold the newest, and the history counts them all;
    without the summary lines (a site from before them) it counts GX's store."""
    spec = spec_of("synthetic")
    site = DataDocsSite(tmp_path / "data_docs", results_per_suite=2)
    events = mart_frame("fct_events", spec)
    broken = events.copy()
    broken.loc[0, "device"] = "smartwatch"
    results = [validate(frame, "fct_events", spec, site=site) for frame in (events, broken, events, events)]

    def run_times(folder):
        return sorted(path.parent.name for path in folder.rglob("*.json"))

    page_run_times = [Path(result.docs_page).parent.name for result in results]
    assert run_times(site.root / "gx" / "uncommitted" / "validations") == page_run_times[2:]
    assert run_times(site.archive_dir) == page_run_times[:2]
    assert [Path(result.docs_page).is_file() for result in results] == [False, False, True, True]
    index = site.refresh().read_text()
    assert all(run_time in index for run_time in page_run_times[2:])
    assert not any(run_time in index for run_time in page_run_times[:2])

    (history,) = site.histories(source="synthetic")
    assert (history.runs, history.passed_runs, history.latest_success) == (4, 3, True)
    assert history.latest_page == results[-1].docs_page
    (site.root / "validation_summaries.jsonl").unlink()
    (history,) = site.histories(source="synthetic")
    assert (history.runs, history.passed_runs) == (2, 2)  # the archive is kept, but not read


def test_a_multi_day_window_gets_its_page_too(tmp_path):
    """GX parses run names as times: a window's name must not read as a broken UTC offset."""
    spec = spec_of("synthetic")
    site = DataDocsSite(tmp_path / "data_docs")
    days = [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    result = validate_mart(mart_frame("fct_events", spec), "fct_events", spec, days=days, site=site)
    assert result.success and result.docs_page is not None
    assert f"{days[0].isoformat()} to {days[-1].isoformat()}" in open(result.docs_page).read()

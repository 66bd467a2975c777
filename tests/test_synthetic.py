"""The synthetic generator: deterministic, shaped like the bronze contract, with a truth."""

import datetime as dt
import gzip
import io

import numpy as np
import pandas as pd
import pytest

from reclake.feature_spec import load_feature_spec
from reclake.settings import SyntheticSettings
from sources.bronze_schema import bronze_columns, validate_events
from sources.synthetic import SyntheticWorld, generate_day, to_jsonl_gz

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 3, 1)
SMALL = SyntheticSettings(events_per_day=4000, n_users=300, n_items=80, seed=3)


def test_same_seed_same_day_same_logs():
    first, again = generate_day(SMALL, DAY), generate_day(SMALL, DAY)
    pd.testing.assert_frame_equal(first.events, again.events)
    other_day = generate_day(SMALL, DAY + dt.timedelta(days=1))
    assert not other_day.events["user_id"].equals(first.events["user_id"])
    other_seed = generate_day(SyntheticSettings(**{**SMALL.__dict__, "seed": 4}), DAY)
    assert not other_seed.events["clicked"].equals(first.events["clicked"])


def test_events_follow_the_bronze_contract_and_validate_cleanly():
    generated = generate_day(SMALL, DAY)
    spec = load_feature_spec("synthetic")
    assert set(generated.events.columns) == set(bronze_columns(spec)) - {"rating"}
    records = pd.read_json(io.BytesIO(gzip.decompress(to_jsonl_gz(generated.events))), lines=True, dtype=False)
    records["_source_file"], records["_line_number"], records["_raw"] = "f", range(1, len(records) + 1), ""
    validated = validate_events(records, DAY, spec)
    assert len(validated.valid) == SMALL.events_per_day and validated.quarantined.empty


def test_labels_follow_the_true_probabilities():
    generated = generate_day(SyntheticSettings(events_per_day=40_000, n_users=500, n_items=100), DAY)
    events = generated.events.merge(generated.truth, on="event_id")
    assert events["event_id"].is_unique and len(events) == 40_000
    # Observed click rate matches the mean true pCTR within 4 standard errors.
    p = events["true_pctr"].to_numpy()
    standard_error = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(events["clicked"].mean() - p.mean()) < 4 * standard_error
    assert (events["converted"] <= events["clicked"]).all()
    clicked = events[events["clicked"] == 1]
    assert abs(clicked["converted"].mean() - clicked["true_pcvr"].mean()) < 0.03
    # Lower slots are clicked less: the position effect is in the truth.
    by_position = events.groupby("slot_position")["true_pctr"].mean()
    assert by_position.is_monotonic_decreasing
    assert (events["market_price"] <= events["bid_price"]).all()


def test_drift_switch_shifts_the_user_mix_from_the_given_day():
    drifting = SyntheticSettings(events_per_day=20_000, n_users=500, n_items=100, drift_from_day=1)
    before = generate_day(drifting, DAY).events["user_segment"].value_counts(normalize=True)
    after = generate_day(drifting, DAY + dt.timedelta(days=1)).events["user_segment"].value_counts(normalize=True)
    assert after["seg_3"] > 2 * before["seg_3"]


def test_item_popularity_drift_changes_the_popular_items():
    settings = SyntheticSettings(events_per_day=20_000, n_users=300, n_items=100, drift_from_day=1, drift_kind="item_popularity")
    top_before = set(generate_day(settings, DAY).events["item_id"].value_counts().index[:10])
    top_after = set(generate_day(settings, DAY + dt.timedelta(days=1)).events["item_id"].value_counts().index[:10])
    assert len(top_before & top_after) <= 3


def test_world_rejects_an_empty_population():
    with pytest.raises(ValueError, match="at least one user"):
        SyntheticWorld.create(SyntheticSettings(n_users=0))

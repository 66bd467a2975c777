"""Small synthetic ``training_examples`` frames with a known click model.

For tests and smoke runs of the model code without the ingestion pipeline. Clicks are
drawn from a logistic model with a strong segment x category affinity (users in
``seg_s`` prefer categories ``cat_c`` with ``c % 4 == s``), user and item biases, a slot
position decay and a device effect, so a working ranker beats chance clearly and a working
two-tower model retrieves the preferred categories. The frames carry the generator's
``true_pctr`` so evaluation can report the Bayes-optimal logloss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reclake.feature_spec import load_feature_spec

SPEC = load_feature_spec("synthetic")
"""The feature spec these frames follow (the synthetic source's)."""
DEVICES = SPEC.column("device").values
SEGMENTS = 4
CATEGORIES = 8
_BASE_LOGIT = -2.0
_DEVICE_EFFECT = {"mobile": 0.0, "desktop": 0.3, "tablet": -0.3}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_training_examples(
    n_users: int = 60,
    n_items: int = 40,
    n_rows: int = 6000,
    days: tuple[str, ...] = ("2024-01-01", "2024-01-02"),
    seed: int = 0,
) -> pd.DataFrame:
    """Generate impressions with every ``training_examples`` column plus ``true_pctr``.

    The aggregates (``<entity>_events_<w>d`` etc. for the synthetic spec's windows) are
    fixed per user / item (derived from their true propensity) so that
    ``feature_tables`` can reproduce them exactly for serving.

    Args:
        n_users: Users ``u0000``...; ``user_segment`` is ``seg_{index % 4}``.
        n_items: Items ``i0000``...; ``category`` is ``cat_{index % 8:02d}``.
        n_rows: Impressions, spread uniformly over ``days``.
        days: ``YYYY-MM-DD`` event dates.
        seed: Random seed; the same arguments give the same frame.

    Returns:
        One row per impression, ordered by ``event_ts``.
    """
    rng = np.random.default_rng(seed)
    user_index = np.arange(n_users)
    item_index = np.arange(n_items)
    user_bias = rng.normal(0.0, 0.5, n_users)
    item_bias = rng.normal(0.0, 0.5, n_items)
    user_segment = user_index % SEGMENTS
    item_category = item_index % CATEGORIES
    item_price = np.round(rng.lognormal(3.0, 0.8, n_items), 2)

    u = rng.integers(0, n_users, n_rows)
    i = rng.integers(0, n_items, n_rows)
    device = rng.choice(np.array(DEVICES, dtype=object), n_rows)
    slot = rng.integers(1, 6, n_rows)
    day = rng.choice(np.array(days, dtype=object), n_rows)
    seconds = rng.integers(0, 24 * 3600, n_rows)
    event_ts = pd.to_datetime(day) + pd.to_timedelta(seconds, unit="s")

    affinity = np.where(item_category[i] % SEGMENTS == user_segment[u], 1.5, -0.5)
    logit = (
        _BASE_LOGIT
        + user_bias[u]
        + item_bias[i]
        + affinity
        - 0.15 * (slot - 1)
        + pd.Series(device).map(_DEVICE_EFFECT).to_numpy(dtype=float)
    )
    true_pctr = _sigmoid(logit)
    clicked = (rng.random(n_rows) < true_pctr).astype(np.int64)

    user_impressions = rng.integers(0, 200, n_users)
    item_impressions = rng.integers(0, 500, n_items)
    user_ctr = _sigmoid(_BASE_LOGIT + user_bias)
    item_ctr = _sigmoid(_BASE_LOGIT + item_bias)

    frame = pd.DataFrame(
        {
            "event_id": [f"e{n:07d}" for n in range(n_rows)],
            "event_date": pd.to_datetime(day).date,
            "event_ts": event_ts,
            "user_id": [f"u{k:04d}" for k in u],
            "item_id": [f"i{k:04d}" for k in i],
            "user_segment": [f"seg_{s}" for s in user_segment[u]],
            "device": device.astype(str),
            "slot_position": slot.astype(np.int64),
            "category": [f"cat_{c:02d}" for c in item_category[i]],
            "price": item_price[i],
            "hour_of_day": event_ts.hour.astype(np.int64),
            "day_of_week": event_ts.dayofweek.astype(np.int64),
            "clicked": clicked,
            "converted": clicked * (rng.random(n_rows) < 0.1),
            "label": clicked.astype(np.float64),
            "is_positive": clicked,
            "true_pctr": true_pctr,
        }
    )
    for entity, index, impressions, ctr in (
        ("user", u, user_impressions, user_ctr),
        ("item", i, item_impressions, item_ctr),
    ):
        for window in SPEC.aggregates.windows_days:
            events = np.round(impressions[index] * window / 7).astype(np.int64)
            frame[f"{entity}_events_{window}d"] = events
            frame[f"{entity}_positives_{window}d"] = np.round(events * ctr[index]).astype(np.int64)
            frame[f"{entity}_positive_rate_{window}d"] = ctr[index]
    return frame.sort_values("event_ts", kind="stable").reset_index(drop=True)


def feature_tables(examples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Derive the serving ``user_features`` and ``item_features`` tables from toy examples.

    Args:
        examples: A frame from ``make_training_examples``.

    Returns:
        ``(user_features, item_features)`` with the contract columns, one row per id.
    """
    users = examples.groupby("user_id", as_index=False).first()[["user_id", *SPEC.lookup_features("user")]]
    items = examples.groupby("item_id", as_index=False).first()[["item_id", *SPEC.lookup_features("item")]]
    return users, items


def toy_pipeline(tmp_path, **changes):
    """A ``PipelineResource`` of the synthetic source with its folders under ``tmp_path``
    (for assets materialized on a toy warehouse); ``changes`` override its fields."""
    from resources.pipeline import PipelineResource

    fields = {
        "source": "synthetic",
        "state_dir": str(tmp_path),
        "downloads_dir": str(tmp_path / "downloads"),
        "data_docs_dir": str(tmp_path / "data_docs"),
        "ranker_config": "dcn_v2_stacked",
        "training_window_days": 7,
        "drift_reference_days": 7,
        "drift_days_per_run": 14,
        "quarantine_max_share": 0.01,
    }
    return PipelineResource(**{**fields, **changes})

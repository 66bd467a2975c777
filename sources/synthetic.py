"""A seeded, deterministic generator of ad-recommendation logs with a known truth.

The world: users with a segment, a preferred device, an activity level and latent
factors; items with a category, a price, a popularity and latent factors. Each day,
impressions are drawn (user by activity, item by popularity, an hour from a daily
traffic curve, a device, a slot position); ``click ~ Bernoulli(p_ctr)`` and, given a
click, ``conversion ~ Bernoulli(p_cvr)``. Each impression also carries a bid and a
market (clearing) price. The true probabilities are returned separately so that
evaluation can compute the Bayes-optimal logloss; they are never model input.

Everything is a pure function of (settings, day): day ``d`` of seed ``s`` is the same
whether it is generated alone or with the others.
"""

from __future__ import annotations

import datetime as dt
import gzip
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reclake.feature_spec import load_feature_spec
from reclake.settings import SyntheticSettings

N_SEGMENTS = 4
N_CATEGORIES = 12
N_FACTORS = 8
MAX_SLOT_POSITION = 5
SOURCE_NAME = "synthetic"
# Devices as the synthetic feature spec allows them (the one list).
DEVICES: tuple[str, ...] = tuple(load_feature_spec(SOURCE_NAME).column("device").values)

# Share of traffic by hour of day (UTC): quiet nights, an evening peak.
_HOURLY_TRAFFIC = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4], dtype=float)
_HOURLY_TRAFFIC /= _HOURLY_TRAFFIC.sum()
_SEGMENT_MIX = np.array([0.4, 0.3, 0.2, 0.1])
_DEVICE_EFFECT = np.array([0.0, 0.25, -0.15])  # mobile, desktop, tablet
_POSITION_EFFECT = -0.35  # logit per slot below the first


@dataclass(frozen=True)
class SyntheticWorld:
    """The fixed population of users and items behind every generated day."""

    user_segment: np.ndarray  # [n_users] int
    user_device: np.ndarray  # [n_users] int, preferred device
    user_activity: np.ndarray  # [n_users] float, relative traffic share
    user_factors: np.ndarray  # [n_users, N_FACTORS]
    user_conversion_factors: np.ndarray  # [n_users, N_FACTORS]
    item_category: np.ndarray  # [n_items] int
    item_price: np.ndarray  # [n_items] float
    item_popularity: np.ndarray  # [n_items] float, sums to 1
    item_factors: np.ndarray  # [n_items, N_FACTORS]
    item_conversion_factors: np.ndarray  # [n_items, N_FACTORS]
    segment_category_affinity: np.ndarray  # [N_SEGMENTS, N_CATEGORIES]

    @classmethod
    def create(cls, settings: SyntheticSettings) -> SyntheticWorld:
        """Draw the world from ``settings.seed`` (the same seed gives the same world)."""
        if settings.n_users < 1 or settings.n_items < 1:
            raise ValueError("the synthetic world needs at least one user and one item")
        rng = np.random.default_rng([settings.seed, 0])
        n_users, n_items = settings.n_users, settings.n_items
        segment = rng.choice(N_SEGMENTS, size=n_users, p=_SEGMENT_MIX)
        device_by_segment = np.array([0, 1, 0, 2])
        category = rng.choice(N_CATEGORIES, size=n_items, p=_zipf(N_CATEGORIES, 0.8, rng))
        category_price = rng.lognormal(mean=3.0, sigma=0.8, size=N_CATEGORIES)
        return cls(
            user_segment=segment,
            user_device=device_by_segment[segment],
            user_activity=rng.lognormal(0.0, 0.8, size=n_users),
            user_factors=rng.normal(0.0, 0.45, size=(n_users, N_FACTORS)),
            user_conversion_factors=rng.normal(0.0, 0.3, size=(n_users, N_FACTORS)),
            item_category=category,
            item_price=np.round(category_price[category] * rng.lognormal(0.0, 0.4, n_items), 2),
            item_popularity=_zipf(n_items, 1.05, rng),
            item_factors=rng.normal(0.0, 0.45, size=(n_items, N_FACTORS)),
            item_conversion_factors=rng.normal(0.0, 0.3, size=(n_items, N_FACTORS)),
            segment_category_affinity=rng.normal(0.0, 0.6, size=(N_SEGMENTS, N_CATEGORIES)),
        )


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like shares over ``n`` entries, in a random order."""
    shares = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(shares / shares.sum())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class SyntheticDay:
    """One generated day: the events as a log shipper would write them, and the truth.

    Both are Arrow tables (about a tenth of the memory of a frame of Python strings: a
    day of 1.4M events is ~150 MB); ``events`` and ``truth`` are pandas copies for
    small days.
    """

    day: dt.date
    event_table: pa.Table  # bronze contract columns, event_ts as ISO-8601 strings
    truth_table: pa.Table  # event_id, true_pctr, true_pcvr

    @property
    def events(self) -> pd.DataFrame:
        return self.event_table.to_pandas()

    @property
    def truth(self) -> pd.DataFrame:
        return self.truth_table.to_pandas()


def day_index(settings: SyntheticSettings, day: dt.date) -> int:
    """Days since ``settings.start_date`` (negative before it)."""
    return (day - dt.date.fromisoformat(settings.start_date)).days


def generate_day(settings: SyntheticSettings, day: dt.date, world: SyntheticWorld | None = None) -> SyntheticDay:
    """Generate one day of impressions with their true click and conversion odds.

    Args:
        settings: generator knobs (events per day, sizes, seed, drift).
        day: the calendar day; its offset from ``start_date`` seeds the day's draws and
            decides whether drift applies (``drift_from_day``).
        world: a pre-built world (built from ``settings`` when None).

    Returns:
        A ``SyntheticDay`` whose ``events`` follow the bronze contract
        (``docs/data-contracts.md``) and whose ``truth`` holds the true probabilities.
    """
    world = world or SyntheticWorld.create(settings)
    index = day_index(settings, day)
    rng = np.random.default_rng([settings.seed, 1, index + 10_000])
    n = settings.events_per_day
    drifted = settings.drift_from_day is not None and index >= settings.drift_from_day

    user_weights = world.user_activity.copy()
    item_weights = world.item_popularity.copy()
    if drifted and settings.drift_kind == "user_mix":
        user_weights = user_weights * np.where(world.user_segment == N_SEGMENTS - 1, 8.0, 1.0)
    elif drifted and settings.drift_kind == "item_popularity":
        item_weights = np.sort(item_weights)[np.argsort(np.argsort(-item_weights))]
    elif drifted:
        raise ValueError(f"unknown drift_kind {settings.drift_kind!r}")
    users = rng.choice(len(user_weights), size=n, p=user_weights / user_weights.sum())
    items = rng.choice(len(item_weights), size=n, p=item_weights / item_weights.sum())

    hours = rng.choice(24, size=n, p=_HOURLY_TRAFFIC)
    seconds = np.sort(hours * 3600 + rng.integers(0, 3600, size=n))
    hours = seconds // 3600
    microseconds = rng.integers(0, 1_000_000, size=n)
    keep_device = rng.random(n) < 0.8
    devices = np.where(keep_device, world.user_device[users], rng.integers(0, len(DEVICES), n))
    positions = rng.integers(1, MAX_SLOT_POSITION + 1, size=n)

    segment = world.user_segment[users]
    category = world.item_category[items]
    price = world.item_price[items]
    ctr_logit = (
        -3.1
        + np.einsum("ij,ij->i", world.user_factors[users], world.item_factors[items])
        + world.segment_category_affinity[segment, category]
        + _POSITION_EFFECT * (positions - 1)
        + 0.3 * np.sin(2 * np.pi * (hours - 6) / 24)
        + _DEVICE_EFFECT[devices]
    )
    cvr_logit = (
        -1.6
        + np.einsum("ij,ij->i", world.user_conversion_factors[users], world.item_conversion_factors[items])
        - 0.45 * np.log(price / np.median(world.item_price))
        + 0.3 * (segment == 1)
    )
    p_ctr, p_cvr = _sigmoid(ctr_logit), _sigmoid(cvr_logit)
    clicked = (rng.random(n) < p_ctr).astype(np.int64)
    converted = clicked * (rng.random(n) < p_cvr).astype(np.int64)
    bid = np.round(rng.lognormal(np.log(0.4 + 30.0 * p_ctr * p_cvr * price / 10.0), 0.3), 4)
    market = np.round(bid * rng.beta(6.0, 3.0, size=n), 4)

    stamp = day.strftime("%Y%m%d")
    event_ids = _prefixed(f"{SOURCE_NAME}-{stamp}-", np.arange(n), 7)
    day_start_us = int((dt.datetime.combine(day, dt.time()) - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    ts = pa.array(day_start_us + seconds * 1_000_000 + microseconds, pa.timestamp("us"))
    events = pa.table(
        {
            "event_id": event_ids,
            # Arrow prints the microseconds of a timestamp[us] after the seconds.
            "event_ts": pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ"),
            "user_id": _prefixed("u", users, 6),
            "item_id": _prefixed("i", items, 5),
            "user_segment": _prefixed("seg_", segment, 1),
            "device": pa.array(DEVICES, pa.string()).take(pa.array(devices)),
            "slot_position": pa.array(positions.astype(np.int64)),
            "category": _prefixed("cat_", category, 2),
            "price": pa.array(price, pa.float64()),
            "bid_price": pa.array(bid, pa.float64()),
            "market_price": pa.array(market, pa.float64()),
            "clicked": pa.array(clicked),
            "converted": pa.array(converted),
        }
    )
    truth = pa.table({"event_id": event_ids, "true_pctr": p_ctr, "true_pcvr": p_cvr})
    return SyntheticDay(day=day, event_table=events, truth_table=truth)


def _prefixed(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + each number zero-padded to ``width`` digits, as Arrow strings."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def click_factor_term(world: SyntheticWorld, user_ids: pd.Series, item_ids: pd.Series) -> np.ndarray:
    """The user x item latent-factor term of each impression's true click logit.

    Args:
        world: the world the impressions were generated from.
        user_ids, item_ids: generated ids (``u000123``, ``i00042``), one pair per impression.

    Returns:
        ``user_factors[u] . item_factors[i]`` per impression: the part of the logit only a
        model that learns per-user and per-item latent factors can capture.
    """
    users = user_ids.str.slice(1).astype(np.int64).to_numpy()
    items = item_ids.str.slice(1).astype(np.int64).to_numpy()
    return np.einsum("ij,ij->i", world.user_factors[users], world.item_factors[items])


def to_jsonl_gz(events: pd.DataFrame) -> bytes:
    """Serialise events as gzipped JSON lines, the way a log shipper writes them."""
    text = events.to_json(orient="records", lines=True, double_precision=10)
    return gzip.compress(text.encode(), compresslevel=5, mtime=0)

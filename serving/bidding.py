"""Bidding strategies of ad campaigns: one library the ``/bid`` endpoint and the offline
auction simulation (``serving.auction``) both call, so what is simulated is what is bid.

Units. Bids, floors, ``base_bid``, ``max_bid`` and market prices are **CPM**: a price per
1000 impressions, as RTB exchanges quote them and as the logs carry ``bid_price`` and
``market_price`` (iPinYou: RMB fen per 1000 impressions; the synthetic generator: its own
currency unit per 1000 impressions, the unit of its item prices). Budgets, spend and
values (``daily_budget``, ``value_per_click``, ``value_per_conversion``) are in the
currency itself: a won impression costs ``market_price / 1000`` (second price), so a
campaign's spend is the sum of the won impressions' market prices divided by 1000.

Strategies (``STRATEGY_KINDS``), each a raw CPM price from the model's pCTR (and pCVR):

- ``constant``: ``base_bid`` for every impression;
- ``linear``: ``base_bid * pctr / average_ctr`` (``base_bid`` for an average impression);
- ``value``: the impression's expected value as CPM,
  ``1000 * pctr * (value_per_click + pcvr * value_per_conversion)`` (either value may be
  unset; a conversion value needs the model's pCVR);
- ``paced``: the linear price, paced against a uniform plan of the daily budget
  (``pacing_multiplier``): ``throttle`` bids with probability equal to the multiplier,
  ``shade`` multiplies the price by it.

``decide_bid`` turns one impression into a ``BidDecision``: strategy price -> pacing
(``paced`` only) -> cap at ``max_bid`` -> no bid below the floor -> never a price whose
cost could exceed the remaining budget (so a day's spend never exceeds the budget and
ends within one bid of it). The other strategies
are not paced: they bid until their budget runs out.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import yaml

STRATEGY_KINDS: tuple[str, ...] = ("constant", "linear", "value", "paced")
PACING_KINDS: tuple[str, ...] = ("throttle", "shade")
NO_BID_REASONS: tuple[str, ...] = ("below_floor", "budget_exhausted", "throttled")
"""Why ``decide_bid`` did not bid: the price (after the cap) is not positive or is below
the floor; the budget is spent, or what is left is less than the bid could cost; the paced
campaign is ahead of plan and skipped the impression (``throttle``, or a multiplier of 0)."""

BUDGET_TOLERANCE = 1e-9
"""Relative slack on the budget for float rounding: a bid whose cost fits the remaining budget
up to this share is placed."""

IMPRESSIONS_PER_PRICE = 1000.0
"""Prices are per this many impressions (CPM): one impression costs price / 1000."""


@dataclass(frozen=True)
class Campaign:
    """One advertiser campaign and how it bids.

    Attributes:
        campaign_id: the campaign's name (the key in the campaigns file).
        item_id: the ad (item / creative) the campaign bids with; None: any impression.
        daily_budget: what the campaign may spend in a day, in the currency (not CPM).
        strategy: one of ``STRATEGY_KINDS``.
        base_bid: CPM: the ``constant`` bid; ``linear``/``paced``: the bid for an
            impression of ``average_ctr``.
        average_ctr: the pCTR that earns ``base_bid`` (``linear``/``paced``).
        value_per_click: currency per click (``value``).
        value_per_conversion: currency per conversion (``value``; needs a pCVR).
        max_bid: CPM cap on every bid (``inf``: none).
        pacing: ``paced`` only: ``throttle`` (skip impressions with probability
            1 - multiplier) or ``shade`` (bid price * multiplier) when ahead of plan.
        pacing_tolerance: ``paced`` only: the share of the budget spend may run ahead of
            the plan before the campaign stops bidding (the multiplier falls linearly from
            1 on plan to 0 at this lead).
    """

    campaign_id: str
    item_id: str | None
    daily_budget: float
    strategy: str
    base_bid: float
    average_ctr: float
    value_per_click: float | None = None
    value_per_conversion: float | None = None
    max_bid: float = math.inf
    pacing: str = "throttle"
    pacing_tolerance: float = 0.05

    def __post_init__(self) -> None:
        def fail(name: str, problem: str) -> None:
            raise ValueError(f"campaign {self.campaign_id!r}: {name} {problem}")

        if not isinstance(self.campaign_id, str) or not self.campaign_id:
            raise ValueError(f"campaign {self.campaign_id!r}: campaign_id must be a non-empty string")
        if self.item_id is not None and not isinstance(self.item_id, str):
            fail("item_id", f"must be a string or null, got {self.item_id!r}")
        if self.strategy not in STRATEGY_KINDS:
            fail("strategy", f"must be one of {list(STRATEGY_KINDS)}, got {self.strategy!r}")
        if self.pacing not in PACING_KINDS:
            fail("pacing", f"must be one of {list(PACING_KINDS)}, got {self.pacing!r}")
        for name in ("daily_budget", "base_bid", "average_ctr", "max_bid", "pacing_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value < 0:
                fail(name, f"must be a non-negative number, got {value!r}")
        for name in ("value_per_click", "value_per_conversion"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0
            ):
                fail(name, f"must be a non-negative number or null, got {value!r}")
        if not math.isfinite(self.daily_budget):
            fail("daily_budget", "must be finite")
        if self.max_bid <= 0:
            fail("max_bid", f"must be positive, got {self.max_bid!r}")
        if self.strategy in ("constant", "linear", "paced") and not (0 < self.base_bid < math.inf):
            fail("base_bid", f"must be a positive number for the {self.strategy} strategy, got {self.base_bid!r}")
        if self.strategy in ("linear", "paced") and not 0 < self.average_ctr <= 1:
            fail("average_ctr", f"must be in (0, 1] for the {self.strategy} strategy, got {self.average_ctr!r}")
        if self.strategy == "value" and not (self.value_per_click or self.value_per_conversion):
            fail("value_per_click", "or value_per_conversion must be set (positive) for the value strategy")
        if self.strategy == "paced" and not self.pacing_tolerance > 0:
            fail("pacing_tolerance", f"must be positive for the paced strategy, got {self.pacing_tolerance!r}")

    @property
    def needs_pcvr(self) -> bool:
        """Whether the strategy's price needs the model's pCVR."""
        return self.strategy == "value" and bool(self.value_per_conversion)


_FIELDS = {f.name for f in fields(Campaign)}
_DEFAULTS: dict[str, Any] = {"item_id": None, "base_bid": 0.0, "average_ctr": 0.0}


def load_campaigns(path_or_mapping: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Campaign]:
    """Campaigns from a YAML file (or its parsed content).

    The file maps ``campaigns:`` to ``<campaign_id>: {field: value, ...}`` (a mapping of
    campaigns at the top level works too); the fields are ``Campaign``'s. ``item_id``,
    ``base_bid`` and ``average_ctr`` may be left out where the strategy does not use them.

    Returns:
        campaign_id -> ``Campaign``, in the file's order.

    Raises:
        ValueError: a malformed file, or a campaign with an unknown, missing or invalid
            field; the message names the campaign and the field.
    """
    where = "campaigns"
    if isinstance(path_or_mapping, Mapping):
        loaded: Any = path_or_mapping
    else:
        where = os.fspath(path_or_mapping)
        with open(where, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
    if isinstance(loaded, Mapping) and "campaigns" in loaded:
        loaded = loaded["campaigns"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise ValueError(f"{where}: expected a non-empty mapping of campaign id -> fields under 'campaigns'")
    campaigns: dict[str, Campaign] = {}
    for campaign_id, values in loaded.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: campaign {campaign_id!r}: expected a mapping of fields, got {values!r}")
        unknown = sorted(set(values) - _FIELDS)
        if unknown:
            raise ValueError(f"{where}: campaign {campaign_id!r}: unknown field(s) {unknown}; known: {sorted(_FIELDS)}")
        for name in ("daily_budget", "strategy"):
            if name not in values:
                raise ValueError(f"{where}: campaign {campaign_id!r}: {name} is missing")
        if "campaign_id" in values and values["campaign_id"] != campaign_id:
            raise ValueError(
                f"{where}: campaign {campaign_id!r}: campaign_id {values['campaign_id']!r} differs from its key"
            )
        arguments = {**_DEFAULTS, **values, "campaign_id": str(campaign_id)}
        if arguments.get("max_bid") is None:
            arguments.pop("max_bid", None)
        try:
            campaigns[str(campaign_id)] = Campaign(**arguments)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    return campaigns


def _raw_price(campaign: Campaign, pctr: Any, pcvr: Any) -> Any:
    """The strategy's CPM price for a pCTR (and pCVR): scalars or arrays alike."""
    if campaign.strategy == "constant":
        return campaign.base_bid + 0.0 * pctr
    if campaign.strategy in ("linear", "paced"):
        return campaign.base_bid * pctr / campaign.average_ctr
    value = (campaign.value_per_click or 0.0) * pctr
    if campaign.value_per_conversion:
        if pcvr is None:
            raise ValueError(
                f"campaign {campaign.campaign_id!r} values conversions, but no pCVR was given "
                "(the model is not multi-task): set value_per_click instead"
            )
        value = value + campaign.value_per_conversion * pctr * pcvr
    return IMPRESSIONS_PER_PRICE * value


def _check_probabilities(name: str, values: np.ndarray) -> None:
    if values.size and not (np.all(np.isfinite(values)) and values.min() >= 0.0 and values.max() <= 1.0):
        raise ValueError(f"{name} must be probabilities in [0, 1] (no NaN)")


def bid_prices(campaign: Campaign, pctr: np.ndarray, pcvr: np.ndarray | None = None) -> np.ndarray:
    """The strategy's raw CPM price per impression (before pacing, cap, floor and budget).

    Raises:
        ValueError: a pCTR or pCVR outside [0, 1], shapes that differ, or a conversion
            value without pCVRs.
    """
    pctr = np.asarray(pctr, dtype=np.float64)
    _check_probabilities("pctr", pctr)
    if pcvr is not None:
        pcvr = np.asarray(pcvr, dtype=np.float64)
        if pcvr.shape != pctr.shape:
            raise ValueError(f"pcvr has shape {pcvr.shape}, pctr {pctr.shape}")
        _check_probabilities("pcvr", pcvr)
    return np.asarray(_raw_price(campaign, pctr, pcvr), dtype=np.float64)


def pacing_multiplier(
    spent: float,
    budget: float,
    day_fraction: float,
    planned_fraction: float | None = None,
    tolerance: float = 0.05,
) -> float:
    """How much of its price a paced campaign bids, from how far ahead of plan it is.

    The plan spends ``budget * planned_fraction`` by now; uniform over the day
    (``planned_fraction = day_fraction``) unless another plan's share is given. On or
    behind plan the multiplier is 1; ahead by ``lead`` (a share of the budget) it is
    ``1 - lead / tolerance``, down to 0 at a lead of ``tolerance``; 0 once the budget is
    spent. A proportional controller: a campaign whose unpaced spend rate is ``k`` times
    the plan's runs ``tolerance * (1 - 1/k)`` of the budget ahead of it.

    Raises:
        ValueError: a non-positive tolerance.
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, got {tolerance!r}")
    if budget <= 0 or spent >= budget:
        return 0.0
    plan = day_fraction if planned_fraction is None else planned_fraction
    plan = min(max(plan, 0.0), 1.0)
    lead = (spent - budget * plan) / budget
    return min(1.0, max(0.0, 1.0 - lead / tolerance))


@dataclass(frozen=True)
class BidDecision:
    """One impression's bid: a CPM ``price``, or None (no bid) and why (``reason``:
    ``bid`` or one of ``NO_BID_REASONS``)."""

    price: float | None
    reason: str


_RNG = np.random.default_rng()


def decide_bid(
    campaign: Campaign,
    pctr: float,
    pcvr: float | None,
    floor: float,
    spent: float,
    day_fraction: float,
    rng_value: float | None = None,
) -> BidDecision:
    """The campaign's bid on one impression.

    Args:
        campaign: the campaign.
        pctr, pcvr: the model's probabilities for the impression (pcvr None: none).
        floor: the impression's floor price (CPM); 0 for none.
        spent: what the campaign has spent today (currency).
        day_fraction: the share of the day elapsed, 0 .. 1.
        rng_value: a uniform [0, 1) draw for ``throttle`` pacing (None: drawn here).

    Returns:
        ``BidDecision``: strategy price -> pacing (``paced``) -> cap at ``max_bid`` ->
        no bid at or below 0 or below the floor -> no bid whose win could cost more than
        the remaining budget (a price above ``remaining * 1000``), none once it is spent.

    Raises:
        ValueError: a probability outside [0, 1], or a conversion value without pCVR.
    """
    if not 0.0 <= pctr <= 1.0 or (pcvr is not None and not 0.0 <= pcvr <= 1.0):
        raise ValueError(f"pctr and pcvr must be probabilities in [0, 1], got {pctr!r}, {pcvr!r}")
    remaining = campaign.daily_budget - spent
    if remaining <= 0:
        return BidDecision(None, "budget_exhausted")
    price = float(_raw_price(campaign, pctr, pcvr))
    if campaign.strategy == "paced":
        multiplier = pacing_multiplier(spent, campaign.daily_budget, day_fraction, tolerance=campaign.pacing_tolerance)
        if multiplier <= 0.0:
            return BidDecision(None, "throttled")
        if campaign.pacing == "throttle":
            draw = float(_RNG.random()) if rng_value is None else rng_value
            if draw >= multiplier:
                return BidDecision(None, "throttled")
        else:
            price *= multiplier
    price = min(price, campaign.max_bid)
    if price <= 0.0 or price < floor:
        return BidDecision(None, "below_floor")
    # A win could cost more than is left (with a relative tolerance: spend is a running
    # float sum, and 0.5 - 0.1 * 4 leaves 0.09999999999999998, not 0.1).
    if price > remaining * IMPRESSIONS_PER_PRICE * (1 + BUDGET_TOLERANCE):
        return BidDecision(None, "budget_exhausted")
    return BidDecision(price, "bid")

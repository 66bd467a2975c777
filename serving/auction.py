"""A day of second-price auctions replayed for one campaign, and the references it is
judged against.

``simulate_day`` replays a day's logged impressions in time order. Each impression gets
``serving.bidding.decide_bid`` with the campaign's spend so far and the share of the day
elapsed (from its timestamp); the campaign wins when its bid is above the logged market
(clearing) price and pays that price (second price: ``market_price / 1000`` per won
impression, prices being CPM). The logged click and conversion of a won impression are
the campaign's. Impressions without a market price cannot be won: they are bid on,
lost, and counted (``rows_without_market_price``), never dropped.

Strategies that are not paced depend on the spend only through the remaining budget,
so they are replayed with array operations up to the first impression the remaining
budget changes, and impression by impression (the few that could still win) after it:
the same decisions as calling ``decide_bid`` on every row (the tests check it), at
array speed. ``paced`` campaigns call ``decide_bid`` row by row.

References, each at the same spend as the strategy (the bid scale found by bisection)
and spread over the whole day: ``constant`` (one bid for every impression),
``proportional`` (a bid proportional to the model's pCTR) and ``oracle`` (a bid
proportional to the true pCTR, which maximises clicks at a given spend in second-price
auctions; only where the true pCTR is known, i.e. the synthetic source).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from serving.bidding import IMPRESSIONS_PER_PRICE, NO_BID_REASONS, Campaign, bid_prices, decide_bid

REASONS: tuple[str, ...] = ("bid", *NO_BID_REASONS)
_BID, _BELOW_FLOOR, _EXHAUSTED, _THROTTLED = (
    REASONS.index(r) for r in ("bid", "below_floor", "budget_exhausted", "throttled")
)
BISECTION_STEPS = 60
EXHAUSTED_SHARE = 0.99
"""A budget counts as exhausted once this share of it is spent (what is left only pays
for the lowest bids)."""


@dataclasses.dataclass(frozen=True)
class _Replay:
    """Per impression, in time order: the bid (NaN: none), why, whether it won, its cost."""

    bid: np.ndarray
    reason: np.ndarray
    won: np.ndarray
    cost: np.ndarray


def day_fractions(timestamps: Any) -> np.ndarray:
    """The share of its UTC day elapsed at each timestamp (0 .. 1), the day being that of
    the earliest timestamp."""
    stamps = np.asarray(timestamps, dtype="datetime64[us]")
    if stamps.size == 0:
        return np.zeros(0)
    if np.isnat(stamps).any():
        raise ValueError("timestamps has missing values")
    start = stamps.min().astype("datetime64[D]")
    return np.clip((stamps - start) / np.timedelta64(1, "D"), 0.0, 1.0).astype(np.float64)


def _floors(floor: float | np.ndarray, n: int) -> np.ndarray:
    floors = np.broadcast_to(np.asarray(floor, dtype=np.float64), (n,))
    if np.isnan(floors).any():
        raise ValueError("floor has missing values: use 0 for no floor")
    return floors


def _replay_unpaced(prices: np.ndarray, market: np.ndarray, floors: np.ndarray, budget: float) -> _Replay:
    """``decide_bid``'s decisions for capped prices that do not depend on the spend except
    through the remaining budget, with array operations."""
    n = len(prices)
    with np.errstate(invalid="ignore"):
        bid_ok = (prices > 0.0) & (prices >= floors)
        could_win = bid_ok & (prices > market)  # NaN market price: never
    cost_if_won = np.where(could_win, market / IMPRESSIONS_PER_PRICE, 0.0)
    spent_before = np.concatenate([[0.0], np.cumsum(cost_if_won)[:-1]])
    remaining = budget - spent_before
    # The first winning bid the remaining budget forbids (it could cost more than is left).
    changed = could_win & ((remaining <= 0.0) | (prices > remaining * IMPRESSIONS_PER_PRICE))
    first = int(np.argmax(changed)) if changed.any() else n
    cost = np.where(np.arange(n) < first, cost_if_won, 0.0)
    if first < n:
        # From there on only bids below what is left can win, and what is left only shrinks.
        spent = float(spent_before[first])
        affordable = (budget - spent) * IMPRESSIONS_PER_PRICE
        candidates = np.flatnonzero(could_win[first:] & (prices[first:] <= affordable)) + first
        for row in candidates.tolist():
            left = budget - spent
            if left > 0.0 and not prices[row] > left * IMPRESSIONS_PER_PRICE:
                cost[row] = market[row] / IMPRESSIONS_PER_PRICE
                spent += cost[row]
        spent_before = np.concatenate([[0.0], np.cumsum(cost)[:-1]])
        remaining = budget - spent_before
    reason = np.full(n, _BID, dtype=np.int8)
    reason[~bid_ok] = _BELOW_FLOOR
    reason[bid_ok & (prices > remaining * IMPRESSIONS_PER_PRICE)] = _EXHAUSTED
    reason[remaining <= 0.0] = _EXHAUSTED
    placed = reason == _BID
    with np.errstate(invalid="ignore"):
        won = placed & (prices > market)
    return _Replay(np.where(placed, prices, np.nan), reason, won, np.where(won, cost, 0.0))


def _replay_rows(
    campaign: Campaign,
    pctr: np.ndarray,
    pcvr: np.ndarray | None,
    market: np.ndarray,
    floors: np.ndarray,
    fractions: np.ndarray,
    draws: np.ndarray,
) -> _Replay:
    """``decide_bid`` on every impression in turn, with the spend so far."""
    n = len(pctr)
    bid, reason = np.full(n, np.nan), np.zeros(n, dtype=np.int8)
    won, cost = np.zeros(n, dtype=bool), np.zeros(n)
    spent = 0.0
    pctrs, markets, floor_list, fraction_list, draw_list = (
        pctr.tolist(), market.tolist(), floors.tolist(), fractions.tolist(), draws.tolist()
    )  # fmt: skip
    pcvrs = pcvr.tolist() if pcvr is not None else [None] * n
    for row in range(n):
        decision = decide_bid(
            campaign, pctrs[row], pcvrs[row], floor_list[row], spent, fraction_list[row], draw_list[row]
        )
        reason[row] = REASONS.index(decision.reason)
        if decision.price is None:
            continue
        bid[row] = decision.price
        if decision.price > markets[row]:  # False for a NaN market price
            won[row] = True
            cost[row] = markets[row] / IMPRESSIONS_PER_PRICE
            spent += cost[row]
    return _Replay(bid, reason, won, cost)


def _summary(
    label: str,
    replay: _Replay,
    budget: float,
    market: np.ndarray,
    clicked: np.ndarray,
    converted: np.ndarray | None,
    fractions: np.ndarray,
) -> dict[str, Any]:
    """The figures of one replay, and its per-impression series (``series``)."""
    bids, wins = int(np.isfinite(replay.bid).sum()), int(replay.won.sum())
    spend = float(replay.cost.sum())
    clicks = int(clicked[replay.won].sum())
    conversions = None
    if converted is not None and np.isfinite(converted).any():
        conversions = int(np.nansum(converted[replay.won]))
    cumulative = np.cumsum(replay.cost)
    exhausted = np.flatnonzero(cumulative >= EXHAUSTED_SHARE * budget) if budget > 0 else np.zeros(0, dtype=int)
    return {
        "strategy": label,
        "budget": float(budget),
        "rows": len(market),
        "rows_without_market_price": int(np.isnan(market).sum()),
        "bids": bids,
        "wins": wins,
        "win_rate": wins / bids if bids else None,
        "spend": spend,
        "budget_use": spend / budget if budget > 0 else None,
        "clicks": clicks,
        "conversions": conversions,
        "ctr": clicks / wins if wins else None,
        "ecpm": IMPRESSIONS_PER_PRICE * spend / wins if wins else None,
        "cpc": spend / clicks if clicks else None,
        "clicks_per_spend": clicks / spend if spend > 0 else None,
        "no_bids": {r: int((replay.reason == REASONS.index(r)).sum()) for r in NO_BID_REASONS},
        "budget_exhausted_at": float(fractions[exhausted[0]]) if exhausted.size else None,
        "series": {
            "day_fraction": fractions,
            "bid": replay.bid,
            "won": replay.won,
            "market_price": market,
            "spend": cumulative,
        },
    }


@dataclasses.dataclass(frozen=True)
class _Day:
    """A day's impressions in time order, as float arrays."""

    order: np.ndarray
    market: np.ndarray
    clicked: np.ndarray
    converted: np.ndarray | None
    fractions: np.ndarray
    floors: np.ndarray

    @classmethod
    def of(cls, market_price, clicked, converted, timestamps, floor) -> _Day:
        fractions = day_fractions(timestamps)
        order = np.argsort(fractions, kind="stable")
        market = np.asarray(market_price, dtype=np.float64)
        n = len(fractions)
        if market.shape != (n,) or np.shape(clicked) != (n,):
            raise ValueError(f"market_price and clicked must have one value per timestamp ({n})")
        with np.errstate(invalid="ignore"):
            if (market < 0).any():
                raise ValueError("market_price has negative values")
        clicks = np.nan_to_num(np.asarray(clicked, dtype=np.float64))
        conversions = None if converted is None else np.asarray(converted, dtype=np.float64)[order]
        return cls(order, market[order], clicks[order], conversions, fractions[order], _floors(floor, n)[order])

    def summary(self, label: str, replay: _Replay, budget: float) -> dict[str, Any]:
        return _summary(label, replay, budget, self.market, self.clicked, self.converted, self.fractions)


def simulate_day(
    campaign: Campaign,
    pctr: np.ndarray,
    market_price: np.ndarray,
    clicked: np.ndarray,
    converted: np.ndarray | None,
    timestamps: Any,
    budget: float | None = None,
    pcvr: np.ndarray | None = None,
    seed: int = 0,
    floor: float | np.ndarray = 0.0,
    row_by_row: bool = False,
) -> dict[str, Any]:
    """Replay a day of second-price auctions for ``campaign``.

    Args:
        campaign: the campaign (its strategy, cap, pacing).
        pctr, pcvr: the model's probabilities per impression (pcvr None: none).
        market_price: the logged clearing price per impression (CPM); NaN: unknown (the
            impression cannot be won).
        clicked, converted: the logged labels (converted None or NaN: unknown).
        timestamps: when each impression happened (``datetime64``), any order.
        budget: the day's budget (currency); None: the campaign's ``daily_budget``.
        seed: seeds the throttling draws of a ``paced`` campaign.
        floor: the floor price (CPM), one for all or one per impression.
        row_by_row: call ``decide_bid`` on every impression even where arrays give the
            same decisions (for checks).

    Returns:
        ``bids``, ``wins``, ``win_rate``, ``spend``, ``budget_use``, ``clicks``,
        ``conversions``, ``ctr``, ``ecpm`` (CPM paid: 1000 * spend / wins),
        ``cpc``, ``clicks_per_spend``, ``rows``, ``rows_without_market_price``,
        ``no_bids`` (count per reason), ``budget_exhausted_at`` (day fraction when
        ``EXHAUSTED_SHARE`` of the budget was spent, or None) and ``series``: per
        impression in time order, ``day_fraction``, ``bid`` (NaN: no bid), ``won``,
        ``market_price`` and the cumulative ``spend``. Ratios without a denominator are None.
    """
    day = _Day.of(market_price, clicked, converted, timestamps, floor)
    budget = campaign.daily_budget if budget is None else float(budget)
    campaign = dataclasses.replace(campaign, daily_budget=budget)
    pctr = np.asarray(pctr, dtype=np.float64)[day.order]
    pcvr = None if pcvr is None else np.asarray(pcvr, dtype=np.float64)[day.order]
    prices = bid_prices(campaign, pctr, pcvr)  # checks the probabilities
    if campaign.strategy == "paced" or row_by_row:
        draws = np.random.default_rng(seed).random(len(pctr))
        replay = _replay_rows(campaign, pctr, pcvr, day.market, day.floors, day.fractions, draws)
    else:
        replay = _replay_unpaced(np.minimum(prices, campaign.max_bid), day.market, day.floors, budget)
    return {"campaign_id": campaign.campaign_id, **day.summary(campaign.strategy, replay, budget)}


def spend_matched(
    label: str,
    base: np.ndarray,
    target_spend: float,
    market_price: np.ndarray,
    clicked: np.ndarray,
    converted: np.ndarray | None,
    timestamps: Any,
    budget: float,
    floor: float | np.ndarray = 0.0,
) -> dict[str, Any]:
    """The bid ``scale * base`` (CPM, per impression) whose spend is ``target_spend``.

    The scale is the smallest (by bisection) whose bids, over the whole day and without
    a budget, spend at least ``target_spend`` (that spend grows with the scale in steps
    of one impression's price); the day is then replayed with ``budget``. So the
    reference spends the target over the whole day, the cheapest way a bid of that
    shape can: a strategy that runs out of budget early is compared with bids that
    spread the same money. The result reports its own ``spend`` and the ``bid_scale``;
    a target that no scale reaches gets the largest spend the day allows.
    """
    day = _Day.of(market_price, clicked, converted, timestamps, floor)
    base = np.asarray(base, dtype=np.float64)[day.order]
    if not (np.isfinite(base).all() and (base >= 0).all()):
        raise ValueError(f"{label}: the bid base must be finite and non-negative")

    def replay(scale: float, limit: float) -> _Replay:
        return _replay_unpaced(scale * base, day.market, day.floors, limit)

    # Without a budget the spend only grows with the scale (a higher bid wins a superset).
    scale = _smallest_scale(lambda s: float(replay(s, np.inf).cost.sum()), target_spend)
    result = day.summary(label, replay(scale, budget), budget)
    return {**result, "bid_scale": scale, "target_spend": float(target_spend)}


def _smallest_scale(spend: Callable[[float], float], target: float) -> float:
    """The smallest scale (to bisection precision) whose spend reaches ``target``."""
    if target <= 0:
        return 0.0
    high = 1.0
    for _ in range(200):
        if spend(high) >= target:
            break
        high *= 2.0
    else:
        return high  # never reached: the most the day can spend
    low = 0.0
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2.0
        if spend(middle) >= target:
            high = middle
        else:
            low = middle
    return high


def simulate_with_references(
    campaign: Campaign,
    pctr: np.ndarray,
    market_price: np.ndarray,
    clicked: np.ndarray,
    converted: np.ndarray | None,
    timestamps: Any,
    budget: float | None = None,
    pcvr: np.ndarray | None = None,
    true_pctr: np.ndarray | None = None,
    seed: int = 0,
    floor: float | np.ndarray = 0.0,
) -> dict[str, Any]:
    """``simulate_day`` for the campaign, and its references at the same spend.

    Returns:
        ``strategy`` (``simulate_day``'s result), ``constant`` (one bid for all
        impressions, same spend), ``proportional`` (a bid proportional to the model's
        pCTR, same spend: what the model's pCTR buys when the money is spread over the
        day at the lowest such bid; the gap to it is what the strategy's pacing and
        shape lose), ``oracle`` (bid proportional to ``true_pctr``, same
        spend; None without it), ``clicks_vs_constant`` (relative: 0.25 is 25% more
        clicks) and ``share_of_oracle_clicks`` (None where undefined).
    """
    budget = campaign.daily_budget if budget is None else float(budget)
    strategy = simulate_day(
        campaign, pctr, market_price, clicked, converted, timestamps, budget, pcvr=pcvr, seed=seed, floor=floor
    )
    arguments = (strategy["spend"], market_price, clicked, converted, timestamps, budget, floor)
    constant = spend_matched("constant", np.ones(len(strategy["series"]["bid"])), *arguments)
    proportional = spend_matched("pctr-proportional", np.asarray(pctr, dtype=np.float64), *arguments)
    oracle = None
    if true_pctr is not None:
        true_pctr = np.asarray(true_pctr, dtype=np.float64)
        if not (np.isfinite(true_pctr).all() and ((true_pctr >= 0) & (true_pctr <= 1)).all()):
            raise ValueError("true_pctr must be probabilities in [0, 1] (no NaN)")
        oracle = spend_matched("oracle", true_pctr, *arguments)
    return {
        "campaign_id": campaign.campaign_id,
        "strategy": strategy,
        "constant": constant,
        "proportional": proportional,
        "oracle": oracle,
        "clicks_vs_constant": strategy["clicks"] / constant["clicks"] - 1.0 if constant["clicks"] else None,
        "share_of_oracle_clicks": strategy["clicks"] / oracle["clicks"] if oracle and oracle["clicks"] else None,
    }

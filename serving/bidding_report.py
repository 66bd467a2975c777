"""A bidding simulation's results as a Markdown table and a standalone HTML plot (plotly,
like ``models.training.curves``): win rate by bid bucket, spend over the day against
the budget's uniform plan."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLUMNS = (
    "campaign", "strategy", "bids", "wins", "win rate", "spend", "budget use", "budget out at", "clicks", "CTR",
    "eCPM", "CPC",
    "clicks / spend", "vs constant (same spend)", "% of oracle clicks",
)  # fmt: skip
BID_BUCKETS = 12
SERIES_POINTS = 400


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.1f}%" if signed else f"{100 * value:.1f}%"


def _clock(day_fraction: float | None) -> str:
    """A day fraction as ``HH:MM`` (UTC); ``–`` for None (the budget lasted the day)."""
    if day_fraction is None:
        return "–"
    minutes = min(int(round(day_fraction * 24 * 60)), 24 * 60 - 1)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _row(campaign: str, result: dict[str, Any], versus: str, oracle: str) -> str:
    cells = [
        campaign,
        result["strategy"],
        f"{result['bids']:,}",
        f"{result['wins']:,}",
        _percent(result["win_rate"]),
        _number(result["spend"]),
        _percent(result["budget_use"]),
        _clock(result["budget_exhausted_at"]),
        f"{result['clicks']:,}",
        _percent(result["ctr"], signed=False),
        _number(result["ecpm"]),
        _number(result["cpc"]),
        _number(result["clicks_per_spend"]),
        versus,
        oracle,
    ]
    return "| " + " | ".join(cells) + " |"


def results_table(comparisons: Sequence[dict[str, Any]]) -> str:
    """One row per campaign (``serving.auction.simulate_with_references``' results), then
    its references at the same spend (``constant``, ``proportional``, ``oracle``), as a
    Markdown table.

    ``budget out at``: when 99% of the budget was spent (UTC ``HH:MM``; ``–``: it lasted
    the day). ``vs constant``: the strategy's clicks relative to the constant bid's at the same
    spend (+25%: a quarter more); ``% of oracle clicks``: its clicks as a share of the
    true-pCTR bid's at the same spend.
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    for comparison in comparisons:
        campaign = comparison["campaign_id"]
        lines.append(
            _row(
                campaign,
                comparison["strategy"],
                _percent(comparison["clicks_vs_constant"], signed=True),
                _percent(comparison["share_of_oracle_clicks"]),
            )
        )
        for name in ("constant", "proportional", "oracle"):
            reference = comparison.get(name)
            if reference is not None:
                label = reference["strategy"]
                lines.append(_row(f"↳ {campaign}", {**reference, "strategy": f"{label} (same spend)"}, "", ""))
    return "\n".join(lines)


def _thin(x: np.ndarray, y: np.ndarray, points: int = SERIES_POINTS) -> tuple[list[float], list[float]]:
    if len(x) <= points:
        return x.tolist(), y.tolist()
    keep = np.unique(np.linspace(0, len(x) - 1, points).astype(int))
    return x[keep].tolist(), y[keep].tolist()


def bidding_report_html(comparisons: Sequence[dict[str, Any]], title: str, path: str | os.PathLike[str]) -> str:
    """Write the day's plot to ``path`` (its folder must exist): per campaign, its win
    rate by bid bucket (log-spaced buckets over every bid placed, with the market's own
    curve, the share of priced impressions whose market price is below the bucket's bid)
    and its cumulative spend over the day against the uniform plan of its budget.

    Returns:
        ``path`` as a string.
    """
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("win rate by bid (CPM)", "spend over the day vs the uniform plan")
    )
    strategies = [c["strategy"] for c in comparisons]
    bids = np.concatenate([s["series"]["bid"][np.isfinite(s["series"]["bid"])] for s in strategies] or [np.zeros(0)])
    bids = bids[bids > 0]
    if bids.size:
        edges = np.geomspace(bids.min(), bids.max() * (1 + 1e-9), BID_BUCKETS + 1)
        centres = np.sqrt(edges[:-1] * edges[1:])
        market = strategies[0]["series"]["market_price"]
        market = np.sort(market[np.isfinite(market)])
        if market.size:
            figure.add_trace(
                go.Scatter(
                    x=centres.tolist(),
                    y=(np.searchsorted(market, centres, side="left") / market.size).tolist(),
                    name="market: P(price < bid)",
                    line={"dash": "dot", "color": "grey"},
                ),
                row=1,
                col=1,
            )
        for comparison, result in zip(comparisons, strategies, strict=True):
            placed = np.isfinite(result["series"]["bid"])
            bucket = np.digitize(result["series"]["bid"][placed], edges) - 1
            won = result["series"]["won"][placed]
            counts = np.bincount(bucket, minlength=BID_BUCKETS + 1)[:BID_BUCKETS]
            wins = np.bincount(bucket, weights=won, minlength=BID_BUCKETS + 1)[:BID_BUCKETS]
            shown = counts > 0
            figure.add_trace(
                go.Scatter(
                    x=centres[shown].tolist(),
                    y=(wins[shown] / counts[shown]).tolist(),
                    mode="lines+markers",
                    name=f"{comparison['campaign_id']} ({result['strategy']})",
                    legendgroup=comparison["campaign_id"],
                ),
                row=1,
                col=1,
            )
    figure.update_xaxes(type="log", title_text="bid (CPM)", row=1, col=1)
    figure.update_yaxes(title_text="win rate", range=[0, 1.02], row=1, col=1)
    for comparison, result in zip(comparisons, strategies, strict=True):
        x, y = _thin(result["series"]["day_fraction"] * 24.0, result["series"]["spend"])
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=f"{comparison['campaign_id']} spend",
                legendgroup=comparison["campaign_id"],
                showlegend=False,
            ),
            row=1,
            col=2,
        )
    for budget in sorted({result["budget"] for result in strategies}):
        figure.add_trace(
            go.Scatter(x=[0, 24], y=[0, budget], name=f"plan ({budget:g})", line={"dash": "dash", "color": "black"}),
            row=1,
            col=2,
        )
    figure.update_xaxes(title_text="hour of the day (UTC)", range=[0, 24], row=1, col=2)
    figure.update_yaxes(title_text="cumulative spend", row=1, col=2)
    figure.update_layout(title=title, height=460, width=1200)
    figure.write_html(os.fspath(path), include_plotlyjs=True, full_html=True)
    return os.fspath(path)

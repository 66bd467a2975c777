"""Bidding strategies (``serving.bidding``), the auction replay (``serving.auction``), the
report (``serving.bidding_report``) and the ``bidding_simulation`` asset over a small
synthetic pipeline with a real exported model."""

import dataclasses
import datetime as dt
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from conftest import PROJECT_ROOT, free_port, make_settings

from serving.auction import day_fractions, simulate_day, simulate_with_references, spend_matched
from serving.bidding import (
    STRATEGY_KINDS,
    BidDecision,
    Campaign,
    bid_prices,
    decide_bid,
    load_campaigns,
    pacing_multiplier,
)
from serving.bidding_report import bidding_report_html, results_table

DAY = np.datetime64("2024-03-01T00:00:00", "us")


def campaign(strategy: str = "linear", **fields) -> Campaign:
    values = {
        "campaign_id": f"test_{strategy}",
        "item_id": None,
        "daily_budget": 10.0,
        "strategy": strategy,
        "base_bid": 1.0,
        "average_ctr": 0.05,
        **fields,
    }
    if strategy == "value":
        values.setdefault("value_per_click", 0.02)
    return Campaign(**values)


def uniform_times(n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """``n`` timestamps spread over the day (sorted), evenly or at random."""
    seconds = np.linspace(0, 86_399, n) if rng is None else np.sort(rng.uniform(0, 86_399, n))
    return DAY + (seconds * 1e6).astype("timedelta64[us]")


def known_ctr_day(n: int, seed: int = 3) -> dict[str, np.ndarray]:
    """A day whose true CTR has a known structure: three kinds of impressions (CTR 1%, 4%,
    15%) whose market price does not depend on the CTR; clicks drawn from the true CTR."""
    rng = np.random.default_rng(seed)
    true_pctr = rng.choice([0.01, 0.04, 0.15], size=n, p=[0.5, 0.35, 0.15])
    return {
        "true_pctr": true_pctr,
        "market_price": np.round(rng.lognormal(np.log(0.8), 0.5, n), 4),
        "clicked": (rng.random(n) < true_pctr).astype(np.int64),
        "converted": np.zeros(n),
        "timestamps": uniform_times(n, rng),
    }


# ---- strategies ---------------------------------------------------------------------


@pytest.mark.unit
def test_linear_bid_doubles_with_pctr_and_is_base_bid_at_the_average():
    prices = bid_prices(campaign("linear", base_bid=0.8, average_ctr=0.05), np.array([0.05, 0.1, 0.2, 0.0]))
    np.testing.assert_allclose(prices, [0.8, 1.6, 3.2, 0.0])


@pytest.mark.unit
def test_value_bid_is_pctr_times_the_value_as_cpm():
    pctr = np.array([0.01, 0.1])
    np.testing.assert_allclose(bid_prices(campaign("value", value_per_click=0.5), pctr), 1000 * pctr * 0.5)
    both = campaign("value", value_per_click=0.5, value_per_conversion=4.0)
    pcvr = np.array([0.2, 0.5])
    np.testing.assert_allclose(bid_prices(both, pctr, pcvr), 1000 * (pctr * 0.5 + pctr * pcvr * 4.0))
    with pytest.raises(ValueError, match="values conversions, but no pCVR"):
        bid_prices(both, pctr)
    with pytest.raises(ValueError, match="pctr must be probabilities"):
        bid_prices(both, np.array([0.1, np.nan]), pcvr)


@pytest.mark.unit
def test_constant_bid_ignores_pctr():
    np.testing.assert_allclose(bid_prices(campaign("constant", base_bid=0.7), np.array([0.0, 0.3, 1.0])), 0.7)


@pytest.mark.unit
def test_decide_bid_caps_at_max_bid_and_does_not_bid_below_the_floor():
    capped = campaign("linear", base_bid=1.0, average_ctr=0.05, max_bid=1.5)
    assert decide_bid(capped, 0.5, None, floor=0.0, spent=0.0, day_fraction=0.5) == BidDecision(1.5, "bid")
    assert decide_bid(capped, 0.05, None, floor=0.5, spent=0.0, day_fraction=0.5) == BidDecision(1.0, "bid")
    assert decide_bid(capped, 0.01, None, floor=0.5, spent=0.0, day_fraction=0.5) == BidDecision(None, "below_floor")
    assert decide_bid(capped, 0.5, None, floor=2.0, spent=0.0, day_fraction=0.5) == BidDecision(None, "below_floor")
    assert decide_bid(capped, 0.0, None, floor=0.0, spent=0.0, day_fraction=0.5) == BidDecision(None, "below_floor")


@pytest.mark.unit
def test_an_exhausted_budget_gets_no_bid_and_a_nearly_spent_one_never_bids_past_it():
    spender = campaign("constant", base_bid=2.0, daily_budget=1.0)
    for spent in (1.0, 1.5):
        assert decide_bid(spender, 0.1, None, 0.0, spent, 0.9) == BidDecision(None, "budget_exhausted")
    # A 2.0 CPM bid may cost 0.002: it fits in 0.002 left, not in 0.0019.
    assert decide_bid(spender, 0.1, None, 0.0, 0.998, 0.9) == BidDecision(2.0, "bid")
    assert decide_bid(spender, 0.1, None, 0.0, 0.9981, 0.9) == BidDecision(None, "budget_exhausted")
    # A lower bid still fits (a linear campaign on a low pCTR).
    linear = campaign("linear", base_bid=2.0, average_ctr=0.1, daily_budget=1.0)
    assert decide_bid(linear, 0.05, None, 0.0, 0.9981, 0.9) == BidDecision(1.0, "bid")


@pytest.mark.unit
def test_campaign_validation_names_the_campaign_and_the_field():
    with pytest.raises(ValueError, match="campaign 'c1': strategy must be one of"):
        Campaign("c1", None, 1.0, "greedy", 1.0, 0.05)
    with pytest.raises(ValueError, match="campaign 'c1': average_ctr must be in"):
        Campaign("c1", None, 1.0, "linear", 1.0, 0.0)
    with pytest.raises(ValueError, match="campaign 'c1': value_per_click or value_per_conversion must be set"):
        Campaign("c1", None, 1.0, "value", 0.0, 0.0)
    with pytest.raises(ValueError, match="campaign 'c1': daily_budget must be a non-negative number"):
        Campaign("c1", None, -1.0, "constant", 1.0, 0.0)


@pytest.mark.unit
def test_load_campaigns_reads_a_file_and_names_the_bad_field(tmp_path):
    path = tmp_path / "campaigns.yaml"
    path.write_text(
        "campaigns:\n"
        "  flat: {strategy: constant, daily_budget: 5, base_bid: 0.6}\n"
        "  smart: {strategy: value, daily_budget: 5, value_per_click: 0.02, max_bid: 3, item_id: i00001}\n"
    )
    loaded = load_campaigns(path)
    assert list(loaded) == ["flat", "smart"]
    assert loaded["flat"] == Campaign("flat", None, 5, "constant", 0.6, 0.0)
    assert loaded["smart"].max_bid == 3 and loaded["smart"].item_id == "i00001"
    with pytest.raises(ValueError, match=r"campaign 'flat': unknown field\(s\) \['bid'\]"):
        load_campaigns({"campaigns": {"flat": {"strategy": "constant", "daily_budget": 5, "bid": 1}}})
    with pytest.raises(ValueError, match="campaign 'flat': daily_budget is missing"):
        load_campaigns({"flat": {"strategy": "constant", "base_bid": 1}})
    with pytest.raises(ValueError, match="campaign 'flat': pacing must be one of"):
        load_campaigns(
            {"flat": {"strategy": "paced", "daily_budget": 5, "base_bid": 1, "average_ctr": 0.1, "pacing": "x"}}
        )
    with pytest.raises(ValueError, match="campaign 'flat': base_bid must be a non-negative number"):
        load_campaigns({"flat": {"strategy": "constant", "daily_budget": 5, "base_bid": "high"}})
    with pytest.raises(ValueError, match="expected a non-empty mapping"):
        load_campaigns({"campaigns": []})


@pytest.mark.unit
@pytest.mark.parametrize("source", ["synthetic", "ipinyou"])
def test_the_packaged_campaigns_have_one_campaign_per_strategy(source):
    path = PROJECT_ROOT / "configs" / "campaigns" / f"{source}.yaml"
    campaigns = load_campaigns(path)
    assert sorted(c.strategy for c in campaigns.values()) == sorted(STRATEGY_KINDS)
    assert "price_unit" in yaml.safe_load(path.read_text())  # the file says its unit


@pytest.mark.unit
def test_the_settings_default_to_the_packaged_campaigns_of_the_source(tmp_path, session_state_dir):
    settings = make_settings(tmp_path, session_state_dir)
    assert settings.campaigns_file == str(PROJECT_ROOT / "configs" / "campaigns" / "synthetic.yaml")
    assert make_settings(tmp_path, session_state_dir, SOURCE="criteo").campaigns_file is None
    mine = make_settings(tmp_path, session_state_dir, CAMPAIGNS=str(tmp_path / "mine.yaml"))
    assert mine.campaigns_file == str(tmp_path / "mine.yaml")


# ---- pacing -------------------------------------------------------------------------


@pytest.mark.unit
def test_pacing_multiplier_is_one_on_plan_below_one_ahead_and_zero_when_spent():
    assert pacing_multiplier(spent=50, budget=100, day_fraction=0.5) == 1.0
    assert pacing_multiplier(spent=20, budget=100, day_fraction=0.5) == 1.0  # behind: bid in full
    ahead = [pacing_multiplier(spent=s, budget=100, day_fraction=0.5) for s in (51, 52, 54, 55, 70)]
    assert 1.0 > ahead[0] > ahead[1] > ahead[2] > 0.0 and ahead[3] == ahead[4] == 0.0
    assert pacing_multiplier(spent=52, budget=100, day_fraction=0.5, tolerance=0.04) == pytest.approx(0.5)
    assert pacing_multiplier(spent=100, budget=100, day_fraction=1.0) == 0.0
    assert pacing_multiplier(spent=0, budget=0, day_fraction=0.2) == 0.0
    # Another plan than the uniform one: 80% planned by now, 60% spent, so behind.
    assert pacing_multiplier(spent=60, budget=100, day_fraction=0.5, planned_fraction=0.8) == 1.0


@pytest.mark.unit
@pytest.mark.parametrize("pacing", ["throttle", "shade"])
def test_a_paced_campaign_tracks_the_uniform_plan_and_ends_within_one_bid_of_its_budget(pacing):
    n = 20_000
    rng = np.random.default_rng(11)
    pctr = rng.uniform(0.01, 0.1, n)
    market = rng.lognormal(np.log(0.8), 0.4, n)
    unpaced = simulate_day(
        campaign("linear", daily_budget=1e9, base_bid=1.2), pctr, market, np.zeros(n), None, uniform_times(n)
    )
    budget = unpaced["spend"] * 0.3  # the budget binds: unpaced, it would be spent by about 7:00
    paced = campaign("paced", base_bid=1.2, daily_budget=budget, pacing=pacing, pacing_tolerance=0.05)
    result = simulate_day(paced, pctr, market, np.zeros(n), None, uniform_times(n), seed=5)
    fraction, spend = result["series"]["day_fraction"], result["series"]["spend"]
    largest_bid = np.nanmax(result["series"]["bid"])
    assert np.max(np.abs(spend - budget * fraction)) <= 0.05 * budget + largest_bid / 1000
    assert budget - largest_bid / 1000 <= result["spend"] <= budget
    assert result["no_bids"]["throttled"] > 0 if pacing == "throttle" else result["bids"] > result["wins"]
    # Unpaced with the same budget, the linear campaign runs out in the morning.
    early = simulate_day(
        campaign("linear", base_bid=1.2, daily_budget=budget), pctr, market, np.zeros(n), None, uniform_times(n)
    )
    assert early["budget_exhausted_at"] < 0.35 and early["spend"] <= budget


# ---- the auction replay ---------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    "strategy",
    [campaign("constant", base_bid=0.9), campaign("linear", max_bid=2.0), campaign("value", value_per_click=0.03)],
)
def test_the_array_replay_decides_exactly_like_decide_bid_row_by_row(strategy):
    n = 5_000
    rng = np.random.default_rng(2)
    pctr = rng.beta(1, 20, n)
    market = rng.lognormal(np.log(0.8), 0.6, n)
    market[rng.random(n) < 0.05] = np.nan
    floors = np.where(rng.random(n) < 0.3, rng.uniform(0.2, 1.0, n), 0.0)
    clicked = (rng.random(n) < pctr).astype(int)
    times = uniform_times(n, rng)[rng.permutation(n)]  # any order: replayed in time order
    full = simulate_day(strategy, pctr, market, clicked, None, times, budget=1e9, floor=floors)
    for budget in (full["spend"] * 0.4, full["spend"] * 0.999, full["spend"] * 2):
        fast = simulate_day(strategy, pctr, market, clicked, None, times, budget=budget, floor=floors)
        slow = simulate_day(strategy, pctr, market, clicked, None, times, budget=budget, floor=floors, row_by_row=True)
        np.testing.assert_array_equal(fast["series"]["bid"], slow["series"]["bid"])
        np.testing.assert_array_equal(fast["series"]["won"], slow["series"]["won"])
        np.testing.assert_array_equal(fast["series"]["spend"], slow["series"]["spend"])
        assert {k: v for k, v in fast.items() if k != "series"} == {k: v for k, v in slow.items() if k != "series"}
        assert fast["spend"] <= budget


@pytest.mark.unit
def test_rows_without_a_market_price_are_counted_bid_on_and_never_won():
    n = 1_000
    rng = np.random.default_rng(4)
    market = rng.uniform(0.1, 1.0, n)
    market[::10] = np.nan
    result = simulate_day(
        campaign("constant", base_bid=5.0, daily_budget=1e6),
        np.full(n, 0.05),
        market,
        np.ones(n),
        None,
        uniform_times(n),
    )
    assert result["rows_without_market_price"] == 100 and result["rows"] == n
    assert result["bids"] == n and result["wins"] == 900
    assert not result["series"]["won"][np.isnan(result["series"]["market_price"])].any()
    assert result["spend"] == pytest.approx(np.nansum(market) / 1000)
    assert result["ecpm"] == pytest.approx(np.nanmean(market))


@pytest.mark.unit
def test_second_price_wins_above_the_market_pays_it_and_stops_at_the_budget():
    market = np.array([0.5, 1.5, 0.9, 0.2, 0.8])
    result = simulate_day(
        campaign("constant", base_bid=1.0, daily_budget=0.0015), np.full(5, 0.1), market, np.array([1, 1, 0, 1, 1]),
        np.array([1, 0, 0, np.nan, 0]), uniform_times(5),
    )  # fmt: skip
    # Won: 0.5 (pays 0.0005), 0.9 (0.0009; 0.0014 spent); lost: 1.5. Then 0.0001 is left, less
    # than a 1.0 CPM bid may cost: no more bids.
    assert result["series"]["won"].tolist() == [True, False, True, False, False]
    assert result["no_bids"] == {"below_floor": 0, "budget_exhausted": 2, "throttled": 0}
    assert result["spend"] == pytest.approx(0.0014) and result["clicks"] == 1 and result["conversions"] == 1
    assert result["win_rate"] == pytest.approx(2 / 3) and result["cpc"] == pytest.approx(0.0014)
    assert result["ctr"] == 0.5 and result["budget_use"] == pytest.approx(0.0014 / 0.0015)


@pytest.mark.unit
def test_a_model_driven_bid_beats_the_constant_bid_at_the_same_spend():
    day = known_ctr_day(20_000)
    linear = campaign("linear", base_bid=0.8, average_ctr=0.04, daily_budget=1e6)
    compared = simulate_with_references(
        linear, day["true_pctr"], day["market_price"], day["clicked"], day["converted"], day["timestamps"],
        true_pctr=day["true_pctr"],
    )  # fmt: skip
    strategy, constant, oracle = compared["strategy"], compared["constant"], compared["oracle"]
    # Equal spend, to within one impression's price.
    assert abs(constant["spend"] - strategy["spend"]) <= np.nanmax(day["market_price"]) / 1000
    assert strategy["clicks_per_spend"] > 1.3 * constant["clicks_per_spend"]
    assert compared["clicks_vs_constant"] > 0.3
    # Bidding on the true pCTR is the oracle itself.
    assert compared["share_of_oracle_clicks"] == pytest.approx(1.0, abs=0.03)
    assert oracle["bid_scale"] > 0 and constant["bid_scale"] > 0
    assert compared["proportional"]["clicks"] == oracle["clicks"]  # the model is the truth here
    # A noisy model sits between the constant bid and the oracle.
    noisy = np.clip(day["true_pctr"] * np.random.default_rng(8).lognormal(0, 0.8, len(day["true_pctr"])), 0, 1)
    partial = simulate_with_references(
        linear, noisy, day["market_price"], day["clicked"], None, day["timestamps"], true_pctr=day["true_pctr"]
    )
    assert constant["clicks"] < partial["strategy"]["clicks"] < oracle["clicks"] * 1.02
    assert partial["share_of_oracle_clicks"] < 1.0
    # With a budget that binds, the strategy still beats the constant bid at its spend; the
    # references spread the spend over the day, the linear bid spends it by the evening.
    bound = simulate_with_references(
        dataclasses.replace(linear, daily_budget=strategy["spend"] * 0.5), day["true_pctr"], day["market_price"],
        day["clicked"], None, day["timestamps"], true_pctr=day["true_pctr"],
    )  # fmt: skip
    assert bound["strategy"]["budget_use"] > 0.99 and bound["strategy"]["budget_exhausted_at"] < 0.9
    assert bound["clicks_vs_constant"] > 0.3 and 0.5 < bound["share_of_oracle_clicks"] <= 1.02


@pytest.mark.unit
def test_spend_matching_finds_the_smallest_constant_bid_of_a_spend():
    day = known_ctr_day(5_000)
    args = (day["market_price"], day["clicked"], None, day["timestamps"])
    matched = spend_matched("constant", np.ones(5_000), 1.0, *args, budget=100.0)
    assert 1.0 <= matched["spend"] <= 1.0 + np.max(day["market_price"]) / 1000
    below = simulate_day(
        campaign("constant", base_bid=matched["bid_scale"] * 0.999, daily_budget=100.0), day["true_pctr"], *args
    )
    assert below["spend"] < 1.0
    assert spend_matched("constant", np.ones(5_000), 0.0, *args, budget=100.0)["wins"] == 0


@pytest.mark.unit
def test_day_fractions_come_from_the_timestamps():
    stamps = np.array(["2024-03-01T00:00", "2024-03-01T06:00", "2024-03-01T18:00"], dtype="datetime64[us]")
    np.testing.assert_allclose(day_fractions(stamps), [0.0, 0.25, 0.75])


@pytest.mark.unit
def test_a_50000_row_day_simulates_every_strategy_with_its_references_in_seconds():
    n = 50_000
    day = known_ctr_day(n, seed=9)
    rng = np.random.default_rng(1)
    model_pctr = np.clip(day["true_pctr"] * rng.lognormal(0, 0.5, n), 0, 1)
    kinds = {
        "constant": campaign("constant", base_bid=0.9, daily_budget=5.0),
        "linear": campaign("linear", base_bid=0.8, average_ctr=0.04, daily_budget=5.0),
        "value": campaign("value", value_per_click=0.02, daily_budget=5.0),
        "paced": campaign("paced", base_bid=0.9, average_ctr=0.04, daily_budget=5.0),
    }
    seconds = {}
    for kind, strategy in kinds.items():
        started = time.perf_counter()
        compared = simulate_with_references(
            strategy,
            model_pctr,
            day["market_price"],
            day["clicked"],
            None,
            day["timestamps"],
            true_pctr=day["true_pctr"],
        )
        seconds[kind] = time.perf_counter() - started
        assert compared["strategy"]["spend"] <= 5.0
    print(f"simulation seconds for {n} rows: {seconds}")
    assert sum(seconds.values()) < 20.0
    assert max(seconds.values()) < 8.0


# ---- the report -----------------------------------------------------------------------


@pytest.mark.unit
def test_the_report_tables_every_strategy_and_plots_it(tmp_path):
    day = known_ctr_day(3_000)
    comparisons = [
        simulate_with_references(
            campaign(kind, daily_budget=0.5),
            day["true_pctr"],
            day["market_price"],
            day["clicked"],
            None,
            day["timestamps"],
            true_pctr=day["true_pctr"],
        )  # fmt: skip
        for kind in STRATEGY_KINDS
    ]
    table = results_table(comparisons)
    lines = table.splitlines()
    assert lines[0].startswith(
        "| campaign | strategy | bids | wins | win rate | spend | budget use | budget out at | clicks | CTR"
    )
    assert "vs constant (same spend)" in lines[0] and "% of oracle clicks" in lines[0]
    assert len(lines) == 2 + 4 * len(STRATEGY_KINDS)
    assert sum(line.startswith("| test_") for line in lines) == len(STRATEGY_KINDS)
    path = bidding_report_html(comparisons, "test day", tmp_path / "report.html")
    html = Path(path).read_text()
    assert html.lstrip().lower().startswith("<html") and "plotly" in html[:200_000]
    assert "win rate by bid" in html and "spend over the day" in html


# ---- the asset --------------------------------------------------------------------------

DAYS = ("2024-03-01", "2024-03-02")


@pytest.fixture(scope="module")
def small_pipeline(tmp_path_factory):
    """Two small synthetic days through landing, bronze and dbt, and a small real model
    (``serving_support.export_toy_recommender``, trained on toy rows of the synthetic
    spec) registered and pinned in the pipeline's own BentoML store."""
    from serving_support import export_toy_recommender

    from assets.partitions import partition_range_tags
    from definitions import build_definitions

    folder = tmp_path_factory.mktemp("bidding")
    settings = make_settings(
        folder, folder / "state", SYNTHETIC_DAYS="2", SYNTHETIC_EVENTS_PER_DAY="3000",
        REPORTS_URL=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [defs.get_assets_def(key) for key in ("landing_logs", "raw_events", "fct_events")],
        resources=defs.resources,
        instance=instance,
        tags=partition_range_tags(*(dt.date.fromisoformat(day) for day in DAYS)),
    )
    assert result.success
    export_toy_recommender(folder / "savedmodel", "toy-bidding")
    store = defs.resources["model_store"]
    tag = store.register(
        defs.resources["lake"].get_lake(), str(folder / "savedmodel"), {"model_version": "toy-bidding"}, {}
    )
    store.pin(tag)
    return settings, defs, instance


def _materialize_bidding(defs, instance, day: str):
    result = dg.materialize(
        [defs.get_assets_def("bidding_simulation")],
        resources={key: defs.resources[key] for key in ("lake", "warehouse", "pipeline", "model_store")},
        instance=instance,
        partition_key=day,
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("bidding_simulation")
    return materialization.metadata


@pytest.mark.integration
def test_the_asset_simulates_every_campaign_with_the_served_model(small_pipeline):
    settings, defs, instance = small_pipeline
    metadata = _materialize_bidding(defs, instance, DAYS[1])
    assert metadata["status"].value == "simulated"
    assert metadata["model_version"].value == "toy-bidding"
    assert metadata["oracle"].value == "true pCTR of the synthetic truth"
    assert metadata["rows"].value == 3000 and metadata["rows_without_market_price"].value == 0
    table = metadata["results"].value
    campaigns = load_campaigns(settings.campaigns_file)
    for campaign_id in campaigns:
        assert f"| {campaign_id} |" in table and f"| ↳ {campaign_id} | oracle (same spend)" in table
    results = {c["campaign_id"]: c for c in metadata["campaigns"].value}
    for campaign_id, result in results.items():
        assert 0 < result["strategy"]["spend"] <= campaigns[campaign_id].daily_budget
        assert result["share_of_oracle_clicks"] is not None
    report = Path(metadata["report_path"].value)
    assert report == Path(settings.lake_root, "reports", "bidding", f"dt={DAYS[1]}", "bidding_simulation.html")
    assert "plotly" in report.read_text()[:200_000]
    # One click away in the UI: the report server ``make ui`` starts serves it.
    from urllib.parse import urlsplit
    from urllib.request import urlopen

    from monitoring.report_server import ReportRoots, start_report_server
    from reclake.lake import Lake

    url = metadata["report_url"].value
    assert url == f"{settings.reports_url}/reports/bidding/dt={DAYS[1]}/bidding_simulation.html"
    server = start_report_server(ReportRoots(Lake.open(settings.lake_root)), "127.0.0.1", urlsplit(url).port)
    try:
        with urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"plotly" in response.read()[:200_000]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_every_day_after_the_models_held_out_day_is_simulated_and_a_day_without_rows_says_so(small_pipeline):
    _, defs, instance = small_pipeline
    # The toy model was evaluated on 2024-01-03: both days come after it.
    metadata = _materialize_bidding(defs, instance, DAYS[0])
    assert metadata["status"].value == "simulated"
    assert metadata["day"].value == "after the model's held-out day (2024-01-03)"
    assert _materialize_bidding(defs, instance, "2024-03-05")["status"].value == "no rows"


@pytest.mark.unit
def test_a_source_without_market_prices_materializes_and_says_what_it_needs(tmp_path, session_state_dir):
    """MovieLens-like rows (no market price) in a real DuckDB warehouse: no model is needed."""
    import duckdb

    from definitions import build_definitions

    settings = make_settings(tmp_path, tmp_path / "state", SOURCE="movielens", PARTITIONS_START="2024-03-01")
    with duckdb.connect(settings.warehouse_path) as connection:
        connection.execute(
            "create table fct_events as select 'e1' as event_id, date '2024-03-01' as event_date, "
            "cast(null as double) as market_price"
        )
    defs = build_definitions(settings)
    metadata = _materialize_bidding(defs, dg.DagsterInstance.ephemeral(), "2024-03-01")
    assert metadata["status"].value.startswith("no market prices: a bidding simulation replays second-price auctions")
    assert metadata["status"].value.endswith("the movielens source has none")
    assert metadata["rows"].value == 1

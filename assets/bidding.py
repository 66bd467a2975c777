"""Bidding: the served model's campaigns replayed against a day's logged auctions."""

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from assets.partitions import day_range_backfill, partition_days
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource
from serving.auction import simulate_with_references
from serving.bidding import Campaign, load_campaigns
from sources.truth import load_truth

NO_MARKET_PRICES = (
    "no market prices: a bidding simulation replays second-price auctions, so a source's "
    "impressions need the auction's clearing price (market_price, CPM: e.g. iPinYou's paying "
    "price or the synthetic generator's market price)"
)
SCORING_BATCH = 16_384


def bidding_report_file(lake_url, day: dt.date) -> str:
    """Where a day's bidding plot lives in the lake (``lake_url`` is ``Lake.url``)."""
    return lake_url("reports", "bidding", f"dt={day.isoformat()}", "bidding_simulation.html")


class _ServedModel:
    """The pinned model, loaded once per run when a day needs it."""

    def __init__(self, model_store: ModelStoreResource) -> None:
        self.tag = model_store.pinned()
        self._store = model_store
        self._model = None

    def get(self):
        if self._model is None:
            from models.export.savedmodel import load_recommender

            self._model = load_recommender(self._store.savedmodel_dir(self.tag))
        return self._model


def _score(recommender, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """pCTR (and pCVR of a multi-task model) of ``training_examples`` rows, from their own
    point-in-time features through the SavedModel's ``rank`` signature."""
    from models.inputs.features import column_array

    pctr, pcvr = [], []
    for start in range(0, len(rows), SCORING_BATCH):
        batch = rows.iloc[start : start + SCORING_BATCH]
        outputs = recommender.rank_arrays({c.name: column_array(batch, c) for c in recommender.spec.model_features})
        pctr.append(outputs.get("pctr", outputs["score"]))
        if "pcvr" in outputs:
            pcvr.append(outputs["pcvr"])
    clip = lambda values: np.clip(np.concatenate(values).astype(np.float64), 0.0, 1.0)  # noqa: E731
    return clip(pctr), (clip(pcvr) if pcvr else None)


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray | None:
    if column not in frame:
        return None
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _without_series(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {key: value for key, value in result.items() if key != "series"}


def _simulate_day(
    context: dg.AssetExecutionContext,
    day: dt.date,
    lake: LakeResource,
    warehouse: WarehouseResource,
    pipeline: PipelineResource,
    campaigns: dict[str, Campaign] | None,
    served: _ServedModel,
) -> dict[str, Any]:
    """The day's metadata: a ``status``, and the figures when it was simulated."""
    (rows, priced), *_ = warehouse.query(
        "select count(*), count(market_price) from fct_events where event_date = ?", [day]
    ).itertuples(index=False)
    if rows == 0:
        return {"status": "no rows"}
    if priced == 0:
        return {"status": f"{NO_MARKET_PRICES}; the {pipeline.source} source has none", "rows": int(rows)}
    if campaigns is None:
        return {"status": "no campaigns: set campaigns (RECLAKE_CAMPAIGNS) to a campaigns YAML, see configs/campaigns/"}
    if served.tag is None:
        return {"status": "no served model: materialize bento_model first"}
    recommender = served.get()
    version = recommender.model_version
    held_out = dt.date.fromisoformat(recommender.metadata["evaluated_on"])
    if recommender.spec.label.kind != "binary" or recommender.spec.label.column != "clicked":
        return {"status": f"the served model {version} does not predict a click probability", "model_version": version}
    if day < held_out:
        return {
            "status": f"skipped: the served model {version} was fitted on this day; bidding is simulated on its "
            f"held-out day ({held_out}) and later days",
            "model_version": version,
        }
    frame = warehouse.query(
        "select t.*, f.market_price as simulation_market_price, f.clicked as simulation_clicked, "
        "f.converted as simulation_converted from training_examples t "
        "left join fct_events f on f.event_id = t.event_id where t.event_date = ? order by t.event_ts, t.event_id",
        [day],
    )
    if frame.empty:
        return {"status": "no rows in training_examples", "model_version": version}
    started = time.perf_counter()
    pctr, pcvr = _score(recommender, frame)
    scoring_seconds = time.perf_counter() - started
    truth = load_truth(lake.get_lake(), pipeline.source, [day])
    true_pctr = None
    if truth is not None:
        joined = frame[["event_id"]].merge(truth[["event_id", "true_pctr"]], on="event_id", how="left")["true_pctr"]
        true_pctr = None if joined.isna().any() else joined.to_numpy(dtype=np.float64)

    started = time.perf_counter()
    comparisons, skipped = [], {}
    for campaign in campaigns.values():
        mask = (
            np.ones(len(frame), dtype=bool)
            if campaign.item_id is None
            else (frame["item_id"] == campaign.item_id).to_numpy()
        )
        if not mask.any():
            skipped[campaign.campaign_id] = f"no impressions of item {campaign.item_id}"
            continue
        if campaign.needs_pcvr and pcvr is None:
            skipped[campaign.campaign_id] = f"values conversions, but the served model {version} gives no pCVR"
            continue
        comparisons.append(
            simulate_with_references(
                campaign,
                pctr[mask],
                _numbers(frame, "simulation_market_price")[mask],
                _numbers(frame, "simulation_clicked")[mask],
                _numbers(frame, "simulation_converted")[mask],
                frame["event_ts"].to_numpy()[mask],
                pcvr=None if pcvr is None else pcvr[mask],
                true_pctr=None if true_pctr is None else true_pctr[mask],
                seed=day.toordinal(),
            )
        )
    simulation_seconds = time.perf_counter() - started
    for campaign_id, reason in skipped.items():
        context.log.warning(f"{day}: campaign {campaign_id} not simulated: {reason}")
    if not comparisons:
        return {"status": "no campaign could be simulated", "skipped_campaigns": dg.MetadataValue.json(skipped)}

    from serving.bidding_report import bidding_report_html, results_table

    store = lake.get_lake()
    url = bidding_report_file(store.url, day)
    title = f"Bidding simulation, {pipeline.source} {day} (model {version})"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "bidding_simulation.html"
        bidding_report_html(comparisons, title, local)
        store.upload_file(str(local), url)
    table = results_table(comparisons)
    context.log.info(f"{day}: bidding simulation\n{table}")
    flat = {}
    for comparison in comparisons:
        strategy = comparison["strategy"]
        name = comparison["campaign_id"]
        flat[f"{name}_clicks"] = strategy["clicks"]
        flat[f"{name}_budget_use"] = strategy["budget_use"]
        if comparison["clicks_vs_constant"] is not None:
            flat[f"{name}_clicks_vs_constant"] = comparison["clicks_vs_constant"]
        if comparison["share_of_oracle_clicks"] is not None:
            flat[f"{name}_share_of_oracle_clicks"] = comparison["share_of_oracle_clicks"]
    return {
        "status": "simulated",
        "day": "the model's held-out day" if day == held_out else f"after the model's held-out day ({held_out})",
        "model_version": version,
        "bento_model_tag": served.tag,
        "rows": len(frame),
        "rows_without_market_price": int(frame["simulation_market_price"].isna().sum()),
        "oracle": "true pCTR of the synthetic truth" if true_pctr is not None else "none: the source has no true pCTR",
        "price_unit": "bids and market prices CPM (per 1000 impressions); budgets and spend in the source's currency",
        "results": dg.MetadataValue.md(table),
        **lake.report_links("report", url),
        "campaigns": dg.MetadataValue.json(
            [
                {
                    "campaign_id": c["campaign_id"],
                    **{name: _without_series(c[name]) for name in ("strategy", "constant", "proportional", "oracle")},
                    "clicks_vs_constant": c["clicks_vs_constant"],
                    "share_of_oracle_clicks": c["share_of_oracle_clicks"],
                }
                for c in comparisons
            ]
        ),
        **({"skipped_campaigns": dg.MetadataValue.json(skipped)} if skipped else {}),
        **{key: value for key, value in flat.items() if value is not None},
        "scoring_seconds": round(scoring_seconds, 2),
        "simulation_seconds": round(simulation_seconds, 2),
    }


def bidding_simulation(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    pipeline: PipelineResource,
    model_store: ModelStoreResource,
):
    """Each campaign's bids on a day's logged impressions, as the ``/bid`` endpoint would
    place them, replayed against the logged second-price auctions.

    The served (pinned) model scores the day's ``training_examples`` rows with their own
    point-in-time features; each campaign of the campaigns file (``campaigns`` setting,
    default ``configs/campaigns/<source>.yaml``) bids through ``serving.bidding``
    (constant, linear, value or paced), wins when its bid beats ``fct_events.market_price``
    and pays it, until its daily budget is spent (``serving.auction``). Each strategy is
    compared with a constant bid at the same spend and, on the synthetic source, with an
    oracle bidding on the true pCTR at the same spend. Only days the served model was
    not fitted on are simulated: its held-out day and later days; earlier days are
    recorded as skipped. A source without market prices records why and does not fail.
    The plot (win rate by bid, spend over the day vs the plan) is
    ``reports/bidding/dt=YYYY-MM-DD/bidding_simulation.html`` in the lake.
    """
    campaigns = load_campaigns(pipeline.campaigns_path) if pipeline.campaigns_path else None
    served = _ServedModel(model_store)
    for day in partition_days(context):
        metadata = _simulate_day(context, day, lake, warehouse, pipeline, campaigns, served)
        context.log.info(f"{day}: {metadata['status']}")
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=day.isoformat(), metadata=metadata)


def build_bidding_simulation_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``bidding_simulation`` on the source's daily ``partitions``.

    It depends on ``bento_model``: it simulates the model the ``/bid`` endpoint serves
    (the pinned tag), which is the newest trained model only when it was promoted.
    """
    return dg.asset(
        partitions_def=partitions,
        backfill_policy=day_range_backfill,
        group_name="monitoring",
        deps=[dg.AssetKey("bento_model"), dg.AssetKey("training_examples"), dg.AssetKey("fct_events")],
        kinds={"python", "html"},
        pool="duckdb_warehouse",
        # Each day is its own materialization, with its own plot and figures.
        output_required=False,
    )(bidding_simulation)

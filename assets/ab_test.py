"""Monitoring: a daily A/B test report of the experiment arms' served predictions against
the outcomes observed in the warehouse."""

import datetime as dt
import math

import dagster as dg
import pandas as pd

from assets.partitions import day_range_backfill, partition_days
from monitoring.ab_test import (
    ATTRIBUTION_WINDOW,
    DEFAULT_ALPHA,
    DEFAULT_MIN_DETECTABLE_EFFECT,
    DEFAULT_POWER,
    Attribution,
    attribute_outcomes,
    compare_arms,
)
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource

NO_TRAFFIC = "no experiment traffic"
_LOG_COLUMNS = [
    "request_id", "logged_at", "endpoint", "model_version", "arm", "user_id", "features", "scores", "items", "shadow_of",
]  # fmt: skip


def ab_test_report(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    pipeline: PipelineResource,
    model_store: ModelStoreResource,
):
    """The day's A/B test of the experiment arms: CTR per arm and each challenger's test.

    Reads the day's compacted prediction logs (``prediction_logs/<source>/dt=.../predictions.parquet``)
    and the outcome events of ``fct_events`` from the day's start to the end of the day
    plus the attribution window (30 minutes). Every (request, item) pair served by an arm
    is matched to an event of the same user and item at or after the prediction, within
    the window, attributed to the newest such prediction (``monitoring.ab_test.attribute_outcomes``);
    a pair without an event has no observed outcome and is left out of the statistics
    (the join coverage counts it). ``monitoring.ab_test.compare_arms`` then reports, per
    arm, requests (impressions with an outcome), clicks, CTR with a Wilson 95 % interval,
    mean pCTR, calibration and log loss, and tests each challenger against the control
    (``champion``, else the first arm by name) with a two-proportion z-test at alpha 0.05:
    ``keep_running`` until both arms reach the sample needed to detect a 10 % relative
    change with 80 % power, then ``promote`` / ``retire`` when significant.

    A challenger that wins (``promote``) is pinned as the served model: the bento model
    registered with the model version its arm answered with (a running service swaps it
    in); one that loses (``retire``) is only reported: the experiment's config decides
    its traffic. Shadow answers (``shadow_of`` set) were never shown and are left out.

    A day without logs, or whose requests carry no arm, materializes with status
    ``no experiment traffic``.
    """
    store = lake.get_lake()
    window_minutes = ATTRIBUTION_WINDOW.total_seconds() / 60
    for day in partition_days(context):
        url = store.prediction_logs_file(pipeline.source, day)
        # Days compacted before the log had ``shadow_of`` read as having no shadow answers.
        logs = store.read_parquet(url).reindex(columns=_LOG_COLUMNS) if store.exists(url) else pd.DataFrame()
        with_arm = int(logs["arm"].notna().sum()) if len(logs) else 0
        if not with_arm:
            reason = (
                "no compacted prediction logs" if not store.exists(url) else f"{len(logs)} requests, none with an arm"
            )
            context.log.info(f"{day}: {NO_TRAFFIC} ({reason})")
            yield dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=day.isoformat(),
                metadata={"status": NO_TRAFFIC, "reason": reason, "logged_predictions": len(logs)},
            )
            continue
        events = _outcome_events(warehouse, day)
        attribution = attribute_outcomes(logs, events, ATTRIBUTION_WINDOW)
        observed = attribution.frame[attribution.frame["matched"]]
        arms = sorted(logs["arm"].dropna().astype(str).unique())
        metadata: dict[str, object] = {
            "coverage": dg.MetadataValue.json(attribution.coverage()),
            "coverage_table": dg.MetadataValue.md(_coverage_markdown(attribution)),
            "attribution_window_minutes": window_minutes,
            "outcome_events_read": len(events),
            "arms_seen": dg.MetadataValue.json(arms),
        }
        if observed.empty:
            context.log.warning(f"{day}: {attribution.served} served items, none matched to an outcome")
            yield dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=day.isoformat(),
                metadata={"status": "no outcomes", **metadata},
            )
            continue
        comparison = compare_arms(
            observed[["arm", "score", "clicked"]],
            arms=arms,
            alpha=DEFAULT_ALPHA,
            power=DEFAULT_POWER,
            min_detectable_effect=DEFAULT_MIN_DETECTABLE_EFFECT,
        )
        verdicts = comparison.verdicts()
        promoted = _promote_winner(context, model_store, logs, verdicts)
        if not verdicts:
            verdict = "no challenger"
        elif len(verdicts) == 1:
            verdict = next(iter(verdicts.values()))
        else:
            verdict = "; ".join(f"{arm}: {v}" for arm, v in verdicts.items())
        context.log.info(f"{day}: {verdict} ({attribution.matched} of {attribution.served} served items matched)")
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=day.isoformat(),
            metadata={
                "status": "reported",
                "verdict": verdict,
                "verdicts": dg.MetadataValue.json(verdicts),
                "control": comparison.control,
                "arms": dg.MetadataValue.md(comparison.arms_markdown()),
                "test": dg.MetadataValue.md(comparison.tests_markdown()),
                "reasons": dg.MetadataValue.json({t.arm: t.reason for t in comparison.tests}),
                "arm_stats": dg.MetadataValue.json([_plain(vars(a)) for a in comparison.arms]),
                "test_results": dg.MetadataValue.json([_plain(vars(t)) for t in comparison.tests]),
                "alpha": comparison.alpha,
                "power": comparison.power,
                "min_detectable_effect": comparison.min_detectable_effect,
                "promoted_tag": promoted or "",
                **metadata,
            },
        )


def _promote_winner(
    context: dg.AssetExecutionContext, model_store: ModelStoreResource, logs: pd.DataFrame, verdicts: dict[str, str]
) -> str | None:
    """Pin the model of the challenger that won online, if one did; returns its tag."""
    winners = [arm for arm, verdict in verdicts.items() if verdict == "promote"]
    if len(winners) != 1:
        return None
    versions = logs.loc[(logs["arm"] == winners[0]) & logs["shadow_of"].isna(), "model_version"].dropna()
    if versions.empty:
        return None
    version = str(versions.mode().iloc[0])
    tags = [v["tag"] for v in model_store.versions() if v["labels"].get("model_version") == version]
    if not tags:
        context.log.warning(f"challenger {winners[0]} won, but model version {version} is not in the model store")
        return None
    model_store.pin(tags[0])
    context.log.info(f"challenger {winners[0]} won online: pinned {tags[0]} (model version {version})")
    return tags[0]


def _outcome_events(warehouse: WarehouseResource, day: dt.date) -> pd.DataFrame:
    """``user_id, item_id, event_ts, clicked`` of ``fct_events`` from the start of ``day``
    to the end of the day plus the attribution window (the next day's first minutes)."""
    start = dt.datetime.combine(day, dt.time())
    end = start + dt.timedelta(days=1) + ATTRIBUTION_WINDOW
    return warehouse.query(
        "select user_id, item_id, event_ts, clicked from fct_events "
        "where event_date between ? and ? and event_ts >= ? and event_ts < ? "
        "and user_id is not null and item_id is not null and clicked is not null",
        [day, end.date(), start, end],
    )


def _coverage_markdown(attribution: Attribution) -> str:
    rows = [
        ("logged predictions (requests)", attribution.logged_predictions),
        ("requests with an arm", attribution.in_experiment),
        ("requests without a user or items (not matchable)", attribution.unattributable_requests),
        ("served items of those requests", attribution.served),
        ("matched to an outcome", attribution.matched),
        ("unmatched (left out)", attribution.unmatched),
    ]
    return pd.DataFrame(rows, columns=["join", "count"]).to_markdown(index=False)


def _plain(values: dict) -> dict:
    """JSON-safe: NaN and infinities as None."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}


def build_ab_test_report_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``ab_test_report`` on the source's daily ``partitions``."""
    return dg.asset(
        partitions_def=partitions,
        backfill_policy=day_range_backfill,
        group_name="monitoring",
        deps=[dg.AssetKey("prediction_logs"), dg.AssetKey("fct_events")],
        kinds={"python", "duckdb"},
        pool="duckdb_warehouse",
        # Each day is reported as its own materialization.
        output_required=False,
    )(ab_test_report)

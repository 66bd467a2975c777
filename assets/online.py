"""Serving: the newest user and item features, published to the online feature store."""

import datetime as dt

import dagster as dg

from assets.partitions import day_range_backfill, describe_days, partition_days
from resources.online_store import OnlineStoreResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource
from serving.online_features import HISTORY_LENGTH, read_online_rows


def online_features(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    pipeline: PipelineResource,
    online_store: OnlineStoreResource,
):
    """The marts' newest user and item features in the online feature store, where the
    service looks them up by id (``serving.online_store``).

    Per user: ``spec.lookup_features("user")`` of ``user_features`` and ``history``, the
    user's newest ``HISTORY_LENGTH`` positive item ids in ``fct_events``, newest first;
    per item: ``spec.lookup_features("item")`` of ``item_features``. They are published
    as version ``<day>-<run id[:8]>`` of the source's namespace and served from then on
    (an atomic flip; the previous version expires an hour later). A run over several
    days (a backfill) publishes once, with its newest day: the marts hold the newest
    features whatever the days. A source without user or item ids has nothing to publish.
    """
    spec = pipeline.feature_spec()
    days = partition_days(context)
    newest = days[-1]
    for day in days[:-1]:
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=day.isoformat(),
            metadata={"status": f"skipped: the run publishes once, with its newest day {newest}"},
        )
    if not (spec.user_id or spec.item_id):
        context.log.info(f"{spec.source} has no user or item ids: nothing to publish")
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=newest.isoformat(),
            metadata={"status": f"nothing to publish: the {spec.source} source has no user or item ids"},
        )
        return

    with warehouse.connect() as connection:
        features_as_of: dt.date | None = connection.execute("select max(event_date) from fct_events").fetchone()[0]
        rows = read_online_rows(connection, spec, HISTORY_LENGTH)
    version = f"{newest.isoformat()}-{context.run_id[:8]}"
    with online_store.open() as store:
        stats = store.publish(online_store.namespace, version, rows)
        where = store.describe()
    status = "published"
    if features_as_of is not None and newest < features_as_of:
        status = f"published the marts' newest features (as of {features_as_of}) with this backfill's newest day"
    context.log.info(
        f"{describe_days(days)}: published {stats.keys} rows ({stats.bytes / 1e6:.1f} MB) as {version} "
        f"to {where} in {stats.seconds:.2f} s"
    )
    yield dg.AssetMaterialization(
        asset_key=context.asset_key,
        partition=newest.isoformat(),
        metadata={
            "status": status,
            "version": version,
            "store": where,
            "namespace": online_store.namespace,
            "keys": stats.keys,
            "bytes": stats.bytes,
            "seconds": stats.seconds,
            "users": len(rows.get("user", {})),
            "items": len(rows.get("item", {})),
            "history_length": HISTORY_LENGTH if spec.has_ids else 0,
            "features_as_of": str(features_as_of),
        },
    )


def build_online_features_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``online_features`` on the source's daily ``partitions``."""
    return dg.asset(
        partitions_def=partitions,
        backfill_policy=day_range_backfill,
        group_name="serving",
        deps=[dg.AssetKey("user_features"), dg.AssetKey("item_features"), dg.AssetKey("fct_events")],
        kinds={"duckdb", "redis", "sqlite"},
        # Reads the warehouse: queues behind dbt, the one writer.
        pool="duckdb_warehouse",
        # Each day of a run is recorded as its own materialization (published or skipped).
        output_required=False,
    )(online_features)

"""Serving: the newest user and item features, published to the online feature store."""

import datetime as dt
from typing import Any

import dagster as dg
import duckdb

from assets.partitions import describe_days, partition_days, single_run_backfill
from reclake.feature_spec import FeatureSpec
from resources.online_store import OnlineStoreResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource
from serving.online_store import json_native

HISTORY_LENGTH = 50
"""How many of a user's newest positive items ``history`` holds, newest first."""

MARTS = {"user": "user_features", "item": "item_features"}
"""The mart each entity's lookup features come from (one row per id, as of the newest day)."""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_entity_rows(connection: duckdb.DuckDBPyConnection, entity: str, columns: tuple[str, ...]) -> dict:
    """``{id: {column: value}}`` of ``entity``'s mart, values JSON-native."""
    id_column = f"{entity}_id"
    cursor = connection.execute(
        f"select {', '.join(_quoted(c) for c in (id_column, *columns))} from {MARTS[entity]} "
        f"where {_quoted(id_column)} is not null"
    )
    return {
        str(values[0]): {name: json_native(value) for name, value in zip(columns, values[1:], strict=True)}
        for values in cursor.fetchall()
    }


def read_histories(connection: duckdb.DuckDBPyConnection, length: int) -> dict[str, list[str]]:
    """``{user_id: [item_id, ...]}``: each user's newest ``length`` positive items over
    all of fct_events, newest first (``is_positive``: the spec's label at or above its
    positive threshold). Users without a positive are absent."""
    rows = connection.execute(
        """
        select user_id, list(item_id order by slot) as history
        from (
            select user_id, item_id, row_number() over (
                partition by user_id order by event_ts desc, event_id desc
            ) as slot
            from fct_events
            where is_positive = 1 and user_id is not null and item_id is not null
        )
        where slot <= ?
        group by user_id
        """,
        [length],
    ).fetchall()
    return {str(user_id): [str(item) for item in history] for user_id, history in rows}


def read_online_rows(
    connection: duckdb.DuckDBPyConnection, spec: FeatureSpec, history_length: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """What ``online_features`` publishes for ``spec``'s source: per user (when it has
    user ids) ``spec.lookup_features("user")`` plus ``history`` (when it has item ids
    too), per item (when it has item ids) ``spec.lookup_features("item")``."""
    entities = [entity for entity, present in (("user", spec.user_id), ("item", spec.item_id)) if present]
    rows = {entity: read_entity_rows(connection, entity, spec.lookup_features(entity)) for entity in entities}
    if spec.has_ids:
        histories = read_histories(connection, history_length)
        for user_id, row in rows["user"].items():
            row["history"] = histories.get(user_id, [])
    return rows


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
        backfill_policy=single_run_backfill,
        group_name="serving",
        deps=[dg.AssetKey("user_features"), dg.AssetKey("item_features"), dg.AssetKey("fct_events")],
        kinds={"duckdb", "redis", "sqlite"},
        # Reads the warehouse: queues behind dbt, the one writer.
        pool="duckdb_warehouse",
        # Each day of a run is recorded as its own materialization (published or skipped).
        output_required=False,
    )(online_features)

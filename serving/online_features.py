"""What the online store holds for a source, read from the warehouse's marts.

The ``online_features`` asset publishes these rows and the serving benchmark publishes
the same ones into its own store: one reader for both.
"""

from typing import Any

import duckdb

from reclake.feature_spec import FeatureSpec
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

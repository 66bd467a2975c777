"""Read-only connections to the DuckDB warehouse dbt builds, in bounded memory.

Every in-process reader of the warehouse (``WarehouseResource``, the Great Expectations
SQL datasource) opens it here, so a query over a large mart spills to DuckDB's temporary
folder beside the file instead of growing the run worker past ``READ_MEMORY_LIMIT``.
"""

from pathlib import Path

import duckdb

READ_MEMORY_LIMIT = "1GB"
"""DuckDB's memory for one read connection; larger sorts, joins and aggregations spill."""


def connect_read_only(database: str | Path, memory_limit: str = READ_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the DuckDB file ``database`` whose operators use at
    most ``memory_limit`` (e.g. ``"1GB"``) before spilling; the caller closes it.

    The limit is set after opening, not as connection config: DuckDB shares one database
    instance among a process's connections to a file and refuses a second connection
    whose config differs, so a plain read-only connection opened elsewhere may coexist.
    """
    connection = duckdb.connect(str(database), read_only=True)
    connection.execute(f"set memory_limit = '{memory_limit}'")
    return connection

"""The DuckDB warehouse as a Great Expectations SQL datasource: suites run as SQL in the engine.

``table_batch(context, database, table, days)`` registers, in a GX data context, a SQL
datasource on the warehouse file and a query asset holding the table's rows (for an
event mart, only those whose ``event_date`` lies in ``[min(days), max(days)]``), and
yields its batch definition; on exit every connection to the file is closed, so dbt
(another process) can take its write lock again. GX compiles each expectation's metrics
to SQL against that query: nothing is copied into pandas but the few unexpected values
a failed expectation reports.

The datasource goes through ``READ_ONLY_DIALECT``, a subclass of ``duckdb_engine``'s
SQLAlchemy dialect, for two reasons:

- ``duckdb_engine`` opens its connections with a configuration of its own (a custom
  user agent), and DuckDB refuses a second configuration of a file in one process: a
  check would break, or be broken by, ``WarehouseResource.connect`` in the same run
  ("Can't open a connection to same database file with a different configuration").
  This dialect opens the file exactly as that resource does: ``read_only=True``.
- ``duckdb_engine`` begins a DuckDB transaction on each SQLAlchemy connection and rolls
  it back when the connection returns to the pool, and GX fetches a metric query's rows
  only after returning the connection, so every metric came back empty. Here each
  statement runs in DuckDB's autocommit mode: the connection only reads.

``great_expectations`` is imported inside the functions (slow); ``duckdb_engine`` and
SQLAlchemy come with this module. Plain Python: no Dagster.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb_engine
from sqlalchemy.dialects import registry

from reclake.warehouse import connect_read_only

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

READ_ONLY_DIALECT = "duckdb+reclake_readonly"
"""The SQLAlchemy URL scheme of the warehouse's read-only dialect."""
DATASOURCE = "warehouse"
"""The name of the SQL datasource in a GX context."""
_BATCH_DEFINITION = "rows"

# Every DuckDB connection the dialect opened, by database file, until closed.
_OPEN: dict[str, weakref.WeakSet[duckdb_engine.ConnectionWrapper]] = {}


class ReadOnlyDuckDBDialect(duckdb_engine.Dialect):
    """``duckdb_engine``'s dialect, opening the file read-only and without transactions
    (see the module docstring for why)."""

    supports_statement_cache = False

    def connect(self, *cargs: Any, **cparams: Any) -> duckdb_engine.ConnectionWrapper:
        """A read-only connection configured like ``WarehouseResource.connect``'s."""
        database = str(cparams["database"])
        connection = duckdb_engine.ConnectionWrapper(connect_read_only(database))
        _OPEN.setdefault(database, weakref.WeakSet()).add(connection)
        return connection

    def do_begin(self, connection: Any) -> None:
        """No transaction: each statement commits on its own (reads only)."""

    def do_rollback(self, connection: Any) -> None:
        """Nothing to roll back; rolling back would discard a result not yet fetched."""

    def do_commit(self, connection: Any) -> None:
        """Nothing to commit."""


registry.register(READ_ONLY_DIALECT.replace("+", "."), __name__, ReadOnlyDuckDBDialect.__name__)


def warehouse_url(database: str | Path) -> str:
    """The SQLAlchemy URL of a DuckDB file through the read-only dialect (absolute path)."""
    return f"{READ_ONLY_DIALECT}:///{Path(database).expanduser().resolve()}"


def rows_query(table: str, days: Sequence[dt.date] | None = None) -> str:
    """``select *`` of ``table``, limited to ``event_date`` in ``[min(days), max(days)]`` when given.

    Raises:
        ValueError: ``table`` is not a plain identifier.
    """
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    query = f"select * from {table}"
    if days:
        query += f" where event_date between date '{min(days).isoformat()}' and date '{max(days).isoformat()}'"
    return query


@contextmanager
def table_batch(
    context: AbstractDataContext,
    database: str | Path,
    table: str,
    asset_name: str,
    days: Sequence[dt.date] | None = None,
) -> Iterator[Any]:
    """Register the rows of ``table`` (of ``days``) as a GX query asset and yield its batch definition.

    The datasource ``DATASOURCE`` is (re)pointed at ``database``; the asset
    ``asset_name`` is replaced, since its query carries the days. On exit every
    connection the dialect opened to ``database`` is closed.

    Args:
        context: the GX data context to register in (ephemeral or file).
        database: the DuckDB file.
        table: the table (or view) to read.
        asset_name: the query asset's name (the mart).
        days: the validated days, or None for the whole table.

    Yields:
        A GX ``BatchDefinition`` of the whole query (no batch parameters needed).

    Raises:
        FileNotFoundError: ``database`` does not exist.
    """
    query = rows_query(table, days)
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"the warehouse {path} does not exist yet: build the dbt models first")
    source = None
    try:
        source = _datasource(context, warehouse_url(path))  # GX tests the connection here
        try:
            source.delete_asset(asset_name)
        except LookupError:
            pass
        asset = source.add_query_asset(asset_name, query=query)
        yield asset.add_batch_definition_whole_table(_BATCH_DEFINITION)
    finally:
        if source is not None:
            source.get_execution_engine().close()  # disposes the pool of the metric queries
            source.get_engine().dispose()  # and of the connection test
        close_connections(path)  # and any connection GX opened through a copy of the datasource


def close_connections(database: str | Path) -> int:
    """Close every connection the read-only dialect holds to ``database``.

    Returns:
        How many were open.
    """
    key = str(Path(database).expanduser().resolve())
    connections = list(_OPEN.pop(key, ()))
    for connection in connections:
        if not connection.closed:
            connection.close()
    return len(connections)


def _datasource(context: AbstractDataContext, url: str) -> Any:
    """The context's SQL datasource on ``url``, replacing one that points elsewhere."""
    sources = context.data_sources
    try:
        source = sources.get(DATASOURCE)
    except KeyError:
        source = None
    if source is not None and str(source.connection_string) == url:
        return source
    if source is not None:
        sources.delete(DATASOURCE)
    return sources.add_sql(DATASOURCE, connection_string=url)

"""The DuckDB warehouse that dbt builds, as a Dagster resource for reading marts."""

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from reclake.warehouse import READ_MEMORY_LIMIT, connect_read_only


class WarehouseResource(dg.ConfigurableResource):
    """Read access to the DuckDB file that dbt writes.

    Attributes:
        path: the DuckDB database file (``.reclake/warehouse.duckdb`` by default).
        spark_warehouse_dir: with ``engine: spark``, the Spark warehouse dbt-spark writes;
            ``publish_spark_tables`` makes its Parquet tables views of the DuckDB file,
            so every reader of ``path`` reads what Spark built. None: DuckDB builds.
        memory_limit: DuckDB's memory for one read (``"1GB"``); larger queries spill.
    """

    path: str
    spark_warehouse_dir: str | None = None
    memory_limit: str = READ_MEMORY_LIMIT

    def prepare(self) -> None:
        """Create the folder that will hold the DuckDB file (dbt creates the file itself)."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    def publish_spark_tables(self, schema: str = "reclake") -> list[str]:
        """Make each Parquet table of the Spark warehouse's ``schema`` a view of the same
        name in the DuckDB file (``read_parquet`` over the table's folder, partition
        folders as columns), replacing earlier tables or views of that name. A view reads
        the files at query time, so later Spark builds need no new publish unless they
        add tables. Tables without data files yet are skipped.

        Returns:
            The tables published.
        """
        if self.spark_warehouse_dir is None:
            raise ValueError("publish_spark_tables needs spark_warehouse_dir (engine: spark)")
        folder = Path(self.spark_warehouse_dir).resolve() / f"{schema}.db"
        self.prepare()
        published = []
        with duckdb.connect(self.path) as connection:
            existing = dict(
                connection.execute(
                    "select table_name, table_type from information_schema.tables where table_schema = 'main'"
                ).fetchall()
            )
            for table in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
                if not table.name.isidentifier() or not any(table.rglob("*.parquet")):
                    continue
                kind = existing.get(table.name)
                if kind is not None and kind != "VIEW":
                    connection.execute(f'drop table "{table.name}"')
                glob = str(table / "**" / "*.parquet").replace("'", "''")
                scan = f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
                connection.execute(f'create or replace view "{table.name}" as {_naive_utc_select(connection, scan)}')
                published.append(table.name)
        return published

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection in ``memory_limit``; DuckDB allows one writer, and that is dbt."""
        if not Path(self.path).exists():
            raise FileNotFoundError(f"the warehouse {self.path} does not exist yet: build the dbt models first")
        connection = connect_read_only(self.path, self.memory_limit)
        try:
            yield connection
        finally:
            connection.close()

    def query(self, sql: str, parameters: Sequence[object] = ()) -> pd.DataFrame:
        """Run one query and return its rows as a DataFrame."""
        with self.connect() as connection:
            return connection.execute(sql, list(parameters)).df()

    def read_days(
        self, table: str, first_day: dt.date, last_day: dt.date, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Rows of a mart whose ``event_date`` lies in ``[first_day, last_day]``: every
        column, or only ``columns``."""
        for name in (table, *(columns or ())):
            if not name.isidentifier():
                raise ValueError(f"not a table or column name: {name!r}")
        selected = ", ".join(columns) if columns else "*"
        return self.query(
            f"select {selected} from {table} where event_date between ? and ? order by event_ts, event_id",
            [first_day, last_day],
        )

    def iter_day(self, table: str, day: dt.date, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """Rows of a mart's ``day`` (ordered by ``event_ts, event_id``) as a stream of
        frames of at most ``chunk_rows`` rows: a day of any size in bounded memory."""
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        with self.connect() as connection:
            relation = connection.sql(
                f"select * from {table} where event_date = ? order by event_ts, event_id", params=[day]
            )
            # A streaming reader (DuckDB 2 names it to_arrow_reader, 1.x fetch_arrow_reader).
            reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
            for batch in reader(chunk_rows):
                yield batch.to_pandas()

    def window_days(self, window_days: int) -> list[dt.date]:
        """The newest ``window_days`` days of ``training_examples``, oldest first.

        Raises:
            ValueError: when ``training_examples`` holds no days yet.
        """
        days = self.event_dates("training_examples")[-window_days:]
        if not days:
            raise ValueError("training_examples holds no days yet: materialize the feature tables first")
        return days

    def training_window(
        self, window_days: int, columns: Sequence[str] | None = None
    ) -> tuple[list[dt.date], pd.DataFrame]:
        """The newest ``window_days`` days of ``training_examples`` (``window_days``) and
        their rows: every column, or only ``columns``."""
        days = self.window_days(window_days)
        return days, self.read_days("training_examples", days[0], days[-1], columns)

    def count_days(self, table: str, first_day: dt.date, last_day: dt.date) -> int:
        """Rows of a mart whose ``event_date`` lies in ``[first_day, last_day]``."""
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        with self.connect() as connection:
            (rows,) = connection.execute(
                f"select count(*) from {table} where event_date between ? and ?", [first_day, last_day]
            ).fetchone()
        return int(rows)

    def export_days(
        self, table: str, days: Sequence[dt.date], directory: str | Path, row_group_rows: int = 65_536
    ) -> list[Path]:
        """Write each day of a mart to ``<directory>/<table>-<day>.parquet`` with DuckDB
        ``COPY`` (streamed: memory stays bounded whatever the day's size), in row groups of
        ``row_group_rows`` rows: the unit ``models.inputs.stream.ParquetWindow`` shuffles.

        Returns:
            The files written, one per day, in ``days`` order.
        """
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        with self.connect() as connection:
            connection.execute("set preserve_insertion_order = false")
            for day in days:
                target = folder / f"{table}-{day.isoformat()}.parquet"
                path = str(target).replace("'", "''")
                connection.execute(
                    f"copy (select * from {table} where event_date = date '{day.isoformat()}') to '{path}' "
                    f"(format parquet, row_group_size {int(row_group_rows)})"
                )
                files.append(target)
        return files

    def event_dates(self, table: str) -> list[dt.date]:
        """The distinct ``event_date`` values in a mart, oldest first."""
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        frame = self.query(f"select distinct event_date from {table} order by event_date")
        return [pd.Timestamp(v).date() for v in frame["event_date"]]


def _naive_utc_select(connection: duckdb.DuckDBPyConnection, scan: str) -> str:
    """``select *`` over ``scan`` with its time-zone-aware timestamps as naive UTC ones.

    Spark writes UTC-adjusted Parquet timestamps, which DuckDB reads as ``TIMESTAMP WITH
    TIME ZONE``; the DuckDB build of the same marts holds naive UTC timestamps, and every
    reader of the warehouse (the training contract, the splits) expects those.
    """
    aware = [
        name
        for name, kind, *_ in connection.execute(f"describe select * from {scan}").fetchall()
        if kind == "TIMESTAMP WITH TIME ZONE"
    ]
    if not aware:
        return f"select * from {scan}"
    replaced = ", ".join(f'timezone(\'UTC\', "{name}") as "{name}"' for name in aware)
    return f"select * replace ({replaced}) from {scan}"

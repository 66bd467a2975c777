"""The DuckDB warehouse that dbt builds, as a Dagster resource for reading marts."""

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd


class WarehouseResource(dg.ConfigurableResource):
    """Read access to the DuckDB file that dbt writes.

    Attributes:
        path: the DuckDB database file (``.reclake/warehouse.duckdb`` by default).
    """

    path: str

    def prepare(self) -> None:
        """Create the folder that will hold the DuckDB file (dbt creates the file itself)."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; DuckDB allows one writer, and that is dbt."""
        if not Path(self.path).exists():
            raise FileNotFoundError(f"the warehouse {self.path} does not exist yet: build the dbt models first")
        connection = duckdb.connect(self.path, read_only=True)
        try:
            yield connection
        finally:
            connection.close()

    def query(self, sql: str, parameters: Sequence[object] = ()) -> pd.DataFrame:
        """Run one query and return its rows as a DataFrame."""
        with self.connect() as connection:
            return connection.execute(sql, list(parameters)).df()

    def read_days(self, table: str, first_day: dt.date, last_day: dt.date) -> pd.DataFrame:
        """Rows of a mart whose ``event_date`` lies in ``[first_day, last_day]``."""
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        return self.query(
            f"select * from {table} where event_date between ? and ? order by event_ts, event_id",
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

    def training_window(self, window_days: int) -> tuple[list[dt.date], pd.DataFrame]:
        """The newest ``window_days`` days of ``training_examples`` and their rows.

        Raises:
            ValueError: when ``training_examples`` holds no days yet.
        """
        days = self.event_dates("training_examples")[-window_days:]
        if not days:
            raise ValueError("training_examples holds no days yet: materialize the feature tables first")
        return days, self.read_days("training_examples", days[0], days[-1])

    def event_dates(self, table: str) -> list[dt.date]:
        """The distinct ``event_date`` values in a mart, oldest first."""
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        frame = self.query(f"select distinct event_date from {table} order by event_date")
        return [pd.Timestamp(v).date() for v in frame["event_date"]]

"""Benchmark: one day's drift report of the synthetic source against its reference window.

Builds ``training_examples`` for ``--reference-days + 1`` days of ``--events-per-day``
synthetic events (landing files to feature marts, in a fresh state folder, as
``bench/pipeline.py`` does), or reads them from an existing warehouse (``--warehouse``),
then times ``monitoring.drift.build_drift_report`` on the newest day against the days
before it, over every monitored column of the synthetic spec (the ranker's inputs and all
trailing aggregates), as the ``drift_report`` asset does once history fills the windows.

Prints one JSON line: ``seconds`` (the report with its bounded, seeded samples, as the
asset builds it; Evidently already imported, as in a run that reports several days),
``all_rows_seconds`` (the same report comparing every row: the cost before sampling),
``import_s`` (importing Evidently, once per process), the rows of each side and how many
were compared, the columns, the drifted columns, and the core count.

Usage: ``python bench/drift.py [--events-per-day 50000] [--reference-days 7] [--warehouse PATH]``
(about 1.5 minutes on 2 cores, most of it building the days; seconds with ``--warehouse``).
"""

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from reclake.runtime import configure_process  # noqa: E402

configure_process()


def _build_warehouse(root: Path, days: int, events_per_day: int) -> str:
    """Land, ingest and build ``training_examples`` for ``days`` synthetic days under
    ``root``; returns the warehouse path."""
    import dagster as dg

    from bench.pipeline import _fresh_definitions, _materialize

    defs, settings = _fresh_definitions(root, days, events_per_day)
    start = settings.synthetic_start
    _materialize(defs, dg.DagsterInstance.ephemeral(), start, start + dt.timedelta(days=days - 1))
    return settings.warehouse_path


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what is written to stdout meanwhile (dbt's log lines too) to stderr, so that
    stdout holds the JSON line only."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=50_000)
    parser.add_argument("--reference-days", type=int, default=7)
    parser.add_argument("--warehouse", help="an existing DuckDB warehouse with training_examples (read only)")
    args = parser.parse_args()

    import pandas as pd

    from resources.warehouse import WarehouseResource

    root = Path(tempfile.mkdtemp(prefix="reclake-bench-drift-"))
    try:
        warehouse_path = args.warehouse
        if warehouse_path is None:
            with _stdout_to_stderr():
                warehouse_path = _build_warehouse(root, args.reference_days + 1, args.events_per_day)
        warehouse = WarehouseResource(path=warehouse_path)
        days = warehouse.event_dates("training_examples")[-(args.reference_days + 1) :]
        frame = warehouse.read_days("training_examples", days[0], days[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    dates = pd.to_datetime(frame["event_date"]).dt.date
    current, reference = frame[dates == days[-1]], frame[dates < days[-1]]

    _, import_s = _timed(__import__, "evidently.presets")
    from monitoring.drift import build_drift_report, monitored_columns
    from reclake.feature_spec import load_feature_spec

    numerical, categorical = monitored_columns(load_feature_spec("synthetic"))
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "drift_report.html"
        summary, seconds = _timed(build_drift_report, current, reference, numerical, categorical, html)
        _, all_rows_seconds = _timed(
            build_drift_report, current, reference, numerical, categorical, html, sample_rows=None
        )
    print(
        json.dumps(
            {
                "benchmark": "drift",
                "seconds": round(seconds, 2),
                "all_rows_seconds": round(all_rows_seconds, 2),
                "import_s": round(import_s, 2),
                "cores": os.cpu_count(),
                "day": days[-1].isoformat(),
                "reference_days": len(days) - 1,
                "current_rows": summary.current_rows,
                "reference_rows": summary.reference_rows,
                "current_sampled": summary.current_sampled,
                "reference_sampled": summary.reference_sampled,
                "columns": len(numerical) + len(categorical),
                "drifted_columns": summary.drifted_columns,
            }
        )
    )


if __name__ == "__main__":
    main()

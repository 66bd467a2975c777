"""Benchmark: bronze validation on Spark (``engine: spark``) against DuckDB's, same files.

Lands ``--days`` synthetic days of ``--events-per-day`` events in a fresh lake, then
validates them into bronze and the quarantine twice in one run: on Spark
(``sources.spark_validation.ingest_days_in_child``: a child process with a local Spark,
``local[2]`` unless ``RECLAKE_SPARK_MASTER`` says otherwise) and on DuckDB (the default
engine's ``sources.ingest.ingest_landing_day``, on a copy of the same landing files).
Prints one JSON line: seconds and events/s of each, ``spark_to_duckdb`` (how many times
slower Spark is), the rows each wrote to bronze (they must agree), Spark's driver heap and
the core count.

Usage: ``python bench/spark_bronze.py [--days 2] [--events-per-day 150000]``
"""

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--events-per-day", type=int, default=150_000)
    args = parser.parse_args()

    from reclake.lake import Lake
    from reclake.settings import load_settings
    from sources.event_ids import EventIdIndex
    from sources.ingest import ingest_landing_day
    from sources.landing_writer import land_synthetic_day
    from sources.spark_validation import ingest_days_in_child, spark_driver_memory, spark_master
    from sources.synthetic import SyntheticWorld, generate_day

    root = Path(tempfile.mkdtemp(prefix="reclake-bench-spark-"))
    try:
        environ = {name: value for name, value in os.environ.items() if not name.startswith("RECLAKE_")}
        environ.update(
            {
                "RECLAKE_STATE_DIR": str(root / "state"),
                "RECLAKE_LAKE_ROOT": str(root / "spark"),
                "RECLAKE_SYNTHETIC_DAYS": str(args.days),
                "RECLAKE_SYNTHETIC_EVENTS_PER_DAY": str(args.events_per_day),
            }
        )
        settings = load_settings(environ)
        days = [settings.synthetic_start + dt.timedelta(days=i) for i in range(args.days)]
        spark_lake, duckdb_lake = Lake(str(root / "spark")), Lake(str(root / "duckdb"))
        world = SyntheticWorld.create(settings.synthetic)
        for day in days:
            land_synthetic_day(spark_lake, generate_day(settings.synthetic, day, world))
        shutil.copytree(root / "spark" / "landing", root / "duckdb" / "landing")

        started = time.perf_counter()
        on_spark = ingest_days_in_child(
            spark_lake.root, None, settings.feature_spec or settings.source, days, False,
            log=lambda line: print(line, file=sys.stderr),  # stdout holds the JSON line only
        )  # fmt: skip
        spark_seconds = time.perf_counter() - started

        spec = settings.load_feature_spec()
        ids = EventIdIndex(duckdb_lake, spec.source)
        started = time.perf_counter()
        on_duckdb = [ingest_landing_day(duckdb_lake, spec, day, event_ids=ids) for day in days]
        duckdb_seconds = time.perf_counter() - started

        events = sum(day.input_rows for day in on_duckdb)
        report = {
            "benchmark": "spark_bronze",
            "days": args.days,
            "events": events,
            "spark_seconds": round(spark_seconds, 1),
            "spark_events_per_s": round(events / spark_seconds),
            "duckdb_seconds": round(duckdb_seconds, 1),
            "duckdb_events_per_s": round(events / duckdb_seconds),
            "spark_to_duckdb": round(spark_seconds / duckdb_seconds, 1),
            "bronze_rows": {
                "spark": sum(d.bronze_rows for d in on_spark),
                "duckdb": sum(d.bronze_rows for d in on_duckdb),
            },
            "spark_master": spark_master(),
            "spark_driver_memory": spark_driver_memory(),
            "cores": os.cpu_count(),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()

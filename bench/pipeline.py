"""Benchmark: landing files to feature marts, and the cost of adding one day.

For the synthetic source, prints one JSON line with:
- ``events_per_s``: events from landing files to the dbt feature marts (ingest +
  ``dbt build``), for a backfill of ``--days`` days as one run;
- ``add_one_day_s``: the time to add one more day on top of ``--history`` days of
  history, for each history length given (incremental models should keep it flat);
- peak resident memory and the core count.

Usage: ``python bench/pipeline.py [--events-per-day 50000] [--days 20] [--history 30 90]``
"""

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reclake.runtime import configure_process  # noqa: E402

configure_process()

STAGES = ("landing", "bronze", "staging", "intermediate", "marts")  # asset groups: landing files to feature marts


def _materialize(defs, instance, first: dt.date, last: dt.date) -> float:
    """Land, ingest and build features for [first, last] as one run; returns seconds."""
    import dagster as dg

    job = dg.define_asset_job("bench_features", selection=dg.AssetSelection.groups(*STAGES)).resolve(
        asset_graph=defs.resolve_asset_graph()
    )
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        resources=defs.resources,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
    )
    assert result.success
    return time.perf_counter() - started


def _fresh_definitions(root: Path, days: int, events_per_day: int):
    """Definitions on a new state folder (ignoring RECLAKE_* set by earlier ones)."""
    from definitions import build_definitions
    from reclake.settings import load_settings

    environ = {name: value for name, value in os.environ.items() if not name.startswith("RECLAKE_")}
    environ.update(
        {
            "RECLAKE_STATE_DIR": str(root),
            "RECLAKE_SYNTHETIC_DAYS": str(days),
            "RECLAKE_SYNTHETIC_EVENTS_PER_DAY": str(events_per_day),
        }
    )
    settings = load_settings(environ)
    return build_definitions(settings), settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=20, help="days in the throughput backfill")
    parser.add_argument("--history", type=int, nargs="+", default=[30, 90], help="history lengths for add-one-day")
    parser.add_argument("--history-events-per-day", type=int, default=10_000)
    args = parser.parse_args()

    import dagster as dg

    report: dict = {"benchmark": "pipeline", "cores": os.cpu_count(), "events_per_day": args.events_per_day}
    root = Path(tempfile.mkdtemp(prefix="reclake-bench-pipeline-"))
    try:
        defs, settings = _fresh_definitions(root / "throughput", args.days, args.events_per_day)
        start = settings.synthetic_start
        seconds = _materialize(defs, dg.DagsterInstance.ephemeral(), start, start + dt.timedelta(days=args.days - 1))
        events = args.days * args.events_per_day
        report["throughput"] = {"events": events, "seconds": round(seconds, 1), "events_per_s": round(events / seconds)}

        report["add_one_day_s"] = {}
        report["history_events_per_day"] = args.history_events_per_day
        for history in args.history:
            defs, settings = _fresh_definitions(root / f"history-{history}", history + 1, args.history_events_per_day)
            instance = dg.DagsterInstance.ephemeral()
            start = settings.synthetic_start
            _materialize(defs, instance, start, start + dt.timedelta(days=history - 1))
            new_day = start + dt.timedelta(days=history)
            report["add_one_day_s"][str(history)] = round(_materialize(defs, instance, new_day, new_day), 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Benchmark: the main job end to end on embedded defaults, with the time per stage.

Materializes every asset for 7 synthetic days of 50,000 impressions each (override with
``--days`` / ``--events-per-day``) into a fresh temporary state folder, then prints one
JSON line: total seconds, seconds per stage (Dagster step), peak resident memory of
this process, rows, core count and the model's metrics.

Usage: ``python bench/main_job.py [--days 7] [--events-per-day 50000] [--keep]``
"""

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events-per-day", type=int, default=50_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="reclake-bench-"))
    os.environ.update(
        {
            "RECLAKE_STATE_DIR": str(state),
            "RECLAKE_SYNTHETIC_DAYS": str(args.days),
            "RECLAKE_SYNTHETIC_EVENTS_PER_DAY": str(args.events_per_day),
            "BENTOML_HOME": str(state / "bentoml"),
            "DAGSTER_HOME": str(state / "dagster_home"),
        }
    )
    from automation.launch import prepare_dagster_home
    from reclake.settings import load_settings

    settings = load_settings()
    prepare_dagster_home(settings.dagster_home)

    import dagster as dg

    from automation.run_summary import run_main_job

    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        summary, _ = run_main_job(settings, instance)
    total = time.perf_counter() - started
    print(
        json.dumps(
            {
                "benchmark": "main_job",
                "days": args.days,
                "events_per_day": args.events_per_day,
                "total_s": round(total, 1),
                "stage_s": summary["stage_seconds"],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "cores": os.cpu_count(),
                "metrics": summary["metrics"],
            }
        )
    )
    if not args.keep:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: `make run` over a long daily history, through the run launcher.

Launches ``python -m automation.main_run`` (what ``make run`` runs) for a synthetic
source of ``--days`` daily partitions (default 2,400, about six and a half years) with
few events a day, in a fresh state folder, and reads its console as it goes. A history
longer than a year runs as several runs (``automation.main_run``: the older years through
``history_job``, a year per run, then the newest year through the main job). Prints one
JSON line: seconds from launch to the first step (``seconds_to_first_step``), each run's
job, days, launch time and seconds from its launch to its first step (``runs``; Dagster
creating a run over its range), seconds per step summed over the runs, the total, the
partitions, whether every run succeeded, and the core count.

``--planned-per-partition`` turns off ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``
(Dagster's default: one planned event per asset per partition) to measure what it saves;
expect minutes before the first step from a few hundred days on.

Usage: ``python bench/long_history.py [--days 2400] [--events-per-day 300] [--days-per-run N] [--planned-per-partition]``
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP_LINE = re.compile(r"^  (?P<step>\S.*?) (?:\.\.\.|done in (?P<seconds>[\d.]+) s|FAILED in (?P<failed>[\d.]+) s)$")
RUN_LINE = re.compile(r"^run \S+ of (?P<job>\S+)(?: \(\d+ of \d+: (?P<days>[^)]*)\))? launched")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2400)
    parser.add_argument("--events-per-day", type=int, default=300)
    parser.add_argument("--days-per-run", type=int, default=None, help="make run's --days-per-run (default: a year)")
    parser.add_argument("--planned-per-partition", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="reclake-long-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECLAKE_")}
    env.update(
        {
            "RECLAKE_STATE_DIR": str(state),
            "RECLAKE_SYNTHETIC_DAYS": str(args.days),
            "RECLAKE_SYNTHETIC_EVENTS_PER_DAY": str(args.events_per_day),
            # Few users and items, so a week of few events still trains (vocabularies need repeats).
            "RECLAKE_SYNTHETIC_USERS": "60",
            "RECLAKE_SYNTHETIC_ITEMS": "30",
            "DAGSTER_HOME": str(state / "dagster_home"),
            "BENTOML_HOME": str(state / "bentoml"),
            "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "0" if args.planned_per_partition else "1"
    started = time.perf_counter()
    first_step = None
    steps: dict[str, float] = {}
    failed: list[str] = []
    runs: list[dict] = []
    extra = ["--days-per-run", str(args.days_per_run)] if args.days_per_run else []
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "automation.main_run", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in process.stdout:
        now = time.perf_counter() - started
        launched = RUN_LINE.match(line)
        if launched is not None:
            runs.append({"job": launched["job"], "days": launched["days"], "launched_s": round(now, 1)})
            continue
        match = STEP_LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        if first_step is None:
            first_step = now
        if runs and "first_step_s" not in runs[-1]:
            runs[-1]["first_step_s"] = round(now - runs[-1]["launched_s"], 1)
        if match["seconds"]:
            steps[match["step"]] = round(steps.get(match["step"], 0.0) + float(match["seconds"]), 1)
        elif match["failed"]:
            failed.append(match["step"])
        if time.perf_counter() - started > args.timeout:
            process.kill()
            break
    process.wait()
    print(
        json.dumps(
            {
                "benchmark": "long_history",
                "partitions": args.days,
                "events_per_day": args.events_per_day,
                "planned_events": "one per asset per partition" if args.planned_per_partition else "one per asset",
                "seconds_to_first_step": None if first_step is None else round(first_step, 1),
                "runs": runs,
                "total_seconds": round(time.perf_counter() - started, 1),
                "step_seconds": steps,
                "failed_steps": failed,
                "succeeded": process.returncode == 0,
                "cores": os.cpu_count(),
                "state_dir": str(state),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Benchmark: `make run` over a long daily history, through the run launcher.

Launches ``python -m automation.main_run`` (what ``make run`` runs) for a synthetic
source of ``--days`` daily partitions (default 2,400, about six and a half years) with
few events a day, in a fresh state folder, and reads its console as it goes. Prints one
JSON line: seconds from launch to the first step (Dagster creating the run over the
whole range), seconds per step, the total, the partitions, whether the run succeeded,
and the core count.

``--planned-per-partition`` turns off ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``
(Dagster's default: one planned event per asset per partition) to measure what it saves;
expect minutes before the first step from a few hundred days on.

Usage: ``python bench/long_history.py [--days 2400] [--events-per-day 300] [--planned-per-partition]``
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2400)
    parser.add_argument("--events-per-day", type=int, default=300)
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
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "automation.main_run"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in process.stdout:
        match = STEP_LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        if first_step is None:
            first_step = time.perf_counter() - started
        if match["seconds"]:
            steps[match["step"]] = float(match["seconds"])
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

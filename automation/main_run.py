"""`make run`: materialize every asset for the configured source's days, then print a summary.

Launches ``reclake_main_job`` over the source's days (``Settings.run_days``: the synthetic
generator's days, or ``partitions_start .. partitions_end`` of a real source) as one run
(a single-run backfill) of the ``workspace.yaml`` code location, through the Dagster
instance in the state folder and its run launcher (``automation.launch``), exactly as a
run started from the UI is executed; ``make ui`` then shows it under its job. A history
longer than ``--days-per-run`` days (``assets.partitions.MAX_DAYS_PER_RUN``, a year) runs
as several runs, one after another: its older days through ``history_job`` (landing to
the feature marts, with their checks), at most that many days per run (the leftover
days first), then the newest ``--days-per-run`` days through the main job. Prints a line
per step while they run, then the summary of the main job's run; writes
``run_summary.json`` to the lake root and prints its path as the last line. The run
worker's own log goes to ``<dagster_home>/logs/``.

Usage: ``python -m automation.main_run [--days N] [--events-per-day N] [--days-per-run N] [--prepare-only] [--served-tag]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import sys
import time
from pathlib import Path

from reclake.runtime import configure_process

configure_process()  # before anything imports TensorFlow (its C++ start-up lines stay quiet)

from automation.launch import follow_run, launch_job, prepare_dagster_home  # noqa: E402
from reclake.settings import DEMO_START_FILE, Settings, load_settings, record_demo_start  # noqa: E402


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, help="synthetic days (default from settings)")
    parser.add_argument("--events-per-day", type=int, help="impressions per day (default from settings)")
    parser.add_argument(
        "--days-per-run", type=int, default=None, help="the most days one run covers (default: MAX_DAYS_PER_RUN)"
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only create the Dagster home and the dbt manifest (for `make ui`) and exit",
    )
    parser.add_argument(
        "--served-tag", action="store_true", help="print the bento tag the last run pinned (for `make serve`) and exit"
    )
    return parser.parse_args(argv)


def _dagster_home(settings: Settings) -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)


def _describe(settings: Settings) -> str:
    days = settings.run_days()
    what = f"source {settings.source}, {len(days)} day(s) {days[0]} .. {days[-1]}"
    if settings.source == "synthetic":
        what += f", {settings.synthetic.events_per_day:,} impressions a day"
    return f"{what}, ranker {settings.ranker_config}"


def planned_runs(days: list[dt.date], days_per_run: int) -> list[tuple[str, list[dt.date]]]:
    """The runs ``make run`` launches for ``days`` (oldest first), in order, as (job, days).

    The newest ``days_per_run`` days go to the main job; the older ones, if any, to the
    history job, oldest first, so that each run's incremental models find the days before
    it already built: first what is left over after whole runs of ``days_per_run`` days
    (the shorter run, which Dagster creates sooner, so the first step starts soonest),
    then ``days_per_run`` days at a time.
    """
    from automation.run_summary import HISTORY_JOB, MAIN_JOB

    if days_per_run < 1:
        raise ValueError(f"days per run must be at least 1, got {days_per_run}")
    older, newest = days[:-days_per_run], days[-days_per_run:]
    first_cut = len(older) % days_per_run or days_per_run  # where the leftover days end
    cuts = [0, *range(first_cut, len(older), days_per_run), len(older)] if older else []
    return [*((HISTORY_JOB, older[start:end]) for start, end in itertools.pairwise(cuts)), (MAIN_JOB, newest)]


def _days_not_yet_ended(settings: Settings) -> list:
    """The run's days that open-ended daily partitions do not hold yet (today and later)."""
    if settings.partitions_end is not None:
        return []
    today = dt.datetime.now(dt.UTC).date()
    return [day for day in settings.run_days() if day >= today]


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.days is not None:
        os.environ["RECLAKE_SYNTHETIC_DAYS"] = str(args.days)
    if args.events_per_day is not None:
        os.environ["RECLAKE_SYNTHETIC_EVENTS_PER_DAY"] = str(args.events_per_day)
    settings = load_settings()
    if args.served_tag:
        tag_file = settings.current_model_tag_file
        if not tag_file.is_file():
            print(f"no model served yet for source {settings.source!r}: run 'make run' first", file=sys.stderr)
            return 1
        print(tag_file.read_text().strip())
        return 0
    record_demo_start(settings)
    home = prepare_dagster_home(_dagster_home(settings))

    from assets.features import prepare_dbt_manifest

    prepare_dbt_manifest()
    if args.prepare_only:
        print(f"DAGSTER_HOME={home}")
        return 0
    not_yet = _days_not_yet_ended(settings)
    if not_yet:
        print(
            f"reclake: the run's days reach {not_yet[-1]}, which has not ended yet (UTC); daily partitions "
            f"end yesterday. Set synthetic.start_date (RECLAKE_SYNTHETIC_START_DATE) or fewer days, or delete "
            f"{settings.source_state_dir / DEMO_START_FILE} to start the demo window afresh",
            file=sys.stderr,
        )
        return 2

    import dagster as dg

    from assets.partitions import MAX_DAYS_PER_RUN
    from automation.run_summary import failed_steps, main_job_tags, summarise_run

    started = time.perf_counter()
    print(f"reclake: {_describe(settings)}", flush=True)
    log_file = home / "logs" / "main_run.log"
    runs = planned_runs(settings.run_days(), args.days_per_run or MAX_DAYS_PER_RUN)
    with dg.DagsterInstance.get() as instance:
        run_ids: list[str] = []
        for number, (job, days) in enumerate(runs, start=1):
            run_id, launcher = launch_job(job, main_job_tags(days), home, log_file)
            run_ids.append(run_id)
            which = f" ({number} of {len(runs)}: {days[0]} .. {days[-1]})" if len(runs) > 1 else ""
            print(f"run {run_id} of {job}{which} launched (run worker log: {log_file})", flush=True)
            run = follow_run(instance, run_id, launcher, echo=lambda line: print(line, flush=True), log_file=log_file)
            launcher.wait(timeout=300)
            if run.status != dg.DagsterRunStatus.SUCCESS:
                print(
                    f"run {run_id} {run.status.value.lower()}; failed steps: {failed_steps(instance, run_id)}; "
                    f"`make ui` shows its logs (and {log_file})",
                    file=sys.stderr,
                )
                return 1
        summary, summary_url = summarise_run(settings, instance, run_id, history_run_ids=run_ids[:-1])
    elapsed = time.perf_counter() - started
    print(json.dumps(summary, indent=2))
    print(f"finished in {elapsed:.1f} s; model {summary['model_version']} served as {summary['bento_model_tag']}")
    print(
        f"next: `make ui` (the run, its assets and checks; reports at {settings.reports_url}/), "
        "`make serve` (the model over HTTP)"
    )
    print(summary_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

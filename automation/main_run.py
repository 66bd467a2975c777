"""`make run`: materialize every asset for the configured source's days, then print a summary.

Runs ``reclake_main_job`` over the source's days (``Settings.run_days``: the synthetic
generator's days, or ``partitions_start .. partitions_end`` of a real source) as one run
(a single-run backfill) against the Dagster instance in the state folder, so that
``make ui`` shows the run and its materializations afterwards. Writes
``run_summary.json`` to the lake root and prints its path as the last line.

Usage: ``python -m automation.main_run [--days N] [--events-per-day N] [--prepare-only] [--served-tag]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from reclake.settings import Settings, load_settings  # noqa: E402

# Dagster instance settings for the local state folder: one writer for DuckDB at a time.
_DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
"""


def prepare_dagster_home(settings: Settings) -> Path:
    """Create the local Dagster home (with its dagster.yaml) and point DAGSTER_HOME at it."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, help="synthetic days (default from settings)")
    parser.add_argument("--events-per-day", type=int, help="impressions per day (default from settings)")
    parser.add_argument(
        "--prepare-only", action="store_true", help="only create the Dagster home (for `make ui`) and exit"
    )
    parser.add_argument(
        "--served-tag", action="store_true", help="print the bento tag the last run pinned (for `make serve`) and exit"
    )
    return parser.parse_args(argv)


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
    home = prepare_dagster_home(settings)
    if args.prepare_only:
        print(f"DAGSTER_HOME={home}")
        return 0

    import dagster as dg

    from automation.run_summary import run_main_job

    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        summary, summary_url = run_main_job(settings, instance)
    elapsed = time.perf_counter() - started
    print(json.dumps(summary, indent=2))
    print(f"finished in {elapsed:.1f} s; model {summary['model_version']} served as {summary['bento_model_tag']}")
    print(summary_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

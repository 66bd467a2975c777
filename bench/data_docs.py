"""Benchmark: the Great Expectations checks' cost against the length of the validation history.

A small synthetic world (``--days`` days of ``--events-per-day`` events) runs landing ->
bronze -> marts once, which validates the four marts into a Data Docs site
(``monitoring.data_quality.DataDocsSite``). Then, for each ``--history`` size, a copy of
that site gets that many more stored validation results (copies of the run's own, dated
one a day back in time, spread over the four suites, as a daily pipeline leaves them)
and the benchmark times, as the pipeline's checks and its ``data_docs`` asset do them:

- ``record_s``: validating ``fct_events`` on the warehouse into the site (the suite, its
  result, the result's page, the suite's page and the index);
- ``refresh_s``: the ``data_docs`` asset's rebuild of the newest pages and the index;
- ``histories_s``: its per-suite counts of every validation ever recorded.

Each is the median of ``--repeats`` runs, after a first record that moves the site's
older results to its archive (``first_record_s``: once, when a site from before the
archive meets it). The same is timed with the archive off (``results_per_suite`` larger
than any history: GX's store keeps everything) as ``*_unarchived``; ``histories_s`` reads
the summary lines in both. Prints one JSON line with every figure, each size's ratio to
the smallest and the core count.

Usage: ``python bench/data_docs.py [--history 0 1500 6000] [--repeats 3]``
"""

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline import _fresh_definitions, _materialize  # noqa: E402 - bench/pipeline.py's helpers

from reclake.runtime import configure_process  # noqa: E402

configure_process()

UNBOUNDED = 10**9
"""``results_per_suite`` that keeps every result in GX's store (the archive off)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--events-per-day", type=int, default=2000)
    parser.add_argument("--history", type=int, nargs="+", default=[0, 1500, 6000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stdout = os.dup(1)  # dbt and Dagster print to stdout: the JSON line alone goes there
    os.dup2(2, 1)
    root = Path(tempfile.mkdtemp(prefix="reclake-bench-data-docs-"))
    try:
        report = _measure(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        sys.stdout.flush()
        os.dup2(stdout, 1)
    print(json.dumps(report), flush=True)


def _measure(root: Path, args: argparse.Namespace) -> dict:
    import dagster as dg

    from monitoring.data_quality import DataDocsSite, validate_table

    defs, settings = _fresh_definitions(root / "world", args.days, args.events_per_day)
    days = [settings.synthetic_start + dt.timedelta(days=i) for i in range(args.days)]
    _materialize(defs, dg.DagsterInstance.ephemeral(), days[0], days[-1])
    spec = settings.load_feature_spec()
    site_dir = Path(defs.resources["pipeline"].data_docs_dir)
    report: dict = {"benchmark": "data_docs", "cores": os.cpu_count(), "suites": 4, "days": args.days}
    for archived, suffix in ((True, ""), (False, "_unarchived")):
        for history in args.history:
            copy = root / f"site-{history}{suffix}"
            shutil.copytree(site_dir, copy)
            _add_results(copy, history)
            site = DataDocsSite(copy) if archived else DataDocsSite(copy, results_per_suite=UNBOUNDED)
            site.histories()  # results without a summary line are summarised once, as on an older site

            def record(site=site):
                validate_table(settings.warehouse_path, "fct_events", spec, days=days, site=site)

            figures = {"first_record_s": _seconds(record)}
            for name, step in (("record_s", record), ("refresh_s", site.refresh), ("histories_s", site.histories)):
                figures[name] = round(statistics.median(_seconds(step) for _ in range(args.repeats)), 2)
            for name, seconds in figures.items():
                report.setdefault(f"{name.removesuffix('_s')}{suffix}_s", {})[str(history)] = seconds
    smallest = str(min(args.history))
    for name in [name for name in report if name.endswith("_s")]:
        report[f"{name.removesuffix('_s')}_ratio"] = {
            size: round(seconds / max(report[name][smallest], 0.01), 2) for size, seconds in report[name].items()
        }
    return report


def _seconds(step) -> float:
    started = time.perf_counter()
    step()
    return round(time.perf_counter() - started, 2)


def _add_results(site_dir: Path, count: int) -> None:
    """Store ``count`` more results in the site: copies of its own, one a day further back
    from a year before now, taking the suites in turn."""
    validations = site_dir / "gx" / "uncommitted" / "validations"
    originals = sorted(validations.rglob("*.json"))
    first = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
    for n in range(count):
        original = originals[n % len(originals)]
        result = json.loads(original.read_text())
        when = first - dt.timedelta(days=n // len(originals))
        result["meta"]["run_id"] = {"run_name": when.date().isoformat(), "run_time": when.isoformat()}
        suite_folder = original.parent.parent.parent  # <suite parts>/<run name>/<run time>/<batch>.json
        stored = suite_folder / when.date().isoformat() / when.strftime("%Y%m%dT%H%M%S.%fZ") / original.name
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(result))


if __name__ == "__main__":
    main()

"""Benchmark: landing files to feature marts, and the cost of adding one day.

For the synthetic source, prints one JSON line with:
- ``events_per_s``: events from landing files to the dbt feature marts (ingest, ``dbt
  build`` and the Great Expectations checks), for a backfill of ``--days`` days as one
  run, after a first run has written the landing files (``landing_seconds``);
- ``add_one_day_s``: the time to add one more day on top of ``--history`` days of
  history, for each history length given (incremental models should keep it flat): the
  median of ``--history-repeats`` added days, added to each history in turn so that a
  slow minute of a shared machine hits every history alike (``add_one_day_trials_s``
  holds each, ``add_one_day_step_seconds`` their steps), and ``add_one_day_ratio``, each
  history's median over the first's (the scale issue's target: at most 1.15 for 90 days
  over 30);
- ``duckdb_floor``: plain DuckDB doing the same shape of work on the same landing files
  in the same run (each JSON line parsed with typed, rule-checked extraction, bad lines
  to a quarantine file with a reason, bronze Parquet per day, then each event's user and
  item events and positives over the 1, 7 and 30 days strictly before it), and
  ``floor_events_per_s`` its rate, ``ratio`` the pipeline's events/s over the floor's (the
  scale issue's target is at least 0.5), ``pipeline_to_floor``: how many times slower the
  pipeline is than that floor (1 / ratio; both measured in one run, so a shared machine's
  noise hits both), and
  ``pipeline_with_landing_to_floor`` counting the synthetic landing too (as reported
  before 2026-12-05);
- ``step_seconds``: where the backfill's time went, per step of the run (landing,
  ingestion into bronze, dbt);
- ``pipeline_peak_rss_mb``: peak resident memory of the pipeline's run (this process and
  its largest child, dbt) before the floor runs; ``peak_rss_mb`` at the end, with the
  floor's DuckDB (no memory limit) and the add-a-day runs; the core count.

With ``--events N`` it instead measures training beyond memory: ``N`` synthetic events
over ``--window-days`` days go landing -> bronze -> dbt marts in one run, then the
window's training days (all but the newest two) are exported to Parquet and one epoch
of the pipeline's ranker (``dcn_v2_stacked``) trains streamed from them
(``models.inputs.stream.ParquetWindow``), scored on a sample of the newest day. The
JSON line has per-stage seconds and peak RSS (``getrusage`` max RSS of the process and
of its largest child) after each stage; dbt's output goes to stderr.

Usage: ``python bench/pipeline.py [--events-per-day 50000] [--days 20] [--history 30 90] [--history-repeats 5]``
or ``python bench/pipeline.py --events 10000000 [--window-days 7]``
"""

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reclake.runtime import configure_process  # noqa: E402

configure_process()

STAGES = ("landing", "bronze", "staging", "intermediate", "marts")  # asset groups: landing files to feature marts


def _materialize(
    defs, instance, first: dt.date, last: dt.date, steps: dict | None = None, groups: tuple[str, ...] = STAGES
) -> float:
    """Materialize the asset ``groups`` (default: land, ingest and build features) for
    [first, last] as one run; returns seconds (and fills ``steps`` with each step's
    seconds when given)."""
    import dagster as dg

    job = dg.define_asset_job("bench_features", selection=dg.AssetSelection.groups(*groups)).resolve(
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
    seconds = time.perf_counter() - started
    if steps is not None:
        for stats in instance.get_run_step_stats(result.run_id):
            if stats.start_time is not None and stats.end_time is not None:
                steps[stats.step_key] = round(stats.end_time - stats.start_time, 1)
    return seconds


_STRINGS = ("event_id", "user_id", "item_id", "user_segment", "device", "category")
_TYPED = {"event_ts": "timestamp", "slot_position": "bigint", "price": "double", "bid_price": "double",
          "market_price": "double", "clicked": "bigint", "converted": "bigint"}  # fmt: skip
_WINDOWS_DAYS = (1, 7, 30)


def _duckdb_floor(landing: Path, out: Path) -> dict:
    """The floor: landing JSON lines -> quarantine + bronze Parquet -> point-in-time counts,
    in plain DuckDB on one connection; returns seconds, events and quarantined lines."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    fields = ",\n".join(
        [f"json_extract_string(line, '$.{name}') as {name}" for name in _STRINGS]
        + [f"try_cast(json_extract_string(line, '$.{name}') as {kind}) as {name}" for name, kind in _TYPED.items()]
    )
    reason = """case
        when not json_valid(line) then 'not a JSON object'
        when event_id is null then 'event_id: missing'
        when event_ts is null then 'event_ts: not a timestamp'
        when user_id is null then 'user_id: missing'
        when item_id is null then 'item_id: missing'
        when clicked is null or clicked not in (0, 1) then 'clicked: not 0 or 1'
        when converted is not null and converted not in (0, 1) then 'converted: not 0 or 1'
        when price < 0 or bid_price < 0 or market_price < 0 then 'a price is negative'
    end"""
    windows = ",\n".join(
        f"count(*) over (partition by {entity}_id order by epoch_us(event_ts) range between "
        f"{days * 86_400_000_000} preceding and 1 preceding) as {entity}_events_{days}d,\n"
        f"coalesce(sum(clicked) over (partition by {entity}_id order by epoch_us(event_ts) range between "
        f"{days * 86_400_000_000} preceding and 1 preceding), 0) as {entity}_positives_{days}d"
        for entity in ("user", "item")
        for days in _WINDOWS_DAYS
    )
    started = time.perf_counter()
    connection = duckdb.connect()
    connection.execute(f"""
        create table checked as
        with lines as (
            select filename, row_number() over (partition by filename) as line_number, line
            from read_csv('{landing}/*/*.jsonl.gz', columns = {{'line': 'VARCHAR'}}, header = false,
                          delim = chr(1), quote = '', escape = '', filename = true, compression = 'gzip')
        ),
        typed as (select filename, line_number, line, {fields} from lines)
        select *, {reason} as reason from typed
    """)
    connection.execute(f"""copy (select filename, line_number, reason, line from checked where reason is not null)
                           to '{out}/quarantine.parquet' (format parquet)""")
    connection.execute(f"""copy (select * exclude (filename, line_number, line, reason), cast(event_ts as date) as dt
                                 from checked where reason is null)
                           to '{out}/bronze' (format parquet, partition_by (dt))""")
    connection.execute(f"""copy (select event_id, event_ts, {windows}
                                 from read_parquet('{out}/bronze/*/*.parquet', hive_partitioning = true))
                           to '{out}/features.parquet' (format parquet)""")
    seconds = time.perf_counter() - started
    events, quarantined = connection.execute(
        "select count(*) filter (where reason is null), count(*) filter (where reason is not null) from checked"
    ).fetchone()
    connection.close()
    return {"seconds": round(seconds, 1), "events": int(events), "quarantined": int(quarantined),
            "events_per_s": round(events / seconds)}  # fmt: skip


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


def _rss_mb() -> dict:
    """Peak resident memory so far, MB: this process, and its largest finished child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": round(own), "children": round(children), "peak": round(max(own, children))}


def _events_mode(events: int, window_days: int, batch_size: int, sample_rows: int) -> dict:
    """Landing -> marts for ``events`` events, then one streamed ranker epoch; the report."""
    import dagster as dg

    from models import evaluation
    from models.inputs.features import feature_arrays, label_array
    from models.inputs.stream import ParquetWindow
    from models.training.config import load_spec
    from models.training.registry import predict_values, train_model

    per_day = events // window_days
    report: dict = {"benchmark": "pipeline_events", "cores": os.cpu_count(), "events": per_day * window_days,
                    "window_days": window_days, "events_per_day": per_day}  # fmt: skip
    stages: dict[str, float] = {}
    rss: dict[str, dict] = {}
    root = Path(tempfile.mkdtemp(prefix="reclake-bench-events-"))
    try:
        defs, settings = _fresh_definitions(root / "state", window_days, per_day)
        steps: dict[str, float] = {}
        start = settings.synthetic_start
        stages["landing_to_marts"] = round(
            _materialize(
                defs, dg.DagsterInstance.ephemeral(), start, start + dt.timedelta(days=window_days - 1), steps
            ),
            1,
        )
        report["step_seconds"] = steps
        rss["after_marts"] = _rss_mb()
        warehouse, pipeline = defs.resources["warehouse"], defs.resources["pipeline"]
        spec = pipeline.feature_spec()
        days = warehouse.event_dates("training_examples")
        started = time.perf_counter()
        files = warehouse.export_days("training_examples", days[:-2], root / "window")
        stages["export_parquet"] = round(time.perf_counter() - started, 1)
        rss["after_export"] = _rss_mb()
        stream = ParquetWindow(files)
        config = load_spec("dcn_v2_stacked").to_dict()
        config["training"].update({"epochs": 1, "early_stopping_patience": None, "batch_size": batch_size})
        started = time.perf_counter()
        result = train_model(config, stream, feature_spec=spec)
        stages["ranker_fit_and_epoch"] = round(time.perf_counter() - started, 1)
        stages["ranker_epoch"] = round(result.seconds, 1)
        rss["after_epoch"] = _rss_mb()
        sample = next(warehouse.iter_day("training_examples", days[-1], sample_rows))
        scores = predict_values(result.model, feature_arrays(sample, spec))
        report["ranker"] = {"training_rows": stream.rows, "parquet_files": len(files),
                            "row_groups": len(stream.row_groups), "batch_size": batch_size,
                            "examples_per_s": round(result.examples_per_second),
                            "held_out_auc": round(evaluation.auc(label_array(sample, spec), scores), 4),
                            "held_out_rows": len(sample), **(result.environment or {})}  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["stage_seconds"] = stages
    report["rss_mb"] = rss
    report["peak_rss_mb"] = _rss_mb()["peak"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="landing -> marts -> one streamed ranker epoch")
    parser.add_argument("--window-days", type=int, default=7, help="days the --events are spread over")
    parser.add_argument("--batch-size", type=int, default=512, help="the ranker's batch size with --events")
    parser.add_argument("--sample-rows", type=int, default=200_000, help="held-out rows scored with --events")
    parser.add_argument("--events-per-day", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=20, help="days in the throughput backfill")
    parser.add_argument(
        "--history", type=int, nargs="*", default=[30, 90], help="history lengths for add-one-day (none: skip)"
    )
    parser.add_argument("--history-events-per-day", type=int, default=10_000)
    parser.add_argument("--history-repeats", type=int, default=5, help="days added to each history (the median counts)")
    args = parser.parse_args()
    # dbt and Dagster print to stdout: send it to stderr so stdout is the JSON line only.
    stdout = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    try:
        if args.events is not None:
            report = _events_mode(args.events, args.window_days, args.batch_size, args.sample_rows)
        else:
            report = _throughput_mode(args)
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
    print(json.dumps(report), flush=True)


def _throughput_mode(args: argparse.Namespace) -> dict:
    """Landing files -> marts for ``--days`` days against the DuckDB floor, then the cost
    of adding a day on each ``--history``; the report."""
    import dagster as dg

    report: dict = {"benchmark": "pipeline", "cores": os.cpu_count(), "events_per_day": args.events_per_day}
    root = Path(tempfile.mkdtemp(prefix="reclake-bench-pipeline-"))
    try:
        defs, settings = _fresh_definitions(root / "throughput", args.days, args.events_per_day)
        start = settings.synthetic_start
        steps: dict[str, float] = {}
        last = start + dt.timedelta(days=args.days - 1)
        instance = dg.DagsterInstance.ephemeral()
        # The synthetic generator writes the landing files in a run of its own: the floor
        # starts from those files, and so does the time compared with it.
        landing_seconds = _materialize(defs, instance, start, last, steps, groups=STAGES[:1])
        seconds = _materialize(defs, instance, start, last, steps, groups=STAGES[1:])
        events = args.days * args.events_per_day
        report["throughput"] = {"events": events, "seconds": round(seconds, 1), "events_per_s": round(events / seconds),
                                "landing_seconds": round(landing_seconds, 1)}  # fmt: skip
        report["step_seconds"] = steps
        # Before the floor runs in this process: the pipeline's own peak, and dbt's (a child).
        report["pipeline_peak_rss_mb"] = _rss_mb()
        floor = _duckdb_floor(Path(settings.lake_root) / "landing" / settings.source, root / "duckdb_floor")
        if floor["events"] != events:
            raise AssertionError(f"the floor read {floor['events']} events, the pipeline {events}")
        report["duckdb_floor"] = floor
        report["floor_events_per_s"] = floor["events_per_s"]
        report["ratio"] = round(report["throughput"]["events_per_s"] / floor["events_per_s"], 2)
        report["pipeline_to_floor"] = round(seconds / floor["seconds"], 1)
        report["pipeline_with_landing_to_floor"] = round((landing_seconds + seconds) / floor["seconds"], 1)

        report["history_events_per_day"] = args.history_events_per_day
        if args.history:
            report.update(_add_one_day(root, args.history, args.history_repeats, args.history_events_per_day))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["peak_rss_mb"] = _rss_mb()["self"]
    return report


def _add_one_day(root: Path, histories: list[int], repeats: int, events_per_day: int) -> dict:
    """The cost of adding one day on top of each of ``histories`` days of history.

    Every history is built first (one run each); then one new day is added to each in
    turn, ``repeats`` rounds, so the added days of all histories share the machine's
    slow and fast minutes. Returns ``add_one_day_s`` (each history's median seconds),
    ``add_one_day_trials_s`` (every added day's seconds, in order),
    ``add_one_day_step_seconds`` (each added day's seconds per step) and
    ``add_one_day_ratio`` (each later history's median over the first history's).
    """
    import dagster as dg

    worlds = []
    for history in histories:
        defs, settings = _fresh_definitions(root / f"history-{history}", history + repeats, events_per_day)
        instance = dg.DagsterInstance.ephemeral()
        start = settings.synthetic_start
        _materialize(defs, instance, start, start + dt.timedelta(days=history - 1))
        worlds.append((str(history), defs, instance, start + dt.timedelta(days=history)))
    trials: dict[str, list[float]] = {name: [] for name, *_ in worlds}
    steps: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in worlds}
    for repeat in range(repeats):
        for name, defs, instance, first_new in worlds:
            day = first_new + dt.timedelta(days=repeat)
            day_steps: dict[str, float] = {}
            trials[name].append(round(_materialize(defs, instance, day, day, day_steps), 1))
            steps[name].append(day_steps)
    medians = {name: round(statistics.median(seconds), 1) for name, seconds in trials.items()}
    base = worlds[0][0]
    return {
        "add_one_day_s": medians,
        "add_one_day_trials_s": trials,
        "add_one_day_step_seconds": steps,
        "add_one_day_ratio": {name: round(m / medians[base], 2) for name, m in medians.items() if name != base},
    }


if __name__ == "__main__":
    main()

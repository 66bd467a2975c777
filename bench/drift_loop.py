"""Benchmark: the monitoring loop, end to end, on the synthetic source with planted drift.

For each drift kind the generator has (``user_mix``, ``item_popularity``) and each seed:
``make run``'s main job bootstraps a served model on the first ``--bootstrap-days``; then
each following day is landed and run through ``ingest_to_monitor_job`` (bronze, features,
``drift_report``, ``served_model_quality``: what the landing sensor starts with
``retrain_policy: on_drift``), and ``drift_retrain_sensor`` is evaluated against the same
instance, exactly as the daemon would evaluate it; a run it requests (``retrain_job``) is
executed at once. Drift starts on day ``--drift-from-day`` (0 = the first day).

Prints one JSON line per kind and seed: ``drift_planted_day``, ``drift_detected_day`` (the
first day with an alert), ``false_alert_days`` (alerts before the drift), ``detected_on_first_day``,
``retrain_triggered_by_drift`` (the sensor asked for a retrain for a drifted day),
``retrained_after_day``, ``promoted`` (champion/challenger served the retrained model),
and the served model's calibration error (ECE over score deciles) and predicted/observed
ratio: ``ece_undrifted`` (mean over the monitored days before the drift, the bound),
``ece_drifted_before_retrain`` (the first drifted day, the old model), and
``ece_drifted_after_retrain`` (the next drifted day, with the model served then: the
retrained one if champion/challenger promoted it, else the champion; ``served_model_changed``);
``ece_back_within_bound`` compares the last with the bound (plus the alert threshold's
slack: ``calibration_alert_ece``). Each line also has the days' figures (``days``), the
seconds it took and the core count.

Usage: ``python bench/drift_loop.py [--events-per-day 50000] [--seeds 7 8] [--kinds user_mix item_popularity]``
"""

from __future__ import annotations

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reclake.runtime import configure_process  # noqa: E402

configure_process()

START = "2024-03-01"


def loop_settings(root: Path, *, kind: str, seed: int, events_per_day: int, days: int, drift_from_day: int,
                  training_window_days: int, reference_days: int, extra: dict[str, str] | None = None):  # fmt: skip
    """Settings of one loop on a new state folder (ignoring RECLAKE_* of the caller);
    ``extra``: more ``RECLAKE_*`` variables (e.g. a smaller world for a test)."""
    from reclake.settings import load_settings

    environ = {name: value for name, value in os.environ.items() if not name.startswith("RECLAKE_")}
    environ.update({
        "RECLAKE_STATE_DIR": str(root),
        "RECLAKE_RETRAIN_POLICY": "on_drift",
        "RECLAKE_TRAINING_WINDOW_DAYS": str(training_window_days),
        "RECLAKE_DRIFT_REFERENCE_DAYS": str(reference_days),
        "RECLAKE_SYNTHETIC_START_DATE": START,
        "RECLAKE_SYNTHETIC_DAYS": str(days),
        "RECLAKE_SYNTHETIC_EVENTS_PER_DAY": str(events_per_day),
        "RECLAKE_SYNTHETIC_SEED": str(seed),
        "RECLAKE_SYNTHETIC_DRIFT_FROM_DAY": str(drift_from_day),
        "RECLAKE_SYNTHETIC_DRIFT_KIND": kind,
        **(extra or {}),
    })  # fmt: skip
    return load_settings(environ)


def _newest(instance, asset: str, partition: str | None = None) -> dict[str, Any]:
    from assets.checks import newest_metadata

    return newest_metadata(instance, asset, partition) or {}


def run_loop(root: Path, *, kind: str, seed: int, events_per_day: int, bootstrap_days: int, monitored_days: int,
             drift_from_day: int, training_window_days: int, reference_days: int, extra: dict[str, str] | None = None,
             instance=None) -> dict[str, Any]:  # fmt: skip
    """One loop (see the module docstring) in ``root``, on ``instance`` (default: a new
    ephemeral one); returns its JSON line as a dict."""
    import dagster as dg

    from assets.partitions import partition_range_tags
    from automation.drift_retrain import drift_retrain_sensor
    from definitions import build_definitions

    started = time.perf_counter()
    settings = loop_settings(root, kind=kind, seed=seed, events_per_day=events_per_day,
                             days=bootstrap_days + monitored_days, drift_from_day=drift_from_day,
                             training_window_days=training_window_days, reference_days=reference_days,
                             extra=extra)  # fmt: skip
    defs = build_definitions(settings)
    instance = instance or dg.DagsterInstance.ephemeral()
    first = settings.synthetic_start
    days = [first + dt.timedelta(days=i) for i in range(bootstrap_days + monitored_days)]
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    def execute(job_name: str, tags: dict[str, str], partition: str | None = None) -> None:
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(instance=instance, run_config=quiet, tags=tags, partition_key=partition)
        if not result.success:
            raise RuntimeError(f"{job_name} failed for {partition or tags}")

    execute("reclake_main_job", partition_range_tags(days[0], days[bootstrap_days - 1]))
    bootstrapped = _newest(instance, "recommender_model").get("model_version")

    cursor, figures, retrains = None, [], []
    monitoring = defs.resources["monitoring"]
    for day in days[bootstrap_days:]:
        key = day.isoformat()
        execute("landing_job", {}, key)
        execute("ingest_to_monitor_job", {}, key)
        quality, drift = _newest(instance, "served_model_quality", key), _newest(instance, "drift_report", key)
        evaluation = drift_retrain_sensor(
            dg.build_sensor_context(instance=instance, cursor=cursor, resources={"monitoring": monitoring})
        )
        cursor = evaluation.cursor
        for request in evaluation.run_requests or []:
            execute("retrain_job", dict(request.tags))
            model = _newest(instance, "recommender_model")
            retrains.append({"alert_day": request.tags["reclake/alert_day"], "alerts": request.tags["reclake/alerts"],
                             "model_version": model.get("model_version"), "promoted": bool(model.get("promote"))})  # fmt: skip
        figures.append({
            "day": key,
            "drifted": (day - first).days >= drift_from_day,
            "drifted_share": drift.get("drifted_share"),
            "served_model": quality.get("model_version"),
            "quality_status": quality.get("status"),
            **{name: quality.get(name) for name in ("ece", "ratio", "auc", "prediction_drift")},
            "alerts": (quality.get("alerts") or []) + monitoring.feature_drift_alerts(drift.get("drifted_share")),
        })  # fmt: skip

    planted = first + dt.timedelta(days=drift_from_day)
    alert_days = [f["day"] for f in figures if f["alerts"]]
    detected = next((d for d in alert_days if d >= planted.isoformat()), None)
    undrifted = [f["ece"] for f in figures if not f["drifted"] and f["ece"] is not None]
    drifted = [f for f in figures if f["drifted"]]
    retrained = next((r for r in retrains if r["alert_day"] >= planted.isoformat()), None)
    after = None  # the first drifted day after the retrain, judged with whatever champion/challenger served
    if retrained is not None:
        after = next((f for f in drifted if f["day"] > retrained["alert_day"]), None)
    bound = sum(undrifted) / len(undrifted) if undrifted else None
    line = {
        "benchmark": "drift_loop",
        "drift_kind": kind,
        "seed": seed,
        "events_per_day": events_per_day,
        "drift_planted_day": planted.isoformat(),
        "drift_detected_day": detected,
        "detected_on_first_day": detected == planted.isoformat(),
        "false_alert_days": [d for d in alert_days if d < planted.isoformat()],
        "retrain_triggered_by_drift": retrained is not None,
        "retrained_after_day": retrained["alert_day"] if retrained else None,
        "promoted": retrained["promoted"] if retrained else None,
        "served_model_after_retrain": after["served_model"] if after else None,
        "served_model_changed": after["served_model"] != bootstrapped if after else None,
        "ece_undrifted": round(bound, 5) if bound is not None else None,
        "ece_drifted_before_retrain": drifted[0]["ece"] if drifted else None,
        "ece_drifted_after_retrain": after["ece"] if after else None,
        "ratio_drifted_before_retrain": drifted[0]["ratio"] if drifted else None,
        "ratio_drifted_after_retrain": after["ratio"] if after else None,
        "ece_back_within_bound": (
            after["ece"] <= bound + monitoring.calibration_alert_ece if after and bound is not None else None
        ),
        "retrains": retrains,
        "days": figures,
        "seconds": round(time.perf_counter() - started, 1),
        "cores": os.cpu_count(),
    }
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=50_000)
    parser.add_argument("--kinds", nargs="+", default=["user_mix", "item_popularity"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument("--bootstrap-days", type=int, default=7, help="days of make run's main job")
    parser.add_argument("--monitored-days", type=int, default=5, help="days landed one by one after it")
    parser.add_argument("--drift-from-day", type=int, default=9, help="day index the drift starts on (0 = first)")
    parser.add_argument("--training-window-days", type=int, default=7)
    parser.add_argument("--reference-days", type=int, default=7)
    args = parser.parse_args()
    for kind in args.kinds:
        for seed in args.seeds:
            root = Path(tempfile.mkdtemp(prefix="reclake-bench-drift-loop-"))
            try:
                with contextlib.redirect_stdout(sys.stderr):  # dbt's events go to stdout: keep it for the JSON
                    line = run_loop(root, kind=kind, seed=seed, events_per_day=args.events_per_day,
                                    bootstrap_days=args.bootstrap_days, monitored_days=args.monitored_days,
                                    drift_from_day=args.drift_from_day,
                                    training_window_days=args.training_window_days,
                                    reference_days=args.reference_days)  # fmt: skip
            finally:
                shutil.rmtree(root, ignore_errors=True)
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

"""Evaluate stored model versions on a chosen day, from the command line.

Each ``--tag`` (a version of the source's BentoML store; none: the served one) is
evaluated on the day's ``training_examples`` rows by materializing the
``stored_model_evaluation`` asset for that day, in this process, on the project's Dagster
instance (``make ui`` shows the runs and the metrics in the catalog); the metrics also go
to ``reports/evaluations/<name>/<version>/dt=<day>.json`` in the lake. Then a table of
the versions side by side.

Usage: ``python -m automation.evaluate_stored --day 2024-03-07 [--tag name:version ...]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import warnings
from pathlib import Path

import pandas as pd

from reclake.runtime import configure_process
from reclake.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", required=True, type=dt.date.fromisoformat, help="the day (YYYY-MM-DD) to evaluate on")
    parser.add_argument(
        "--tag", action="append", default=[], help="a stored version (name:version); repeat to compare; none: served"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configure_process()  # before anything imports TensorFlow
    settings = load_settings()

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # single-run backfills, as definitions.py says
    from assets.batch import build_batch_assets
    from assets.partitions import daily_partitions_for
    from automation.launch import prepare_dagster_home
    from resources import build_resources

    resources = build_resources(settings)
    resources = {name: resources[name] for name in ("lake", "warehouse", "pipeline", "model_store")}
    _, asset = build_batch_assets(daily_partitions_for(settings))
    home = prepare_dagster_home(Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home))
    rows = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for tag in args.tag or [""]:
            result = dg.materialize(
                [asset],
                partition_key=args.day.isoformat(),
                resources=resources,
                instance=instance,
                run_config={"ops": {"stored_model_evaluation": {"config": {"model_tag": tag}}}},
                raise_on_error=False,
            )
            if not result.success:
                print(f"evaluating {tag or 'the served model'} on {args.day} failed; see the run {result.run_id}")
                return 1
            (materialization,) = result.asset_materializations_for_node("stored_model_evaluation")
            metrics = materialization.metadata["metrics"].value
            rows[materialization.metadata["model_tag"].value] = metrics
    print(f"{settings.source} on {args.day}:")
    print(pd.DataFrame(rows).to_markdown(floatfmt=".4f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

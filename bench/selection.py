"""Benchmark: ``ranker_config: auto`` (``models.selection``) on the window ``recommender_model`` trains on.

Reads the newest ``training_window_days`` of ``training_examples`` from the warehouse
``make run`` built for the configured source (``.reclake/<source>/warehouse.duckdb`` by
default; run ``make run`` first), runs the automatic choice over ``auto_candidates``
within ``auto_budget_s`` (both overridable here), and prints one JSON line: per candidate
its status, validation and held-out figures and seconds, the choice and its margin, the
selection's seconds and the seconds it adds to ``recommender_model`` over training the
one configured ranker (``--baseline``, default ``dcn_v2_stacked``; when it is a candidate,
its own training time, unless swept, is what the pipeline spends today), plus the core count.
For a source with user and item ids it then runs the retrieval choice
(``models.retriever_selection``: the exportable two-tower variants and popularity, by
HR@10 on the validation day) within what the ranker choice left of the budget, as
``recommender_model`` does, and prints its table too (``retriever_choice`` in the JSON).

Usage: ``python bench/selection.py [--candidates hashed_lr fm ...] [--budget 600] [--sweep-trials 0] [--no-retrievers]``
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reclake.runtime import configure_process  # noqa: E402

configure_process()


def main() -> None:
    from models.recommender import train_ranker
    from models.selection import select_ranker
    from reclake.settings import load_settings
    from resources.warehouse import WarehouseResource

    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=list(settings.auto_candidates))
    parser.add_argument("--budget", type=float, default=settings.auto_budget_s)
    parser.add_argument("--sweep-trials", type=int, default=settings.auto_sweep_trials)
    parser.add_argument("--baseline", default="dcn_v2_stacked", help="the ranker the pipeline trains without auto")
    parser.add_argument("--no-retrievers", action="store_true", help="skip the retrieval choice")
    args = parser.parse_args()
    bench_started = time.perf_counter()
    spec = settings.load_feature_spec()
    warehouse = WarehouseResource(path=settings.warehouse_path)
    days, examples = warehouse.training_window(settings.training_window_days)
    selection = select_ranker(
        examples, spec, days, args.candidates, budget_s=args.budget, sweep_trials=args.sweep_trials, log=print
    )
    baseline = next(
        (c for c in selection.candidates if c.config == args.baseline and c.status == "trained" and c.sweep is None),
        None,
    )
    if baseline is not None:
        baseline_seconds = baseline.seconds
    else:
        started = time.perf_counter()
        train_ranker(examples, spec, days, args.baseline)
        baseline_seconds = time.perf_counter() - started
    retrievers = None
    if spec.has_ids and not args.no_retrievers:
        from models.retriever_selection import select_retriever

        retrievers = select_retriever(
            examples, spec, days, warehouse.query("select * from item_features"),
            budget_s=max(args.budget - selection.seconds, 0.0), log=print,
        )  # fmt: skip
    report = {
        "benchmark": "selection",
        "source": settings.source,
        "cores": os.cpu_count(),
        "days": [days[0].isoformat(), days[-1].isoformat()],
        "rows": len(examples),
        **selection.summary(),
        "baseline": args.baseline,
        "baseline_seconds": round(baseline_seconds, 1),
        "added_seconds": round(selection.seconds - baseline_seconds, 1),
        **({"retriever_choice": retrievers.summary()} if retrievers else {}),
        "wall_seconds": round(time.perf_counter() - bench_started, 1),
    }
    print(f"\n## {settings.source}: rankers\n")
    print(selection.markdown())
    if retrievers is not None:
        print(f"\n## {settings.source}: retrievers\n")
        print(retrievers.markdown())
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Benchmark: every bundled model config trained on the same window, through the zoo asset.

Materializes each partition of ``zoo_model`` (one per ``models/configs/*.yaml``) against
the warehouse ``make run`` built for the configured source (``.reclake/<source>/`` by
default; run ``make run`` first), and prints one JSON line: per config its held-out
metrics (rankers: AUC / logloss or RMSE on the held-out rows; retrievers: full-catalogue
``hr@10``, ``hr@100``, ``recall@10``, ``ndcg@10``, ``mrr@10`` over the held-out users),
epochs, training seconds and training examples per second (examples x epochs /
seconds), plus the core count. Configs that do not apply to the source report why
(``status``).

Usage: ``python bench/zoo.py [--configs fm deepfm ...]``
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reclake.runtime import configure_process  # noqa: E402

configure_process()

KEYS = ("model_family", "auc", "logloss", "bayes_logloss", "calibration", "rmse", "ctr_auc", "ctcvr_auc", "cvr_auc",
        "hr@10", "hr@100", "recall@10", "ndcg@10", "mrr@10", "users", "cold_users", "catalogue_items",
        "epochs", "best_epoch", "train_seconds", "examples_per_second", "onnx_max_abs_diff", "topk_agreement",
        "status")  # fmt: skip


def main() -> None:
    import dagster as dg

    from automation.launch import prepare_dagster_home
    from definitions import build_definitions
    from models.training.config import bundled_configs
    from reclake.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=bundled_configs())
    args = parser.parse_args()
    settings = load_settings()
    prepare_dagster_home(settings.dagster_home)
    defs = build_definitions(settings)
    zoo = defs.get_assets_def("zoo_model")
    report: dict = {"benchmark": "zoo", "source": settings.source, "cores": os.cpu_count(), "models": {}}
    with dg.DagsterInstance.get() as instance:
        for config in args.configs:
            result = dg.materialize([zoo], partition_key=config, resources=defs.resources, instance=instance)
            (event,) = result.get_asset_materialization_events()
            metadata = event.event_specific_data.materialization.metadata
            report["models"][config] = {k: metadata[k].value for k in KEYS if k in metadata}
    print(json.dumps(report))


if __name__ == "__main__":
    main()

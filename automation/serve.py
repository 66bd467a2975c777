"""``make serve``: serve the source's pinned model with everything the pipeline set up.

Usage: ``python -m automation.serve [--port 3001] [--workers N] [--print-env]``

It reads the same settings as the pipeline (``reclake.settings.load_settings``) and runs
``bentoml serve serving.service:RecommenderService`` with the serving settings
(``serving.config.ServingConfig``) pointing at what the pipeline wrote:

- the model: the tag the ``bento_model`` asset pinned, from the source's BentoML store;
- hot swap: the pinned tag file, so a model promoted later is swapped in while serving;
- online features: the store the ``online_features`` asset publishes to (the embedded
  SQLite file by default, Redis when ``online_store_url`` says so);
- prediction logs: the lake's landing zone, where the ``prediction_logs`` asset reads them;
- bidding: the source's campaigns file (``/bid``), and an A/B experiment when
  ``RECLAKE_EXPERIMENT`` is set (``serving.experiments``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from reclake.settings import PROJECT_ROOT, Settings, load_settings
from serving.config import serving_environment

SERVE_PORT = 3001  # the Dagster UI has 3000, the report server 3002


def environment_for(settings: Settings, tag: str, workers: int | None = None) -> dict[str, str]:
    """The serving environment of ``tag`` for ``settings`` (see the module docstring)."""
    return serving_environment(
        settings.bentoml_home,
        tag,
        pinned_tag_file=settings.current_model_tag_file,
        online_store_url=settings.online_store,
        prediction_log_root=settings.lake_root,
        s3_endpoint_url=settings.s3_endpoint_url,
        workers=workers,
        campaigns=settings.campaigns_file,
        experiment=os.environ.get("RECLAKE_EXPERIMENT") or None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=SERVE_PORT)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--print-env", action="store_true", help="print the serving environment and exit")
    args = parser.parse_args(argv)
    settings = load_settings()
    tag_file = settings.current_model_tag_file
    if not tag_file.is_file():
        print(f"no model served yet for source {settings.source!r}: run 'make run' first", file=sys.stderr)
        return 1
    env = environment_for(settings, tag_file.read_text().strip(), args.workers)
    if args.print_env:
        for name, value in env.items():
            print(f"{name}={value}")
        return 0
    bentoml = str(Path(sys.executable).parent / "bentoml")
    argv = [bentoml, "serve", "serving.service:RecommenderService", "--host", args.host, "--port", str(args.port)]
    os.chdir(PROJECT_ROOT)
    os.execve(bentoml, argv, {**os.environ, **env})
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

"""`make mlflow`: MLflow's UI over the store every training is logged to.

The training assets (``recommender_model``, ``zoo_model``) log each training to the
configured tracking store (``Settings.mlflow_tracking``: by default the SQLite file
``<state_dir>/mlflow/mlflow.db``) and link the run at ``Settings.mlflow_ui_url``; this
starts ``mlflow server`` over that store on that URL's host and port (5001 by default).

Usage: ``python -m automation.mlflow_ui [--host H] [--port P]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from pathlib import Path

from reclake.settings import Settings, load_settings


def server_command(settings: Settings, host: str, port: int) -> list[str]:
    """The ``mlflow server`` command line over ``settings``' store on ``host:port``; the
    store's folder and its artifact folder are created when missing.

    Raises:
        ValueError: the tracking URI is a server already (open it instead).
    """
    uri = settings.mlflow_tracking
    if settings.mlflow_tracking_is_server:
        raise ValueError(f"the tracking URI {uri} is an MLflow server already: open it in a browser")
    artifacts = settings.mlflow_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    return [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", uri,
        "--default-artifact-root", artifacts.as_uri(),
        "--host", host, "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    default = urllib.parse.urlsplit(settings.mlflow_ui_url)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=default.hostname or "127.0.0.1")
    parser.add_argument("--port", type=int, default=default.port or 5001)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        command = server_command(settings, args.host, args.port)
    except ValueError as error:
        print(f"mlflow: {error}", file=sys.stderr)
        return 1
    print(f"MLflow UI over {settings.mlflow_tracking} at http://{args.host}:{args.port}", flush=True)
    os.execv(command[0], command)  # the server takes this process's place (Ctrl-C stops it)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
